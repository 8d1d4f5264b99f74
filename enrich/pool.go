package enrich

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bendstream/bend/internal/activity"
	"github.com/bendstream/bend/internal/metricnames"
	"github.com/bendstream/bend/internal/metricsutil"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
)

// Task is one enrichment of one activity. The distributor creates it and the
// worker that pulls it calls Report exactly once per attempt.
type Task struct {
	// Enricher indexes the enrichers the Pool was built with.
	Enricher int
	// Activity is read-only for workers.
	Activity *activity.Fields
	// Attempt counts from 1.
	Attempt int
	// Report receives the attempt's result. It must not block for long.
	Report func(t *Task, res json.RawMessage, err error)
}

// Queue is the bounded task queue that every worker, local or remote, pulls
// from. A send blocks while it is full.
type Queue chan *Task

// NewQueue returns a queue holding at most size tasks.
func NewQueue(size int) Queue { return make(Queue, size) }

// Push adds t, blocking while the queue is full. It returns ctx.Err() if ctx
// ends first.
func (q Queue) Push(ctx context.Context, t *Task) error {
	select {
	case q <- t:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ErrTimeout is reported for an attempt that ran past its enricher's timeout.
var ErrTimeout = errors.New("enrich: attempt timed out")

// ErrLeaseExpired is reported for an attempt leased to a remote worker that
// neither answered nor heartbeated in time (it died, stalled or lost the
// network).
var ErrLeaseExpired = errors.New("enrich: remote worker's lease expired")

// Pool runs in-process workers that pull tasks from a Queue. The number of
// workers can be changed while it runs (SetWorkers).
type Pool struct {
	enrichers []Resolved
	log       logrus.FieldLogger
	busy      metrics.Counter
	latency   []metrics.Timer
	errs      []metrics.Counter
	timeouts  []metrics.Counter
	// timed is false for the instant enrichers (noop, stats): they run
	// without a per-attempt deadline, whose timer would cost more than they do.
	timed []bool

	workers atomic.Int64  // wanted (enrich.workers)
	running atomic.Int64  // started by Run and not yet stopped
	resized chan struct{} // wakes Run after SetWorkers; capacity 1
}

// NewPool returns a pool of workers running enrichers. reg receives its
// metrics, including the gauge enrich.workers: the workers running now.
func NewPool(workers int, enrichers []Resolved, log logrus.FieldLogger, reg metrics.Registry) *Pool {
	p := &Pool{enrichers: enrichers, log: log, resized: make(chan struct{}, 1),
		busy: metrics.GetOrRegisterCounter(metricnames.EnrichBusy, reg)}
	p.workers.Store(int64(max(workers, 0)))
	reg.GetOrRegister(metricnames.EnrichUtilisation, metrics.NewFunctionalGauge(func() int64 {
		n := p.running.Load()
		if n == 0 {
			return 0
		}
		return p.busy.Count() * 100 / n
	}))
	reg.GetOrRegister(metricnames.EnrichWorkers, metrics.NewFunctionalGauge(p.running.Load))
	for _, e := range enrichers {
		p.latency = append(p.latency, metricsutil.GetOrRegisterTimer(metricnames.Enricher(e.Name, metricnames.EnricherLatency), reg))
		p.errs = append(p.errs, metrics.GetOrRegisterCounter(metricnames.Enricher(e.Name, metricnames.EnricherErrors), reg))
		p.timeouts = append(p.timeouts, metrics.GetOrRegisterCounter(metricnames.Enricher(e.Name, metricnames.EnricherTimeouts), reg))
		_, instant := e.Enricher.(instantFunc)
		p.timed = append(p.timed, !instant)
	}
	return p
}

// Busy returns how many workers are running an enricher right now.
func (p *Pool) Busy() int64 { return p.busy.Count() }

// Workers returns the number of in-process workers wanted: the count given
// to NewPool or the last SetWorkers. Run converges on it.
func (p *Pool) Workers() int { return int(p.workers.Load()) }

// SetWorkers changes the number of in-process workers to n (negative counts
// as 0), for config hot reload. It does not block: a running Run starts the
// extra workers at once, and stops surplus ones as they become idle, so a
// task being worked on is always finished and none is dropped. Safe for
// concurrent use, before or during Run.
func (p *Pool) SetWorkers(n int) {
	p.workers.Store(int64(max(n, 0)))
	select {
	case p.resized <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// Run runs the workers and returns when q is closed and drained, or when
// ctx ends (returning nil: a stop is not an error). It follows SetWorkers
// while it runs. With no workers it never reads q and returns when ctx ends.
// Run must not be called twice at once.
func (p *Pool) Run(ctx context.Context, q Queue) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	quit := make(chan struct{})   // each receive stops one idle worker
	closed := make(chan struct{}) // closed when a worker finds q closed
	var closeOnce sync.Once
	worker := func() {
		defer wg.Done()
		defer p.running.Add(-1)
		for {
			select {
			case t, ok := <-q:
				if !ok {
					closeOnce.Do(func() { close(closed) })
					return
				}
				p.Do(ctx, t)
			case <-quit:
				return
			case <-ctx.Done():
				return
			}
		}
	}
	n := 0 // workers started and not told to quit
	for {
		want := int(p.workers.Load())
		for ; n < want; n++ {
			wg.Add(1)
			p.running.Add(1)
			go worker()
		}
		if n > want {
			// Stop one idle worker at a time, re-reading the wanted count
			// in between: it may have changed again.
			select {
			case quit <- struct{}{}:
				n--
			case <-p.resized:
			case <-closed:
				return nil
			case <-ctx.Done():
				return nil
			}
			continue
		}
		select {
		case <-p.resized:
		case <-closed:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// Do runs one attempt of t and reports its result through t.Report.
func (p *Pool) Do(ctx context.Context, t *Task) {
	e := p.enrichers[t.Enricher]
	p.busy.Inc(1)
	start := time.Now()
	actx, cancel := ctx, context.CancelFunc(func() {})
	if p.timed[t.Enricher] {
		actx, cancel = context.WithTimeout(ctx, e.Timeout)
	}
	res, err := safeEnrich(actx, e.Enricher, t.Activity)
	if err == nil && actx.Err() != nil {
		err = actx.Err()
	}
	cancel()
	p.busy.Dec(1)
	switch {
	case err == nil:
		p.latency[t.Enricher].UpdateSince(start)
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		p.timeouts[t.Enricher].Inc(1)
		p.errs[t.Enricher].Inc(1)
		err = fmt.Errorf("%w after %s", ErrTimeout, e.Timeout)
	default:
		p.errs[t.Enricher].Inc(1)
	}
	t.Report(t, res, err)
}

// safeEnrich turns an enricher's panic into an error, so one bad activity
// cannot crash the daemon.
func safeEnrich(ctx context.Context, e Enricher, a *activity.Fields) (res json.RawMessage, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, fmt.Errorf("enricher panicked: %v", r)
		}
	}()
	return e.Enrich(ctx, a)
}
