package ingest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/kafkatest"
	metrics "github.com/rcrowley/go-metrics"
)

// TestStreamEndToEnd serves a stream that breaks off mid-line, then refuses
// a reconnection with 503, then resumes: every whole event must reach Kafka
// exactly once, the half line must be neither published nor rejected, and
// the invalid line must be dead-lettered.
func TestStreamEndToEnd(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		switch conns.Add(1) {
		case 1: // events 1..500, then half of 501, then the connection dies
			w.Write(ndjsonBody(1, 501))
			w.Write([]byte(event(501)[:100]))
			http.NewResponseController(w).Flush()
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("hijack: %v", err)
				return
			}
			conn.Close()
		case 2:
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case 3: // the rest, an invalid line, then an open, idle stream
			w.Write(ndjsonBody(501, 800))
			w.Write([]byte("{\"id\":\"act-bad\",\"text\":\"\xff\"}\n\n"))
			w.Write(ndjsonBody(800, 1001))
			http.NewResponseController(w).Flush()
			<-r.Context().Done()
		default:
			<-r.Context().Done()
		}
	}))
	defer srv.Close()

	cfg := testConfig()
	cfg.Stream = StreamConfig{Enabled: true, ConnConfig: ConnConfig{URL: srv.URL + "/stream?token=not-logged", Token: "tok", MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, IdleTimeout: time.Minute}}
	h := start(t, cfg, kafkatest.Brokers(t))
	eventually(t, 30*time.Second, "1000 events published", func() bool { return h.counter("ingest.stream.published") >= 1000 })
	eventually(t, 10*time.Second, "the dead letter", func() bool { return h.counter("ingest.dead_letters") == 1 })
	if err := h.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}

	wantIDs(t, "topic", countIDs(t, readTopic(t, h.brokers, h.topic)), 1, 1001, true)
	dead := readTopic(t, h.brokers, h.dlq)
	if len(dead) != 1 || header(dead[0], HeaderDLQSource) != "stream" || header(dead[0], HeaderDLQReason) != "invalid UTF-8 at byte 24" {
		for _, m := range dead {
			t.Logf("dead letter %q: reason %q source %q", m.Value, header(m, HeaderDLQReason), header(m, HeaderDLQSource))
		}
		t.Errorf("%d dead letters, want the one invalid line from the stream", len(dead))
	}
	for name, want := range map[string]int64{
		"ingest.stream.connects": 2, "ingest.stream.connect_errors": 1, "ingest.stream.disconnects": 2,
		"ingest.stream.reconnects": 2, "ingest.rejected": 1, "ingest.stream.events": 1000,
	} {
		if got := h.counter(name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
}

// TestStreamIdleTimeout: a server that goes quiet is dropped after
// idle_timeout and the client reconnects.
func TestStreamIdleTimeout(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(conns.Add(1))
		if n <= 2 {
			w.Write(ndjsonBody(n*10-9, n*10+1))
			http.NewResponseController(w).Flush()
		}
		<-r.Context().Done() // then silence
	}))
	defer srv.Close()
	cfg := testConfig()
	cfg.Stream = StreamConfig{Enabled: true, ConnConfig: ConnConfig{URL: srv.URL, MinBackoff: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond, IdleTimeout: 200 * time.Millisecond}}
	h := start(t, cfg, kafkatest.Brokers(t))
	eventually(t, 20*time.Second, "a reconnection after the idle timeout and 20 events", func() bool {
		return h.counter("ingest.stream.published") == 20 && h.counter("ingest.stream.reconnects") >= 1
	})
	h.stop(t)
	wantIDs(t, "topic", countIDs(t, readTopic(t, h.brokers, h.topic)), 1, 21, true)
}

// TestStreamFromFirehose reads the firehose server (what `bend firehose`
// serves): every seq of a stream must arrive. The firehose ends each stream
// at the limit, and every new stream starts again at seq 1, so ids repeat.
func TestStreamFromFirehose(t *testing.T) {
	fc := DefaultFirehoseConfig()
	fc.Synth.Rate, fc.Synth.Limit, fc.Synth.Seed, fc.Token = 20000, 2000, 7, "tok"
	fh, err := NewFirehose(fc, testLog())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(fh)
	defer srv.Close()

	cfg := testConfig()
	cfg.Stream = StreamConfig{Enabled: true, ConnConfig: ConnConfig{URL: srv.URL, Token: "tok", MinBackoff: time.Second, MaxBackoff: time.Second, IdleTimeout: time.Minute}}
	h := start(t, cfg, kafkatest.Brokers(t))
	eventually(t, 30*time.Second, "one whole stream published", func() bool { return h.counter("ingest.stream.published") >= 2000 })
	h.stop(t)
	ids := countIDs(t, readTopic(t, h.brokers, h.topic))
	for i := 1; i <= 2000; i++ {
		if ids[fmt.Sprintf("act-%d", i)] == 0 {
			t.Fatalf("act-%d missing", i)
		}
	}
	if h.counter("ingest.rejected") != 0 {
		t.Errorf("ingest.rejected = %d, want 0", h.counter("ingest.rejected"))
	}
}

func TestBackoff(t *testing.T) {
	lo, hi := 100*time.Millisecond, 30*time.Second
	for _, tc := range []struct {
		name    string
		attempt int
		u       float64
		want    time.Duration
	}{
		{"first, least jitter", 0, 0, 50 * time.Millisecond},
		{"first, most jitter", 0, 0.999999, 100 * time.Millisecond},
		{"doubles", 3, 0.5, 600 * time.Millisecond},
		{"capped", 12, 0.999999, hi},
		{"no overflow", 1 << 20, 0, hi / 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := backoff(tc.attempt, lo, hi, tc.u)
			if d := got - tc.want; d < -time.Millisecond || d > time.Millisecond {
				t.Errorf("backoff(%d, u=%v) = %s, want %s", tc.attempt, tc.u, got, tc.want)
			}
		})
	}
}

func TestStreamURLQueryNotInErrors(t *testing.T) {
	cfg := testConfig()
	cfg.Stream = StreamConfig{Enabled: true, ConnConfig: ConnConfig{URL: "http://127.0.0.1:1/s?token=secret-in-query", MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, IdleTimeout: time.Second}}
	reg := metrics.NewRegistry()
	in := &Ingest{cfg: cfg, log: testLog(), reg: reg, meters: &meters{reg: reg}}
	s, err := newStreamSource(cfg.Stream, in)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.session(t.Context(), &feeder{in: in, m: s.m, log: s.log}, s.cfg.URL)
	if err == nil || strings.Contains(err.Error(), "secret-in-query") {
		t.Errorf("session error %v: want a connection error without the URL's query", err)
	}
}
