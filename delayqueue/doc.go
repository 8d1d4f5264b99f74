// Package delayqueue is a bounded, semaphore-gated delay queue: bend's
// backpressure point.
//
// The distributor parks each activity in a Queue for a few seconds while its
// enrichments are computed, and emitters take it out when it is ready:
//
//	it, err := q.Put(ctx, act, time.Now().Add(cfg.Delay), int64(len(raw))) // blocks when full
//	...                                                                    // enrichments finish:
//	q.Complete(it)                                                         // ready now (EarlyRelease)
//	it, err := q.Take(ctx)                                                 // emitter
//	...                                                                    // sink acks:
//	q.Release(it)                                                          // capacity back, Puts unblock
//
// # Life of an item
//
// Put parks an item and acquires its capacity: one of Config.MaxItems and
// its bytes of Config.MaxBytes, through golang.org/x/sync/semaphore, so
// blocked Puts are served in arrival order. An item is ready when its due
// time has passed or, with Config.EarlyRelease, as soon as Complete is
// called. Take removes a ready item from the parked set; the item still holds
// its capacity until Release. So capacity bounds everything between Put and
// Release, including items handed to the sink and not yet acknowledged: a
// slow sink stalls Put, and so the Kafka reader. Repark sends a taken item
// back to wait again without acquiring capacity a second time.
//
//	Put ──> parked ──(due, or Complete)──> Take ──> taken ──> Release
//	          ^                                       │
//	          └──────────────── Repark ───────────────┘
//
// Ready items come out completed-first, in completion order, then by due
// time (equal due times in Put order). Completed items therefore overtake
// items whose deadline has passed; the capacity bound keeps that finite.
//
// # Shutdown
//
// Close makes Put return ErrClosed (waking blocked Puts) and turns Take into
// a drain: each parked item comes out at once, whatever its due time, then
// Take returns ErrClosed. Items already taken still need Release.
//
// # Metrics
//
// Stats returns a snapshot for the metrics registry; the package registers
// nothing itself (no global state). Suggested names:
//
//	delayqueue.parked        gauge    Stats.Parked: items waiting to be taken (Len)
//	delayqueue.in_use_items  gauge    Stats.InUseItems: capacity held, parked + taken (InUse)
//	delayqueue.in_use_bytes  gauge    Stats.InUseBytes
//	delayqueue.cap_items     gauge    Stats.CapItems (Cap)
//	delayqueue.cap_bytes     gauge    Stats.CapBytes, 0 = unlimited
//	delayqueue.put_waiters   gauge    Stats.Waiters: Puts blocked on capacity (Waiters); > 0 means backpressure
//	delayqueue.takers        gauge    Stats.Takers: Takes waiting for a ready item
//	delayqueue.puts          counter  Stats.Puts
//	delayqueue.takes         counter  Stats.Takes, a reparked item counts once per Take
//	delayqueue.early         counter  Stats.Early: taken complete before due
//	delayqueue.expired       counter  Stats.Expired: taken at due while incomplete
//	delayqueue.drained       counter  Stats.Drained: taken before due and incomplete, after Close
//	delayqueue.reparks       counter  Stats.Reparks
//	delayqueue.misuse        counter  Stats.Misuse: Release/Repark/Complete calls ignored as invalid
//	delayqueue.put_blocked   counter  Stats.BlockedPut, nanoseconds Puts spent blocked
//
// Takes minus Early, Expired and Drained counts items that were complete at
// their due time (EarlyRelease off, or completed after they became due).
//
// # Design
//
// The ordering logic (a min-heap by due time and a FIFO of completed items)
// is pure: no clock, no goroutines, no locks; now is an argument. Queue wraps
// it with one mutex. Waiting takers are woken by a one-token channel (a taker
// that finds more ready items passes the token on) and by one time.Timer set
// for the earliest due time; there is no goroutine per item and no polling.
// Lock order: Queue.mu, then a semaphore's internal lock (Queue.mu is never
// held while blocking in Acquire). Invariant: InUse() never exceeds Cap(),
// because in-use counts go up after the semaphores grant and down before
// they are released.
package delayqueue
