package enrich

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/bendstream/bend/internal/metricnames"
	metrics "github.com/rcrowley/go-metrics"
)

// ErrClosed is returned by Push, and reported to an offered task, once the
// Queue is closed.
var ErrClosed = errors.New("enrich: queue closed")

// ErrOverloaded is reported, instead of running the attempt, for an
// optional task dropped because its enricher's lane was full (Queue.Offer).
var ErrOverloaded = errors.New("enrich: enricher's queue full; attempt not run")

// errQuit ends an idle Pool worker told to stop (Pool.SetWorkers).
var errQuit = errors.New("enrich: worker told to stop")

// Queue holds the enrichment tasks waiting for a worker: one bounded lane
// per enricher, and a scheduler that gives each worker that becomes free
// (a Pool's, or a lease of a remote worker through a Server) the next task
// by a fair, work-conserving rule: the non-empty lane whose enricher has
// the fewest tasks taken and not yet finished (running in a local worker or
// leased to a remote one) goes first, ties in round-robin order. So a slow
// enricher holds at most its fair share of the workers while the others
// have work, and all of them when the others have none; its tasks never
// fill the lanes of the others.
//
// A required enricher's lane is first in, first out, and Push blocks while
// it is full: that holds the activity, and so intake (backpressure). An
// optional enricher's lane is newest first, and Offer never blocks: when
// the lane is full its oldest task is dropped unrun (ErrOverloaded). The
// newest task has the most time left before its activity's deadline; the
// oldest is the likeliest to be stale or too late already.
//
// The scheduler reads only a task's Enricher, Deadline, Stale and Report,
// so a task may stand for more than one activity.
//
// Methods are safe for concurrent use. Metrics (per enricher NAME, beside
// the totals enrich.queue.depth and enrich.queue.cap):
//
//	enrich.NAME.lane_depth  gauge of NAME's tasks waiting in its lane
//	enrich.NAME.lane_cap    gauge of its lane's capacity
//	enrich.NAME.queued       gauge of NAME's tasks waiting, taken and not finished,
//	                         or blocked in Push (for a required enricher: activities it holds)
//	enrich.NAME.overloaded   counter of optional tasks dropped unrun: their lane was full
//	enrich.NAME.deadline     counter of tasks dropped unrun: their deadline had passed
//	                         (or, in a worker, was too near for an attempt to finish)
//	enrich.NAME.stale        counter of tasks dropped unrun: their activity had left
type Queue struct {
	mu      sync.Mutex
	lanes   []lane
	rr      int             // the lane that wins the next tie
	waiters []chan struct{} // idle takers, woken one per queued task; capacity 1
	closed  bool
	depth   int // tasks in all lanes
	capSum  int
}

// lane is one enricher's tasks: a ring of cap(buf) tasks.
type lane struct {
	buf     []*Task
	head, n int
	newest  bool          // take the newest first (optional enrichers)
	busy    int           // taken and not yet finished
	pushers int           // Push calls waiting for room
	room    chan struct{} // closed when room appears while pushers wait

	stale, deadline, overloaded metrics.Counter
}

func (l *lane) full() bool { return l.n == len(l.buf) }

func (l *lane) pushBack(t *Task) {
	l.buf[(l.head+l.n)%len(l.buf)] = t
	l.n++
}

func (l *lane) popFront() *Task {
	t := l.buf[l.head]
	l.buf[l.head] = nil
	l.head = (l.head + 1) % len(l.buf)
	l.n--
	return t
}

func (l *lane) popBack() *Task {
	i := (l.head + l.n - 1) % len(l.buf)
	t := l.buf[i]
	l.buf[i] = nil
	l.n--
	return t
}

