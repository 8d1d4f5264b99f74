package distributor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/delayqueue"
	"github.com/bendstream/bend/enrich"
	"github.com/bendstream/bend/internal/activity"
	"github.com/bendstream/bend/internal/kafkatest"
	"github.com/bendstream/bend/internal/testutil"
	"github.com/bendstream/bend/sink"
	metrics "github.com/rcrowley/go-metrics"
)

// testLog is testutil.Logger.
var testLog = testutil.Logger

// produce writes n activities act-1..act-n to topic, keyed by key(i), plus
// the raw invalid records given.
func produce(t testing.TB, brokers []string, topic string, from, n int, key func(i int) string, invalid ...string) {
	t.Helper()
	sc := kafkatest.Config()
	sc.Producer.Return.Successes = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Flush.Frequency = time.Millisecond
	p, err := sarama.NewSyncProducer(brokers, sc)
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	defer p.Close()
	var batch []*sarama.ProducerMessage
	for i := from; i < from+n; i++ {
		v := fmt.Sprintf(`{"id":"act-%d","text":"hello #bend world @you","links":["https://t.example/%d"]}`, i, i)
		batch = append(batch, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(key(i)), Value: sarama.StringEncoder(v)})
		if len(batch) == 1000 {
			if err := p.SendMessages(batch); err != nil {
				t.Fatalf("producing: %v", err)
			}
			batch = batch[:0]
		}
	}
	for _, v := range invalid {
		batch = append(batch, &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(v)})
	}
	if len(batch) > 0 {
		if err := p.SendMessages(batch); err != nil {
			t.Fatalf("producing: %v", err)
		}
	}
}

func byIndex(i int) string { return fmt.Sprint(i) }

// collector is the test's sink: it records every emitted id and dead letter
// and acknowledges, unless paused.
type collector struct {
	mu      sync.Mutex
	ids     map[string]int
	dead    []*sink.Record
	missing int
	records []*sink.Record
	paused  atomic.Bool
	acked   atomic.Int64
	busy    atomic.Int32 // records received and not yet acked
	onAck   func(*sink.Record)
	slow    time.Duration // per-record sink latency
	// countOnly skips decoding emitted records (for benchmarks): only
	// acked counts.
	countOnly bool
	// nackOnce nacks the first record carrying this id.
	nackOnce string
	nacked   bool
	// ackTwice acknowledges every record twice.
	ackTwice bool
	// status, when set, receives each emitted enrichment's status by
	// "id/name".
	status map[string]string
}

func newCollector() *collector { return &collector{ids: map[string]int{}} }

func (c *collector) run(in <-chan *sink.Record) {
	for r := range in {
		c.busy.Add(1)
		if c.slow > 0 {
			time.Sleep(c.slow)
		}
		for c.paused.Load() {
			time.Sleep(5 * time.Millisecond)
		}
		if c.countOnly {
			r.Settle(nil)
			c.acked.Add(1)
			c.busy.Add(-1)
			continue
		}
		c.mu.Lock()
		if r.DeadLetter {
			c.dead = append(c.dead, r)
		} else if c.nackOnce != "" && !c.nacked && strings.Contains(string(r.Value), `"id":"`+c.nackOnce+`"`) {
			c.nacked = true
			c.mu.Unlock()
			r.Settle(errors.New("test sink: rejected once"))
			c.busy.Add(-1)
			continue
		} else {
			var ev struct {
				ID          string `json:"id"`
				Enrichments map[string]struct {
					Status string `json:"status"`
				} `json:"enrichments"`
			}
			if err := json.Unmarshal(r.Value, &ev); err != nil {
				panic(fmt.Sprintf("emitted record %q is not JSON: %v", r.Value, err))
			}
			c.ids[ev.ID]++
			for name, e := range ev.Enrichments {
				if e.Status == "missing" {
					c.missing++
				}
				if c.status != nil {
					c.status[ev.ID+"/"+name] = e.Status
				}
			}
		}
		c.mu.Unlock()
		if c.onAck != nil {
			c.onAck(r)
		}
		r.Settle(nil)
		if c.ackTwice {
			r.Settle(nil)
		}
		c.acked.Add(1)
		c.busy.Add(-1)
	}
}

func (c *collector) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ids)
}

func (c *collector) deadCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.dead)
}

// distinctDead counts the dead letters by the input they came from (its
// partition, offset and index in a packed record).
func (c *collector) distinctDead() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	for _, r := range c.dead {
		var k string
		for _, h := range r.Headers {
			switch string(h.Key) {
			case "bend-source-partition", "bend-source-offset", "bend-source-index":
				k += string(h.Key) + "=" + string(h.Value) + ";"
			}
		}
		seen[k] = true
	}
	return len(seen)
}

func (c *collector) duplicates() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := 0
	for _, n := range c.ids {
		d += n - 1
	}
	return d
}

func (c *collector) wantIDs(t *testing.T, from, n int) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := from; i < from+n; i++ {
		if c.ids[fmt.Sprintf("act-%d", i)] == 0 {
			t.Fatalf("id act-%d was never emitted (%d distinct emitted)", i, len(c.ids))
		}
	}
}

