package delayqueue

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// These tests run in synctest bubbles: time is virtual and only moves when
// every goroutine in the bubble is blocked, so "exactly at its due time" can
// be checked to the nanosecond.

func newQ(t *testing.T, cfg Config) *Queue[int] {
	t.Helper()
	q, err := New[int](cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return q
}

func cfgItems(n int64) Config { return Config{MaxItems: n, EarlyRelease: true} }

func mustPut(t *testing.T, q *Queue[int], v int, due time.Time, bytes int64) *Item[int] {
	t.Helper()
	it, err := q.Put(context.Background(), v, due, bytes)
	if err != nil {
		t.Fatalf("Put(%d): %v", v, err)
	}
	return it
}

type result struct {
	it  *Item[int]
	err error
	at  time.Time
}

// goTake starts a Take and returns where its result will arrive.
func goTake(ctx context.Context, q *Queue[int]) <-chan result {
	ch := make(chan result, 1)
	go func() {
		it, err := q.Take(ctx)
		ch <- result{it, err, time.Now()}
	}()
	return ch
}

// goPut starts a Put and returns where its result will arrive.
func goPut(ctx context.Context, q *Queue[int], v int, due time.Time, bytes int64) <-chan result {
	ch := make(chan result, 1)
	go func() {
		it, err := q.Put(ctx, v, due, bytes)
		ch <- result{it, err, time.Now()}
	}()
	return ch
}

// poll waits until the bubble is idle and reports whether ch has a result.
func poll(ch <-chan result) (result, bool) {
	synctest.Wait()
	select {
	case r := <-ch:
		return r, true
	default:
		return result{}, false
	}
}

func mustTake(t *testing.T, q *Queue[int]) *Item[int] {
	t.Helper()
	it, err := q.Take(context.Background())
	if err != nil {
		t.Fatalf("Take: %v", err)
	}
	return it
}

func checkInUse(t *testing.T, q *Queue[int], wantItems, wantBytes int64) {
	t.Helper()
	if items, bytes := q.InUse(); items != wantItems || bytes != wantBytes {
		t.Fatalf("InUse() = %d, %d; want %d, %d", items, bytes, wantItems, wantBytes)
	}
}

func checkLen(t *testing.T, q *Queue[int], want int) {
	t.Helper()
	if got := q.Len(); got != want {
		t.Fatalf("Len() = %d, want %d", got, want)
	}
}

func TestTakeAtDue(t *testing.T) {
	for _, tc := range []struct {
		name  string
		delay time.Duration
	}{
		{"two seconds", 2 * time.Second},
		{"one nanosecond", time.Nanosecond},
		{"now", 0},
		{"past", -time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q := newQ(t, cfgItems(10))
				start := time.Now()
				due := start.Add(tc.delay)
				mustPut(t, q, 1, due, 0)
				ch := goTake(t.Context(), q)
				if tc.delay > 0 {
					time.Sleep(tc.delay - time.Nanosecond)
					if r, ok := poll(ch); ok {
						t.Fatalf("Take returned %v at %v, before due %v", r.it, r.at, due)
					}
				}
				r := <-ch
				want := due
				if due.Before(start) {
					want = start
				}
				if r.err != nil || !r.at.Equal(want) {
					t.Fatalf("Take = %v at +%v; want nil at +%v", r.err, r.at.Sub(start), want.Sub(start))
				}
				if r.it.Value != 1 || !r.it.Due().Equal(due) {
					t.Fatalf("item = %d due %v, want 1 due %v", r.it.Value, r.it.Due(), due)
				}
				checkLen(t, q, 0)
				checkInUse(t, q, 1, 0) // held until Release
				q.Release(r.it)
				checkInUse(t, q, 0, 0)
			})
		})
	}
}

