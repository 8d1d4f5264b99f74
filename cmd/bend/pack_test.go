package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/kafkatest"
)

// TestBatchingEndToEnd runs the daemon with ingest.batching at 50 events
// per record in each delivery mode and counts every id of the synthetic
// source at the output (unpacking sink.kafka.batching's records): each
// arrives, exactly once in exactly-once mode (read_committed), and the
// commits cover the input topic, which holds fewer records than events.
func TestBatchingEndToEnd(t *testing.T) {
	for _, tc := range []struct {
		name             string
		ordered, exactly bool
		packOut          bool
	}{
		{"at-least-once, packed out", false, false, true},
		{"ordered", true, false, false},
		{"exactly-once", false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			brokers := kafkatest.Brokers(t)
			const n = 5000
			cfg := testConfig(t, brokers, n)
			cfg.Ingest.Batching.MaxEvents = 50
			cfg.Distributor.Ordered = tc.ordered
			if tc.packOut {
				cfg.Sink.Kafka.Batching.MaxEvents = 50
			}
			if tc.exactly {
				cfg.Sink.Kafka.ExactlyOnce = true
				cfg.Sink.Kafka.TransactionalID = kafkatest.Name(t, "txn")
				cfg.Sink.File.Path = ""
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- run(ctx, cfg, testLogger(t), io.Discard) }()
			var sum, hwm int64
			eventually(t, 90*time.Second, "every id in the output topic", func() bool {
				return len(readEvents(t, brokers, cfg.Kafka.Topics.Output, tc.exactly, n)) >= n
			})
			eventually(t, 30*time.Second, "offsets committed up to the high-water mark", func() bool {
				sum, hwm = committed(t, brokers, cfg.Distributor.Group, cfg.Kafka.Topics.Input)
				return hwm > 0 && sum == hwm
			})
			cancel()
			waitRun(t, done)
			if hwm >= n {
				t.Errorf("input topic holds %d records for %d events: nothing was packed", hwm, n)
			}
			out := readEvents(t, brokers, cfg.Kafka.Topics.Output, tc.exactly, n)
			wantAllIDs(t, "output topic", out, n)
			if tc.exactly {
				for id, c := range out {
					if c != 1 {
						t.Errorf("%s written %d times in exactly-once mode", id, c)
					}
				}
			}
			t.Logf("%d events in %d input records", n, hwm)
		})
	}
}

// readEvents counts the ids of topic's events, unpacking packed records
// (an NDJSON value). committed reads want records with read_committed (an
// unpacked output); otherwise it reads up to the high-water marks.
func readEvents(t *testing.T, brokers []string, topic string, committed bool, want int) map[string]int {
	t.Helper()
	var vals [][]byte
	if committed {
		vals = kafkatest.ReadCommitted(t, brokers, topic, want, 60*time.Second)
	} else {
		vals = readToEnd(t, brokers, topic)
	}
	ids := map[string]int{}
	for _, v := range vals {
		for _, line := range bytes.Split(bytes.TrimSuffix(v, []byte("\n")), []byte("\n")) {
			var ev struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(line, &ev); err != nil {
				t.Fatalf("event %q: %v", line, err)
			}
			ids[ev.ID]++
		}
	}
	return ids
}

// readToEnd returns the values of every record of topic up to the
// high-water marks (a topic written without transactions).
func readToEnd(t *testing.T, brokers []string, topic string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, m := range kafkatest.ReadToEnd(t, brokers, topic) {
		out = append(out, m.Value)
	}
	return out
}
