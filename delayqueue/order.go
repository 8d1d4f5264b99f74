package delayqueue

import "time"

// This file holds the ordering logic. It is pure: no locks, no goroutines
// and no clock; "now" is always an argument. Queue wraps it with a mutex,
// a wake-up channel and one timer.

// itemState is where an item is in its life.
type itemState uint8

const (
	stateParked   itemState = iota // in the due heap
	stateReady                     // in the early FIFO (completed, EarlyRelease)
	stateTaken                     // returned by Take, holding capacity
	stateReleased                  // capacity returned; the item is dead
)

// dueHeap is a min-heap of parked items ordered by due time, ties broken by
// the order they were parked (seq). Due times are compared as durations
// since epoch so that the order is a strict total order even when some due
// times lack a monotonic clock reading.
type dueHeap[T any] struct {
	epoch time.Time
	items []*Item[T]
}

// key maps t to the heap's integer time line. time.Time.Sub saturates, so
// the zero Time sorts first and far-future times sort last.
func (h *dueHeap[T]) key(t time.Time) int64 { return int64(t.Sub(h.epoch)) }

func (h *dueHeap[T]) len() int { return len(h.items) }

func (h *dueHeap[T]) less(i, j int) bool {
	a, b := h.items[i], h.items[j]
	if a.key != b.key {
		return a.key < b.key
	}
	return a.seq < b.seq
}

func (h *dueHeap[T]) swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].index = i
	h.items[j].index = j
}

func (h *dueHeap[T]) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

func (h *dueHeap[T]) down(i int) {
	n := len(h.items)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		j := l
		if r := l + 1; r < n && h.less(r, l) {
			j = r
		}
		if !h.less(j, i) {
			return
		}
		h.swap(i, j)
		i = j
	}
}

// push adds it, keyed by it.due. it.seq must already be set.
func (h *dueHeap[T]) push(it *Item[T]) {
	it.key = h.key(it.due)
	it.index = len(h.items)
	h.items = append(h.items, it)
	h.up(it.index)
}

// remove takes it out of the heap. it must be in the heap.
func (h *dueHeap[T]) remove(it *Item[T]) {
	i, last := it.index, len(h.items)-1
	if i != last {
		h.swap(i, last)
	}
	h.items[last] = nil // let the GC have it
	h.items = h.items[:last]
	if i != last {
		h.down(i)
		h.up(i)
	}
	it.index = -1
}

// pop removes and returns the earliest item, whatever its due time.
func (h *dueHeap[T]) pop() (*Item[T], bool) {
	if len(h.items) == 0 {
		return nil, false
	}
	it := h.items[0]
	h.remove(it)
	return it, true
}

// popReady removes and returns the earliest item if it is due at now
// (due <= now).
func (h *dueHeap[T]) popReady(now time.Time) (*Item[T], bool) {
	if len(h.items) == 0 || h.items[0].key > h.key(now) {
		return nil, false
	}
	return h.pop()
}

// nextDue returns the due time of the earliest item.
func (h *dueHeap[T]) nextDue() (time.Time, bool) {
	if len(h.items) == 0 {
		return time.Time{}, false
	}
	return h.items[0].due, true
}

// wait returns how long after now the earliest item becomes due: 0 if it is
// due already, false if the heap is empty.
func (h *dueHeap[T]) wait(now time.Time) (time.Duration, bool) {
	if len(h.items) == 0 {
		return 0, false
	}
	k, n := h.items[0].key, h.key(now)
	if k <= n {
		return 0, true
	}
	return time.Duration(k - n), true
}

// fifo holds completed items in completion order.
type fifo[T any] struct {
	items []*Item[T]
	head  int
}

func (f *fifo[T]) len() int { return len(f.items) - f.head }

func (f *fifo[T]) push(it *Item[T]) {
	if f.head > 0 && f.head >= len(f.items)/2 {
		// Reuse the front half instead of growing forever.
		n := copy(f.items, f.items[f.head:])
		clear(f.items[n:])
		f.items, f.head = f.items[:n], 0
	}
	f.items = append(f.items, it)
}

func (f *fifo[T]) pop() (*Item[T], bool) {
	if f.len() == 0 {
		return nil, false
	}
	it := f.items[f.head]
	f.items[f.head] = nil
	f.head++
	if f.head == len(f.items) {
		f.items, f.head = f.items[:0], 0
	}
	return it, true
}

// nextReady removes and returns the item Take hands out at now: the oldest
// early-completed item first, else the earliest parked item if it is due.
// When draining (the queue is closed) the earliest parked item is returned
// whatever its due time.
func nextReady[T any](f *fifo[T], h *dueHeap[T], now time.Time, drain bool) (*Item[T], bool) {
	if it, ok := f.pop(); ok {
		return it, true
	}
	if drain {
		return h.pop()
	}
	return h.popReady(now)
}

// hasReady reports whether nextReady would return an item.
func hasReady[T any](f *fifo[T], h *dueHeap[T], now time.Time, drain bool) bool {
	if f.len() > 0 {
		return true
	}
	if drain {
		return h.len() > 0
	}
	d, ok := h.wait(now)
	return ok && d == 0
}

// outcome classifies a Take for Stats.
type outcome uint8

const (
	onTime  outcome = iota // complete and at or after due (EarlyRelease off, or completed late)
	early                  // complete and before due
	expired                // incomplete and at or after due
	drained                // incomplete and before due: only after Close
)

// classify says how it was taken at now (a time on h's line).
func classify[T any](h *dueHeap[T], it *Item[T], now time.Time) outcome {
	before := it.key > h.key(now)
	switch {
	case it.complete && before:
		return early
	case it.complete:
		return onTime
	case before:
		return drained
	default:
		return expired
	}
}
