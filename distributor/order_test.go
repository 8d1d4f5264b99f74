package distributor

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/enrich"
	"github.com/bendstream/bend/internal/activity"
	"github.com/bendstream/bend/internal/kafkatest"
	"github.com/bendstream/bend/sink"
)

// TestOrderedKeepsPerKeyOrder runs enrichment with random latencies, so
// activities complete out of order, and checks that with distributor.ordered
// every key's activities are emitted in the order they were produced.
func TestOrderedKeepsPerKeyOrder(t *testing.T) {
	for _, ordered := range []bool{true, false} {
		t.Run(fmt.Sprintf("ordered=%v", ordered), func(t *testing.T) {
			brokers := kafkatest.Brokers(t)
			topic := kafkatest.CreateTopic(t, brokers, 4)
			const n, keys = 3000, 20
			sc := kafkatest.Config()
			sc.Producer.Return.Successes = true
			sc.Producer.Flush.Frequency = time.Millisecond
			p, err := sarama.NewSyncProducer(brokers, sc)
			if err != nil {
				t.Fatal(err)
			}
			var batch []*sarama.ProducerMessage
			for i := range n {
				k := fmt.Sprintf("k%d", i%keys)
				v := fmt.Sprintf(`{"id":"act-%d","key":%q,"kseq":%d}`, i+1, k, i/keys)
				batch = append(batch, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(k), Value: sarama.StringEncoder(v)})
			}
			if err := p.SendMessages(batch); err != nil {
				t.Fatal(err)
			}
			p.Close()

			var mu sync.Mutex
			rng := rand.New(rand.NewPCG(1, 2))
			jitter := enrich.EnricherFunc(func(context.Context, *activity.Fields) (json.RawMessage, error) {
				mu.Lock()
				d := time.Duration(rng.IntN(3000)) * time.Microsecond
				mu.Unlock()
				time.Sleep(d)
				return json.RawMessage(`{}`), nil
			})
			o := defaultOpts(t)
			o.cfg.Ordered = ordered
			o.cfg.Emitters = 4
			o.workers = 8
			o.enrichers = []enrich.Resolved{{Spec: enrich.Spec{Name: "j", Type: "noop", Timeout: time.Second, MaxAttempts: 1, Backoff: time.Millisecond}, Enricher: jitter}}
			c := newCollector()
			last := map[string]int{}
			inversions := 0
			seen := map[string]bool{}
			redelivered := 0
			c.onAck = func(r *sink.Record) {
				var ev struct {
					ID   string `json:"id"`
					Key  string `json:"key"`
					KSeq int    `json:"kseq"`
				}
				if err := json.Unmarshal(r.Value, &ev); err != nil {
					panic(err)
				}
				// A record delivered again (a session restarted on a
				// loaded box and the partition was read from its
				// committed offset) is a duplicate, not an inversion.
				if seen[ev.ID] {
					redelivered++
					return
				}
				seen[ev.ID] = true
				if prev, ok := last[ev.Key]; ok && ev.KSeq < prev {
					inversions++
				}
				last[ev.Key] = ev.KSeq
			}
			pl := startPipeline(t, brokers, topic, o, c)
			eventually(t, 60*time.Second, "every id", func() bool { return c.distinct() == n })
			c.wantIDs(t, 1, n)
			if err := pl.shutdown(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
			t.Logf("ordered=%v: %d per-key inversions, %d redelivered", ordered, inversions, redelivered)
			if ordered && inversions != 0 {
				t.Fatalf("%d per-key order inversions with distributor.ordered", inversions)
			}
		})
	}
}