// pipeline is a distributor with its workers and a collector sink.
type pipeline struct {
	d      *Distributor
	dq     *delayqueue.Queue[*batch]
	reg    metrics.Registry
	pool   *enrich.Pool
	cancel context.CancelFunc // hard stop
	stop   context.CancelFunc // stop intake
	done   chan error
	sunk   chan struct{} // closed when the collector has taken every record sent to it
}

type pipeOpts struct {
	cfg       Config
	dq        delayqueue.Config
	enrichers []enrich.Resolved
	workers   int
}

func defaultOpts(t testing.TB) pipeOpts {
	cfg := DefaultConfig()
	cfg.Group = kafkatest.Name(t, "group")
	cfg.Delay = 200 * time.Millisecond
	cfg.DrainTimeout = 5 * time.Second
	cfg.CommitInterval = 100 * time.Millisecond
	ec := enrich.DefaultConfig()
	ens, err := ec.Build(testLog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return pipeOpts{cfg: cfg, dq: delayqueue.DefaultConfig(), enrichers: ens, workers: 4}
}

func startPipeline(t testing.TB, brokers []string, topic string, o pipeOpts, c *collector) *pipeline {
	t.Helper()
	reg := metrics.NewRegistry()
	dq, err := NewQueue(o.dq)
	if err != nil {
		t.Fatalf("NewQueue: %v", err)
	}
	work := enrich.NewQueue(256, o.enrichers, reg)
	d, err := New(o.cfg, brokers, kafkatest.Config(), []string{topic}, o.enrichers, work, dq, testLog(), reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	pool := enrich.NewPool(o.workers, o.enrichers, testLog(), reg)
	ctx, cancel := context.WithCancel(context.Background())
	intake, stop := context.WithCancel(ctx)
	out := make(chan *sink.Record, 16)
	p := &pipeline{d: d, dq: dq, reg: reg, pool: pool, cancel: cancel, stop: stop, done: make(chan error, 1), sunk: make(chan struct{})}
	workCtx, stopWork := context.WithCancel(ctx)
	go func() { _ = pool.Run(workCtx, work) }()
	go func() { c.run(out); close(p.sunk) }()
	go func() {
		err := d.Run(ctx, intake, out)
		stopWork()
		p.done <- err
	}()
	t.Cleanup(func() { cancel() })
	return p
}

// shutdown stops intake and waits for Run to drain and return.
func (p *pipeline) shutdown(t *testing.T) error {
	t.Helper()
	p.stop()
	select {
	case err := <-p.done:
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("distributor did not return after intake stopped")
		return nil
	}
}

// eventually is testutil.Eventually.
var eventually = testutil.Eventually

// committedAll reports whether group's commits cover every record of topic.
func committedAll(t *testing.T, brokers []string, group, topic string) bool {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(brokers, kafkatest.Config())
	if err != nil {
		t.Fatalf("admin: %v", err)
	}
	defer admin.Close()
	client, err := sarama.NewClient(brokers, kafkatest.Config())
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	defer client.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatalf("partitions: %v", err)
	}
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: parts})
	if err != nil {
		return false // a never-committed group (embedded broker says so with an error)
	}
	for _, p := range parts {
		hwm, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatalf("hwm: %v", err)
		}
		b := resp.GetBlock(topic, p)
		if b == nil || b.Offset != hwm {
			return false
		}
	}
	return true
}

