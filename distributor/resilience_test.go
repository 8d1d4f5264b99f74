package distributor

import (
	"context"
	"encoding/json"
	"fmt"
	randv1 "math/rand"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/enrich"
	"github.com/bendstream/bend/internal/activity"
	"github.com/bendstream/bend/internal/kafkatest"
	"github.com/bendstream/bend/sink"
)

// offsetsOf returns the source partition and offset of an emitted record.
func offsetsOf(r *sink.Record) (int32, int64) {
	var p, o int64 = -1, -1
	for _, h := range r.Headers {
		switch string(h.Key) {
		case "bend-source-partition":
			p, _ = strconv.ParseInt(string(h.Value), 10, 32)
		case "bend-source-offset":
			o, _ = strconv.ParseInt(string(h.Value), 10, 64)
		}
	}
	return int32(p), o
}

// groupOffsets returns the committed offset of every partition of topic
// (-1 where nothing is committed).
func groupOffsets(t *testing.T, brokers []string, group, topic string) map[int32]int64 {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(brokers, kafkatest.Config())
	if err != nil {
		t.Fatalf("admin: %v", err)
	}
	defer admin.Close()
	out := map[int32]int64{}
	parts := []int32{0, 1, 2, 3}
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: parts})
	for _, p := range parts {
		out[p] = -1
		if err == nil {
			if b := resp.GetBlock(topic, p); b != nil {
				out[p] = b.Offset
			}
		}
	}
	return out
}

