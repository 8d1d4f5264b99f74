package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/fakepub"
	"github.com/bendstream/bend/internal/kafkatest"
	"github.com/coder/websocket"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/tidwall/gjson"
)

// recordID is the id of a record read by the jetstream or sse source, as
// their formats compose it.
func recordID(m *sarama.ConsumerMessage) string {
	if r := gjson.GetBytes(m.Value, "commit.rkey"); r.Exists() {
		return "at://" + gjson.GetBytes(m.Value, "did").Str + "/" + gjson.GetBytes(m.Value, "commit.collection").Str + "/" + r.Str
	}
	return gjson.GetBytes(m.Value, "meta.id").Str
}

// countByID counts the records of topic by id and checks their cursor
// headers; it returns the counts and how many records there were.
func countByID(t *testing.T, brokers []string, topic, instance string) (map[string]int, int) {
	t.Helper()
	msgs := readTopic(t, brokers, topic)
	ids := map[string]int{}
	for _, m := range msgs {
		if header(m, HeaderSource) != instance || header(m, HeaderCursor) == "" {
			t.Fatalf("record %.80q: headers %s=%q %s=%q, want the instance and a cursor", m.Value, HeaderSource, header(m, HeaderSource), HeaderCursor, header(m, HeaderCursor))
		}
		ids[recordID(m)]++
	}
	return ids, len(msgs)
}