func TestComplete(t *testing.T) {
	for _, tc := range []struct {
		name        string
		early       bool
		wantAt      time.Duration
		wantEarly   int64
		wantExpired int64
	}{
		{"early release", true, time.Second, 1, 0},
		{"no early release waits for due", false, 5 * time.Second, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q := newQ(t, Config{MaxItems: 10, EarlyRelease: tc.early})
				start := time.Now()
				it := mustPut(t, q, 1, start.Add(5*time.Second), 0)
				ch := goTake(t.Context(), q)
				time.Sleep(time.Second)
				q.Complete(it)
				q.Complete(it) // idempotent
				r := <-ch
				if r.err != nil || r.it != it || r.at.Sub(start) != tc.wantAt {
					t.Fatalf("Take = %v, %v at +%v; want item 1 at +%v", r.it, r.err, r.at.Sub(start), tc.wantAt)
				}
				s := q.Stats()
				if s.Early != tc.wantEarly || s.Expired != tc.wantExpired || s.Takes != 1 {
					t.Fatalf("early, expired, takes = %d, %d, %d; want %d, %d, 1", s.Early, s.Expired, s.Takes, tc.wantEarly, tc.wantExpired)
				}
			})
		})
	}
}

func TestTakeOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newQ(t, cfgItems(10))
		start := time.Now()
		items := map[int]*Item[int]{}
		for _, p := range []struct{ v, due int }{{1, 3}, {2, 1}, {3, 2}, {4, 4}, {5, 10}, {6, 2}} {
			items[p.v] = mustPut(t, q, p.v, start.Add(time.Duration(p.due)*time.Second), 0)
		}
		q.Complete(items[4])
		q.Complete(items[3])
		time.Sleep(5 * time.Second)
		var got []int
		for range 5 {
			got = append(got, mustTake(t, q).Value)
		}
		// Completed first in completion order, then due order, ties in Put order.
		if want := []int{4, 3, 2, 6, 1}; !slices.Equal(got, want) {
			t.Fatalf("take order = %v, want %v", got, want)
		}
		r := <-goTake(t.Context(), q)
		if r.it.Value != 5 || r.at.Sub(start) != 10*time.Second {
			t.Fatalf("last Take = %d at +%v, want 5 at +10s", r.it.Value, r.at.Sub(start))
		}
	})
}

// TestEarlierPutWakesTaker checks that a waiting Take re-arms its timer for
// an item due sooner than the one it is waiting for.
func TestEarlierPutWakesTaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newQ(t, cfgItems(10))
		start := time.Now()
		mustPut(t, q, 1, start.Add(10*time.Second), 0)
		ch := goTake(t.Context(), q)
		time.Sleep(time.Second)
		mustPut(t, q, 2, start.Add(3*time.Second), 0)
		r := <-ch
		if r.it.Value != 2 || r.at.Sub(start) != 3*time.Second {
			t.Fatalf("Take = %d at +%v, want 2 at +3s", r.it.Value, r.at.Sub(start))
		}
		r = <-goTake(t.Context(), q)
		if r.it.Value != 1 || r.at.Sub(start) != 10*time.Second {
			t.Fatalf("Take = %d at +%v, want 1 at +10s", r.it.Value, r.at.Sub(start))
		}
	})
}

// TestCompletedHeadTimer checks that completing the item the timer is set
// for does not lose the wake-up for the next one.
func TestCompletedHeadTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newQ(t, cfgItems(10))
		start := time.Now()
		a := mustPut(t, q, 1, start.Add(5*time.Second), 0)
		mustPut(t, q, 2, start.Add(8*time.Second), 0)
		ch := goTake(t.Context(), q)
		time.Sleep(time.Second)
		q.Complete(a)
		if r := <-ch; r.it != a || r.at.Sub(start) != time.Second {
			t.Fatalf("Take = %v at +%v, want item 1 at +1s", r.it, r.at.Sub(start))
		}
		r := <-goTake(t.Context(), q)
		if r.it.Value != 2 || r.at.Sub(start) != 8*time.Second {
			t.Fatalf("Take = %d at +%v, want 2 at +8s", r.it.Value, r.at.Sub(start))
		}
	})
}

