package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/kafkatest"
	"github.com/bendstream/bend/internal/metricnames"
	"github.com/bendstream/bend/internal/pack"
)

// TestBatching publishes events of 20 keys and reads the input topic
// back, unpacking packed records: every event is there exactly once, each
// key's events in publish order, every done called once (after Kafka has
// the record: it is read back after), and with batching on most events
// travel packed, at most max_events to a record.
func TestBatching(t *testing.T) {
	for _, tc := range []struct {
		name       string
		maxEvents  int
		wantPacked bool
	}{
		{"off", 0, false},
		{"50 per record", 50, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Batching.MaxEvents = tc.maxEvents
			h := start(t, cfg, kafkatest.Brokers(t))
			const n, keys = 6000, 20
			var done atomic.Int64
			var twice atomic.Int64
			ctx := context.Background()
			for i := range n {
				var once atomic.Bool
				v := fmt.Sprintf(`{"id":"act-%d","key":"k%d","kseq":%d}`, i, i%keys, i/keys)
				if err := h.in.Publish(ctx, []byte(fmt.Sprintf("k%d", i%keys)), []byte(v), func(err error) {
					if err != nil {
						t.Errorf("done(%v)", err)
					}
					if once.Swap(true) {
						twice.Add(1)
					}
					done.Add(1)
				}); err != nil {
					t.Fatal(err)
				}
			}
			eventually(t, 60*time.Second, "every event acknowledged", func() bool { return done.Load() == n })
			if twice.Load() != 0 {
				t.Fatalf("%d done callbacks called twice", twice.Load())
			}
			ids := map[string]int{}
			last := map[string]int{}
			packed, events := 0, 0
			for _, m := range readTopic(t, h.brokers, h.topic) {
				vs := [][]byte{m.Value}
				if c, ok, err := pack.Framed(m.Headers); ok {
					if err != nil {
						t.Fatal(err)
					}
					if c > tc.maxEvents {
						t.Fatalf("record packs %d events, over %d", c, tc.maxEvents)
					}
					if vs, err = pack.Split(nil, m.Value, c); err != nil {
						t.Fatal(err)
					}
					packed++
					events += c
				}
				for _, v := range vs {
					var ev struct {
						ID   string `json:"id"`
						Key  string `json:"key"`
						KSeq int    `json:"kseq"`
					}
					if err := json.Unmarshal(v, &ev); err != nil {
						t.Fatalf("event %q: %v", v, err)
					}
					ids[ev.ID]++
					if prev, ok := last[ev.Key]; ok && ev.KSeq <= prev {
						t.Errorf("key %s: event %d after %d", ev.Key, ev.KSeq, prev)
					}
					last[ev.Key] = ev.KSeq
				}
			}
			wantIDs(t, "input topic", ids, 0, n, true)
			if tc.wantPacked && packed == 0 {
				t.Errorf("no packed records")
			}
			if !tc.wantPacked && packed != 0 {
				t.Errorf("%d packed records with batching off", packed)
			}
			if got := h.counter(metricnames.IngestPackedEvents); tc.wantPacked && got != int64(events) {
				t.Errorf("%s = %d, want %d", metricnames.IngestPackedEvents, got, events)
			}
			if err := h.stop(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
			t.Logf("%d events, %d in %d packed records", n, events, packed)
		})
	}
}
