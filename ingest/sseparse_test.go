package ingest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"testing/synctest"
	"time"

	metrics "github.com/rcrowley/go-metrics"
)

// sseAll reads every event of stream, through a reader that hands out one
// byte at a time when slow.
func sseAll(stream string, maxLine, maxData int, slow bool) ([]sseEvent, *sseReader, error) {
	var r io.Reader = strings.NewReader(stream)
	if slow {
		r = iotest.OneByteReader(r)
	}
	p := newSSEReader(r, maxLine, maxData)
	var out []sseEvent
	for {
		ev, err := p.Next()
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return out, p, err
		}
		ev.Data, ev.ID = bytes.Clone(ev.Data), bytes.Clone(ev.ID)
		out = append(out, ev)
	}
}

func TestSSEReader(t *testing.T) {
	type ev struct {
		typ, data, id string
		hasID, over   bool
	}
	for _, tc := range []struct {
		name, stream string
		want         []ev
		retry        time.Duration
	}{
		{"one event", "data: hello\n\n", []ev{{"message", "hello", "", false, false}}, 0},
		{"multi-line data joined with LF", "data: a\ndata: b\ndata\n\n", []ev{{"message", "a\nb\n", "", false, false}}, 0},
		{"CRLF and CR line endings", "event: update\r\ndata: x\r\rdata: y\r\n\r\n", []ev{{"update", "x", "", false, false}, {"message", "y", "", false, false}}, 0},
		{"comments and unknown fields ignored", ": hi\nfoo: bar\ndata: z\n:heartbeat\n\n", []ev{{"message", "z", "", false, false}}, 0},
		{"no space after the colon, only one space stripped", "data:a\ndata:  b\n\n", []ev{{"message", "a\n b", "", false, false}}, 0},
		{"id carries over events", "id: 7\ndata: a\n\ndata: b\n\n", []ev{{"message", "a", "7", true, false}, {"message", "b", "7", false, false}}, 0},
		{"id with NUL ignored", "id: 1\ndata: a\n\nid: 2\x00\ndata: b\n\n", []ev{{"message", "a", "1", true, false}, {"message", "b", "1", false, false}}, 0},
		{"empty data dispatches nothing, type reset", "event: delete\n\ndata: a\n\n", []ev{{"message", "a", "", false, false}}, 0},
		{"retry digits only", "retry: 1500\nretry: 2x\ndata: a\n\n", []ev{{"message", "a", "", false, false}}, 1500 * time.Millisecond},
		{"leading BOM skipped", "\xef\xbb\xbfdata: a\n\n", []ev{{"message", "a", "", false, false}}, 0},
		{"event cut off by the end discarded", "data: a\n\ndata: b\n", []ev{{"message", "a", "", false, false}}, 0},
		{"Wikimedia opaque id", "event: message\nid: [{\"topic\":\"eqiad.x\",\"partition\":0,\"offset\":5}]\ndata: {}\n\n",
			[]ev{{"message", "{}", `[{"topic":"eqiad.x","partition":0,"offset":5}]`, true, false}}, 0},
		{"Mastodon delete", "event: delete\ndata: 109\n\n", []ev{{"delete", "109", "", false, false}}, 0},
		{"data over the limit", "data: 0123456789abcdef\n\ndata: ok\n\n", []ev{{"message", "", "", false, true}, {"message", "ok", "", false, false}}, 0},
		{"data lines summing over the limit", "data: 0123456\ndata: 0123456\n\n", []ev{{"message", "0123456", "", false, true}}, 0},
		{"line over the limit", "id: 0123456789012345678901234567890123456789012345678901234567890123456789\ndata: a\n\n", []ev{{"message", "a", "", false, true}}, 0},
	} {
		for _, slow := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/slow=%v", tc.name, slow), func(t *testing.T) {
				got, p, err := sseAll(tc.stream, 64, 12, slow)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(tc.want) {
					t.Fatalf("got %d events %+v, want %d", len(got), got, len(tc.want))
				}
				for i, w := range tc.want {
					g := got[i]
					if g.Type != w.typ || g.ID != nil && string(g.ID) != w.id || g.ID == nil && w.id != "" || g.HasID != w.hasID || g.TooLarge != w.over {
						t.Errorf("event %d: %+v, want %+v", i, g, w)
					}
					if !w.over && string(g.Data) != w.data {
						t.Errorf("event %d: data %q, want %q", i, g.Data, w.data)
					}
				}
				if p.Retry() != tc.retry {
					t.Errorf("retry %s, want %s", p.Retry(), tc.retry)
				}
			})
		}
	}
}

