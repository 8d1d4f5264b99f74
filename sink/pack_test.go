package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/kafkatest"
	"github.com/bendstream/bend/internal/pack"
	metrics "github.com/rcrowley/go-metrics"
)

// TestKafkaBatching sends enriched records (with provenance, some packed
// input events with an index, a few passed-through non-activity events and
// dead letters) through the Kafka output with and without
// sink.kafka.batching, and counts every id in the output topic, unpacking
// packed records: each exactly once, each acked once, every packed
// record's bend-batch-sources naming its events' inputs in order; dead
// letters and non-activity events are never packed.
func TestKafkaBatching(t *testing.T) {
	for _, tc := range []struct {
		name      string
		maxEvents int
	}{
		{"off: plain consumers", 0},
		{"50 per record", 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			brokers := kafkatest.Brokers(t)
			topic := kafkatest.CreateTopic(t, brokers, 3)
			dlq := kafkatest.CreateTopic(t, brokers, 1)
			cfg := DefaultConfig()
			cfg.Kafka.Linger = time.Millisecond
			cfg.Kafka.Batching.MaxEvents = tc.maxEvents
			reg := metrics.NewRegistry()
			s, err := New(cfg, brokers, kafkatest.Config(), topic, dlq, quietLog(), reg)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			const n = 3000
			in := make(chan *Record, 64)
			acks := make([]atomic.Int32, n)
			done := make(chan error, 1)
			go func() { done <- s.Run(context.Background(), in) }()
			dead := 0
			for i := range n {
				h := []sarama.RecordHeader{
					{Key: []byte("bend-source-topic"), Value: []byte("in")},
					{Key: []byte("bend-source-partition"), Value: []byte("0")},
					{Key: []byte("bend-source-offset"), Value: []byte(fmt.Sprint(i / 10))},
					{Key: []byte(pack.HeaderIndex), Value: []byte(fmt.Sprint(i % 10))},
				}
				r := &Record{Key: []byte(fmt.Sprintf("k%d", i%7)), Value: fmt.Appendf(nil, `{"id":"act-%d","key":"k%d","seq":%d}`, i, i%7, i), Headers: h,
					Ack: func(err error) {
						if err != nil {
							t.Errorf("record %d nacked: %v", i, err)
						}
						acks[i].Add(1)
					}}
				switch {
				case i%101 == 0:
					r.DeadLetter = true
					dead++
				case i%103 == 0:
					r.Headers = append(r.Headers, sarama.RecordHeader{Key: []byte("bend-kind"), Value: []byte("delete")})
				}
				in <- r
			}
			close(in)
			if err := <-done; err != nil {
				t.Fatalf("Run: %v", err)
			}
			for i := range acks {
				if got := acks[i].Load(); got != 1 {
					t.Fatalf("record %d acked %d times, want 1", i, got)
				}
			}
			want := n - dead
			// Every record was acked: the topic holds them all.
			ids := map[string]int{}
			packed := 0
			lastSeq := map[string]int{}
			{
				{
					for _, m := range readRecords(t, brokers, topic) {
						vs := [][]byte{m.Value}
						c, ok, err := pack.Framed(m.Headers)
						if ok {
							if err != nil {
								t.Fatal(err)
							}
							if vs, err = pack.Split(nil, m.Value, c); err != nil {
								t.Fatal(err)
							}
							packed++
						}
						var sources []string
						for _, h := range m.Headers {
							if string(h.Key) == pack.HeaderSources {
								sources = strings.Split(string(h.Value), ",")
							}
							if string(h.Key) == "bend-kind" && ok {
								t.Fatalf("a non-activity event was packed")
							}
						}
						if ok && len(sources) != c {
							t.Fatalf("packed record of %d events names %d sources", c, len(sources))
						}
						for j, v := range vs {
							var ev struct {
								ID  string `json:"id"`
								Key string `json:"key"`
								Seq int    `json:"seq"`
							}
							if err := json.Unmarshal(v, &ev); err != nil {
								t.Fatalf("event %q: %v", v, err)
							}
							ids[ev.ID]++
							if ok {
								if w := fmt.Sprintf("in:0:%d:%d", ev.Seq/10, ev.Seq%10); sources[j] != w {
									t.Fatalf("event %s: source %q, want %q", ev.ID, sources[j], w)
								}
							}
							if p, seen := lastSeq[ev.Key]; seen && ev.Seq < p {
								t.Fatalf("key %s: %d after %d", ev.Key, ev.Seq, p)
							}
							lastSeq[ev.Key] = ev.Seq
						}
					}
				}
			}
			for id, c := range ids {
				if c != 1 {
					t.Errorf("%s written %d times", id, c)
				}
			}
			if len(ids) != want {
				t.Errorf("%d ids in the output topic, want %d", len(ids), want)
			}
			if (packed > 0) != (tc.maxEvents > 1) {
				t.Errorf("%d packed records with max_events %d", packed, tc.maxEvents)
			}
			if got := len(kafkatest.ReadAll(t, brokers, dlq, dead, 30*time.Second)); got != dead {
				t.Errorf("dead-letter topic has %d records, want %d", got, dead)
			}
			t.Logf("%d events, %d packed records", want, packed)
		})
	}
}

// readRecords returns every record of topic up to the high-water marks.
func readRecords(t *testing.T, brokers []string, topic string) []*sarama.ConsumerMessage {
	t.Helper()
	return kafkatest.ReadToEnd(t, brokers, topic)
}
