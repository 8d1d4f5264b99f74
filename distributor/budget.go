package distributor

import (
	"context"
	"fmt"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/metricnames"
	metrics "github.com/rcrowley/go-metrics"
	"golang.org/x/sync/semaphore"
)

const (
	// minMemoryBudget is the smallest distributor.memory_budget accepted.
	minMemoryBudget = 16 << 20
	// maxRecordBytes is the record size the fetch buffers are sized for:
	// Kafka's default message.max.bytes, rounded.
	maxRecordBytes = 1 << 20
	// recordOverhead is what a record in flight holds besides its key and
	// value bytes: the job, the sink record, headers, the enrichment results.
	recordOverhead = 1 << 10
)

// budget is distributor.memory_budget. A quarter of it is set aside for
// sarama's fetch buffers (sized by fetchConfig); the rest is taken by each
// record read, for its bytes and its enriched copy, from the moment it
// leaves the fetch buffer until the sink acknowledges it (or its claim
// drops it for redelivery). Reading a partition waits while the budget is
// spent: that is backpressure in bytes, beside the delay queue's count.
type budget struct {
	total, records int64
	sem            *semaphore.Weighted
	used           metrics.Counter
}

func newBudget(total int64, reg metrics.Registry) *budget {
	records := total - total/4
	b := &budget{total: total, records: records, sem: semaphore.NewWeighted(records),
		used: metrics.GetOrRegisterCounter(metricnames.DistributorBudgetUsed, reg)}
	reg.GetOrRegister(metricnames.DistributorBudgetCap, metrics.NewFunctionalGauge(func() int64 { return records }))
	return b
}

// weight is what a record of m's size takes from the budget: its key and
// value, the enriched copy made when it leaves the delay queue (the same
// bytes plus the enrichments), and a fixed overhead. It never exceeds the
// records' share, so a record larger than the budget still passes, alone.
func (b *budget) weight(m *sarama.ConsumerMessage) int64 {
	w := 2*int64(len(m.Key)+len(m.Value)) + recordOverhead
	return min(w, b.records)
}

// acquire blocks until w bytes of the budget are free, or ctx ends.
func (b *budget) acquire(ctx context.Context, w int64) error {
	if err := b.sem.Acquire(ctx, w); err != nil {
		return err
	}
	b.used.Inc(w)
	return nil
}

// release gives back w bytes taken by acquire.
func (b *budget) release(w int64) {
	if w <= 0 {
		return
	}
	b.used.Dec(w)
	b.sem.Release(w)
}

// BudgetUsed returns the bytes of distributor.memory_budget taken by records in
// flight. Safe for concurrent use.
func (d *Distributor) BudgetUsed() int64 { return d.budget.used.Count() }

// fetchConfig sizes sarama's fetch buffers from the fetch quarter of the
// budget, spread over partitions (the input partitions, an upper bound on
// those this member owns): each partition's consumer holds at most one
// fetch (Consumer.Fetch.Default) and ChannelBufferSize records.
func fetchConfig(sc *sarama.Config, budgetBytes int64, partitions, fetchBuffer int) *sarama.Config {
	cc := *sc
	per := budgetBytes / 4 / int64(max(partitions, 1))
	cc.Consumer.Fetch.Default = int32(min(max(per/2, 16<<10), 1<<20))
	cc.ChannelBufferSize = int(min(int64(fetchBuffer), max(16, per/2/maxRecordBytes)))
	return &cc
}

// countPartitions returns the number of partitions of topics.
func countPartitions(brokers []string, sc *sarama.Config, topics []string) (int, error) {
	client, err := sarama.NewClient(brokers, sc)
	if err != nil {
		return 0, err
	}
	defer client.Close()
	n := 0
	for _, t := range topics {
		ps, err := client.Partitions(t)
		if err != nil {
			return 0, fmt.Errorf("partitions of %s: %w", t, err)
		}
		n += len(ps)
	}
	return n, nil
}