// FuzzSSEReader: whatever the bytes, the parser neither panics nor hangs,
// never returns more than its limits, and reads the same events whether
// the stream arrives whole or one byte at a time.
func FuzzSSEReader(f *testing.F) {
	for _, s := range []string{"data: a\n\n", "event: x\r\nid: 1\r\ndata: b\r\n\r\n", ":c\rdata\r\r", "\xef\xbb\xbfdata: \x00\n\n", "retry: 10\nid\n\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, _, err := sseAll(s, 32, 64, false)
		if err != nil {
			t.Fatal(err)
		}
		b, _, _ := sseAll(s, 32, 64, true)
		if len(a) != len(b) {
			t.Fatalf("%d events whole, %d byte by byte", len(a), len(b))
		}
		for i := range a {
			if len(a[i].Data) > 64 || len(a[i].ID) > 32 {
				t.Fatalf("event %d over the limits: %d data bytes, %d id bytes", i, len(a[i].Data), len(a[i].ID))
			}
			if a[i].Type != b[i].Type || !bytes.Equal(a[i].Data, b[i].Data) || !bytes.Equal(a[i].ID, b[i].ID) || a[i].TooLarge != b[i].TooLarge {
				t.Fatalf("event %d differs: %+v whole, %+v byte by byte", i, a[i], b[i])
			}
		}
	})
}

func TestWatermark(t *testing.T) {
	var w watermark
	settle := make([]func(), 5)
	for i := range settle {
		c := []byte(fmt.Sprint(i))
		if i == 2 {
			c = nil // no cursor: does not move the watermark
		}
		settle[i] = w.add(c)
	}
	at := time.UnixMicro(42)
	for _, step := range []struct {
		settle int
		want   string
	}{{1, ""}, {0, "42 1"}, {3, "42 1"}, {2, "42 3"}, {4, "42 4"}} {
		settle[step.settle]()
		if got := string(w.resume(at)); got != step.want {
			t.Fatalf("after settling %d: %q, want %q", step.settle, got, step.want)
		}
	}
	if len(w.pending) != 0 {
		t.Errorf("%d events still pending", len(w.pending))
	}
}

func TestDedup(t *testing.T) {
	d := newDedup(3)
	for _, step := range []struct {
		c    string
		seen bool
	}{{"a", false}, {"b", false}, {"a", true}, {"c", false}, {"d", false}, {"a", false}, {"c", true}} {
		if got := d.seen([]byte(step.c)); got != step.seen {
			t.Fatalf("seen(%s) = %v, want %v", step.c, got, step.seen)
		}
	}
	if off := newDedup(0); off.seen([]byte("a")) || off.seen([]byte("a")) {
		t.Error("a window of 0 dropped a duplicate")
	}
}

func TestParseResume(t *testing.T) {
	for _, tc := range []struct {
		in     string
		at     int64
		cursor string
		ok     bool
	}{{"12 345", 12, "345", true}, {"12 [{\"a\": 1}]", 12, "[{\"a\": 1}]", true}, {"12", 0, "", false}, {"x 1", 0, "", false}, {" 1", 0, "", false}} {
		at, c, ok := parseResume([]byte(tc.in))
		if at != tc.at || string(c) != tc.cursor || ok != tc.ok {
			t.Errorf("parseResume(%q) = %d, %q, %v", tc.in, at, c, ok)
		}
	}
}

