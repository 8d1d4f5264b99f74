package distributor

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/kafkatest"
	metrics "github.com/rcrowley/go-metrics"
)

// produceFast writes ids act-from..act-(from+n-1) with an async producer
// (small values, lz4), for backlogs of hundreds of thousands of records.
func produceFast(t testing.TB, brokers []string, topic string, from, n int) {
	t.Helper()
	sc := kafkatest.Config()
	sc.Producer.Return.Successes = false
	sc.Producer.Return.Errors = true
	sc.Producer.RequiredAcks = sarama.WaitForLocal
	sc.Producer.Compression = sarama.CompressionLZ4
	sc.Producer.Flush.Frequency = 5 * time.Millisecond
	sc.Producer.Flush.Bytes = 1 << 20
	sc.ChannelBufferSize = 8192
	p, err := sarama.NewAsyncProducer(brokers, sc)
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	errc := make(chan int, 1)
	go func() {
		bad := 0
		for range p.Errors() {
			bad++
		}
		errc <- bad
	}()
	for i := from; i < from+n; i++ {
		p.Input() <- &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(strconv.Itoa(i)),
			Value: sarama.StringEncoder(`{"id":"act-` + strconv.Itoa(i) + `","text":"x"}`)}
	}
	p.AsyncClose()
	if bad := <-errc; bad > 0 {
		t.Fatalf("producing: %d records failed", bad)
	}
}

// toolLag computes what Kafka's consumer-groups tool reports as the
// group's lag on topic, the way the tool does: ListOffsets (latest,
// read_uncommitted) minus the committed offset (OffsetFetch), per partition.
func toolLag(t testing.TB, brokers []string, group, topic string) (total int64, per map[int32]int64) {
	t.Helper()
	client, err := sarama.NewClient(brokers, kafkatest.Config())
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	defer client.Close()
	adm, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		t.Fatalf("admin: %v", err)
	}
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatalf("partitions: %v", err)
	}
	resp, err := adm.ListConsumerGroupOffsets(group, map[string][]int32{topic: parts})
	if err != nil {
		t.Fatalf("OffsetFetch: %v", err)
	}
	per = map[int32]int64{}
	for _, p := range parts {
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatalf("ListOffsets %s/%d: %v", topic, p, err)
		}
		committed := int64(0) // the tool shows "-" for no commit; from the log start here, which is 0
		if b := resp.GetBlock(topic, p); b != nil && b.Offset >= 0 {
			committed = b.Offset
		}
		per[p] = end - committed
		total += end - committed
	}
	return total, per
}

// within1pct reports whether got is within 1% of want.
func within1pct(got, want int64) bool {
	d := got - want
	if d < 0 {
		d = -d
	}
	return d*100 <= want
}

// TestLagFromLogEndWhileReadingStopped holds a backlog back (the sink
// stalls, so the delay queue fills and reading stops) and checks that the
// lag bend reports, in total and per partition, is within 1% of what
// Kafka's consumer-groups tool computes for the group. The backlog is
// 500,000 records (BEND_LAG_BACKLOG overrides it, e.g. 2000000).
func TestLagFromLogEndWhileReadingStopped(t *testing.T) {
	backlog := 500_000
	if testing.Short() {
		backlog = 50_000
	}
	if v := os.Getenv("BEND_LAG_BACKLOG"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("BEND_LAG_BACKLOG: %v", err)
		}
		backlog = n
	}
	brokers := kafkatest.Brokers(t)
	topic := kafkatest.CreateTopic(t, brokers, 4)
	o := defaultOpts(t)
	o.cfg.LagRefresh = 200 * time.Millisecond
	o.dq.MaxItems = 2000
	c := newCollector()
	c.countOnly = true
	p := startPipeline(t, brokers, topic, o, c)

	// A first run of records flows, so the group has committed offsets.
	const first = 1000
	produceFast(t, brokers, topic, 1, first)
	eventually(t, 30*time.Second, "first records acked", func() bool { return c.acked.Load() == first })
	eventually(t, 10*time.Second, "first records committed", func() bool { return committedAll(t, brokers, o.cfg.Group, topic) })

	c.paused.Store(true) // the sink stalls: reading stops once the delay queue is full
	t0 := time.Now()
	produceFast(t, brokers, topic, first+1, backlog)
	t.Logf("produced %d records in %s", backlog, time.Since(t0).Round(time.Millisecond))

	// Reading stops and commits settle, then both figures stand still.
	var bend, tool int64
	var per map[int32]int64
	eventually(t, 30*time.Second, "bend lag within 1% of the consumer-groups tool", func() bool {
		tool, per = toolLag(t, brokers, o.cfg.Group, topic)
		bend = p.d.Lag()
		return tool >= int64(backlog) && within1pct(bend, tool)
	})
	t.Logf("backlog %d: bend lag %d, consumer-groups lag %d (delay queue %d parked, %d acked)", backlog, bend, tool, p.dq.Len(), c.acked.Load())
	// The total can be within 1% while one partition's log end is still
	// one refresh old: compare each partition until all agree.
	var off []string
	eventually(t, 30*time.Second, "every partition's lag within 1% of the consumer-groups tool", func() bool {
		_, per = toolLag(t, brokers, o.cfg.Group, topic)
		off = off[:0]
		for part, want := range per {
			name := fmt.Sprintf("distributor.partition.%s.%d.lag", topic, part)
			g, ok := p.reg.Get(name).(metrics.Gauge)
			if !ok {
				off = append(off, "no gauge "+name)
				continue
			}
			if got := g.Value(); !within1pct(got, want) {
				off = append(off, fmt.Sprintf("%s = %d, consumer-groups tool %d", name, got, want))
			}
		}
		return len(off) == 0
	})
	if consumed := p.reg.Get("distributor.consumed").(metrics.Meter).Count(); consumed >= int64(first+backlog) {
		t.Fatalf("consumed %d of %d: reading was not held back", consumed, first+backlog)
	}

	if v := os.Getenv("BEND_LAG_HOLD"); v != "" {
		// Keeps the backlog held back, for comparing with the real tool by hand.
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("BEND_LAG_HOLD: %v", err)
		}
		t.Logf("holding %s: group %s, topic %s", d, o.cfg.Group, topic)
		time.Sleep(d)
		t.Logf("after the hold: bend lag %d", p.d.Lag())
	}
	c.paused.Store(false)
	eventually(t, 120*time.Second, "backlog drained", func() bool { return c.acked.Load() >= int64(first+backlog) })
	if err := p.shutdown(t); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if got := c.acked.Load(); got < int64(first+backlog) {
		t.Fatalf("acked %d, want %d", got, first+backlog)
	}
}