// NewQueue returns a queue with one lane per enricher, whose tasks' Enricher
// fields index enrichers. A lane holds the enricher's queue_size tasks if
// set; the others share size equally between the enrichers that queue every
// task (all but the optional instant ones, see Resolved.Inline, whose lanes
// carry only retries and get the same share), at least one each. reg
// receives the metrics listed above; nil means discard.
func NewQueue(size int, enrichers []Resolved, reg metrics.Registry) *Queue {
	if reg == nil {
		reg = metrics.NewRegistry()
	}
	shared := 0
	for _, e := range enrichers {
		if e.QueueSize == 0 && !e.Inline() {
			shared++
		}
	}
	share := max(size/max(shared, 1), 1)
	q := &Queue{lanes: make([]lane, len(enrichers))}
	for i, e := range enrichers {
		n := share
		if e.QueueSize > 0 {
			n = e.QueueSize
		}
		l := &q.lanes[i]
		l.buf = make([]*Task, n)
		l.newest = !e.Required
		q.capSum += n
		l.stale = metrics.GetOrRegisterCounter(metricnames.Enricher(e.Name, metricnames.EnricherStale), reg)
		l.deadline = metrics.GetOrRegisterCounter(metricnames.Enricher(e.Name, metricnames.EnricherDeadline), reg)
		l.overloaded = metrics.GetOrRegisterCounter(metricnames.Enricher(e.Name, metricnames.EnricherOverloaded), reg)
		reg.GetOrRegister(metricnames.Enricher(e.Name, metricnames.EnricherQueueDepth), metrics.NewFunctionalGauge(func() int64 {
			q.mu.Lock()
			defer q.mu.Unlock()
			return int64(l.n)
		}))
		reg.GetOrRegister(metricnames.Enricher(e.Name, metricnames.EnricherQueueCap), metrics.NewFunctionalGauge(func() int64 { return int64(n) }))
		reg.GetOrRegister(metricnames.Enricher(e.Name, metricnames.EnricherQueued), metrics.NewFunctionalGauge(func() int64 {
			q.mu.Lock()
			defer q.mu.Unlock()
			return int64(l.n + l.busy + l.pushers)
		}))
	}
	reg.GetOrRegister(metricnames.EnrichQueueDepth, metrics.NewFunctionalGauge(func() int64 { return int64(q.Len()) }))
	reg.GetOrRegister(metricnames.EnrichQueueCap, metrics.NewFunctionalGauge(func() int64 { return int64(q.capSum) }))
	return q
}

// Len returns the tasks waiting in all lanes.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.depth
}

// Push queues t in its enricher's lane, blocking while the lane is full.
// It returns ctx.Err() if ctx ends first, and ErrClosed once the queue is
// closed; t is then not queued and not reported.
func (q *Queue) Push(ctx context.Context, t *Task) error {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return ErrClosed
		}
		l := &q.lanes[t.Enricher]
		if !l.full() {
			q.queueLocked(l, t)
			q.mu.Unlock()
			return nil
		}
		if l.room == nil {
			l.room = make(chan struct{})
		}
		room := l.room
		l.pushers++
		q.mu.Unlock()
		var err error
		select {
		case <-room:
		case <-ctx.Done():
			err = ctx.Err()
		}
		q.mu.Lock()
		l.pushers--
		q.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// Offer queues t in its enricher's lane without blocking. When the lane is
// full, one task is dropped unrun, reported with ErrOverloaded and counted
// in enrich.NAME.overloaded: the oldest waiting in a newest-first lane
// (optional enrichers), t itself in a first-in-first-out one. Offer reports
// whether t was queued. On a closed queue t is reported with ErrClosed.
func (q *Queue) Offer(t *Task) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		t.Report(t, nil, ErrClosed)
		return false
	}
	l := &q.lanes[t.Enricher]
	dropped := t
	if !l.full() {
		dropped = nil
	} else if l.newest {
		dropped = l.popFront()
		q.depth--
	}
	if dropped != t {
		q.queueLocked(l, t)
	}
	q.mu.Unlock()
	if dropped != nil {
		l.overloaded.Inc(1)
		dropped.Report(dropped, nil, ErrOverloaded)
	}
	return dropped != t
}

