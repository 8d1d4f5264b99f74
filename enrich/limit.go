package enrich

import (
	"container/list"
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/bendstream/bend/internal/activity"
	"github.com/bendstream/bend/internal/metricnames"
	metrics "github.com/rcrowley/go-metrics"
	"golang.org/x/sync/semaphore"
)

// limited wraps an enricher with its in-flight gauge and, when the spec sets
// a concurrency, the bound on attempts running at once.
type limited struct {
	e                 Enricher
	slots             slots // nil: unbounded
	inFlight, waiting metrics.Counter
}

// slots bounds concurrent attempts. acquire blocks until a slot is free or
// ctx ends (returning ctx.Err()); release returns the slot, telling whether
// the attempt failed.
type slots interface {
	acquire(ctx context.Context) error
	release(failed bool)
}

// limit wraps e according to s.Concurrency and s.Adaptive, registering its
// gauges in reg.
func limit(s Spec, e Enricher, reg metrics.Registry) Enricher {
	l := &limited{
		e:        e,
		inFlight: metrics.GetOrRegisterCounter(metricnames.Enricher(s.Name, metricnames.EnricherInFlight), reg),
		waiting:  metrics.GetOrRegisterCounter(metricnames.Enricher(s.Name, metricnames.EnricherWaiting), reg),
	}
	if s.Concurrency > 0 {
		g := metrics.GetOrRegisterGauge(metricnames.Enricher(s.Name, metricnames.EnricherLimit), reg)
		g.Update(int64(s.Concurrency))
		if s.Adaptive {
			l.slots = newAIMD(s.Concurrency, g)
		} else {
			l.slots = fixed{semaphore.NewWeighted(int64(s.Concurrency))}
		}
	}
	return l
}

// Enrich waits for a slot, then runs the wrapped enricher. The wait counts
// against ctx: an attempt that finds no slot before its timeout fails with
// ctx.Err().
func (l *limited) Enrich(ctx context.Context, a *activity.Fields) (res json.RawMessage, err error) {
	if l.slots != nil {
		l.waiting.Inc(1)
		werr := l.slots.acquire(ctx)
		l.waiting.Dec(1)
		if werr != nil {
			return nil, fmt.Errorf("waiting for a concurrency slot: %w", werr)
		}
		// Deferred, so that a panicking enricher (which the Pool recovers)
		// does not leak its slot.
		defer func() { l.slots.release(err != nil || ctx.Err() != nil) }()
	}
	l.inFlight.Inc(1)
	defer l.inFlight.Dec(1)
	return l.e.Enrich(ctx, a)
}

// fixed is a constant bound.
type fixed struct{ sem *semaphore.Weighted }

func (f fixed) acquire(ctx context.Context) error { return f.sem.Acquire(ctx, 1) }
func (f fixed) release(bool)                      { f.sem.Release(1) }

// aimd is a bound that adapts to the service behind the enricher: additive
// increase (one slot per bound's worth of successes), multiplicative
// decrease (halved on each failure), between 1 and max. Waiters are served
// in order.
type aimd struct {
	max   int
	gauge metrics.Gauge

	mu      sync.Mutex
	limit   float64
	used    int
	waiters list.List // of chan struct{}, closed when granted a slot
}

func newAIMD(maxSlots int, g metrics.Gauge) *aimd {
	return &aimd{max: maxSlots, limit: float64(maxSlots), gauge: g}
}

func (a *aimd) acquire(ctx context.Context) error {
	a.mu.Lock()
	if a.used < int(a.limit) && a.waiters.Len() == 0 {
		a.used++
		a.mu.Unlock()
		return nil
	}
	ready := make(chan struct{})
	el := a.waiters.PushBack(ready)
	a.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		a.mu.Lock()
		defer a.mu.Unlock()
		select {
		case <-ready: // granted while ctx ended: pass the slot on
			a.used--
			a.wakeLocked()
		default:
			a.waiters.Remove(el)
		}
		return ctx.Err()
	}
}

func (a *aimd) release(failed bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.used--
	if failed {
		a.limit = max(1, a.limit/2)
	} else {
		a.limit = min(float64(a.max), a.limit+1/a.limit)
	}
	a.gauge.Update(int64(a.limit))
	a.wakeLocked()
}

// current returns the bound now in force.
func (a *aimd) current() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return int(a.limit)
}

// wakeLocked grants free slots to the oldest waiters.
func (a *aimd) wakeLocked() {
	for a.used < int(a.limit) && a.waiters.Len() > 0 {
		el := a.waiters.Front()
		a.waiters.Remove(el)
		a.used++
		close(el.Value.(chan struct{}))
	}
}