// TestCrashRestart cancels the distributor without a drain at random points,
// several times, and restarts it. Every id must be emitted at least once, and
// duplicates may only be records that were emitted but not yet committed
// when the crash happened.
func TestCrashRestart(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	topic := kafkatest.CreateTopic(t, brokers, 4)
	const n = 8000
	produce(t, brokers, topic, 1, n, byIndex)
	o := defaultOpts(t)
	o.dq.MaxItems = 500
	o.cfg.CommitInterval = 50 * time.Millisecond

	c := newCollector()
	c.slow = 100 * time.Microsecond // keep the run long enough to crash mid-stream
	var mu sync.Mutex
	var emitted []struct {
		p   int32
		off int64
		run int
	}
	run := 0
	c.onAck = func(r *sink.Record) {
		p, off := offsetsOf(r)
		mu.Lock()
		emitted = append(emitted, struct {
			p   int32
			off int64
			run int
		}{p, off, run})
		mu.Unlock()
	}
	rng := rand.New(rand.NewPCG(7, 11))
	const crashes = 4
	allowed := 0
	for ; run < crashes; run++ {
		p := startPipeline(t, brokers, topic, o, c)
		target := c.acked.Load() + n/(crashes+2)
		eventually(t, 60*time.Second, "progress before the crash", func() bool { return c.acked.Load() >= target })
		time.Sleep(time.Duration(rng.IntN(100)) * time.Millisecond)
		p.cancel() // crash: no drain, no final commit
		<-p.done
		// Records already handed to the sink's channel still reach the
		// collector after the crash; count them in this run's window
		// (waiting only until the collector is idle missed them, and they
		// were tagged with the next run, whose commits had passed them).
		<-p.sunk
		committed := groupOffsets(t, brokers, o.cfg.Group, topic)
		mu.Lock()
		window := 0
		for _, e := range emitted {
			if e.run == run && e.off >= committed[e.p] {
				window++
			}
		}
		mu.Unlock()
		t.Logf("crash %d: %d acked so far, %d emitted but uncommitted (may be redelivered)", run+1, c.acked.Load(), window)
		allowed += window
	}
	p := startPipeline(t, brokers, topic, o, c)
	eventually(t, 60*time.Second, "every id after the restarts", func() bool { return c.distinct() == n })
	c.wantIDs(t, 1, n)
	if err := p.shutdown(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	dups := c.duplicates()
	t.Logf("%d crashes: %d duplicates, bound %d", crashes, dups, allowed)
	if dups > allowed {
		t.Fatalf("%d duplicates, but only %d records were emitted and uncommitted at the crashes", dups, allowed)
	}
}

// TestRebalanceTwoInstances runs two distributors in one group: the second
// joins mid-stream, then the first leaves mid-stream. Nothing may be lost.
func TestRebalanceTwoInstances(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	topic := kafkatest.CreateTopic(t, brokers, 4)
	const n = 6000
	produce(t, brokers, topic, 1, n/2, byIndex)
	o := defaultOpts(t)
	o.dq.MaxItems = 300
	if a := os.Getenv("BEND_TEST_ASSIGNOR"); a != "" {
		o.cfg.Assignor = a
	}
	c := newCollector()
	a := startPipeline(t, brokers, topic, o, c)
	eventually(t, 30*time.Second, "instance A to make progress", func() bool { return c.acked.Load() > 500 })
	b := startPipeline(t, brokers, topic, o, c)
	eventually(t, 60*time.Second, "instance B to take partitions", func() bool {
		b.d.claimsMu.Lock()
		defer b.d.claimsMu.Unlock()
		return len(b.d.claims) > 0
	})
	produce(t, brokers, topic, n/2+1, n/2, byIndex)
	eventually(t, 30*time.Second, "instance B to read", func() bool { return b.d.consumed.Count() > 0 })
	if err := a.shutdown(t); err != nil {
		t.Fatalf("A: %v", err)
	}
	eventually(t, 60*time.Second, "every id", func() bool { return c.distinct() == n })
	c.wantIDs(t, 1, n)
	eventually(t, 30*time.Second, "offsets committed to the high-water mark", func() bool {
		return committedAll(t, brokers, o.cfg.Group, topic)
	})
	if err := b.shutdown(t); err != nil {
		t.Fatalf("B: %v", err)
	}
	t.Logf("A consumed %d, B consumed %d, duplicates %d", a.d.consumed.Count(), b.d.consumed.Count(), c.duplicates())
}

// TestSkewedKeysKeepWorkersBusy puts almost every record on one partition
// (Zipf-skewed keys) behind a slow enricher: because workers pull from one
// shared queue, all of them stay busy, where partition-bound workers would
// leave all but one idle.
func TestSkewedKeysKeepWorkersBusy(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	topic := kafkatest.CreateTopic(t, brokers, 4)
	const n = 3000
	z := randv1.NewZipf(randv1.New(randv1.NewSource(3)), 3, 1, 1000)
	keys := make([]string, n+1)
	for i := range keys {
		keys[i] = fmt.Sprint(z.Uint64())
	}
	produce(t, brokers, topic, 1, n, func(i int) string { return keys[i] })
	if share := hottestShare(t, brokers, topic); share < 0.6 {
		t.Fatalf("hottest partition holds %.0f%% of the records; the test needs skew", share*100)
	}

	o := defaultOpts(t)
	o.workers = 4
	o.cfg.Delay = 10 * time.Second // parked long enough for the slow enricher
	o.enrichers = []enrich.Resolved{{
		Spec: enrich.Spec{Name: "slow", Type: "noop", Timeout: time.Second, MaxAttempts: 1, Backoff: time.Millisecond},
		Enricher: enrich.EnricherFunc(func(ctx context.Context, _ *activity.Fields) (json.RawMessage, error) {
			time.Sleep(2 * time.Millisecond) // an I/O-bound lookup
			return json.RawMessage(`{}`), nil
		}),
	}}
	c := newCollector()
	p := startPipeline(t, brokers, topic, o, c)
	var samples, busy int64
	deadline := time.Now().Add(60 * time.Second)
	for c.acked.Load() < n && time.Now().Before(deadline) {
		if a := c.acked.Load(); a > n/10 && a < n*8/10 {
			samples++
			busy += p.pool.Busy()
		}
		time.Sleep(time.Millisecond)
	}
	eventually(t, 30*time.Second, "every id", func() bool { return c.distinct() == n })
	if err := p.shutdown(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if samples == 0 {
		t.Fatal("no utilisation samples taken")
	}
	util := float64(busy) / float64(samples) / float64(o.workers)
	t.Logf("worker utilisation under skew: %.0f%% over %d samples", util*100, samples)
	if util < 0.7 {
		t.Fatalf("worker utilisation %.2f under skewed keys, want >= 0.7", util)
	}
}

// heapNow returns the live heap after a GC.
func heapNow() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// hottestShare returns the largest partition's share of topic's records.
func hottestShare(t *testing.T, brokers []string, topic string) float64 {
	t.Helper()
	client, err := sarama.NewClient(brokers, kafkatest.Config())
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	defer client.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatalf("partitions: %v", err)
	}
	var total, hottest int64
	for _, p := range parts {
		h, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatalf("offset: %v", err)
		}
		total += h
		hottest = max(hottest, h)
	}
	return float64(hottest) / float64(total)
}
