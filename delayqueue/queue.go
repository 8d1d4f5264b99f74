package delayqueue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
)

// ErrClosed is returned by Put after Close, by a Put that was blocked when
// Close was called, and by Take once the queue is closed and holds no
// parked items.
var ErrClosed = errors.New("delayqueue: closed")

// ErrTooLarge is returned at once by Put when its bytes exceed
// Config.MaxBytes, so the item could never fit. The returned error wraps it
// with the sizes; test with errors.Is.
var ErrTooLarge = errors.New("delayqueue: item larger than max_bytes")

// Item is one value parked in a Queue. It is created by Put and stays valid
// until Release; keep the pointer to pass to Complete, Repark and Release.
type Item[T any] struct {
	// Value is the value given to Put. The queue never reads or writes it.
	Value T

	q        *Queue[T] // owner; set by Put, never changed
	due      time.Time
	key      int64  // due on the heap's time line
	seq      uint64 // park order, breaks ties between equal due times
	bytes    int64
	n        int64 // items of capacity held: 1, or PutN's n
	index    int   // position in the due heap, -1 when not in it
	state    itemState
	complete bool
}

// Due returns the item's current due time: the one given to Put, or to the
// latest Repark. Safe for concurrent use.
func (it *Item[T]) Due() time.Time {
	it.q.mu.Lock()
	defer it.q.mu.Unlock()
	return it.due
}

// Stats is a snapshot of a Queue for metrics. The counters are cumulative
// since New. Every successful Take is counted in Takes and in exactly one of
// Early, Expired, Drained or neither (the item was complete at its due time).
type Stats struct {
	Parked     int   // items put or reparked and not yet taken (Len)
	InUseItems int64 // capacity held: parked plus taken and not released
	InUseBytes int64 // bytes held, same span as InUseItems
	CapItems   int64 // Config.MaxItems
	CapBytes   int64 // Config.MaxBytes; 0 means unlimited
	Waiters    int   // goroutines blocked in Put on capacity
	Takers     int   // goroutines blocked in Take

	Puts       int64         // successful Puts
	Takes      int64         // successful Takes (a reparked item counts again)
	Early      int64         // taken complete before its due time
	Expired    int64         // taken at or after its due time while incomplete
	Drained    int64         // taken before its due time while incomplete (after Close)
	Reparks    int64         // successful Reparks
	Misuse     int64         // ignored invalid calls: see Complete, Repark and Release
	BlockedPut time.Duration // total time Puts spent blocked on capacity, counted when each wait ends
}

// Queue is a bounded delay queue. Put parks a value until its due time (or
// until it is completed, with Config.EarlyRelease); Take hands out ready
// values; Release returns their capacity. Capacity covers an item from Put
// until Release, so a full queue makes Put block: that is the backpressure.
//
// Create one with New; the zero Queue is not usable. All methods are safe
// for concurrent use.
type Queue[T any] struct {
	cfg          Config
	items        *semaphore.Weighted
	bytes        *semaphore.Weighted // nil when MaxBytes == 0
	waiters      atomic.Int64        // goroutines blocked in Put
	blockedNanos atomic.Int64
	signal       chan struct{} // capacity 1: "something may be ready", for one taker
	done         chan struct{} // closed by Close

	mu         sync.Mutex
	heap       dueHeap[T]
	early      fifo[T]
	seq        uint64
	closed     bool
	takers     int         // goroutines waiting in Take
	timer      *time.Timer // fires at timerKey; created on first need
	timerArmed bool        // a fire is pending at or before timerKey
	timerKey   int64
	cancels    map[uint64]context.CancelCauseFunc // blocked Puts, cancelled by Close
	nextCancel uint64
	inItems    int64
	inBytes    int64
	st         Stats // counters only; the gauges are filled in by Stats
}

