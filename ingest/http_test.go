package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/kafkatest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// response is one answer of the HTTP receiver.
type response struct {
	status int
	header http.Header
	body   answer
	raw    string
}

// post sends body to the receiver; chunked sends it without Content-Length.
func post(t *testing.T, h *harness, token string, body []byte, chunked bool) response {
	t.Helper()
	return request(t, http.MethodPost, "http://"+h.in.Addr().String()+h.in.cfg.HTTP.Path, token, body, chunked)
}

func request(t *testing.T, method, url, token string, body []byte, chunked bool) response {
	t.Helper()
	var rd io.Reader = bytes.NewReader(body)
	if chunked {
		rd = io.MultiReader(rd) // hides the length: sent chunked
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, url, err)
		return response{}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			t.Errorf("answer %q: %v", raw, err)
		}
	}
	return r
}

// jsonArray returns events from..to-1 as a JSON array.
func jsonArray(from, to int) []byte {
	var b bytes.Buffer
	b.WriteString("[\n")
	for i := from; i < to; i++ {
		if i > from {
			b.WriteString(",\n")
		}
		b.WriteString(event(i))
	}
	b.WriteString("\n]")
	return b.Bytes()
}

// TestHTTPEndToEnd POSTs 5000 events as NDJSON and JSON arrays, with and
// without Content-Length, from 4 clients at once, and counts every id in
// Kafka. The first 200 is checked right away: its events must already be
// in Kafka.
func TestHTTPEndToEnd(t *testing.T) {
	cfg := testConfig()
	cfg.HTTP.Enabled, cfg.HTTP.Token = true, "s3cret"
	h := start(t, cfg, kafkatest.Brokers(t))

	first := post(t, h, "s3cret", ndjsonBody(1, 251), false)
	if first.status != http.StatusOK || first.body.Accepted != 250 {
		t.Fatalf("first POST: %d %s, want 200 accepting 250", first.status, first.raw)
	}
	// A 200 means Kafka has every event: read them without waiting.
	wantIDs(t, "topic right after the first 200", countIDs(t, readTopic(t, h.brokers, h.topic)), 1, 251, true)

	const batches, per = 19, 250
	var wg sync.WaitGroup
	work := make(chan int)
	for range 4 {
		wg.Go(func() {
			for b := range work {
				from := 251 + b*per
				body := ndjsonBody(from, from+per)
				if b%2 == 1 {
					body = jsonArray(from, from+per)
				}
				r := post(t, h, "s3cret", body, b%3 == 0)
				if r.status != http.StatusOK || r.body.Accepted != per {
					t.Errorf("batch %d: %d %s, want 200 accepting %d", b, r.status, r.raw, per)
				}
			}
		})
	}
	for b := range batches {
		work <- b
	}
	close(work)
	wg.Wait()

	const n = 250 + batches*per
	wantIDs(t, "topic", countIDs(t, readTopic(t, h.brokers, h.topic)), 1, n+1, true)
	if got := h.counter("ingest.http.published"); got != n {
		t.Errorf("ingest.http.published = %d, want %d", got, n)
	}
	if err := h.stop(t); err != nil {
		t.Errorf("Run: %v", err)
	}
	if got := h.counter("ingest.buffered_bytes") + h.counter("ingest.buffered_records"); got != 0 {
		t.Errorf("buffer holds %d after the stop, want 0", got)
	}
}

// fakeCluster starts an embedded broker this test can inject faults into.
func fakeCluster(t *testing.T) (*kfake.Cluster, []string) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(2))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c, c.ListenAddrs()
}

