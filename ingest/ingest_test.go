package ingest

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/kafkatest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestPublishBlocksWhileKafkaRefuses fills the record window while the
// broker refuses produce requests: the next Publish must block, return
// ctx's error when ctx ends (never calling done), and the held events must
// be acknowledged once the broker recovers.
func TestPublishBlocksWhileKafkaRefuses(t *testing.T) {
	cluster, brokers := fakeCluster(t)
	cfg := testConfig()
	cfg.Producer.MaxInFlight = 3
	h := start(t, cfg, brokers)
	refuse := cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: h.topic, Err: kerr.NotEnoughReplicas, Count: -1})

	var acked atomic.Int32
	for i := 1; i <= 3; i++ {
		if err := h.in.Publish(context.Background(), []byte(event(i)[7:12]), []byte(event(i)), func(err error) {
			if err != nil {
				t.Errorf("done: %v", err)
			}
			acked.Add(1)
		}); err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := h.in.Publish(ctx, nil, []byte(event(4)), func(error) { t.Error("done called for an event never sent") })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish into a full window: %v, want context.DeadlineExceeded", err)
	}
	if got := h.counter("ingest.buffered_records"); got != 3 {
		t.Errorf("ingest.buffered_records = %d, want 3", got)
	}
	if acked.Load() != 0 {
		t.Fatalf("%d events acknowledged while the broker refused them", acked.Load())
	}
	refuse.Remove()
	eventually(t, 30*time.Second, "the held events acknowledged", func() bool { return acked.Load() == 3 })
	if got := h.counter("ingest.buffered_records") + h.counter("ingest.buffered_bytes"); got != 0 {
		t.Errorf("buffer holds %d after every ack, want 0", got)
	}
}

// TestStreamStopsReadingWhileKafkaRefuses: with the broker refusing, the
// stream source must stop reading (the server's writes stall far short of
// the stream's end), and once the broker is back every event must arrive.
func TestStreamStopsReadingWhileKafkaRefuses(t *testing.T) {
	cluster, brokers := fakeCluster(t)
	const n = 40000 // ~13 MB: more than the socket buffers hold
	var written atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := 1; i <= n; i++ {
			if _, err := w.Write([]byte(event(i) + "\n")); err != nil {
				return
			}
			written.Store(int64(i))
		}
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()

	cfg := testConfig()
	cfg.Producer.MaxInFlight = 256
	cfg.Stream = StreamConfig{Enabled: true, ConnConfig: ConnConfig{URL: srv.URL, MinBackoff: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond, IdleTimeout: time.Minute}}
	topic := kafkatest.CreateTopic(t, brokers, 4)
	refuse := cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Err: kerr.NotEnoughReplicas, Count: -1})
	h := startOn(t, cfg, brokers, topic)

	// Wait until the server's writes stall, then check it stays stalled.
	var last int64 = -1
	eventually(t, 20*time.Second, "the server's writes to stall", func() bool {
		time.Sleep(200 * time.Millisecond)
		w := written.Load()
		stalled := w == last && w > 0
		last = w
		return stalled
	})
	if last >= n {
		t.Fatalf("the server wrote all %d events while Kafka refused them: the source did not stop reading", n)
	}
	if got := h.counter("ingest.buffered_records"); got > 256 {
		t.Errorf("ingest holds %d records, over max_in_flight 256", got)
	}
	refuse.Remove()
	eventually(t, 60*time.Second, "every event published", func() bool { return h.counter("ingest.stream.published") == n })
	h.stop(t)
	wantIDs(t, "topic", countIDs(t, readTopic(t, brokers, h.topic)), 1, n+1, true)
	t.Logf("the server had written %d of %d events when reading stopped", last, n)
}

// TestSyntheticSource runs the built-in generator to its limit.
func TestSyntheticSource(t *testing.T) {
	cfg := testConfig()
	cfg.Synthetic.Enabled, cfg.Synthetic.Rate, cfg.Synthetic.Limit, cfg.Synthetic.Seed = true, 50000, 2000, 1
	h := start(t, cfg, kafkatest.Brokers(t))
	eventually(t, 60*time.Second, "2000 events published", func() bool { return h.counter("ingest.synthetic.published") == 2000 })
	if err := h.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	msgs := readTopic(t, h.brokers, h.topic)
	if len(msgs) != 2000 || h.counter("ingest.synthetic.published") != 2000 {
		t.Fatalf("%d records, ingest.synthetic.published %d; want 2000", len(msgs), h.counter("ingest.synthetic.published"))
	}
	for _, m := range msgs {
		if len(m.Key) == 0 || m.Key[0] != 'u' {
			t.Fatalf("record key %q, want the author id", m.Key)
		}
	}
}

func TestAcks(t *testing.T) {
	var completed atomic.Int32
	a := newAcks(func() { completed.Add(1) })
	first, second := a.add(), a.add()
	a.add()
	a.cancel() // the third was never sent
	first(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := a.wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait before seal: %v, want a timeout", err)
	}
	a.seal()
	if completed.Load() != 0 {
		t.Fatal("completed with a record pending")
	}
	second(errors.New("boom"))
	if err := a.wait(context.Background()); err == nil || completed.Load() != 1 {
		t.Fatalf("wait: %v, completed %d; want the failure, once", err, completed.Load())
	}
	a.seal()
	if completed.Load() != 1 {
		t.Errorf("onDone ran %d times, want 1", completed.Load())
	}
}

func TestLogEvery(t *testing.T) {
	var l logEvery
	t0 := time.Unix(0, 0)
	for _, tc := range []struct {
		at          time.Duration
		wantOK      bool
		wantSkipped int
	}{{0, true, 0}, {time.Second, false, 0}, {2 * time.Second, false, 0}, {5 * time.Second, true, 2}, {6 * time.Second, false, 0}} {
		skipped, ok := l.allow(t0.Add(tc.at), 5*time.Second)
		if ok != tc.wantOK || skipped != tc.wantSkipped {
			t.Errorf("at %s: allow = %d, %v; want %d, %v", tc.at, skipped, ok, tc.wantSkipped, tc.wantOK)
		}
	}
}