// TestManyTakers checks that items becoming ready together wake every
// waiting taker and each item goes to exactly one of them.
func TestManyTakers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 20
		q := newQ(t, cfgItems(n))
		start := time.Now()
		var chans []<-chan result
		for range n {
			chans = append(chans, goTake(t.Context(), q))
		}
		synctest.Wait()
		if s := q.Stats(); s.Takers != n {
			t.Fatalf("Takers = %d, want %d", s.Takers, n)
		}
		for i := range n {
			mustPut(t, q, i, start.Add(2*time.Second), 0)
		}
		seen := map[int]bool{}
		for _, ch := range chans {
			r := <-ch
			if r.err != nil || r.at.Sub(start) != 2*time.Second {
				t.Fatalf("Take = %v at +%v, want an item at +2s", r.err, r.at.Sub(start))
			}
			if seen[r.it.Value] {
				t.Fatalf("item %d taken twice", r.it.Value)
			}
			seen[r.it.Value] = true
		}
		if len(seen) != n {
			t.Fatalf("taken %d distinct items, want %d", len(seen), n)
		}
	})
}

func TestPutBlocksUntilRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newQ(t, cfgItems(2))
		start := time.Now()
		a := mustPut(t, q, 1, start, 0)
		mustPut(t, q, 2, start, 0)
		ch := goPut(t.Context(), q, 3, start, 0)
		if _, ok := poll(ch); ok {
			t.Fatal("Put returned with the queue full")
		}
		if got := q.Waiters(); got != 1 {
			t.Fatalf("Waiters() = %d, want 1", got)
		}
		if got := mustTake(t, q); got != a {
			t.Fatalf("Take = %d, want 1", got.Value)
		}
		time.Sleep(3 * time.Second)
		if _, ok := poll(ch); ok {
			t.Fatal("Put returned after Take, before Release")
		}
		checkInUse(t, q, 2, 0)
		q.Release(a)
		r, ok := poll(ch)
		if !ok || r.err != nil || r.at.Sub(start) != 3*time.Second {
			t.Fatalf("Put after Release = %v, %v at +%v; want nil at +3s", ok, r.err, r.at.Sub(start))
		}
		if got := q.Waiters(); got != 0 {
			t.Fatalf("Waiters() = %d, want 0", got)
		}
		if got := q.Stats().BlockedPut; got != 3*time.Second {
			t.Fatalf("BlockedPut = %v, want 3s", got)
		}
		checkInUse(t, q, 2, 0)
		checkLen(t, q, 2)
	})
}

func TestPutContext(t *testing.T) {
	for _, tc := range []struct {
		name        string
		cfg         Config
		fill        int64 // bytes of the item filling the queue
		bytes       int64 // bytes of the Put that waits
		after       int64 // bytes of a Put that must then fit at once; -1: none
		cancelFirst bool  // ctx is done before Put is called
		wantErr     error
	}{
		{"items full", Config{MaxItems: 1}, 0, 0, -1, false, context.DeadlineExceeded},
		// MaxItems 2: if the failed Put kept its item slot, the last Put would block.
		{"bytes full returns the item slot", Config{MaxItems: 2, MaxBytes: 100}, 80, 30, 20, false, context.DeadlineExceeded},
		{"already cancelled with room", Config{MaxItems: 5}, 0, 0, 0, true, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q := newQ(t, tc.cfg)
				start := time.Now()
				mustPut(t, q, 1, start.Add(time.Hour), tc.fill)
				before := q.Stats()
				ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
				defer cancel()
				if tc.cancelFirst {
					cancel()
				}
				it, err := q.Put(ctx, 2, start, tc.bytes)
				if !errors.Is(err, tc.wantErr) || it != nil {
					t.Fatalf("Put = %v, %v; want nil, %v", it, err, tc.wantErr)
				}
				if tc.cancelFirst {
					if got := time.Since(start); got != 0 {
						t.Fatalf("cancelled Put returned after %v, want at once", got)
					}
				} else if got := time.Since(start); got != 2*time.Second {
					t.Fatalf("Put returned after %v, want 2s", got)
				}
				after := q.Stats()
				before.BlockedPut, after.BlockedPut = 0, 0
				if after != before {
					t.Fatalf("stats after failed Put = %+v, want unchanged %+v", after, before)
				}
				if tc.after < 0 {
					return
				}
				ctx2, cancel2 := context.WithTimeout(t.Context(), time.Nanosecond)
				defer cancel2()
				if _, err := q.Put(ctx2, 3, start, tc.after); err != nil {
					t.Fatalf("Put into the remaining room: %v", err)
				}
			})
		})
	}
}

