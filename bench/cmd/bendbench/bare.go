package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/bench/internal/benchkit"
)

// bareResult is the baseline's summary: the simplest correct consume-produce
// loop on the same broker, for the ratios of bend's drain against it.
type bareResult struct {
	Records    int64   `json:"records"`
	Rate       float64 `json:"records_per_s"`
	CPUPerMSec float64 `json:"cpu_seconds_per_million"`
}

// bareHandler copies each consumed record to the output topic's partition of
// the same number and marks its offset only after the produce ack. With the
// idempotent producer (one request in flight per broker) acks arrive in
// send order per partition, so marking in ack order never passes an unacked
// record.
type bareHandler struct {
	p     sarama.AsyncProducer
	out   string
	sess  atomic.Pointer[sarama.ConsumerGroupSession]
	ready chan struct{}
	once  sync.Once
}

func (h *bareHandler) Setup(s sarama.ConsumerGroupSession) error {
	h.sess.Store(&s)
	h.once.Do(func() { close(h.ready) })
	return nil
}
func (h *bareHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *bareHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		select {
		case h.p.Input() <- &sarama.ProducerMessage{Topic: h.out, Partition: m.Partition, Key: sarama.ByteEncoder(m.Key), Value: sarama.ByteEncoder(m.Value), Metadata: m}:
		case <-s.Context().Done():
			return nil
		}
	}
	return nil
}

// bareLoop drains n records of topic in into a new topic with the same
// partitions, as a consumer group with bend's sink producer settings
// (idempotent, acks=all, lz4, 5 ms linger, 1 MiB batches). The CPU is this
// process's, from /proc, over the loop only.
func bareLoop(brokers, in string, partitions int32, n int64, timeout time.Duration) (*bareResult, error) {
	out := in + "-bare-out"
	if err := createTopic(brokers, out, partitions); err != nil {
		return nil, fmt.Errorf("creating %s: %w", out, err)
	}
	pc := benchkit.ProducerConfig("bendbench-bare")
	pc.Producer.Partitioner = sarama.NewManualPartitioner
	p, err := sarama.NewAsyncProducer([]string{brokers}, pc)
	if err != nil {
		return nil, err
	}
	cc := benchkit.Config("bendbench-bare")
	cc.Consumer.Offsets.Initial = sarama.OffsetOldest
	cc.Consumer.Offsets.AutoCommit.Interval = time.Second
	g, err := sarama.NewConsumerGroup([]string{brokers}, in+"-bare", cc)
	if err != nil {
		p.Close()
		return nil, err
	}
	h := &bareHandler{p: p, out: out, ready: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var acked atomic.Int64
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for m := range p.Successes() {
			if s := h.sess.Load(); s != nil {
				(*s).MarkMessage(m.Metadata.(*sarama.ConsumerMessage), "")
			}
			if acked.Add(1) == n {
				cancel()
			}
		}
	}()
	go func() {
		defer wg.Done()
		for err := range p.Errors() {
			log.Printf("bare loop: produce error: %v", err)
		}
	}()
	self := os.Getpid()
	t0ticks, _ := procStats(self)
	t0 := time.Now()
	for ctx.Err() == nil {
		if err := g.Consume(ctx, []string{in}, h); err != nil && ctx.Err() == nil {
			log.Printf("bare loop: consume: %v", err)
		}
	}
	elapsed := time.Since(t0)
	t1ticks, _ := procStats(self)
	_ = g.Close()
	p.AsyncClose()
	wg.Wait()
	got := acked.Load()
	if got < n {
		return nil, fmt.Errorf("bare loop: %d of %d records acked within %s", got, n, timeout)
	}
	cpu := float64(t1ticks-t0ticks) / 100 // USER_HZ
	return &bareResult{Records: got, Rate: float64(got) / elapsed.Seconds(), CPUPerMSec: cpu / (float64(got) / 1e6)}, nil
}

// runBare is the "bare" scenario: it preloads drain's record count (scaled)
// into a new 8-partition topic, like drain, and runs bareLoop over it.
func runBare(brokers string, n int64, timeout time.Duration) (*bareResult, error) {
	in := fmt.Sprintf("bendbench-bare-%d", time.Now().UnixNano())
	if err := createTopic(brokers, in, 8); err != nil {
		return nil, err
	}
	if _, err := preload(brokers, in, n, 0); err != nil {
		return nil, err
	}
	return bareLoop(brokers, in, 8, n, timeout)
}
