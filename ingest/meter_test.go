package ingest

import (
	"testing"
	"time"

	metrics "github.com/rcrowley/go-metrics"
)

func TestCheapMeter(t *testing.T) {
	reg := metrics.NewRegistry()
	ms := &meters{reg: reg}
	m := ms.meter("ingest.published")
	if again := ms.meter("ingest.published"); again != m {
		t.Fatal("a second meter call registered another meter")
	}
	m.Mark(3)
	m.Mark(4)
	if got := metrics.GetOrRegisterMeter("ingest.published", reg).Count(); got != 7 {
		t.Fatalf("Count through the registry = %d, want 7", got)
	}
	if snap := m.Snapshot(); snap.Count() != 7 {
		t.Fatalf("Snapshot().Count() = %d, want 7", snap.Count())
	}
	m.Mark(5)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { ms.foldEvery(time.Millisecond, stop); close(done) }()
	eventually(t, 5*time.Second, "the fold", func() bool { return m.(*cheapMeter).pending.Load() == 0 })
	close(stop)
	<-done
	if got := m.Count(); got != 12 {
		t.Errorf("Count = %d, want 12", got)
	}
	if m.RateMean() <= 0 {
		t.Errorf("RateMean = %v, want positive", m.RateMean())
	}
	m.Stop()
}
