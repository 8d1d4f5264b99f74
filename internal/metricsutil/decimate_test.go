package metricsutil

import (
	"testing"
	"time"

	metrics "github.com/rcrowley/go-metrics"
)

func TestDecimate(t *testing.T) {
	for _, tc := range []struct {
		name      string
		n, every  int
		wantKept  int
		wantFirst int64
	}{
		{"every 8th of 100", 100, 8, 13, 1}, // 1, 9, 17, ..., 97
		{"every 8th of 1", 1, 8, 1, 1},
		{"every 8th of 8", 8, 8, 1, 1},
		{"every 8th of 9", 9, 8, 2, 1},
		{"n=1 keeps all", 10, 1, 10, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Decimate(metrics.NewUniformSample(1000), tc.every)
			for v := 1; v <= tc.n; v++ {
				s.Update(int64(v))
			}
			if s.Count() != int64(tc.n) {
				t.Errorf("Count = %d, want %d (every observation)", s.Count(), tc.n)
			}
			if s.Size() != tc.wantKept {
				t.Errorf("Size = %d, want %d kept", s.Size(), tc.wantKept)
			}
			if s.Min() != tc.wantFirst {
				t.Errorf("Min = %d, want %d (the first observation is kept)", s.Min(), tc.wantFirst)
			}
			snap := s.Snapshot()
			if snap.Count() != int64(tc.n) || snap.Size() != tc.wantKept {
				t.Errorf("Snapshot: Count %d Size %d, want %d %d", snap.Count(), snap.Size(), tc.n, tc.wantKept)
			}
		})
	}
}

// TestTimerPercentiles: a decimated timer reports every observation in its
// count and the right percentiles from the kept ones.
func TestTimerPercentiles(t *testing.T) {
	r := metrics.NewRegistry()
	tm := GetOrRegisterTimer("x", r)
	if again := GetOrRegisterTimer("x", r); again != tm {
		t.Fatal("GetOrRegisterTimer registered a second timer under the same name")
	}
	for i := range 8000 {
		tm.Update(time.Duration(i%1000) * time.Millisecond)
	}
	snap := tm.Snapshot()
	if snap.Count() != 8000 {
		t.Errorf("Count = %d, want 8000", snap.Count())
	}
	p50 := time.Duration(snap.Percentile(0.5))
	if p50 < 400*time.Millisecond || p50 > 600*time.Millisecond {
		t.Errorf("p50 = %s, want about 500ms", p50)
	}
	h := GetOrRegisterHistogram("h", r)
	h.Update(5)
	if h.Snapshot().Count() != 1 || h.Snapshot().Max() != 5 {
		t.Errorf("histogram snapshot: count %d max %d, want 1 5", h.Snapshot().Count(), h.Snapshot().Max())
	}
}

// BenchmarkUpdate compares go-metrics' decaying sample with its decimated form.
func BenchmarkUpdate(b *testing.B) {
	for _, bc := range []struct {
		name string
		s    metrics.Sample
	}{
		{"expdecay", metrics.NewExpDecaySample(1028, 0.015)},
		{"decimated8", Decimate(metrics.NewExpDecaySample(1028, 0.015), DefaultEvery)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				bc.s.Update(int64(i))
			}
		})
	}
}