func TestDistributorEmitsEveryRecordAndCommits(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	topic := kafkatest.CreateTopic(t, brokers, 4)
	const n = 3000
	invalid := []string{`not json`, `{"text":"no id"}`, `[1,2]`, `{"id":7}`}
	produce(t, brokers, topic, 1, n, byIndex, invalid...)

	c := newCollector()
	o := defaultOpts(t)
	p := startPipeline(t, brokers, topic, o, c)
	eventually(t, 60*time.Second, "every id emitted", func() bool { return c.distinct() == n && c.deadCount() == len(invalid) })
	c.wantIDs(t, 1, n)
	eventually(t, 30*time.Second, "offsets committed to the high-water mark", func() bool {
		return committedAll(t, brokers, o.cfg.Group, topic)
	})
	if err := p.shutdown(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.dead {
		var reason string
		for _, h := range r.Headers {
			if string(h.Key) == "bend-dlq-reason" {
				reason = string(h.Value)
			}
		}
		if !strings.HasPrefix(reason, "invalid event") {
			t.Errorf("dead letter %q has reason %q, want an invalid-event reason", r.Value, reason)
		}
	}
	if c.missing != 0 {
		t.Errorf("%d enrichments missing, want 0", c.missing)
	}
	if got := p.d.InFlight(); got != 0 {
		t.Errorf("in flight after drain = %d, want 0", got)
	}
}

// TestStalledSinkStopsReading is the backpressure test: while the sink does
// not acknowledge, the distributor holds at most the delay queue's capacity
// and stops reading, so lag grows; when the sink recovers, every id arrives.
func TestStalledSinkStopsReading(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	topic := kafkatest.CreateTopic(t, brokers, 4)
	const n = 20000
	produce(t, brokers, topic, 1, n, byIndex)

	c := newCollector()
	c.paused.Store(true)
	o := defaultOpts(t)
	o.dq.MaxItems = 200
	p := startPipeline(t, brokers, topic, o, c)
	consumed := metrics.GetOrRegisterMeter("distributor.consumed", p.reg)
	// Full: a batch waits for room (a batch holds up to 200 records here,
	// the queue's capacity, so the queue may stop short of 200).
	eventually(t, 30*time.Second, "the delay queue to fill", func() bool {
		return p.dq.Waiters() > 0
	})
	before, heapBefore := consumed.Count(), heapNow()
	time.Sleep(time.Second)
	after, heapAfter := consumed.Count(), heapNow()
	// Reading has stopped: at most one batch per partition can be taken
	// from the fetch buffer and be waiting for room in the full queue.
	if limit := int64(200 + 4*p.d.maxBatch()); after > limit {
		t.Fatalf("distributor kept reading while the sink stalled: consumed %d -> %d, want at most %d", before, after, limit)
	}
	// The backlog stays in Kafka, not in the heap. (The heap here includes
	// the embedded broker's, which holds the topic already.)
	growth := int64(heapAfter) - int64(heapBefore)
	t.Logf("stalled with %d records behind: heap %d -> %d bytes", n-before, heapBefore, heapAfter)
	if growth > 4<<20 {
		t.Fatalf("heap grew by %d bytes while stalled; want it flat", growth)
	}
	if items, _ := p.dq.InUse(); items > 200 {
		t.Fatalf("delay queue holds %d items, cap 200", items)
	}
	if !p.d.Ready() {
		t.Error("Ready() = false while consuming")
	}
	if o := p.d.Oldest(); o.IsZero() || time.Since(o) > time.Minute {
		t.Errorf("Oldest() = %v while records are stalled, want the timestamp of the oldest unacknowledged record", o)
	}
	if got := p.d.InFlight(); got > 200 {
		t.Fatalf("in flight = %d while stalled, want <= 200 (the delay queue bounds it)", got)
	}
	if lag := p.d.Lag(); lag < n-200-4*int64(o.cfg.FetchBuffer) {
		t.Fatalf("lag = %d while stalled, want the backlog to stay in Kafka", lag)
	}
	c.paused.Store(false)
	eventually(t, 60*time.Second, "every id emitted after the sink recovered", func() bool { return c.distinct() == n })
	c.wantIDs(t, 1, n)
	eventually(t, 10*time.Second, "nothing left in flight", func() bool { return p.d.Oldest().IsZero() })
	if err := p.shutdown(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if p.d.Ready() {
		t.Error("Ready() = true after Run returned")
	}
}

func TestEnrichmentFailures(t *testing.T) {
	fail := enrich.EnricherFunc(func(context.Context, *activity.Fields) (json.RawMessage, error) {
		return nil, errors.New("lookup service down")
	})
	var seen sync.Map // fails the first attempt of every activity
	flaky := enrich.EnricherFunc(func(_ context.Context, a *activity.Fields) (json.RawMessage, error) {
		if _, again := seen.LoadOrStore(a.ID, true); !again {
			return nil, errors.New("transient")
		}
		return json.RawMessage(`{"ok":true}`), nil
	})
	spec := func(name string, required bool, attempts int) enrich.Spec {
		return enrich.Spec{Name: name, Type: "noop", Required: required, Timeout: time.Second, MaxAttempts: attempts, Backoff: time.Millisecond}
	}
	for _, tc := range []struct {
		name        string
		enrichers   []enrich.Resolved
		wantDead    int
		wantMissing int
	}{
		{"required failing dead-letters", []enrich.Resolved{{Spec: spec("score", true, 2), Enricher: fail}}, 50, 0},
		{"optional failing is emitted missing", []enrich.Resolved{{Spec: spec("score", false, 2), Enricher: fail}}, 0, 50},
		{"required flaky succeeds on retry", []enrich.Resolved{{Spec: spec("score", true, 3), Enricher: flaky}}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			brokers := kafkatest.Brokers(t)
			topic := kafkatest.CreateTopic(t, brokers, 2)
			const n = 50
			produce(t, brokers, topic, 1, n, byIndex)
			c := newCollector()
			o := defaultOpts(t)
			o.enrichers = tc.enrichers
			p := startPipeline(t, brokers, topic, o, c)
			eventually(t, 30*time.Second, "every record accounted for", func() bool { return c.acked.Load() == n })
			if err := p.shutdown(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			if len(c.dead) != tc.wantDead || c.missing != tc.wantMissing || len(c.ids)+len(c.dead) != n {
				t.Fatalf("dead = %d, missing = %d, emitted = %d; want %d, %d, %d",
					len(c.dead), c.missing, len(c.ids), tc.wantDead, tc.wantMissing, n-tc.wantDead)
			}
			for _, r := range c.dead {
				for _, h := range r.Headers {
					if string(h.Key) == "bend-dlq-reason" && !strings.Contains(string(h.Value), "required enrichment score failed after 2 attempts") {
						t.Fatalf("dead-letter reason %q", h.Value)
					}
				}
			}
		})
	}
}
