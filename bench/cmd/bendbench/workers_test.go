package main

import (
	"slices"
	"testing"
	"time"
)

func TestWorkersSpan(t *testing.T) {
	t0 := time.Unix(1000, 0)
	// samples returns a reading every wkPoll with the given counters.
	samples := func(results ...float64) []wkSample {
		ss := make([]wkSample, len(results))
		for i, r := range results {
			ss[i] = wkSample{at: t0.Add(time.Duration(i) * wkPoll), results: r}
		}
		return ss
	}
	for _, tc := range []struct {
		name       string
		ss         []wkSample
		wantTasks  float64
		wantSecs   float64
		wantPerSec []float64
	}{
		// The whole run between two readings a second apart used to
		// count 0 tasks: the span now starts at the reading before the
		// first result.
		{"under a second", samples(0, 4000, 9000, 12000, 12000, 15000, 20000), 20000, 0.6, []float64{0, 20000}},
		{"two seconds and a bit", samples(0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000, 11000, 12000, 13000, 14000, 15000, 16000, 17000, 18000, 19000, 20000, 21000, 22000),
			22000, 2.2, []float64{0, 10000, 20000, 22000}},
		{"one reading", samples(5), 0, 0, []float64{5}},
		{"none", nil, 0, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tasks, secs := wkSpan(tc.ss)
			if tasks != tc.wantTasks || secs < tc.wantSecs-1e-9 || secs > tc.wantSecs+1e-9 {
				t.Errorf("wkSpan = %g tasks in %g s, want %g in %g", tasks, secs, tc.wantTasks, tc.wantSecs)
			}
			if got := wkPerSecond(tc.ss); !slices.Equal(got, tc.wantPerSec) {
				t.Errorf("wkPerSecond = %v, want %v", got, tc.wantPerSec)
			}
		})
	}
}