// TestStreamBackfillOnReconnect: the first connection asks for the live
// stream, every reconnection for backfillMinutes.
func TestStreamBackfillOnReconnect(t *testing.T) {
	var mu sync.Mutex
	var queries []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		mu.Unlock()
		w.WriteHeader(http.StatusOK) // and end the stream at once
	}))
	defer srv.Close()
	cfg := testConfig()
	cfg.Stream = StreamConfig{Enabled: true, ConnConfig: ConnConfig{URL: srv.URL + "/stream?a=1", MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, IdleTimeout: time.Second}, BackfillMinutes: 2}
	in := bareIngest(cfg)
	s, err := newStreamSource(cfg.Stream, in)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, in) }()
	eventually(t, 10*time.Second, "three connections", func() bool { mu.Lock(); defer mu.Unlock(); return len(queries) >= 3 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if queries[0] != "a=1" || queries[1] != "a=1&backfillMinutes=2" || queries[2] != "a=1&backfillMinutes=2" {
		t.Errorf("queries %q: want the first without backfillMinutes, the next with it", queries)
	}
}

// TestJetstreamCompressNeedsDictionary: compression needs the dictionary
// the Jetstream server compresses with, named by its key.
func TestJetstreamCompressNeedsDictionary(t *testing.T) {
	cfg := testConfig()
	cfg.Jetstream.Enabled, cfg.Jetstream.URL, cfg.Jetstream.Compress = true, "wss://example.com/subscribe", true
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "ingest.jetstream.zstd_dictionary") {
		t.Fatalf("Validate: %v, want ingest.jetstream.zstd_dictionary required", err)
	}
	cfg.Jetstream.ZstdDictionary = "dict"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate with a dictionary: %v", err)
	}
	cfg.Jetstream.Compress, cfg.Jetstream.URL = false, "http://example.com/subscribe"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "ingest.jetstream.url") {
		t.Fatalf("Validate: %v, want ingest.jetstream.url refused", err)
	}
}

// roundTripFunc is an http.RoundTripper in memory.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestSSEReconnectBackoff, on a fake clock: after a stream that delivered
// an event and set retry:, the source waits the server's reconnection time
// (with jitter) and sends Last-Event-ID; failed attempts then double the
// wait.
func TestSSEReconnectBackoff(t *testing.T) {
	// Built outside the bubble: go-metrics meters tick on a goroutine of
	// their own that never ends.
	cfg := testConfig()
	cfg.SSE.Enabled, cfg.SSE.URL, cfg.SSE.Events = true, "http://publisher.invalid/stream", []string{"wanted"}
	cfg.SSE.MinBackoff, cfg.SSE.MaxBackoff = 100*time.Millisecond, 10*time.Second
	in := bareIngest(cfg)
	s, err := newSSESource(cfg.SSE, in)
	if err != nil {
		t.Fatal(err)
	}
	synctest.Test(t, func(t *testing.T) {
		type attempt struct {
			at   time.Time
			last string
		}
		var attempts []attempt
		s.client.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
			attempts = append(attempts, attempt{time.Now(), r.Header.Get("Last-Event-ID")})
			if len(attempts) == 1 {
				body := "retry: 2000\nid: 5\nevent: other\ndata: {}\n\n"
				return &http.Response{StatusCode: 200, Status: "200 OK", Header: http.Header{"Content-Type": {"text/event-stream"}},
					Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
			}
			return &http.Response{StatusCode: 503, Status: "503 Service Unavailable", Header: http.Header{},
				Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
		})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx, in) }()
		time.Sleep(time.Minute)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if len(attempts) < 5 {
			t.Fatalf("%d attempts in a minute", len(attempts))
		}
		// The waits before attempts 2, 3, 4, 5: the server's 2s, then
		// doubling from it (failed attempts), each with jitter [d/2, d].
		for i, d := range []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second} {
			wait := attempts[i+1].at.Sub(attempts[i].at)
			if wait < d/2 || wait > d {
				t.Errorf("wait before attempt %d: %s, want between %s and %s", i+2, wait, d/2, d)
			}
		}
		for i, a := range attempts[1:] {
			if a.last != "5" {
				t.Errorf("attempt %d sent Last-Event-ID %q, want 5", i+2, a.last)
			}
		}
		if n := in.reg.Get("ingest.sse.skipped").(metrics.Counter).Count(); n != 1 {
			t.Errorf("%d events skipped, want the one of type other", n)
		}
	})
}