func TestBytesCapacity(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newQ(t, Config{MaxItems: 10, MaxBytes: 100, EarlyRelease: true})
		start := time.Now()
		a := mustPut(t, q, 1, start, 60)
		mustPut(t, q, 2, start, 40)
		checkInUse(t, q, 2, 100)
		if items, bytes := q.Cap(); items != 10 || bytes != 100 {
			t.Fatalf("Cap() = %d, %d; want 10, 100", items, bytes)
		}
		ch := goPut(t.Context(), q, 3, start, 1)
		if _, ok := poll(ch); ok {
			t.Fatal("Put returned with no bytes left")
		}
		q.Release(mustTake(t, q))
		r, ok := poll(ch)
		if !ok || r.err != nil {
			t.Fatalf("Put after Release = %v, %v; want it to return nil", ok, r.err)
		}
		if a.state != stateReleased {
			t.Fatal("first Take did not return the first item")
		}
		checkInUse(t, q, 2, 41)
	})
}

func TestPutBadBytes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxBytes int64
		bytes    int64
		wantErr  error // nil: must succeed; errAny: any non-nil error but not ErrTooLarge
	}{
		{"too large", 100, 101, ErrTooLarge},
		{"exactly max", 100, 100, nil},
		{"unlimited", 0, 1 << 40, nil},
		{"negative", 100, -1, errAny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q := newQ(t, Config{MaxItems: 1, MaxBytes: tc.maxBytes})
				// A full queue: an error must come back at once, not block.
				mustPut(t, q, 0, time.Now(), 0)
				ctx := t.Context()
				if tc.wantErr == nil {
					q.Release(mustTake(t, q))
				}
				start := time.Now()
				_, err := q.Put(ctx, 1, start, tc.bytes)
				switch {
				case tc.wantErr == nil && err != nil:
					t.Fatalf("Put = %v, want nil", err)
				case tc.wantErr == errAny && (err == nil || errors.Is(err, ErrTooLarge)):
					t.Fatalf("Put = %v, want a non-ErrTooLarge error", err)
				case tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
					t.Fatalf("Put = %v, want %v", err, tc.wantErr)
				}
				if time.Since(start) != 0 {
					t.Fatalf("Put took %v, want it to return at once", time.Since(start))
				}
				if tc.wantErr != nil {
					checkInUse(t, q, 1, 0)
				}
			})
		})
	}
}

var errAny = errors.New("any error")

func TestCloseDrains(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newQ(t, cfgItems(10))
		start := time.Now()
		mustPut(t, q, 1, start.Add(5*time.Second), 0)
		mustPut(t, q, 2, start.Add(3*time.Second), 0)
		c := mustPut(t, q, 3, start.Add(10*time.Second), 0)
		time.Sleep(time.Second)
		q.Complete(c)
		q.Close()
		q.Close() // idempotent
		if !q.Closed() {
			t.Fatal("Closed() = false after Close")
		}
		var got []*Item[int]
		for {
			it, err := q.Take(t.Context())
			if errors.Is(err, ErrClosed) {
				break
			}
			if err != nil {
				t.Fatalf("Take: %v", err)
			}
			got = append(got, it)
		}
		if d := time.Since(start); d != time.Second {
			t.Fatalf("drain took until +%v, want +1s (no waiting for due times)", d)
		}
		var vals []int
		for _, it := range got {
			vals = append(vals, it.Value)
		}
		if want := []int{3, 2, 1}; !slices.Equal(vals, want) {
			t.Fatalf("drained %v, want %v", vals, want)
		}
		if _, err := q.Put(t.Context(), 4, start, 0); !errors.Is(err, ErrClosed) {
			t.Fatalf("Put after Close = %v, want ErrClosed", err)
		}
		checkInUse(t, q, 3, 0)
		for _, it := range got {
			q.Release(it)
		}
		checkInUse(t, q, 0, 0)
		if s := q.Stats(); s.Drained != 2 || s.Early != 1 || s.Takes != 3 {
			t.Fatalf("drained, early, takes = %d, %d, %d; want 2, 1, 3", s.Drained, s.Early, s.Takes)
		}
	})
}

