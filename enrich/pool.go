package enrich

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/bendstream/bend/internal/activity"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"
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

// Pool runs in-process workers that pull tasks from a Queue.
type Pool struct {
	workers   int
	enrichers []Resolved
	log       logrus.FieldLogger
	busy      metrics.Counter
	latency   []metrics.Timer
	errs      []metrics.Counter
	timeouts  []metrics.Counter
}

// NewPool returns a pool of workers running enrichers. reg receives its metrics.
func NewPool(workers int, enrichers []Resolved, log logrus.FieldLogger, reg metrics.Registry) *Pool {
	p := &Pool{workers: workers, enrichers: enrichers, log: log,
		busy: metrics.GetOrRegisterCounter("enrich.busy", reg)}
	reg.GetOrRegister("enrich.utilisation", metrics.NewFunctionalGauge(func() int64 {
		if p.workers == 0 {
			return 0
		}
		return p.busy.Count() * 100 / int64(p.workers)
	}))
	for _, e := range enrichers {
		p.latency = append(p.latency, metrics.GetOrRegisterTimer("enrich."+e.Name+".latency", reg))
		p.errs = append(p.errs, metrics.GetOrRegisterCounter("enrich."+e.Name+".errors", reg))
		p.timeouts = append(p.timeouts, metrics.GetOrRegisterCounter("enrich."+e.Name+".timeouts", reg))
	}
	return p
}

// Busy returns how many workers are running an enricher right now.
func (p *Pool) Busy() int64 { return p.busy.Count() }

// Workers returns the number of in-process workers.
func (p *Pool) Workers() int { return p.workers }

// Run starts the workers and returns when q is closed and drained, or when
// ctx ends (returning nil: a stop is not an error).
func (p *Pool) Run(ctx context.Context, q Queue) error {
	var g errgroup.Group
	for range p.workers {
		g.Go(func() error {
			for {
				select {
				case t, ok := <-q:
					if !ok {
						return nil
					}
					p.Do(ctx, t)
				case <-ctx.Done():
					return nil
				}
			}
		})
	}
	return g.Wait()
}

// Do runs one attempt of t and reports its result through t.Report.
func (p *Pool) Do(ctx context.Context, t *Task) {
	e := p.enrichers[t.Enricher]
	p.busy.Inc(1)
	start := time.Now()
	actx, cancel := context.WithTimeout(ctx, e.Timeout)
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
