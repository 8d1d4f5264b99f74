package sink

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/kafkatest"
	metrics "github.com/rcrowley/go-metrics"
)

// BenchmarkSinkKafka measures the Kafka output at-least-once and
// exactly-once (transactions of up to sink.kafka.txn_interval, with the
// source offsets committed in each) on the same broker: the throughput cost
// of exactly-once; "packed" is at-least-once with sink.kafka.batching at 50
// events per record. Reports records/s (events); ~300-byte records.
func BenchmarkSinkKafka(b *testing.B) {
	for _, mode := range []string{"at-least-once", "exactly-once", "packed"} {
		b.Run(mode, func(b *testing.B) {
			brokers := kafkatest.Brokers(b)
			src := kafkatest.CreateTopic(b, brokers, 4)
			out := kafkatest.CreateTopic(b, brokers, 4)
			dlq := kafkatest.CreateTopic(b, brokers, 1)
			cfg := DefaultConfig()
			cfg.Kafka.ExactlyOnce = mode == "exactly-once"
			cfg.Kafka.TransactionalID = kafkatest.Name(b, "txn")
			if mode == "packed" {
				cfg.Kafka.Batching.MaxEvents = 50
			}
			s, err := New(cfg, brokers, kafkatest.Config(), out, dlq, quietLog(), metrics.NewRegistry())
			if err != nil {
				b.Fatal(err)
			}
			group := &sarama.ConsumerGroupMetadata{GroupID: kafkatest.Name(b, "group"), GenerationID: sarama.GroupGenerationUndefined}
			in := make(chan *Record, 1024)
			done := make(chan error, 1)
			go func() { done <- s.Run(context.Background(), in) }()
			value := bytes.Repeat([]byte("x"), 300)
			var wg sync.WaitGroup
			var mu sync.Mutex
			var failed error
			wg.Add(b.N)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				in <- &Record{Key: []byte{byte(i)}, Value: value,
					Source: &Source{Topic: src, Partition: int32(i % 4), Offset: int64(i / 4), Group: group},
					Ack: func(err error) {
						if err != nil {
							mu.Lock()
							failed = err
							mu.Unlock()
						}
						wg.Done()
					}}
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
			b.StopTimer()
			close(in)
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			if failed != nil {
				b.Fatalf("a record was nacked: %v", failed)
			}
		})
	}
}