func TestCloseWakes(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		fill int64
		put  int64
	}{
		{"put blocked on items", Config{MaxItems: 1}, 0, 0},
		{"put blocked on bytes", Config{MaxItems: 5, MaxBytes: 10}, 10, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q := newQ(t, tc.cfg)
				start := time.Now()
				mustPut(t, q, 1, start.Add(time.Hour), tc.fill)
				ch := goPut(t.Context(), q, 2, start, tc.put)
				if _, ok := poll(ch); ok {
					t.Fatal("Put returned with the queue full")
				}
				time.Sleep(time.Second)
				q.Close()
				r, ok := poll(ch)
				if !ok || !errors.Is(r.err, ErrClosed) || r.at.Sub(start) != time.Second {
					t.Fatalf("blocked Put after Close = %v, %v at +%v; want ErrClosed at +1s", ok, r.err, r.at.Sub(start))
				}
				checkInUse(t, q, 1, tc.fill)
				if got := q.Waiters(); got != 0 {
					t.Fatalf("Waiters() = %d, want 0", got)
				}
			})
		})
	}
	t.Run("take on empty queue", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			q := newQ(t, cfgItems(1))
			ch := goTake(t.Context(), q)
			if _, ok := poll(ch); ok {
				t.Fatal("Take returned on an empty queue")
			}
			q.Close()
			if r, ok := poll(ch); !ok || !errors.Is(r.err, ErrClosed) {
				t.Fatalf("blocked Take after Close = %v, %v; want ErrClosed", ok, r.err)
			}
		})
	})
	t.Run("take waiting for a due item", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			q := newQ(t, cfgItems(1))
			start := time.Now()
			it := mustPut(t, q, 1, start.Add(time.Hour), 0)
			ch := goTake(t.Context(), q)
			time.Sleep(time.Second)
			q.Close()
			if r, ok := poll(ch); !ok || r.it != it || r.at.Sub(start) != time.Second {
				t.Fatalf("Take after Close = %v, %v at +%v; want the item at +1s", ok, r.it, r.at.Sub(start))
			}
		})
	})
}

func TestTakeContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newQ(t, cfgItems(5))
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		if _, err := q.Take(ctx); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 2*time.Second {
			t.Fatalf("Take = %v after %v, want DeadlineExceeded after 2s", err, time.Since(start))
		}
		if s := q.Stats(); s.Takers != 0 {
			t.Fatalf("Takers = %d after Take returned, want 0", s.Takers)
		}
		mustPut(t, q, 1, time.Now(), 0)
		if _, err := q.Take(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Take with done ctx = %v, want DeadlineExceeded", err)
		}
		checkLen(t, q, 1)
	})
}

func TestRepark(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newQ(t, cfgItems(1))
		start := time.Now()
		a := mustPut(t, q, 1, start.Add(2*time.Second), 0)
		blocked := goPut(t.Context(), q, 2, start, 0)
		r := <-goTake(t.Context(), q)
		if r.it != a || r.at.Sub(start) != 2*time.Second {
			t.Fatalf("Take = %v at +%v, want item 1 at +2s", r.it, r.at.Sub(start))
		}
		newDue := r.at.Add(3 * time.Second)
		q.Repark(a, newDue)
		if !a.Due().Equal(newDue) {
			t.Fatalf("Due() = %v, want %v", a.Due(), newDue)
		}
		checkLen(t, q, 1)
		checkInUse(t, q, 1, 0)
		if _, ok := poll(blocked); ok {
			t.Fatal("blocked Put returned after Repark: Repark must keep the capacity")
		}
		r = <-goTake(t.Context(), q)
		if r.it != a || r.at.Sub(start) != 5*time.Second {
			t.Fatalf("Take after Repark = %v at +%v, want item 1 at +5s", r.it, r.at.Sub(start))
		}
		q.Release(a)
		if r, ok := poll(blocked); !ok || r.err != nil {
			t.Fatalf("blocked Put after Release = %v, %v; want nil", ok, r.err)
		}
		if s := q.Stats(); s.Reparks != 1 || s.Takes != 2 || s.Expired != 2 || s.Misuse != 0 {
			t.Fatalf("reparks, takes, expired, misuse = %d, %d, %d, %d; want 1, 2, 2, 0", s.Reparks, s.Takes, s.Expired, s.Misuse)
		}
	})
}

