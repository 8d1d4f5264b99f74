package distributor

import (
	"testing"
	"time"

	"github.com/bendstream/bend/enrich"
	"github.com/bendstream/bend/internal/kafkatest"
)

// BenchmarkDistributorNoop measures the distributor's drain rate of a
// preloaded topic with a no-op enrichment and a sink that acknowledges at
// once: the cost of fetch, parking, task hand-off, rejoin and offset
// tracking. Reports records/s.
func BenchmarkDistributorNoop(b *testing.B) {
	brokers := kafkatest.Brokers(b)
	topic := kafkatest.CreateTopic(b, brokers, 8)
	n := max(b.N, 1000)
	produce(b, brokers, topic, 1, n, byIndex)
	o := defaultOpts(b)
	ec := enrich.Config{Workers: 4, QueueSize: 1024, Enrichers: []enrich.Spec{{Name: "noop", Type: "noop"}}}
	ens, err := ec.Build(nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	o.enrichers = ens
	c := newCollector()
	c.countOnly = true
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	p := startPipeline(b, brokers, topic, o, c)
	for c.acked.Load() < int64(n) {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(n)/elapsed.Seconds(), "records/s")
	p.stop()
	<-p.done
}