// queueLocked adds t to l and wakes one idle taker. q.mu is held.
func (q *Queue) queueLocked(l *lane, t *Task) {
	l.pushBack(t)
	q.depth++
	if len(q.waiters) > 0 {
		w := q.waiters[0]
		q.waiters = q.waiters[1:]
		w <- struct{}{}
	}
}

// Close closes the queue: Push and Offer fail from now on, and takers get
// the tasks still waiting, then ErrClosed. Close is idempotent.
func (q *Queue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for _, w := range q.waiters {
		w <- struct{}{}
	}
	q.waiters = nil
	for i := range q.lanes {
		if l := &q.lanes[i]; l.room != nil {
			close(l.room)
			l.room = nil
		}
	}
}

// take returns the next task by the scheduler's rule, waiting while every
// lane is empty. Tasks whose activity has left or whose deadline has passed
// are dropped and reported on the way (ErrStale, ErrDeadline). The caller
// must call done(t) when t's attempt has finished. take returns ctx.Err()
// when ctx ends, errQuit when quit is readable, and ErrClosed when the
// queue is closed and empty. With block false it returns (nil, nil) at
// once instead of waiting.
func (q *Queue) take(ctx context.Context, quit <-chan struct{}, block bool) (*Task, error) {
	for {
		q.mu.Lock()
		t := q.pickLocked()
		if t == nil {
			if q.closed {
				q.mu.Unlock()
				return nil, ErrClosed
			}
			if !block {
				q.mu.Unlock()
				return nil, nil
			}
			w := make(chan struct{}, 1)
			q.waiters = append(q.waiters, w)
			q.mu.Unlock()
			var err error
			select {
			case <-w:
				continue
			case <-ctx.Done():
				err = ctx.Err()
			case <-quit:
				err = errQuit
			}
			q.mu.Lock()
			if i := indexOf(q.waiters, w); i >= 0 {
				q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
			} else if len(q.waiters) > 0 {
				// Woken as well: pass the wake-up on, or a task
				// would wait beside an idle taker.
				nw := q.waiters[0]
				q.waiters = q.waiters[1:]
				nw <- struct{}{}
			}
			q.mu.Unlock()
			return nil, err
		}
		q.mu.Unlock()
		if q.drop(t, time.Now()) {
			continue
		}
		return t, nil
	}
}

func indexOf(ws []chan struct{}, w chan struct{}) int {
	for i, x := range ws {
		if x == w {
			return i
		}
	}
	return -1
}

// pickLocked removes and returns the next task: from the non-empty lane
// with the fewest tasks taken and not finished, ties in round-robin order
// from q.rr, the newest or the oldest by the lane's order; nil if every
// lane is empty. The task counts as taken. q.mu is held.
func (q *Queue) pickLocked() *Task {
	best := -1
	for k := range q.lanes {
		i := (q.rr + k) % len(q.lanes)
		if l := &q.lanes[i]; l.n > 0 && (best < 0 || l.busy < q.lanes[best].busy) {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	q.rr = (best + 1) % len(q.lanes)
	l := &q.lanes[best]
	var t *Task
	if l.newest {
		t = l.popBack()
	} else {
		t = l.popFront()
	}
	q.depth--
	l.busy++
	if l.room != nil {
		close(l.room)
		l.room = nil
	}
	return t
}

// drop reports and finishes t if its activity has left (ErrStale) or its
// deadline has passed at now (ErrDeadline), and reports whether it did.
func (q *Queue) drop(t *Task, now time.Time) bool {
	var err error
	l := &q.lanes[t.Enricher]
	switch {
	case t.Stale != nil && t.Stale():
		l.stale.Inc(1)
		err = ErrStale
	case !t.Deadline.IsZero() && !now.Before(t.Deadline):
		l.deadline.Inc(1)
		err = ErrDeadline
	default:
		return false
	}
	q.done(t)
	t.Report(t, nil, err)
	return true
}

// done marks t, returned by take, finished: its enricher has one task fewer
// taken. Call it after t's attempt reported, or when t was given up.
func (q *Queue) done(t *Task) {
	q.mu.Lock()
	q.lanes[t.Enricher].busy--
	q.mu.Unlock()
}