// TestHTTPAnswersOnlyAfterKafkaAcks makes the broker refuse every produce
// request (a retriable error) while a POST is in flight: the POST must not
// be answered until the broker takes the records, and meanwhile a second
// POST must get 503 with Retry-After, whether the producer's record window
// or the byte buffer is what is full.
func TestHTTPAnswersOnlyAfterKafkaAcks(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"record window full", func(c *Config) { c.Producer.MaxInFlight = 5 }},
		{"byte buffer full", func(c *Config) { c.MaxBufferedBytes, c.HTTP.MaxBodyBytes, c.MaxEventBytes = 2048, 2048, 1024 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cluster, brokers := fakeCluster(t)
			cfg := testConfig()
			cfg.HTTP.Enabled, cfg.HTTP.AdmitWait = true, 100*time.Millisecond
			tc.edit(&cfg)
			h := start(t, cfg, brokers)

			refuse := cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: h.topic, Err: kerr.NotEnoughReplicas, Count: -1})
			first := make(chan response, 1)
			go func() { first <- post(t, h, "", ndjsonBody(1, 6), false) }()
			eventually(t, 10*time.Second, "the broker refusing the first POST's records", func() bool { return refuse.Hits() > 0 })
			select {
			case r := <-first:
				t.Fatalf("first POST answered %d %s while Kafka refused its records", r.status, r.raw)
			case <-time.After(500 * time.Millisecond):
			}

			second := post(t, h, "", ndjsonBody(6, 11), false)
			if second.status != http.StatusServiceUnavailable || second.header.Get("Retry-After") != "1" {
				t.Errorf("second POST while saturated: %d Retry-After %q %s, want 503 with Retry-After 1",
					second.status, second.header.Get("Retry-After"), second.raw)
			}

			refuse.Remove()
			var r response
			select {
			case r = <-first:
			case <-time.After(30 * time.Second):
				t.Fatal("first POST not answered within 30s of the broker recovering")
			}
			if r.status != http.StatusOK || r.body.Accepted != 5 {
				t.Fatalf("first POST: %d %s, want 200 accepting 5", r.status, r.raw)
			}
			wantIDs(t, "topic right after the 200", countIDs(t, readTopic(t, brokers, h.topic)), 1, 6, true)

			if again := post(t, h, "", ndjsonBody(6, 11), false); again.status != http.StatusOK {
				t.Errorf("second POST resent after recovery: %d %s, want 200", again.status, again.raw)
			}
			wantIDs(t, "topic", countIDs(t, readTopic(t, brokers, h.topic)), 1, 11, true)
			if got := h.counter("ingest.http.throttled"); got != 1 {
				t.Errorf("ingest.http.throttled = %d, want 1", got)
			}
		})
	}
}