// New returns an empty Queue configured by cfg, or cfg.Validate's error.
func New[T any](cfg Config) (*Queue[T], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	q := &Queue[T]{
		cfg:     cfg,
		items:   semaphore.NewWeighted(cfg.MaxItems),
		signal:  make(chan struct{}, 1),
		done:    make(chan struct{}),
		heap:    dueHeap[T]{epoch: time.Now()},
		cancels: make(map[uint64]context.CancelCauseFunc),
	}
	if cfg.MaxBytes > 0 {
		q.bytes = semaphore.NewWeighted(cfg.MaxBytes)
	}
	return q, nil
}

// Put parks v until due, weighing bytes against Config.MaxBytes, and returns
// its Item. It blocks while the queue holds MaxItems items or has too few of
// MaxBytes bytes left; blocked Puts are served first come, first served
// (items are acquired first, then bytes). If ctx ends first, Put returns
// ctx.Err() and the queue is unchanged. After Close, and in a Put blocked
// when Close is called, it returns ErrClosed. It returns ErrTooLarge at once
// if bytes > MaxBytes > 0, and an error if bytes < 0. A due time in the past
// makes the item ready at once. Safe for concurrent use.
func (q *Queue[T]) Put(ctx context.Context, v T, due time.Time, bytes int64) (*Item[T], error) {
	return q.PutN(ctx, v, due, 1, bytes)
}

// PutN is Put for a value that stands for n items (a batch of n records):
// it takes n of Config.MaxItems, so the capacity still counts what the
// values hold, and returns them all at Release. n is capped at MaxItems
// (a batch larger than the queue passes alone); it must be at least 1.
func (q *Queue[T]) PutN(ctx context.Context, v T, due time.Time, n, bytes int64) (*Item[T], error) {
	if n < 1 {
		return nil, fmt.Errorf("delayqueue: %d items; want at least 1", n)
	}
	n = min(n, q.cfg.MaxItems)
	if bytes < 0 {
		return nil, fmt.Errorf("delayqueue: negative bytes %d", bytes)
	}
	if q.cfg.MaxBytes > 0 && bytes > q.cfg.MaxBytes {
		return nil, fmt.Errorf("%w: %d bytes, max_bytes is %d", ErrTooLarge, bytes, q.cfg.MaxBytes)
	}
	select {
	case <-q.done:
		return nil, ErrClosed
	default:
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	default:
	}
	if err := q.acquire(ctx, q.items, n); err != nil {
		return nil, err
	}
	if q.bytes != nil && bytes > 0 {
		if err := q.acquire(ctx, q.bytes, bytes); err != nil {
			q.items.Release(n)
			return nil, err
		}
	}
	it := &Item[T]{Value: v, q: q, due: due, bytes: bytes, n: n, index: -1}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		q.releaseCap(n, bytes)
		return nil, ErrClosed
	}
	q.inItems += n
	q.inBytes += bytes
	q.st.Puts++
	q.parkLocked(it)
	q.mu.Unlock()
	return it, nil
}

// acquire takes n from s, blocking until it can, ctx ends (ctx.Err()) or
// the queue closes (ErrClosed). On error s is unchanged.
func (q *Queue[T]) acquire(ctx context.Context, s *semaphore.Weighted, n int64) error {
	if s.TryAcquire(n) { // fails while others wait, so FIFO order holds
		return nil
	}
	// Slow path: make the wait end on Close as well as on ctx.
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	id := q.nextCancel
	q.nextCancel++
	q.cancels[id] = cancel
	q.mu.Unlock()

	q.waiters.Add(1)
	start := time.Now()
	err := s.Acquire(actx, n)
	q.blockedNanos.Add(int64(time.Since(start)))
	q.waiters.Add(-1)

	q.mu.Lock()
	delete(q.cancels, id)
	q.mu.Unlock()
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		return ErrClosed // actx has no other source of cancellation
	}
	return nil
}

func (q *Queue[T]) releaseCap(n, bytes int64) {
	if q.bytes != nil && bytes > 0 {
		q.bytes.Release(bytes)
	}
	q.items.Release(n)
}