// checkIDs fails unless ids holds want(i) for every i in 0..n-1 that keep
// selects, and nothing else; it returns the number of duplicates.
func checkIDs(t *testing.T, ids map[string]int, n int, want func(int) string, keep func(int) bool) int {
	t.Helper()
	missing, dups, expected := 0, 0, 0
	first := ""
	for i := range n {
		if !keep(i) {
			if ids[want(i)] > 0 {
				t.Errorf("%s was filtered out by the subscription, yet is in the topic", want(i))
			}
			continue
		}
		expected++
		switch c := ids[want(i)]; {
		case c == 0:
			if missing++; first == "" {
				first = want(i)
			}
		default:
			dups += c - 1
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d events lost, the first %s", missing, expected, first)
	}
	if len(ids) != expected {
		t.Fatalf("topic holds %d ids, want %d", len(ids), expected)
	}
	return dups
}

// TestJetstreamResume reads a fake Jetstream, stops, and starts again on
// the same topic: the second run resumes from the cursor Kafka holds minus
// the rewind, drops the overlap by id, and the topic ends with every
// wanted event exactly once.
func TestJetstreamResume(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	const n = 6000
	pub := fakepub.NewJetstream(fakepub.Config{Events: n, Rate: 3000, Window: n})
	defer pub.Close()
	cfg := testConfig()
	cfg.Jetstream.Enabled, cfg.Jetstream.URL = true, pub.URL()
	cfg.Jetstream.WantedCollections = []string{"app.bsky.feed.post"}
	cfg.Jetstream.Cursor = pub.TimeUS(0)
	cfg.Jetstream.Rewind = 200 * time.Millisecond
	topic := kafkatest.CreateTopic(t, brokers, 4)
	h1 := startOn(t, cfg, brokers, topic)
	eventually(t, 20*time.Second, "the first run to publish some events", func() bool { return h1.counter("ingest.jetstream.published") > 500 })
	if err := h1.stop(t); err != nil {
		t.Fatal(err)
	}
	first := h1.counter("ingest.jetstream.published")
	h2 := startOn(t, cfg, brokers, topic)
	keep := func(i int) bool { return fakepub.JetstreamCollection(i) == "app.bsky.feed.post" }
	want := 0
	for i := range n {
		if keep(i) {
			want++
		}
	}
	eventually(t, 30*time.Second, "every wanted event in the topic", func() bool {
		return int(first+h2.counter("ingest.jetstream.published")) >= want && pub.Done()
	})
	if err := h2.stop(t); err != nil {
		t.Fatal(err)
	}
	ids, _ := countByID(t, brokers, topic, "jetstream")
	if dups := checkIDs(t, ids, n, fakepub.JetstreamID, keep); dups != 0 {
		t.Errorf("%d duplicates in the topic; dedup_window should drop the rewound overlap", dups)
	}
	conns := pub.Conns()
	if len(conns) != 2 || conns[1].Cursor == "" {
		t.Fatalf("connections %+v: want two, the second with a cursor", conns)
	}
	c, _ := strconv.ParseInt(conns[1].Cursor, 10, 64)
	t.Logf("first run published %d, resumed at %d (event %d), %d duplicates dropped", first, c, conns[1].First, h2.counter("ingest.jetstream.duplicates"))
	if h2.counter("ingest.jetstream.duplicates") == 0 {
		t.Errorf("no duplicate dropped: the resume did not rewind")
	}
	if g := h2.counter("ingest.jetstream.gaps"); g != 0 {
		t.Errorf("%d gaps counted, want none", g)
	}
}

// TestJetstreamGapCounted resumes after the fake's replay window moved
// past the cursor: the gap is counted.
func TestJetstreamGapCounted(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	pub := fakepub.NewJetstream(fakepub.Config{Events: 100000, Rate: 2000, Window: 200})
	defer pub.Close()
	cfg := testConfig()
	cfg.Jetstream.Enabled, cfg.Jetstream.URL = true, pub.URL()
	cfg.Jetstream.Rewind, cfg.Jetstream.GapTolerance = 0, 50*time.Millisecond
	topic := kafkatest.CreateTopic(t, brokers, 1)
	h1 := startOn(t, cfg, brokers, topic)
	eventually(t, 20*time.Second, "some events", func() bool { return h1.counter("ingest.jetstream.published") > 100 })
	h1.stop(t)
	time.Sleep(500 * time.Millisecond) // 1000 events later: beyond the window of 200
	h2 := startOn(t, cfg, brokers, topic)
	eventually(t, 20*time.Second, "the gap to be counted", func() bool { return h2.counter("ingest.jetstream.gaps") == 1 })
}

// TestSSEResume is TestJetstreamResume for the sse source, with
// EventStreams' opaque ids.
func TestSSEResume(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	const n = 6000
	pub := fakepub.NewSSE(fakepub.Config{Events: n, Rate: 3000, Window: n}, "wikimedia")
	defer pub.Close()
	cfg := testConfig()
	cfg.SSE.Enabled, cfg.SSE.URL = true, pub.URL()
	cfg.SSE.Format, cfg.SSE.Events = "wikimedia_recentchange", []string{"message"}
	cfg.SSE.LastEventID = pub.ID(0) // start after event 0: event 0 is not wanted
	topic := kafkatest.CreateTopic(t, brokers, 4)
	h1 := startOn(t, cfg, brokers, topic)
	eventually(t, 20*time.Second, "the first run to publish some events", func() bool { return h1.counter("ingest.sse.published") > 500 })
	if err := h1.stop(t); err != nil {
		t.Fatal(err)
	}
	first := h1.counter("ingest.sse.published")
	h2 := startOn(t, cfg, brokers, topic)
	eventually(t, 30*time.Second, "every event in the topic", func() bool {
		return int(first+h2.counter("ingest.sse.published")) >= n-1 && pub.Done()
	})
	if err := h2.stop(t); err != nil {
		t.Fatal(err)
	}
	ids, _ := countByID(t, brokers, topic, "sse")
	if dups := checkIDs(t, ids, n, fakepub.SSEID, func(i int) bool { return i > 0 }); dups != 0 {
		t.Errorf("%d duplicates in the topic", dups)
	}
	conns := pub.Conns()
	if len(conns) != 2 || conns[1].Cursor == "" {
		t.Fatalf("connections %+v: want two, the second with Last-Event-ID", conns)
	}
	t.Logf("first run published %d, resumed after %s", first, conns[1].Cursor)
}

// TestSSEGapCounted: ids are sequence numbers, and the window moved past
// the last acknowledged one.
func TestSSEGapCounted(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	pub := fakepub.NewSSE(fakepub.Config{Events: 100000, Rate: 2000, Window: 200}, "seq")
	defer pub.Close()
	cfg := testConfig()
	cfg.SSE.Enabled, cfg.SSE.URL, cfg.SSE.Format = true, pub.URL(), "wikimedia_recentchange"
	topic := kafkatest.CreateTopic(t, brokers, 1)
	h1 := startOn(t, cfg, brokers, topic)
	eventually(t, 20*time.Second, "some events", func() bool { return h1.counter("ingest.sse.published") > 100 })
	h1.stop(t)
	if g := h1.counter("ingest.sse.gaps"); g != 0 {
		t.Fatalf("%d gaps on a fresh start", g)
	}
	time.Sleep(500 * time.Millisecond)
	h2 := startOn(t, cfg, brokers, topic)
	eventually(t, 20*time.Second, "the gap to be counted", func() bool { return h2.counter("ingest.sse.gaps") == 1 })
}

// bareIngest is an Ingest without a producer, for tests that never get as
// far as sending.
func bareIngest(cfg Config) *Ingest {
	reg := metrics.NewRegistry()
	return &Ingest{cfg: cfg, log: testLog(), reg: reg, meters: &meters{reg: reg}, check: newChecker(cfg),
		win: newWindow(cfg.Producer.MaxInFlight, cfg.MaxBufferedBytes)}
}

// TestJetstreamReadLimit: a message over max_message_bytes ends the
// connection before anything is published.
func TestJetstreamReadLimit(t *testing.T) {
	big := fmt.Sprintf(`{"did":"did:plc:x","time_us":1,"kind":"commit","commit":{"text":%q}}`, strings.Repeat("a", 5000))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		_ = c.Write(r.Context(), websocket.MessageText, []byte(big))
		<-r.Context().Done()
	}))
	defer srv.Close()
	cfg := testConfig()
	cfg.Jetstream.Enabled, cfg.Jetstream.URL, cfg.Jetstream.MaxMessageBytes = true, "ws"+strings.TrimPrefix(srv.URL, "http"), 4096
	in := bareIngest(cfg)
	s, err := newJetstreamSource(cfg.Jetstream, in)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	read, _, err := s.session(ctx, &feeder{in: in, m: s.m, log: s.log, check: s.check}, 0, 0)
	if read != 0 || !errors.Is(err, websocket.ErrMessageTooBig) {
		t.Fatalf("session read %d, ended with %v: want 0 and the read limit", read, err)
	}
	if q := s.subscribeURL(0); !strings.Contains(q, "maxMessageSizeBytes=4096") {
		t.Errorf("subscribe URL %s does not tell the server the limit", q)
	}
}

