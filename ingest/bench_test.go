package ingest

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/kafkatest"
	metrics "github.com/rcrowley/go-metrics"
)

// cpuTime returns the CPU time this process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// report reports events/s and, less sensitive to other load on the machine,
// the CPU time the process spent per event (with the embedded broker, its
// work is included, the same for both benchmarks).
func report(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/event")
}

// benchEvents returns n distinct events of about 300 bytes and their ids.
func benchEvents(n int) (values, keys [][]byte, avg int) {
	total := 0
	for i := range n {
		v := []byte(event(i + 1))
		values, keys = append(values, v), append(keys, []byte(v[7:7+len("act-")+len(itoa(i+1))]))
		total += len(v)
	}
	return values, keys, total / n
}

func itoa(i int) string {
	var b [20]byte
	p := len(b)
	for ; i > 0; i /= 10 {
		p--
		b[p] = byte('0' + i%10)
	}
	return string(b[p:])
}

// BenchmarkIngestPublish measures ingest's throughput to Kafka in events/s,
// each event counted when Kafka acknowledged it, with the default producer
// settings (idempotent, acks=all, lz4, 5ms linger, 1 MiB batches, 8192 in
// flight). "publish" calls Publish; "edge" goes through what the stream and
// file sources do per line: validate, key, copy, publish.
// Compare with BenchmarkRawSaramaProduce on the same broker.
func BenchmarkIngestPublish(b *testing.B) {
	brokers := kafkatest.Brokers(b)
	values, keys, avg := benchEvents(4096)
	for _, mode := range []string{"publish", "edge"} {
		b.Run(mode, func(b *testing.B) {
			topic := kafkatest.CreateTopic(b, brokers, 4)
			cfg := DefaultConfig()
			cfg.Synthetic.Enabled = false
			reg := metrics.NewRegistry()
			in, err := New(cfg, brokers, kafkatest.Config(), topic, topic+".dlq", testLog(), reg)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan error, 1)
			go func() { ran <- in.Run(ctx) }()
			f := &feeder{in: in, m: in.sourceMetrics("bench"), log: testLog()}
			var wg sync.WaitGroup
			wg.Add(b.N)
			done := func(err error) {
				if err != nil {
					b.Error(err)
				}
				wg.Done()
			}
			a := newAcks(nil)
			b.SetBytes(int64(avg))
			b.ResetTimer()
			cpu0 := cpuTime(b)
			for i := range b.N {
				v := values[i%len(values)]
				if mode == "publish" {
					err = in.Publish(ctx, keys[i%len(keys)], v, done)
				} else {
					wg.Done()
					err = f.feed(ctx, v, i+1, nil, a)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			a.seal()
			if err := a.wait(ctx); err != nil {
				b.Fatal(err)
			}
			wg.Wait()
			b.StopTimer()
			report(b, cpu0)
			if got := reg.Get("ingest.published").(metrics.Meter).Count(); got != int64(b.N) {
				b.Errorf("ingest.published = %d, want %d", got, b.N)
			}
			cancel()
			if err := <-ran; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkRawSaramaProduce is the baseline for BenchmarkIngestPublish: a
// bare sarama AsyncProducer with the same settings (kafka.ProducerConfig
// Apply of the same defaults, same retry backoff), the same events and
// keys, counting each event when Kafka acknowledged it.
func BenchmarkRawSaramaProduce(b *testing.B) {
	brokers := kafkatest.Brokers(b)
	values, keys, avg := benchEvents(4096)
	topic := kafkatest.CreateTopic(b, brokers, 4)
	sc := kafkatest.Config()
	if err := DefaultConfig().Producer.Apply(sc); err != nil {
		b.Fatal(err)
	}
	sc.Producer.Retry.BackoffFunc = retryBackoff
	p, err := sarama.NewAsyncProducer(brokers, sc)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	var wg sync.WaitGroup
	wg.Add(b.N)
	go func() {
		for range p.Successes() {
			wg.Done()
		}
	}()
	go func() {
		for e := range p.Errors() {
			b.Error(e.Err)
			wg.Done()
		}
	}()
	b.SetBytes(int64(avg))
	b.ResetTimer()
	cpu0 := cpuTime(b)
	for i := range b.N {
		p.Input() <- &sarama.ProducerMessage{Topic: topic, Key: sarama.ByteEncoder(keys[i%len(keys)]), Value: sarama.ByteEncoder(values[i%len(values)])}
	}
	wg.Wait()
	b.StopTimer()
	report(b, cpu0)
}