// parkLocked puts it into the heap, or into the early FIFO if it is
// complete and EarlyRelease is on, and wakes a taker if that can help.
func (q *Queue[T]) parkLocked(it *Item[T]) {
	it.seq = q.seq
	q.seq++
	if it.complete && q.cfg.EarlyRelease {
		it.key = q.heap.key(it.due)
		it.state = stateReady
		q.early.push(it)
		q.signalLocked()
		return
	}
	it.state = stateParked
	q.heap.push(it)
	if q.takers == 0 {
		return // the next Take finds it, or arms the timer for it
	}
	now := time.Now()
	if q.closed || it.key <= q.heap.key(now) {
		q.signalLocked()
		return
	}
	q.armLocked(now)
}

// signalLocked wakes one waiting taker. The channel holds one token, so a
// signal sent before the taker starts waiting is not lost; a taker that
// takes an item and sees more ready passes the signal on.
func (q *Queue[T]) signalLocked() {
	if q.takers == 0 {
		return
	}
	select {
	case q.signal <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// armLocked makes sure the timer fires no later than the earliest due time,
// for the takers waiting.
func (q *Queue[T]) armLocked(now time.Time) {
	if q.closed || q.heap.len() == 0 {
		return
	}
	k := q.heap.items[0].key
	if q.timerArmed && q.timerKey <= k {
		return
	}
	d, _ := q.heap.wait(now)
	if q.timer == nil {
		q.timer = time.AfterFunc(d, q.fire)
	} else {
		q.timer.Reset(d)
	}
	q.timerArmed, q.timerKey = true, k
}

// fire runs when the timer expires.
func (q *Queue[T]) fire() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.timerArmed = false
	if q.takers == 0 || q.closed {
		return
	}
	now := time.Now()
	if hasReady(&q.early, &q.heap, now, false) {
		q.signalLocked()
		return
	}
	q.armLocked(now) // the earliest item went away (completed); wait for the next
}

// Complete marks it complete. With Config.EarlyRelease a parked item becomes
// ready at once and is handed out before items that are merely due, in
// completion order; without it the item still waits for its due time. It
// never blocks, is idempotent, and is a no-op after Release. On a taken item
// it only records completion, so a following Repark makes the item ready at
// once instead of losing the completion. A nil item or one from another
// Queue is ignored and counted in Stats.Misuse. Safe for concurrent use.
func (q *Queue[T]) Complete(it *Item[T]) {
	if it == nil || it.q != q {
		q.misuse()
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if it.complete || it.state == stateReleased {
		return
	}
	it.complete = true
	if it.state == stateParked && q.cfg.EarlyRelease {
		q.heap.remove(it)
		it.state = stateReady
		q.early.push(it)
		q.signalLocked()
	}
}

// Take blocks until an item is ready, removes it from the parked set and
// returns it. An item is ready when its due time has passed or, with
// Config.EarlyRelease, when it is complete. Completed items come out first,
// in completion order, then due items in due order (equal due times in Put
// order). The item keeps its capacity until Release. If ctx ends first, Take
// returns ctx.Err(). After Close, Take returns every parked item at once,
// whatever its due time, and then ErrClosed. Each item is returned to one
// caller only. Safe for concurrent use.
func (q *Queue[T]) Take(ctx context.Context) (*Item[T], error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	default:
	}
	q.mu.Lock()
	for {
		now := time.Now()
		if it, ok := nextReady(&q.early, &q.heap, now, q.closed); ok {
			q.tookLocked(it, now)
			if q.takers > 0 && hasReady(&q.early, &q.heap, now, q.closed) {
				q.signalLocked() // pass the wake-up on
			}
			q.mu.Unlock()
			return it, nil
		}
		if q.closed {
			q.mu.Unlock()
			return nil, ErrClosed
		}
		q.takers++
		q.armLocked(now)
		q.mu.Unlock()
		select {
		case <-q.signal:
		case <-q.done:
		case <-ctx.Done():
			q.mu.Lock()
			q.takers--
			q.mu.Unlock()
			return nil, ctx.Err()
		}
		q.mu.Lock()
		q.takers--
	}
}

func (q *Queue[T]) tookLocked(it *Item[T], now time.Time) {
	it.state = stateTaken
	q.st.Takes++
	switch classify(&q.heap, it, now) {
	case early:
		q.st.Early++
	case expired:
		q.st.Expired++
	case drained:
		q.st.Drained++
	}
}

// Repark parks a taken, not yet released item again until due, keeping the
// capacity it holds (it never blocks). Use it when an item cannot be handled
// yet at its deadline. The item is ready at once if it is complete (with
// EarlyRelease) or if the queue is closed. Calls on an item that is not
// currently taken are ignored and counted in Stats.Misuse. Safe for
// concurrent use.
//
// After Close, Take hands a reparked item straight back; a drain loop should
// stop reparking (see Closed).
func (q *Queue[T]) Repark(it *Item[T], due time.Time) {
	if it == nil || it.q != q {
		q.misuse()
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if it.state != stateTaken {
		q.st.Misuse++
		return
	}
	it.due = due
	q.st.Reparks++
	q.parkLocked(it)
}

// Release returns the item's capacity, unblocking Puts. Call it exactly once per
// item, after Take returned it. It never blocks and never panics: calls on
// an item that is not currently taken (released twice, not taken yet, nil or
// from another Queue) are ignored and counted in Stats.Misuse. Safe for
// concurrent use.
func (q *Queue[T]) Release(it *Item[T]) {
	if it == nil || it.q != q {
		q.misuse()
		return
	}
	q.mu.Lock()
	if it.state != stateTaken {
		q.st.Misuse++
		q.mu.Unlock()
		return
	}
	it.state = stateReleased
	q.inItems -= it.n
	q.inBytes -= it.bytes
	q.mu.Unlock()
	q.releaseCap(it.n, it.bytes)
}

func (q *Queue[T]) misuse() {
	q.mu.Lock()
	q.st.Misuse++
	q.mu.Unlock()
}

// Close stops intake and starts the drain: Put returns ErrClosed, Puts
// blocked on capacity wake with ErrClosed, and Take returns the parked items
// at once and then ErrClosed. Taken items still need Release. Close does not
// block and is idempotent. Safe for concurrent use.
func (q *Queue[T]) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.closed = true
	close(q.done)
	for _, cancel := range q.cancels {
		cancel(ErrClosed)
	}
	if q.timer != nil {
		q.timer.Stop()
		q.timerArmed = false
	}
}

// Closed reports whether Close has been called. Safe for concurrent use.
func (q *Queue[T]) Closed() bool {
	select {
	case <-q.done:
		return true
	default:
		return false
	}
}

// Len returns the number of parked items: put or reparked and not yet taken.
// Safe for concurrent use.
func (q *Queue[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.heap.len() + q.early.len()
}

// InUse returns the capacity held, in items and bytes: parked items plus
// items taken and not yet released. Safe for concurrent use.
func (q *Queue[T]) InUse() (items, bytes int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.inItems, q.inBytes
}

// Cap returns Config.MaxItems and Config.MaxBytes (0: unlimited). Safe for
// concurrent use.
func (q *Queue[T]) Cap() (items, bytes int64) { return q.cfg.MaxItems, q.cfg.MaxBytes }

// Waiters returns the number of goroutines blocked in Put on capacity. Safe
// for concurrent use.
func (q *Queue[T]) Waiters() int { return int(q.waiters.Load()) }

// Stats returns a snapshot of the gauges and cumulative counters. Safe for
// concurrent use.
func (q *Queue[T]) Stats() Stats {
	q.mu.Lock()
	s := q.st
	s.Parked = q.heap.len() + q.early.len()
	s.InUseItems, s.InUseBytes = q.inItems, q.inBytes
	s.Takers = q.takers
	q.mu.Unlock()
	s.CapItems, s.CapBytes = q.cfg.MaxItems, q.cfg.MaxBytes
	s.Waiters = int(q.waiters.Load())
	s.BlockedPut = time.Duration(q.blockedNanos.Load())
	return s
}
