package ingest

import (
	"context"
	"slices"
	"sync"
)

// window bounds what ingest holds between reading events and Kafka's
// acknowledgement, in records and in bytes, taken together. It is a
// two-dimensional counting semaphore: acquire takes both at once or waits,
// so no one ever holds one while waiting for the other. Waiters are served
// in FIFO order, so a large HTTP request is not starved by a stream of small
// events. The zero value is unusable; use newWindow. Safe for concurrent use.
type window struct {
	mu                sync.Mutex
	maxRecs, maxBytes int64
	recs, bytes       int64 // held
	waiters           []*waiter
}

type waiter struct {
	recs, bytes int64
	ready       chan struct{} // closed once the room is taken for the waiter
}

func newWindow(maxRecs, maxBytes int64) *window { return &window{maxRecs: maxRecs, maxBytes: maxBytes} }

// acquire takes room for recs records and n bytes, waiting (behind earlier
// waiters) until there is. If ctx ends first it takes nothing and returns
// ctx.Err(). A request larger than the window waits until ctx ends.
func (w *window) acquire(ctx context.Context, recs, n int64) error {
	w.mu.Lock()
	if len(w.waiters) == 0 && w.fitsLocked(recs, n) {
		w.recs, w.bytes = w.recs+recs, w.bytes+n
		w.mu.Unlock()
		return nil
	}
	wt := &waiter{recs: recs, bytes: n, ready: make(chan struct{})}
	w.waiters = append(w.waiters, wt)
	w.mu.Unlock()

	select {
	case <-wt.ready:
		return nil
	case <-ctx.Done():
	}
	w.mu.Lock()
	select {
	case <-wt.ready:
		// Granted just as ctx ended: give it back.
		w.recs, w.bytes = w.recs-recs, w.bytes-n
	default:
		w.waiters = slices.DeleteFunc(w.waiters, func(x *waiter) bool { return x == wt })
	}
	// Either way, whoever waited behind may fit now.
	w.wakeLocked()
	w.mu.Unlock()
	return ctx.Err()
}

// release gives back room taken by acquire.
func (w *window) release(recs, n int64) {
	w.mu.Lock()
	w.recs, w.bytes = w.recs-recs, w.bytes-n
	if w.recs < 0 || w.bytes < 0 {
		w.mu.Unlock()
		panic("ingest: window released more than it held")
	}
	w.wakeLocked()
	w.mu.Unlock()
}

// held returns the records and bytes held.
func (w *window) held() (recs, n int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.recs, w.bytes
}

func (w *window) fitsLocked(recs, n int64) bool {
	return w.recs+recs <= w.maxRecs && w.bytes+n <= w.maxBytes
}

// wakeLocked grants waiters in order while the first one fits.
func (w *window) wakeLocked() {
	for len(w.waiters) > 0 {
		wt := w.waiters[0]
		if !w.fitsLocked(wt.recs, wt.bytes) {
			return
		}
		w.recs, w.bytes = w.recs+wt.recs, w.bytes+wt.bytes
		close(wt.ready)
		w.waiters[0] = nil
		w.waiters = w.waiters[1:]
	}
}