// TestHTTPRefusals covers every refusal with on_invalid=reject: nothing of
// a refused request may reach Kafka, and each answer must say why.
func TestHTTPRefusals(t *testing.T) {
	cfg := testConfig()
	cfg.OnInvalid = OnInvalidReject
	cfg.HTTP.Enabled, cfg.HTTP.Token, cfg.HTTP.MaxBodyBytes, cfg.MaxEventBytes = true, "s3cret", 8192, 1024
	h := start(t, cfg, kafkatest.Brokers(t))
	url := "http://" + h.in.Addr().String() + cfg.HTTP.Path
	big := `{"id":"big","text":"` + strings.Repeat("x", 2000) + `"}`
	mixed := event(1) + "\n" + `{"id":"act-2",` + "\n\n" + `{"text":"no id"}` + "\n" + "{\"id\":\"act-4\x00\"}" + "\n" + event(5) + "\n"

	for _, tc := range []struct {
		name        string
		method      string
		path        string
		token       string
		body        string
		chunked     bool
		wantStatus  int
		wantError   string
		wantInvalid []invalid
	}{
		{name: "no token", body: event(1), wantStatus: 401, wantError: "bearer token"},
		{name: "wrong token", token: "guess", body: event(1), wantStatus: 401, wantError: "bearer token"},
		{name: "GET", method: http.MethodGet, token: "s3cret", wantStatus: 405},
		{name: "other path", path: "/v2", token: "s3cret", body: event(1), wantStatus: 404},
		{name: "body over max_body_bytes", token: "s3cret", body: strings.Repeat(event(1)+"\n", 30), wantStatus: 413, wantError: "ingest.http.max_body_bytes"},
		{name: "chunked body over max_body_bytes", token: "s3cret", body: strings.Repeat(event(1)+"\n", 30), chunked: true, wantStatus: 413, wantError: "ingest.http.max_body_bytes"},
		{name: "line over max_event_bytes", token: "s3cret", body: event(1) + "\n" + big + "\n", wantStatus: 413, wantError: "ingest.max_event_bytes",
			wantInvalid: []invalid{{Line: 2, Reason: "event too large: 2022 bytes, over the limit of 1024 (ingest.max_event_bytes)"}}},
		{name: "invalid lines", token: "s3cret", body: mixed, wantStatus: 400, wantError: "3 of 5 events invalid; nothing was accepted",
			wantInvalid: []invalid{
				{Line: 2, Reason: "malformed JSON at byte 14: unexpected end of JSON input"},
				{Line: 4, Reason: `missing or empty "id"`},
				{Line: 5, Reason: "NUL byte at byte 12"},
			}},
		{name: "invalid array element", token: "s3cret", body: "[" + event(1) + `,{"id":7}]`, wantStatus: 400,
			wantInvalid: []invalid{{Element: 2, Reason: `field "id" is a number, want a string`}}},
		{name: "truncated array", token: "s3cret", body: "[" + event(1) + `,{"id":"x"`, wantStatus: 400, wantError: "element 2"},
		{name: "empty body", token: "s3cret", body: "\n\n", wantStatus: 400, wantError: "no events"},
		{name: "invalid UTF-8", token: "s3cret", body: "{\"id\":\"\xff\"}", wantStatus: 400,
			wantInvalid: []invalid{{Line: 1, Reason: "invalid UTF-8 at byte 7"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			r := request(t, method, url+tc.path, tc.token, []byte(tc.body), tc.chunked)
			if r.status != tc.wantStatus {
				t.Fatalf("status %d %s, want %d", r.status, r.raw, tc.wantStatus)
			}
			if !strings.Contains(r.body.Error, tc.wantError) {
				t.Errorf("error %q, want it to contain %q", r.body.Error, tc.wantError)
			}
			if r.body.Accepted != 0 {
				t.Errorf("accepted %d, want 0", r.body.Accepted)
			}
			if fmt.Sprint(r.body.Invalid) != fmt.Sprint(tc.wantInvalid) {
				t.Errorf("invalid events\n got %v\nwant %v", r.body.Invalid, tc.wantInvalid)
			}
			switch r.status {
			case 401:
				if r.header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
			case 405:
				if r.header.Get("Allow") != http.MethodPost {
					t.Errorf("405 with Allow %q, want POST", r.header.Get("Allow"))
				}
			}
		})
	}
	if msgs := readTopic(t, h.brokers, h.topic); len(msgs) != 0 {
		t.Errorf("topic holds %d records of refused requests, want 0", len(msgs))
	}
	if msgs := readTopic(t, h.brokers, h.dlq); len(msgs) != 0 {
		t.Errorf("dead-letter topic holds %d records with on_invalid=reject, want 0", len(msgs))
	}
	if got := h.counter("ingest.rejected"); got != 6 {
		t.Errorf("ingest.rejected = %d, want 6", got)
	}
}

// TestHTTPDeadLetters checks on_invalid=dead_letter: valid events are
// accepted, invalid ones go to the dead-letter topic with their raw bytes
// and reason, and the 400 answer is sent after Kafka acknowledged both.
func TestHTTPDeadLetters(t *testing.T) {
	cfg := testConfig()
	cfg.HTTP.Enabled = true
	h := start(t, cfg, kafkatest.Brokers(t))

	bad1, bad2 := `{"id":"act-x","text":5}`, "{\"id\":\"act-y\",\"text\":\"\xc3\"}"
	body := event(1) + "\n" + bad1 + "\r\n" + event(2) + "\n\n" + bad2 + "\n" + event(3)
	r := post(t, h, "", []byte(body), false)
	if r.status != http.StatusBadRequest || r.body.Accepted != 3 || r.body.DeadLettered != 2 {
		t.Fatalf("POST: %d %s, want 400 accepting 3, dead-lettering 2", r.status, r.raw)
	}
	want := []invalid{{Line: 2, Reason: `field "text" is a number, want a string`}, {Line: 5, Reason: "invalid UTF-8 at byte 22"}}
	if fmt.Sprint(r.body.Invalid) != fmt.Sprint(want) {
		t.Errorf("invalid events\n got %v\nwant %v", r.body.Invalid, want)
	}
	if arr := post(t, h, "", []byte(`[`+event(4)+`, {"id":""}]`), true); arr.status != 400 || arr.body.Accepted != 1 || arr.body.DeadLettered != 1 {
		t.Errorf("array POST: %d %s, want 400 accepting 1, dead-lettering 1", arr.status, arr.raw)
	}
	if ok := post(t, h, "", ndjsonBody(5, 7), false); ok.status != http.StatusOK {
		t.Errorf("valid POST: %d %s, want 200", ok.status, ok.raw)
	}

	wantIDs(t, "topic", countIDs(t, readTopic(t, h.brokers, h.topic)), 1, 7, true)
	dead := readTopic(t, h.brokers, h.dlq)
	if len(dead) != 3 {
		t.Fatalf("dead-letter topic holds %d records, want 3", len(dead))
	}
	wantDead := map[string][2]string{ // value -> line, reason
		bad1:        {"2", `field "text" is a number, want a string`},
		bad2:        {"5", "invalid UTF-8 at byte 22"},
		`{"id":""}`: {"2", `missing or empty "id"`},
	}
	for _, m := range dead {
		w, ok := wantDead[string(m.Value)]
		if !ok {
			t.Errorf("unexpected dead letter %q", m.Value)
			continue
		}
		if header(m, HeaderDLQLine) != w[0] || header(m, HeaderDLQReason) != w[1] ||
			header(m, HeaderDLQStage) != "ingest" || header(m, HeaderDLQSource) != "http" {
			t.Errorf("dead letter %q: headers %v, want line %s reason %q stage ingest source http", m.Value, m.Headers, w[0], w[1])
		}
		if _, err := time.Parse(time.RFC3339Nano, header(m, HeaderDLQTime)); err != nil {
			t.Errorf("dead letter %q: %s %q: %v", m.Value, HeaderDLQTime, header(m, HeaderDLQTime), err)
		}
	}
	if got := h.counter("ingest.dead_letters"); got != 3 {
		t.Errorf("ingest.dead_letters = %d, want 3", got)
	}
	if got := h.counter("ingest.rejected"); got != 3 {
		t.Errorf("ingest.rejected = %d, want 3", got)
	}
}
