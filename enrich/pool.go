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
// worker that takes it calls Report exactly once per attempt.
type Task struct {
	// Enricher indexes the enrichers the Queue and Pool were built with.
	Enricher int
	// Activity is read-only for workers.
	Activity *activity.Fields
	// Attempt counts from 1.
	Attempt int
	// Deadline, if not zero, is the last moment the attempt's result is of
	// use (an optional enrichment: a little before its activity is
	// emitted). A worker does not start an attempt it expects to finish
	// after it (the enricher's recent attempt times; ErrDeadline, counted
	// in enrich.NAME.deadline), and the attempt's context ends at it
	// (ErrCut). Zero: no deadline (a required enrichment).
	Deadline time.Time
	// Report receives the attempt's result. It must not block for long,
	// and may queue the next attempt.
	Report func(t *Task, res json.RawMessage, err error)
	// Stale, if set, reports whether the task's activity has already left
	// (emitted, abandoned, or its claim fenced). Workers, local and remote,
	// drop a stale task before running it, reporting ErrStale, and count
	// it in enrich.NAME.stale. It must be cheap, must not block and must
	// not call the Queue.
	Stale func() bool
}

// ErrTimeout is reported for an attempt that ran past its enricher's timeout.
var ErrTimeout = errors.New("enrich: attempt timed out")

// ErrStale is reported, instead of running the attempt, for a task whose
// activity had already left (Task.Stale).
var ErrStale = errors.New("enrich: activity already left; attempt not run")

// ErrDeadline is reported, instead of running the attempt, for a task whose
// Deadline had passed, or was too near for an attempt to finish.
var ErrDeadline = errors.New("enrich: activity's deadline too near; attempt not run")

// ErrCut is reported for an attempt cut short at its task's Deadline.
var ErrCut = errors.New("enrich: attempt cut at its activity's deadline")

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
	stale     []metrics.Counter
	deadline  []metrics.Counter
	cut       []metrics.Counter
	// expect estimates each enricher's attempt time, for Task.Deadline.
	expect []estimate
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
		p.stale = append(p.stale, metrics.GetOrRegisterCounter(metricnames.Enricher(e.Name, metricnames.EnricherStale), reg))
		p.deadline = append(p.deadline, metrics.GetOrRegisterCounter(metricnames.Enricher(e.Name, metricnames.EnricherDeadline), reg))
		p.cut = append(p.cut, metrics.GetOrRegisterCounter(metricnames.Enricher(e.Name, metricnames.EnricherCut), reg))
		p.timed = append(p.timed, !Instant(e.Enricher))
	}
	p.expect = make([]estimate, len(enrichers))
	return p
}

