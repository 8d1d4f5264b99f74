package ingest

import (
	"sync"
	"sync/atomic"
	"time"

	metrics "github.com/rcrowley/go-metrics"
)

// cheapMeter is a metrics.Meter whose Mark is one atomic add. go-metrics'
// StandardMeter updates three moving averages and a snapshot on every Mark
// (about 180ns), a tenth of what a record costs the producer at full speed,
// and ingest marks up to three meters per event. Marks accumulate here and
// are folded into a StandardMeter before every read, and by fold, which
// Ingest.Run calls every second so that the moving rates stay current.
// Safe for concurrent use.
type cheapMeter struct {
	pending atomic.Int64
	inner   metrics.Meter
}

// Mark implements metrics.Meter.
func (m *cheapMeter) Mark(n int64) { m.pending.Add(n) }

// fold moves the pending marks into the moving averages.
func (m *cheapMeter) fold() {
	if n := m.pending.Swap(0); n != 0 {
		m.inner.Mark(n)
	}
}

// Count implements metrics.Meter.
func (m *cheapMeter) Count() int64 { m.fold(); return m.inner.Count() }

// Rate1 implements metrics.Meter.
func (m *cheapMeter) Rate1() float64 { m.fold(); return m.inner.Rate1() }

// Rate5 implements metrics.Meter.
func (m *cheapMeter) Rate5() float64 { m.fold(); return m.inner.Rate5() }

// Rate15 implements metrics.Meter.
func (m *cheapMeter) Rate15() float64 { m.fold(); return m.inner.Rate15() }

// RateMean implements metrics.Meter.
func (m *cheapMeter) RateMean() float64 { m.fold(); return m.inner.RateMean() }

// Snapshot implements metrics.Meter.
func (m *cheapMeter) Snapshot() metrics.Meter { m.fold(); return m.inner.Snapshot() }

// Stop implements metrics.Meter.
func (m *cheapMeter) Stop() { m.inner.Stop() }

// meters creates and folds an Ingest's cheap meters.
type meters struct {
	reg metrics.Registry
	mu  sync.Mutex
	all []*cheapMeter
}

// meter returns the meter registered as name, registering a cheapMeter if
// there is none.
func (ms *meters) meter(name string) metrics.Meter {
	m := ms.reg.GetOrRegister(name, func() metrics.Meter { return &cheapMeter{inner: metrics.NewMeter()} }).(metrics.Meter)
	if c, ok := m.(*cheapMeter); ok {
		ms.mu.Lock()
		ms.all = append(ms.all, c)
		ms.mu.Unlock()
	}
	return m
}

// foldEvery folds every meter each interval until stop closes, and once
// more then.
func (ms *meters) foldEvery(interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-stop:
		}
		ms.mu.Lock()
		for _, m := range ms.all {
			m.fold()
		}
		ms.mu.Unlock()
		select {
		case <-stop:
			return
		default:
		}
	}
}
