package distributor

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/kafkatest"
	metrics "github.com/rcrowley/go-metrics"
)

func TestFetchConfigFromBudget(t *testing.T) {
	for _, tc := range []struct {
		name        string
		budget      int64
		partitions  int
		fetchBuffer int
		wantFetch   int32
		wantChannel int
	}{
		{"default budget, 8 partitions", 256 << 20, 8, 256, 1 << 20, 16},
		{"default budget, 256 partitions", 256 << 20, 256, 256, 128 << 10, 16},
		{"big budget, 1 partition", 8 << 30, 1, 256, 1 << 20, 256},
		{"small budget, many partitions", 16 << 20, 1000, 256, 16 << 10, 16},
		{"fetch_buffer smaller than the floor", 256 << 20, 8, 4, 1 << 20, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc := fetchConfig(sarama.NewConfig(), tc.budget, tc.partitions, tc.fetchBuffer)
			if cc.Consumer.Fetch.Default != tc.wantFetch || cc.ChannelBufferSize != tc.wantChannel {
				t.Errorf("Fetch.Default %d ChannelBufferSize %d, want %d %d",
					cc.Consumer.Fetch.Default, cc.ChannelBufferSize, tc.wantFetch, tc.wantChannel)
			}
		})
	}
}

// TestBudgetBoundsBigRecords reads 300 KB records with the sink stalled:
// the bytes taken from distributor.memory_budget never exceed its records'
// share, reading stops well short of the backlog, and once the sink
// resumes every id arrives.
func TestBudgetBoundsBigRecords(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	topic := kafkatest.CreateTopic(t, brokers, 2)
	const n, size = 200, 300 << 10
	sc := kafkatest.Config()
	sc.Producer.Return.Successes = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.MaxMessageBytes = 2 << 20
	pr, err := sarama.NewSyncProducer(brokers, sc)
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	pad := strings.Repeat("x", size)
	for i := 1; i <= n; i++ {
		v := fmt.Sprintf(`{"id":"act-%d","text":%q}`, i, pad)
		if _, _, err := pr.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprint(i)), Value: sarama.StringEncoder(v)}); err != nil {
			t.Fatalf("producing: %v", err)
		}
	}
	_ = pr.Close()

	o := defaultOpts(t)
	o.cfg.MemoryBudget = 16 << 20
	c := newCollector()
	c.paused.Store(true)
	p := startPipeline(t, brokers, topic, o, c)
	used := p.reg.Get("distributor.budget.used").(metrics.Counter)
	capacity := p.reg.Get("distributor.budget.cap").(metrics.Gauge).Value()
	consumed := p.reg.Get("distributor.consumed").(metrics.Meter)
	eventually(t, 30*time.Second, "reading to stop on the budget", func() bool {
		// Reading stops when the next batch does not fit: at most one
		// batch (batch_max_bytes of records, taken twice) short of the cap.
		return used.Count() > capacity-2*(o.cfg.BatchMaxBytes+size+1<<10)-4*recordOverhead
	})
	var peak int64
	for range 50 { // a second of samples while stalled
		peak = max(peak, used.Count())
		time.Sleep(20 * time.Millisecond)
	}
	if peak > capacity {
		t.Errorf("budget used %d, more than its cap %d", peak, capacity)
	}
	if got, limit := consumed.Count(), capacity/(2*size)+1; got > limit {
		t.Errorf("consumed %d records of %d bytes with a %d-byte records share: want at most %d", got, size, capacity, limit)
	}
	c.paused.Store(false)
	eventually(t, 60*time.Second, "every record acked", func() bool { return c.acked.Load() >= n })
	if err := p.shutdown(t); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	c.wantIDs(t, 1, n)
	if d := c.duplicates(); d != 0 {
		t.Errorf("%d duplicates", d)
	}
	if u := used.Count(); u != 0 {
		t.Errorf("budget used %d after the drain, want 0", u)
	}
}