// Instant reports whether e never waits and finishes in microseconds (the
// built-in stats and noop), bare or as Build wraps it, without a concurrency
// bound (a bound's wait needs a deadline). Such an enricher runs without a
// per-attempt timer, and the distributor may run it inline with Call.
func Instant(e Enricher) bool {
	if l, ok := e.(*limited); ok {
		if l.slots != nil {
			return false
		}
		e = l.e
	}
	_, instant := e.(instantFunc)
	return instant
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

// Run runs the workers, each taking tasks from q (see Queue) and running
// them, and returns when q is closed and drained, or when ctx ends
// (returning nil: a stop is not an error). It follows SetWorkers while it
// runs. With no workers it never takes from q and returns when ctx ends.
// Run must not be called twice at once.
func (p *Pool) Run(ctx context.Context, q *Queue) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	quit := make(chan struct{})   // each receive stops one idle worker
	closed := make(chan struct{}) // closed when a worker finds q closed
	var closeOnce sync.Once
	worker := func() {
		defer wg.Done()
		defer p.running.Add(-1)
		for {
			t, err := q.take(ctx, quit, true)
			if err != nil {
				if errors.Is(err, ErrClosed) {
					closeOnce.Do(func() { close(closed) })
				}
				return
			}
			p.Do(ctx, t)
			q.done(t)
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

// Do runs one attempt of t and reports its result through t.Report, unless
// t is stale (ErrStale, counted in enrich.NAME.stale) or its Deadline is
// too near for an attempt of its enricher to finish, judged by the
// enricher's recent attempts (ErrDeadline, counted in
// enrich.NAME.deadline): then it reports without running it. The attempt's
// context ends at the enricher's timeout or t's Deadline, whichever comes
// first; one cut at the Deadline reports ErrCut.
func (p *Pool) Do(ctx context.Context, t *Task) {
	if t.Stale != nil && t.Stale() {
		p.stale[t.Enricher].Inc(1)
		t.Report(t, nil, ErrStale)
		return
	}
	e := p.enrichers[t.Enricher]
	est := &p.expect[t.Enricher]
	start := time.Now()
	if !t.Deadline.IsZero() && start.Add(est.expect(e.Timeout)).After(t.Deadline) {
		p.deadline[t.Enricher].Inc(1)
		t.Report(t, nil, ErrDeadline)
		return
	}
	p.busy.Inc(1)
	actx, cancel := ctx, context.CancelFunc(func() {})
	cut := false // the attempt's context ends at t.Deadline
	if p.timed[t.Enricher] {
		end := start.Add(e.Timeout)
		if !t.Deadline.IsZero() && t.Deadline.Before(end) {
			end, cut = t.Deadline, true
		}
		actx, cancel = context.WithDeadline(ctx, end)
	}
	res, err := safeEnrich(actx, e.Enricher, t.Activity)
	if err == nil && actx.Err() != nil {
		err = actx.Err()
	}
	cancel()
	took := time.Since(start)
	p.busy.Dec(1)
	switch {
	case err == nil:
		p.latency[t.Enricher].Update(took)
		est.add(took)
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil && cut:
		// Cut short: the attempt would have taken at least this long.
		p.cut[t.Enricher].Inc(1)
		est.atLeast(took)
		err = fmt.Errorf("%w after %s", ErrCut, took.Round(time.Millisecond))
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		p.timeouts[t.Enricher].Inc(1)
		p.errs[t.Enricher].Inc(1)
		est.add(e.Timeout)
		err = fmt.Errorf("%w after %s", ErrTimeout, e.Timeout)
	default:
		p.errs[t.Enricher].Inc(1)
		if ctx.Err() == nil {
			est.add(took)
		}
	}
	t.Report(t, res, err)
}

// estimate tracks how long an enricher's attempts take, as TCP estimates a
// round trip (RFC 6298): a smoothed mean and mean deviation. Its methods
// are safe for concurrent use; the lock is a leaf.
type estimate struct {
	mu        sync.Mutex
	mean, dev time.Duration
	n         int
}

// add takes the time of one finished attempt into the estimate.
func (e *estimate) add(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == 0 {
		e.mean, e.dev = d, d/4
	} else {
		diff := e.mean - d
		if diff < 0 {
			diff = -diff
		}
		e.dev = (3*e.dev + diff) / 4
		e.mean = (7*e.mean + d) / 8
	}
	e.n++
}

// atLeast takes a lower bound of one attempt's time (one cut short) into
// the estimate when it exceeds the mean, so that a service grown slower
// than the estimate is learnt even while every attempt is cut.
func (e *estimate) atLeast(d time.Duration) {
	e.mu.Lock()
	low := e.n > 0 && d <= e.mean
	e.mu.Unlock()
	if !low {
		e.add(d)
	}
}

// expect returns the time an attempt is expected to need: the mean plus
// twice the deviation, at most limit (the enricher's timeout, beyond which
// no attempt runs). Before the first attempt it is 0: the first attempts
// start whenever they have time left, and their context ends at the
// deadline anyway.
func (e *estimate) expect(limit time.Duration) time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return min(e.mean+2*e.dev, limit)
}

// Call runs one attempt of e on a, turning a panic into an error, for
// callers that run instant enrichers inline instead of queueing a Task.
func Call(ctx context.Context, e Enricher, a *activity.Fields) (json.RawMessage, error) {
	return safeEnrich(ctx, e, a)
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
