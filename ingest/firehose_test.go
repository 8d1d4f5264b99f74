package ingest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

func firehoseConfig(limit int64) FirehoseConfig {
	c := DefaultFirehoseConfig()
	c.Synth.Rate, c.Synth.Limit, c.Synth.Seed, c.Token = 50000, limit, 1, "tok"
	return c
}

// readStream GETs url and returns the seqs and ids of the events, and the
// error that ended the body (nil for a clean end).
func readStream(t *testing.T, url, token string) (seqs []uint64, ids []string, err error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("GET: %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var ev struct {
			ID  string `json:"id"`
			Seq uint64 `json:"seq"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		seqs, ids = append(seqs, ev.Seq), append(ids, ev.ID)
	}
	return seqs, ids, sc.Err()
}

func TestFirehoseStreamsGaplessSeq(t *testing.T) {
	fh, err := NewFirehose(firehoseConfig(3000), testLog())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(fh)
	defer srv.Close()
	for client := range 2 { // each client gets its own stream from seq 1
		seqs, ids, err := readStream(t, srv.URL, "tok")
		if err != nil {
			t.Fatalf("client %d: stream ended with %v, want a clean end at the limit", client, err)
		}
		if len(seqs) != 3000 {
			t.Fatalf("client %d: %d events, want 3000", client, len(seqs))
		}
		for i, s := range seqs {
			if s != uint64(i+1) || ids[i] != fmt.Sprintf("act-%d", i+1) {
				t.Fatalf("client %d: event %d has seq %d id %s, want seq %d", client, i, s, ids[i], i+1)
			}
		}
	}
}

func TestFirehoseRefusals(t *testing.T) {
	fh, _ := NewFirehose(firehoseConfig(10), testLog())
	srv := httptest.NewServer(fh)
	defer srv.Close()
	for _, tc := range []struct {
		name, method, token string
		want                int
	}{
		{"no token", http.MethodGet, "", http.StatusUnauthorized},
		{"wrong token", http.MethodGet, "nope", http.StatusUnauthorized},
		{"POST", http.MethodPost, "tok", http.StatusMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL, nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

// TestFirehoseDropsSlowClient connects a client that never reads: the
// server must not buffer for it (its generator blocks once the socket
// buffers are full) and must drop it after write_timeout, saying so.
func TestFirehoseDropsSlowClient(t *testing.T) {
	log, hook := logtest.NewNullLogger()
	cfg := firehoseConfig(0)
	cfg.WriteTimeout = 2 * time.Second
	fh, _ := NewFirehose(cfg, log)
	srv := httptest.NewServer(fh)
	defer srv.Close()

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\n\r\n")
	eventually(t, 20*time.Second, "the stalled client to be dropped", func() bool {
		for _, e := range hook.AllEntries() {
			if strings.HasPrefix(e.Message, "dropped slow client") {
				// 2s at 50000/s would be 100000 events: the generator
				// must have stopped when the socket buffers filled.
				if e.Level != logrus.WarnLevel || e.Data["generated"].(int64) >= 50000 {
					t.Errorf("drop logged as %v %v, want a warning after far fewer than 50000 events", e.Level, e.Data)
				}
				return true
			}
		}
		return false
	})
}

// TestFirehoseSlowClientGetsGaplessSeqs: a client that stops reading for
// longer than the generator's one-second lag allowance, then resumes, gets
// contiguous seqs; the events the generator skipped meanwhile are never
// built (logged as shortfall), not buffered.
func TestFirehoseSlowClientGetsGaplessSeqs(t *testing.T) {
	log, hook := logtest.NewNullLogger()
	fh, _ := NewFirehose(firehoseConfig(0), log)
	srv := httptest.NewServer(fh)
	defer srv.Close()

	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	var last uint64
	readFor := func(d time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end) && sc.Scan(); {
			var ev struct{ Seq uint64 }
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			if ev.Seq != last+1 {
				t.Fatalf("seq %d after %d: a gap", ev.Seq, last)
			}
			last = ev.Seq
		}
	}
	readFor(200 * time.Millisecond)
	time.Sleep(1500 * time.Millisecond) // stall: the server's writes block
	readFor(time.Second)
	resp.Body.Close()
	eventually(t, 10*time.Second, "the client's exit logged with a shortfall", func() bool {
		for _, e := range hook.AllEntries() {
			if strings.HasPrefix(e.Message, "client left") {
				if e.Data["shortfall"].(int64) == 0 {
					t.Errorf("exit logged without shortfall: %v", e.Data)
				}
				return true
			}
		}
		return false
	})
}

// TestFirehoseServeStops: cancelling Serve's context ends every stream
// cleanly and Serve returns nil.
func TestFirehoseServeStops(t *testing.T) {
	fh, _ := NewFirehose(firehoseConfig(0), testLog())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- fh.Serve(ctx, ln) }()

	req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/", nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, 10000)); err != nil {
		t.Fatalf("reading the stream: %v", err)
	}
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return within 10s of cancel")
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Errorf("stream ended with %v, want a clean end", err)
	}
}

func TestFirehoseConfigNamesFlags(t *testing.T) {
	c := DefaultFirehoseConfig()
	c.Synth.SpikeRate, c.Synth.Profile, c.WriteTimeout = -1, "spike", 0
	err := c.Validate()
	for _, flag := range []string{"--spike-rate:", "--write-timeout:"} {
		if err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("Validate: %v, want it to name %s", err, flag)
		}
	}
	if _, err := NewFirehose(c, testLog()); !errors.Is(err, err) || err == nil {
		t.Error("NewFirehose accepted an invalid config")
	}
}
