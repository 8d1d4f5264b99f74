package admin

import (
	"testing"

	metrics "github.com/rcrowley/go-metrics"
)

// TestTotalsCountIngestDeadLetters checks that the dead-letter total counts
// ingest's dead letters as well as the distributor's (through the sink).
func TestTotalsCountIngestDeadLetters(t *testing.T) {
	for _, tc := range []struct {
		name         string
		sink, ingest int64
	}{
		{"ingest only", 0, 100011},
		{"sink only", 9, 0},
		{"both", 9, 11},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := metrics.NewRegistry()
			metrics.GetOrRegisterMeter("sink.dead_letters", reg).Mark(tc.sink)
			metrics.GetOrRegisterCounter("ingest.dead_letters", reg).Inc(tc.ingest)
			got := fromRegistry(reg, false).Totals
			if got.DeadLetters != tc.sink+tc.ingest || got.IngestDead != tc.ingest {
				t.Errorf("dead letters %d (at ingest %d), want %d (at ingest %d)", got.DeadLetters, got.IngestDead, tc.sink+tc.ingest, tc.ingest)
			}
		})
	}
}
