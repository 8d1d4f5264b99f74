package distributor

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/kafkatest"
	"github.com/bendstream/bend/internal/pack"
	"github.com/bendstream/bend/sink"
)

// producePacked writes act-1..act-n to topic in packed records of per
// events (keyed k0..k9 by the record: every event of a record has its key),
// a plain record per 7th record instead, and each bad value as a record
// claiming to pack 2 events. Within a key, kseq numbers the events in
// produce order.
func producePacked(t *testing.T, brokers []string, topic string, n, per int, bad ...string) {
	t.Helper()
	sc := kafkatest.Config()
	sc.Producer.Return.Successes = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Flush.Frequency = time.Millisecond
	p, err := sarama.NewSyncProducer(brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var batch []*sarama.ProducerMessage
	kseq := map[string]int{}
	for i, r := 1, 0; i <= n; r++ {
		k := fmt.Sprintf("k%d", r%10)
		event := func() []byte {
			v := fmt.Sprintf(`{"id":"act-%d","key":%q,"kseq":%d}`, i, k, kseq[k])
			i++
			kseq[k]++
			return []byte(v)
		}
		if r%7 == 6 {
			batch = append(batch, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(k), Value: sarama.ByteEncoder(event())})
			continue
		}
		var v []byte
		c := 0
		for ; c < per && i <= n; c++ {
			v = pack.Append(v, event())
		}
		batch = append(batch, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(k), Value: sarama.ByteEncoder(v), Headers: pack.Headers(nil, c)})
	}
	for _, b := range bad {
		batch = append(batch, &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(b), Headers: pack.Headers(nil, 2)})
	}
	if err := p.SendMessages(batch); err != nil {
		t.Fatal(err)
	}
}

func header(r *sink.Record, key string) string {
	for _, h := range r.Headers {
		if string(h.Key) == key {
			return string(h.Value)
		}
	}
	return ""
}

// TestPackedRecords counts every event of packed input records by id at
// the output, in each delivery mode, with malformed packed records
// dead-lettered whole, and an invalid event inside a packed record
// dead-lettered alone; the commits cover the topic. In ordered mode every
// key's events leave in produce order; every packed event's output names
// its index.
func TestPackedRecords(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ordered bool
		nack    string // an id the sink nacks once: its record is read again
	}{
		{"at-least-once", false, ""},
		{"ordered", true, ""},
		{"nack inside a packed record", false, "act-77"},
		{"ordered with a nack", true, "act-1203"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			brokers := kafkatest.Brokers(t)
			topic := kafkatest.CreateTopic(t, brokers, 4)
			const n, per = 3000, 50
			bad := []string{"{\"id\":\"x\"}\n", "{\"id\":\"y\"}\n{\"id\":\"z\"}\n{\"id\":\"w\"}\n"}
			producePacked(t, brokers, topic, n, per, bad...)
			// One packed record holding an invalid event between two valid ones.
			produceRaw(t, brokers, topic, pack.Append(pack.Append(pack.Append(nil,
				[]byte(`{"id":"act-3001","key":"z","kseq":0}`)), []byte(`{"text":"no id"}`)), []byte(`{"id":"act-3002","key":"z","kseq":1}`)), 3)

			o := defaultOpts(t)
			o.cfg.Ordered = tc.ordered
			o.cfg.Emitters = 4
			c := newCollector()
			c.nackOnce = tc.nack
			last := map[string]int{}
			inversions, noIndex := 0, 0
			seen := map[string]bool{}
			withIndex := 0
			c.onAck = func(r *sink.Record) {
				if r.DeadLetter {
					return
				}
				var ev struct {
					ID   string `json:"id"`
					Key  string `json:"key"`
					KSeq int    `json:"kseq"`
				}
				if err := json.Unmarshal(r.Value, &ev); err != nil {
					panic(err)
				}
				if seen[ev.ID] || ev.ID == tc.nack {
					return // redelivered after the nack; the nacked one comes late
				}
				seen[ev.ID] = true
				if prev, ok := last[ev.Key]; ok && ev.KSeq < prev {
					inversions++
				}
				last[ev.Key] = ev.KSeq
				if header(r, "bend-source-offset") == "" {
					noIndex++
				}
				if header(r, pack.HeaderIndex) != "" {
					withIndex++
				}
			}
			pl := startPipeline(t, brokers, topic, o, c)
			// Dead letters are delivered at least once too: after a nack, one
			// read again is emitted again.
			eventually(t, 60*time.Second, "every id", func() bool { return c.distinct() == n+2 && c.distinctDead() == len(bad)+1 })
			if got := c.deadCount(); tc.nack == "" && got != len(bad)+1 {
				t.Errorf("%d dead letters, want %d (no nack: none twice)", got, len(bad)+1)
			}
			c.wantIDs(t, 1, n+2)
			eventually(t, 30*time.Second, "offsets committed to the high-water mark", func() bool {
				return committedAll(t, brokers, o.cfg.Group, topic)
			})
			if err := pl.shutdown(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got := pl.d.InFlight(); got != 0 {
				t.Errorf("in flight after drain = %d, want 0", got)
			}
			dup := c.duplicates()
			c.mu.Lock()
			defer c.mu.Unlock()
			// A nack ends the claim: what was read past the committed
			// offset (the nacked record whole, and the window after it) is
			// emitted again.
			if tc.nack == "" && dup != 0 {
				t.Errorf("%d duplicates, want 0", dup)
			}
			if tc.nack == "act-77" { // in the second record, act-51..act-100
				for i := 51; i <= 100; i++ {
					if id := fmt.Sprintf("act-%d", i); id != tc.nack && c.ids[id] < 2 {
						t.Errorf("%s emitted %d times, want its packed record redelivered whole", id, c.ids[id])
					}
				}
			}
			if tc.ordered && inversions != 0 {
				t.Errorf("%d per-key order inversions with distributor.ordered", inversions)
			}
			if noIndex != 0 {
				t.Errorf("%d outputs without provenance", noIndex)
			}
			// Every 7th record is plain: about 1 in 43 events.
			if withIndex < n*9/10 || withIndex == n+2 {
				t.Errorf("%d of %d outputs name their index in a packed record", withIndex, n+2)
			}
			indexed := 0
			for _, r := range c.dead {
				reason := header(r, "bend-dlq-reason")
				switch {
				case strings.Contains(reason, "bend-batch-count"):
					if header(r, pack.HeaderIndex) != "" {
						t.Errorf("malformed packed record's dead letter has an index")
					}
				case strings.HasPrefix(reason, "invalid event"):
					if got := header(r, pack.HeaderIndex); got != "1" {
						t.Errorf("invalid packed event's dead letter has index %q, want 1", got)
					}
					indexed++
				default:
					t.Errorf("dead letter %q: reason %q", r.Value, reason)
				}
			}
			if indexed != 1 && (tc.nack == "" || indexed < 1) {
				t.Errorf("%d invalid packed events dead-lettered, want 1", indexed)
			}
		})
	}
}

// produceRaw writes one record packing n events, framed as in v.
func produceRaw(t *testing.T, brokers []string, topic string, v []byte, n int) {
	t.Helper()
	sc := kafkatest.Config()
	sc.Producer.Return.Successes = true
	p, err := sarama.NewSyncProducer(brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder("z"), Value: sarama.ByteEncoder(v), Headers: pack.Headers(nil, n)}); err != nil {
		t.Fatal(err)
	}
}
