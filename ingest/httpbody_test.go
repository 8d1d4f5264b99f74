package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/kafkatest"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// postWith POSTs body to the receiver of h with the given headers.
func postWith(t *testing.T, h *harness, hdr map[string]string, body []byte) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+h.in.Addr().String()+h.in.cfg.HTTP.Path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("POST: %v", err)
		return response{}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

// slowUpload is a raw TCP connection that declared a body of length bytes.
type slowUpload struct {
	conn net.Conn
	br   *bufio.Reader
}

func openUpload(t *testing.T, h *harness, length int64) *slowUpload {
	t.Helper()
	c, err := net.Dial("tcp", h.in.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: bend\r\nContent-Type: application/x-ndjson\r\nContent-Length: %d\r\n\r\n", h.in.cfg.HTTP.Path, length)
	return &slowUpload{conn: c, br: bufio.NewReader(c)}
}

// status reads the answer's status code, or 0 if none came within d.
func (u *slowUpload) status(d time.Duration) int {
	_ = u.conn.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(u.br, nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestHTTPSlowUploads opens, over real TCP, uploads that each declare a
// body as large as a quarter of ingest's buffer and then send a byte every
// 100ms, while other clients POST events: every fast POST must be accepted
// (its events counted in Kafka), and each slow connection must be answered
// 408 once a window passes under the minimum rate. An upload that keeps
// above the minimum must get through.
func TestHTTPSlowUploads(t *testing.T) {
	cfg := testConfig()
	cfg.HTTP.Enabled = true
	cfg.MaxEventBytes = 256 << 10
	cfg.HTTP.MaxBodyBytes = 1 << 20
	cfg.MaxBufferedBytes = 4 << 20
	cfg.HTTP.MinBytesPerSecond = 1024
	cfg.HTTP.MinRateWindow = time.Second
	h := start(t, cfg, kafkatest.Brokers(t))

	var slow []*slowUpload
	for range 4 {
		slow = append(slow, openUpload(t, h, cfg.HTTP.MaxBodyBytes))
	}
	stopDrip := make(chan struct{})
	var drip sync.WaitGroup
	for _, u := range slow {
		drip.Go(func() {
			tk := time.NewTicker(100 * time.Millisecond)
			defer tk.Stop()
			for {
				select {
				case <-stopDrip:
					return
				case <-tk.C:
					if _, err := u.conn.Write([]byte{' '}); err != nil {
						return // cut by the receiver
					}
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond) // the slow uploads are being read

	const posts, per = 8, 50
	for i := range posts {
		r := post(t, h, "", ndjsonBody(1+i*per, 1+(i+1)*per), false)
		if r.status != http.StatusOK || r.body.Accepted != per {
			t.Errorf("fast POST %d beside slow uploads: %d %s, want 200 accepting %d", i, r.status, r.raw, per)
		}
	}
	for i, u := range slow {
		if got := u.status(10 * time.Second); got != http.StatusRequestTimeout {
			t.Errorf("slow upload %d: status %d, want 408", i, got)
		}
	}
	close(stopDrip)
	drip.Wait()
	wantIDs(t, "topic", countIDs(t, readTopic(t, h.brokers, h.topic)), 1, 1+posts*per, true)
	if got := h.counter("ingest.http.too_slow"); got != int64(len(slow)) {
		t.Errorf("ingest.http.too_slow = %d, want %d", got, len(slow))
	}

	// An upload steadily above the minimum (4 KiB every 100ms) gets through
	// though it takes several windows.
	body := ndjsonBody(1000, 1150)
	u := openUpload(t, h, int64(len(body)))
	for rest := body; len(rest) > 0; {
		n := min(4096, len(rest))
		if _, err := u.conn.Write(rest[:n]); err != nil {
			t.Fatalf("steady upload: %v", err)
		}
		rest = rest[n:]
		time.Sleep(100 * time.Millisecond)
	}
	if got := u.status(10 * time.Second); got != http.StatusOK {
		t.Errorf("steady upload of %d bytes: status %d, want 200", len(body), got)
	}
	eventually(t, 5*time.Second, "the buffer to empty", func() bool { return h.counter("ingest.buffered_bytes") == 0 })
}

// TestHTTPSaturatedNamesTheCause fills ingest's buffer with an upload still
// being received: a POST then gets 503 saying so, not blaming Kafka.
func TestHTTPSaturatedNamesTheCause(t *testing.T) {
	cfg := testConfig()
	cfg.HTTP.Enabled = true
	cfg.MaxEventBytes = 16 << 10
	cfg.MaxBufferedBytes = 64 << 10
	cfg.HTTP.MaxBodyBytes = 64 << 10
	cfg.HTTP.MinBytesPerSecond = 0
	cfg.HTTP.AdmitWait = 100 * time.Millisecond
	h := start(t, cfg, kafkatest.Brokers(t))

	u := openUpload(t, h, cfg.HTTP.MaxBodyBytes)
	if _, err := u.conn.Write(bytes.Repeat([]byte{' '}, 60<<10)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the upload to hold the buffer", func() bool { return h.counter("ingest.buffered_bytes") >= 60<<10 })
	r := post(t, h, "", ndjsonBody(1, 40), false)
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body.Error, "uploads still being received") {
		t.Errorf("POST with the buffer held by an upload: %d %s, want 503 naming the uploads", r.status, r.raw)
	}
	if strings.Contains(r.body.Error, "Kafka") {
		t.Errorf("503 blames Kafka: %s", r.body.Error)
	}
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestHTTPEncodings covers gzip bodies, a gzip bomb, unsupported encodings
// and a UTF-8 byte order mark, and counts the accepted ids in Kafka.
func TestHTTPEncodings(t *testing.T) {
	cfg := testConfig()
	cfg.HTTP.Enabled = true
	cfg.HTTP.MaxBodyBytes = 1 << 20
	h := start(t, cfg, kafkatest.Brokers(t))

	bomb := gzipped(t, bytes.Repeat([]byte("\n"), 8<<20))
	bomText := "\xEF\xBB\xBF"
	for _, tc := range []struct {
		name      string
		encoding  string
		body      []byte
		status    int
		accepted  int
		errSubstr string
	}{
		{"gzip NDJSON", "gzip", gzipped(t, ndjsonBody(1, 101)), 200, 100, ""},
		{"gzip JSON array", "x-gzip", gzipped(t, jsonArray(101, 151)), 200, 50, ""},
		{"identity", "identity", ndjsonBody(151, 161), 200, 10, ""},
		{"BOM before NDJSON", "", append([]byte(bomText), ndjsonBody(161, 171)...), 200, 10, ""},
		{"BOM before a JSON array", "", append([]byte(bomText), jsonArray(171, 181)...), 200, 10, ""},
		{"BOM inside gzip", "gzip", gzipped(t, append([]byte(bomText), ndjsonBody(181, 191)...)), 200, 10, ""},
		{"gzip bomb", "gzip", bomb, 413, 0, "decompressed body is over the limit"},
		{"broken gzip", "gzip", []byte("not gzip at all"), 400, 0, "gzip"},
		{"brotli", "br", ndjsonBody(900, 901), 415, 0, `Content-Encoding "br" is not supported`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{"Content-Type": "application/x-ndjson"}
			if tc.encoding != "" {
				hdr["Content-Encoding"] = tc.encoding
			}
			r := postWith(t, h, hdr, tc.body)
			if r.status != tc.status || r.body.Accepted != tc.accepted || !strings.Contains(r.body.Error, tc.errSubstr) {
				t.Errorf("got %d %s, want %d accepting %d with an error containing %q", r.status, r.raw, tc.status, tc.accepted, tc.errSubstr)
			}
		})
	}
	wantIDs(t, "topic", countIDs(t, readTopic(t, h.brokers, h.topic)), 1, 191, true)
	if got := h.counter("ingest.rejected"); got != 0 {
		t.Errorf("ingest.rejected = %d, want 0", got)
	}
	if got := h.counter("ingest.buffered_bytes"); got != 0 {
		t.Errorf("ingest.buffered_bytes = %d after every answer, want 0", got)
	}
}

// TestHTTPRejectionsLogged checks that refused requests are logged with
// their reason, at most once per rejectLogEvery, counting those not logged.
func TestHTTPRejectionsLogged(t *testing.T) {
	cfg := testConfig()
	cfg.HTTP.Enabled = true
	cfg.OnInvalid = OnInvalidReject
	brokers := kafkatest.Brokers(t)
	log, hook := logtest.NewNullLogger()
	in, err := New(cfg, brokers, kafkatest.Config(), kafkatest.CreateTopic(t, brokers, 1), kafkatest.CreateTopic(t, brokers, 1), log, metrics.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	defer func() { cancel(); <-done }()
	h := &harness{in: in}

	for i := range 5 {
		if r := post(t, h, "", []byte(`{"id":"act-1","text":5}`+"\n"), false); r.status != http.StatusBadRequest {
			t.Fatalf("invalid POST %d: %d %s, want 400", i, r.status, r.raw)
		}
	}
	var rejected []*logrus.Entry
	for _, e := range hook.AllEntries() {
		if strings.HasPrefix(e.Message, "request rejected") {
			rejected = append(rejected, e)
		}
	}
	if len(rejected) != 1 {
		t.Fatalf("%d rejection lines for 5 refused requests within %s, want 1: %v", len(rejected), rejectLogEvery, rejected)
	}
	e := rejected[0]
	if e.Data["status"] != 400 || e.Data["line"] != 1 || !strings.Contains(fmt.Sprint(e.Data["reason"]), `"text"`) {
		t.Errorf("rejection line %q %v, want status 400, line 1 and the reason", e.Message, e.Data)
	}
}
