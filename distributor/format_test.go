package distributor

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/enrich"
	"github.com/bendstream/bend/internal/activity"
	"github.com/bendstream/bend/internal/kafkatest"
	"github.com/bendstream/bend/sink"
)

// TestRecordFormats checks how the distributor reads each kind of record:
// without headers in distributor.format, by its bend-format header, from
// its bend-fields header, passed on untouched with bend-kind, and
// dead-lettered with the reason when its format is unknown or it has no id.
func TestRecordFormats(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	topic := kafkatest.CreateTopic(t, brokers, 2)
	hdr := func(kv ...string) []sarama.RecordHeader {
		var h []sarama.RecordHeader
		for i := 0; i < len(kv); i += 2 {
			h = append(h, sarama.RecordHeader{Key: []byte(kv[i]), Value: []byte(kv[i+1])})
		}
		return h
	}
	recs := []struct {
		value   string
		headers []sarama.RecordHeader
	}{
		// distributor.format (twitter_v1).
		{`{"id_str":"9007199254740993001","text":"one two","user":{"id":1}}`, nil},
		{`{"did":"did:plc:a","time_us":1,"kind":"commit","commit":{"operation":"create","collection":"app.bsky.feed.post","rkey":"r1","record":{"text":"one two three four"}}}`,
			hdr(activity.HeaderFormat, activity.PresetJetstream)},
		// The mapped fields of the header, not the value's, are read.
		{`{"id_str":"7","text":"a"}`, hdr(activity.HeaderFormat, activity.PresetTwitterV1, activity.HeaderFields, `{"id":"7","text":"w1 w2 w3 w4 w5"}`)},
		{`{"delete":{"status":{"id_str":"8"}}}`, hdr(activity.HeaderFormat, activity.PresetTwitterV1, activity.HeaderKind, activity.KindDelete)},
		{`{"id_str":"9"}`, hdr(activity.HeaderFormat, "ingest.nowhere")},
		{`{"text":"no id"}`, nil},
	}
	sc := kafkatest.Config()
	sc.Producer.Return.Successes = true
	p, err := sarama.NewSyncProducer(brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(r.value), Headers: r.headers}); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()

	o := defaultOpts(t)
	o.cfg.Format = activity.PresetTwitterV1
	ens, err := enrich.Config{Workers: 2, QueueSize: 16, Enrichers: []enrich.Spec{{Name: "stats", Type: "stats", Timeout: time.Second, MaxAttempts: 1}}}.Build(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	o.enrichers = ens
	c := newCollector()
	var mu sync.Mutex
	var got []*sink.Record
	c.onAck = func(r *sink.Record) { mu.Lock(); got = append(got, r); mu.Unlock() }
	pl := startPipeline(t, brokers, topic, o, c)
	defer func() { pl.stop(); <-pl.done }()
	eventually(t, 20*time.Second, "every record handled", func() bool { return c.acked.Load() == int64(len(recs)) })

	mu.Lock()
	defer mu.Unlock()
	words := map[string]int{}
	var kinds, dead []string
	for _, r := range got {
		h := map[string]string{}
		for _, rh := range r.Headers {
			h[string(rh.Key)] = string(rh.Value)
		}
		switch {
		case r.DeadLetter:
			dead = append(dead, h["bend-dlq-reason"])
		case h[activity.HeaderKind] != "":
			kinds = append(kinds, h[activity.HeaderKind]+" "+string(r.Value))
		default:
			var ev struct {
				Enrichments struct {
					Stats struct {
						Value struct {
							Words int `json:"words"`
						} `json:"value"`
					} `json:"stats"`
				} `json:"enrichments"`
			}
			if err := json.Unmarshal(r.Value, &ev); err != nil {
				t.Fatal(err)
			}
			f, _ := activity.Preset(activity.PresetTwitterV1)
			id := "jetstream"
			if fl, err := f.Map(r.Value); err == nil {
				id = fl.ID
			}
			words[id] = ev.Enrichments.Stats.Value.Words
		}
	}
	if want := map[string]int{"9007199254740993001": 2, "jetstream": 4, "7": 5}; len(words) != len(want) ||
		words["9007199254740993001"] != 2 || words["jetstream"] != 4 || words["7"] != 5 {
		t.Errorf("words by id %v, want %v", words, want)
	}
	if len(kinds) != 1 || kinds[0] != `delete {"delete":{"status":{"id_str":"8"}}}` {
		t.Errorf("non-activity records %q, want the delete, untouched", kinds)
	}
	if len(dead) != 2 || !strings.Contains(strings.Join(dead, "|"), `unknown format "ingest.nowhere"`) ||
		!strings.Contains(strings.Join(dead, "|"), `event has no "id" (id_str or id)`) {
		t.Errorf("dead letters %q, want the unknown format and the missing id", dead)
	}
}