// TestSourcesStopReadingWhenWindowFull holds ingest's whole window: the
// jetstream and sse sources block on their first event and stop reading,
// so the fake publishers' writes stall while more events become available.
func TestSourcesStopReadingWhenWindowFull(t *testing.T) {
	cases := []string{"jetstream", "sse"}
	for _, name := range cases {
		t.Run(name, func(t *testing.T) {
			pcfg := fakepub.Config{Events: 1_000_000, Rate: 20000, Window: 1}
			cfg := testConfig()
			var served func() int
			var run func(ctx context.Context, in *Ingest) error
			var events func(in *Ingest) int64
			switch name {
			case "jetstream":
				pub := fakepub.NewJetstream(pcfg)
				defer pub.Close()
				served = pub.Served
				cfg.Jetstream.Enabled, cfg.Jetstream.URL, cfg.Jetstream.Cursor = true, pub.URL(), pub.TimeUS(0)
				run = func(ctx context.Context, in *Ingest) error {
					s, err := newJetstreamSource(cfg.Jetstream, in)
					if err != nil {
						return err
					}
					s.res.cfg.Resume = false
					return s.Run(ctx, in)
				}
			case "sse":
				pub := fakepub.NewSSE(pcfg, "seq")
				defer pub.Close()
				served = pub.Served
				cfg.SSE.Enabled, cfg.SSE.URL, cfg.SSE.Format = true, pub.URL(), "wikimedia_recentchange"
				run = func(ctx context.Context, in *Ingest) error {
					s, err := newSSESource(cfg.SSE, in)
					if err != nil {
						return err
					}
					s.res.cfg.Resume = false
					return s.Run(ctx, in)
				}
			}
			in := bareIngest(cfg)
			events = func(in *Ingest) int64 { return in.reg.Get("ingest." + name + ".events").(metrics.Meter).Count() }
			// Take the whole window, as unacknowledged records would.
			if err := in.win.acquire(t.Context(), int64(cfg.Producer.MaxInFlight), 0); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- run(ctx, in) }()
			// The publisher's writes fill the socket buffers, then block.
			prev := -1
			eventually(t, 20*time.Second, "the publisher's writes to stall", func() bool {
				s := served()
				stalled := s > 0 && s == prev
				prev = s
				time.Sleep(300 * time.Millisecond)
				return stalled
			})
			if e := events(in); e > 1 {
				t.Errorf("%d events read past a full window", e)
			}
			t.Logf("the publisher stalled after writing %d events", prev)
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestReconnectCarriesOn cuts the connection twice while a source reads:
// each reconnection asks for the events after the last one read (the
// repeat of that one is dropped), and the topic ends with every event once.
func TestReconnectCarriesOn(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	const n = 4000
	for _, name := range []string{"jetstream", "sse"} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig()
			pcfg := fakepub.Config{Events: n, Rate: 4000, Window: n}
			var drop func()
			var conns func() []fakepub.Conn
			var id func(int) string
			var cursorOf func(i int) string
			switch name {
			case "jetstream":
				pub := fakepub.NewJetstream(pcfg)
				defer pub.Close()
				drop, conns, id = pub.Drop, pub.Conns, fakepub.JetstreamID
				cursorOf = func(i int) string { return strconv.FormatInt(pub.TimeUS(i), 10) }
				cfg.Jetstream.Enabled, cfg.Jetstream.URL, cfg.Jetstream.Cursor = true, pub.URL(), pub.TimeUS(0)
			case "sse":
				pub := fakepub.NewSSE(pcfg, "seq")
				defer pub.Close()
				drop, conns, id = pub.Drop, pub.Conns, fakepub.SSEID
				cursorOf = pub.ID
				cfg.SSE.Enabled, cfg.SSE.URL, cfg.SSE.Format, cfg.SSE.LastEventID = true, pub.URL(), "wikimedia_recentchange", "-1"
			}
			h := start(t, cfg, brokers)
			for k := range 2 {
				eventually(t, 20*time.Second, "more events", func() bool { return h.counter("ingest."+name+".published") > int64(1000*(k+1)) })
				drop()
				eventually(t, 20*time.Second, "the reconnection", func() bool { return len(conns()) == k+2 })
			}
			eventually(t, 30*time.Second, "every event", func() bool { return h.counter("ingest."+name+".published") >= n })
			h.stop(t)
			ids, _ := countByID(t, brokers, h.topic, name)
			if dups := checkIDs(t, ids, n, id, func(int) bool { return true }); dups != 0 {
				t.Errorf("%d duplicates", dups)
			}
			cs := conns()
			for k, c := range cs[1:] {
				// The cursor asked for is that of an event the previous
				// connection sent, and the replay starts at it (Jetstream:
				// time_us at least the cursor) or after it (SSE).
				j := -1
				for i := max(cs[k].First, 0); i < n; i++ {
					if cursorOf(i) == c.Cursor {
						j = i
						break
					}
				}
				next := j
				if name == "sse" {
					next = j + 1
				}
				if next == n {
					next = -1 // resumed after the last event: nothing left to send
				}
				if j < 0 || c.First != next {
					t.Errorf("connection %d asked for %q (event %d), first sent %d: want an event the previous connection sent, and the replay from it", k+1, c.Cursor, j, c.First)
				}
			}
			if r := h.counter("ingest." + name + ".reconnects"); r != 2 {
				t.Errorf("%d reconnects, want 2", r)
			}
		})
	}
}