// TestReparkKeepsCompletion: a completion that arrives while the item is
// taken is not lost by the Repark that follows.
func TestReparkKeepsCompletion(t *testing.T) {
	for _, tc := range []struct {
		name   string
		early  bool
		wantAt time.Duration
	}{
		{"early release", true, 2 * time.Second},
		{"no early release", false, 12 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q := newQ(t, Config{MaxItems: 1, EarlyRelease: tc.early})
				start := time.Now()
				a := mustPut(t, q, 1, start.Add(2*time.Second), 0)
				r := <-goTake(t.Context(), q)
				q.Complete(a)
				q.Repark(a, r.at.Add(10*time.Second))
				r = <-goTake(t.Context(), q)
				if r.it != a || r.at.Sub(start) != tc.wantAt {
					t.Fatalf("Take after Repark = %v at +%v, want item 1 at +%v", r.it, r.at.Sub(start), tc.wantAt)
				}
			})
		})
	}
}

func TestMisuse(t *testing.T) {
	other := func(t *testing.T) *Item[int] {
		q := newQ(t, cfgItems(1))
		return mustPut(t, q, 9, time.Now(), 0)
	}
	for _, tc := range []struct {
		name       string
		do         func(t *testing.T, q *Queue[int], parked, taken *Item[int])
		wantMisuse int64
		wantInUse  int64
		wantParked int
	}{
		{"release twice", func(t *testing.T, q *Queue[int], _, taken *Item[int]) { q.Release(taken); q.Release(taken) }, 1, 1, 1},
		{"release before take", func(t *testing.T, q *Queue[int], parked, _ *Item[int]) { q.Release(parked) }, 1, 2, 1},
		{"repark parked", func(t *testing.T, q *Queue[int], parked, _ *Item[int]) { q.Repark(parked, time.Now()) }, 1, 2, 1},
		{"repark released", func(t *testing.T, q *Queue[int], _, taken *Item[int]) { q.Release(taken); q.Repark(taken, time.Now()) }, 1, 1, 1},
		{"nil item", func(t *testing.T, q *Queue[int], _, _ *Item[int]) {
			q.Release(nil)
			q.Repark(nil, time.Now())
			q.Complete(nil)
		}, 3, 2, 1},
		{"other queue's item", func(t *testing.T, q *Queue[int], _, _ *Item[int]) {
			it := other(t)
			q.Release(it)
			q.Complete(it)
			q.Repark(it, time.Now())
		}, 3, 2, 1},
		{"complete after release is fine", func(t *testing.T, q *Queue[int], _, taken *Item[int]) { q.Release(taken); q.Complete(taken) }, 0, 1, 1},
		{"correct use", func(t *testing.T, q *Queue[int], _, taken *Item[int]) { q.Complete(taken); q.Release(taken) }, 0, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q := newQ(t, cfgItems(2))
				start := time.Now()
				taken := mustPut(t, q, 1, start, 0)
				parked := mustPut(t, q, 2, start.Add(time.Hour), 0)
				if got := mustTake(t, q); got != taken {
					t.Fatalf("Take = %d, want 1", got.Value)
				}
				tc.do(t, q, parked, taken)
				s := q.Stats()
				if s.Misuse != tc.wantMisuse || s.InUseItems != tc.wantInUse || s.Parked != tc.wantParked {
					t.Fatalf("misuse, in use, parked = %d, %d, %d; want %d, %d, %d",
						s.Misuse, s.InUseItems, s.Parked, tc.wantMisuse, tc.wantInUse, tc.wantParked)
				}
				q.Close()
				if got := mustTake(t, q); got != parked {
					t.Fatalf("drain Take = %d, want the parked item", got.Value)
				}
			})
		})
	}
}

