package enrich

import (
	"testing"
	"time"

	metrics "github.com/rcrowley/go-metrics"
)

// TestPoolTimesOnlyWaitingEnrichers: the enrichers Build returns (wrapped
// with their in-flight gauges) run without a per-attempt deadline when they
// are instant and unbounded, and with one otherwise.
func TestPoolTimesOnlyWaitingEnrichers(t *testing.T) {
	for _, tc := range []struct {
		name      string
		spec      Spec
		wantTimed bool
	}{
		{"stats", Spec{Name: "stats"}, false},
		{"noop", Spec{Name: "noop"}, false},
		{"stats with a concurrency bound waits for a slot", Spec{Name: "stats", Concurrency: 2}, true},
		{"lookup", Spec{Name: "lookup", Lookup: LookupOptions{URL: "http://127.0.0.1:1/{id}"}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Workers: 1, QueueSize: 1, Enrichers: []Spec{tc.spec}}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			ens, err := cfg.Build(nil, nil)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			p := NewPool(1, ens, quietLog(), metrics.NewRegistry())
			if got := p.timed[0]; got != tc.wantTimed {
				t.Errorf("timed = %v, want %v (timeout %s)", got, tc.wantTimed, time.Second)
			}
		})
	}
}