func TestStats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newQ(t, Config{MaxItems: 4, MaxBytes: 1000, EarlyRelease: true})
		start := time.Now()
		sec := func(n int) time.Time { return start.Add(time.Duration(n) * time.Second) }
		early := mustPut(t, q, 1, sec(10), 100)
		expired := mustPut(t, q, 2, sec(2), 200)
		late := mustPut(t, q, 3, sec(3), 300) // completed after its due time: on time
		drained := mustPut(t, q, 4, sec(60), 50)
		blocked := goPut(t.Context(), q, 5, sec(60), 10)

		q.Complete(early)
		if it := mustTake(t, q); it != early { // at 0s: early
			t.Fatalf("Take = %d, want 1", it.Value)
		}
		time.Sleep(4 * time.Second)
		q.Complete(late) // at 4s, after due 3s
		if it := mustTake(t, q); it != late {
			t.Fatalf("Take = %d, want 3", it.Value)
		}
		if it := mustTake(t, q); it != expired {
			t.Fatalf("Take = %d, want 2", it.Value)
		}
		q.Repark(expired, sec(5))
		if it := mustTake(t, q); it != expired { // at 5s: expired again
			t.Fatalf("Take = %d, want 2", it.Value)
		}
		q.Release(early) // at 5s: the blocked Put gets in
		q.Release(early) // misuse
		if r, ok := poll(blocked); !ok || r.err != nil {
			t.Fatalf("blocked Put = %v, %v; want nil", ok, r.err)
		}
		synctest.Wait()
		taker := goTake(t.Context(), q) // waits: next due is at 60s
		synctest.Wait()

		got := q.Stats()
		want := Stats{
			Parked: 2, InUseItems: 4, InUseBytes: 200 + 300 + 50 + 10,
			CapItems: 4, CapBytes: 1000, Waiters: 0, Takers: 1,
			Puts: 5, Takes: 4, Early: 1, Expired: 2, Drained: 0, Reparks: 1, Misuse: 1,
			BlockedPut: 5 * time.Second,
		}
		if got != want {
			t.Fatalf("Stats() =\n%+v\nwant\n%+v", got, want)
		}

		q.Close()
		if r := <-taker; r.it != drained { // same 5s instant, before due
			t.Fatalf("drain Take = %v, want 4", r.it)
		}
		got = q.Stats()
		if got.Drained != 1 || got.Takes != 5 || got.Takers != 0 {
			t.Fatalf("drained, takes, takers = %d, %d, %d; want 1, 5, 0", got.Drained, got.Takes, got.Takers)
		}
	})
}

// TestPutN: an item put with n takes n of MaxItems until its Release, so
// the capacity counts what the items stand for; n is capped at MaxItems
// and must be positive.
func TestPutN(t *testing.T) {
	for _, tc := range []struct {
		name      string
		max, n    int64
		wantInUse int64
		wantErr   bool
	}{
		{"one", 10, 1, 1, false},
		{"batch", 10, 7, 7, false},
		{"whole queue", 10, 10, 10, false},
		{"larger than the queue passes alone", 10, 25, 10, false},
		{"zero", 10, 0, 0, true},
		{"negative", 10, -3, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := newQ(t, cfgItems(tc.max))
			it, err := q.PutN(context.Background(), 1, time.Now(), tc.n, 0)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("PutN(n=%d) = nil error, want one", tc.n)
				}
				checkInUse(t, q, 0, 0)
				return
			}
			if err != nil {
				t.Fatalf("PutN(n=%d): %v", tc.n, err)
			}
			checkInUse(t, q, tc.wantInUse, 0)
			if got := mustTake(t, q); got != it {
				t.Fatal("Take returned another item")
			}
			q.Release(it)
			checkInUse(t, q, 0, 0)
		})
	}
}

// TestPutNBlocks: a batch waits until enough capacity is released for all
// of it, not just one item.
func TestPutNBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newQ(t, cfgItems(10))
		start := time.Now()
		a, err := q.PutN(t.Context(), 1, start, 6, 0)
		if err != nil {
			t.Fatal(err)
		}
		ch := make(chan error, 1)
		go func() {
			_, err := q.PutN(t.Context(), 2, start, 5, 0)
			ch <- err
		}()
		synctest.Wait()
		select {
		case err := <-ch:
			t.Fatalf("PutN of 5 returned (%v) with 4 free", err)
		default:
		}
		mustTake(t, q)
		q.Release(a)
		synctest.Wait()
		if err := <-ch; err != nil {
			t.Fatalf("PutN after Release: %v", err)
		}
		checkInUse(t, q, 5, 0)
	})
}
