package delayqueue

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrent runs producers, consumers and a completer against one
// queue on the real clock. Every item must be released exactly once, a
// reparked item taken once per park, and the capacity never exceeded: the
// test keeps its own count of held items (up after Put returns, down before
// Release), independent of the queue's bookkeeping.
func TestConcurrent(t *testing.T) {
	const (
		producers = 8
		consumers = 6
		perProd   = 1500
		n         = producers * perProd
		maxItems  = 64
		maxBytes  = 2000
	)
	q, err := New[int](Config{MaxItems: maxItems, MaxBytes: maxBytes, EarlyRelease: true})
	if err != nil {
		t.Fatal(err)
	}
	var (
		takes     [n]atomic.Int32
		releases  [n]atomic.Int32
		reparked  [n]atomic.Bool
		reparks   atomic.Int64
		heldItems atomic.Int64
		heldBytes atomic.Int64
		maxHeld   atomic.Int64
		maxInUse  atomic.Int64
		over      atomic.Int64 // capacity violations seen
	)
	weight := func(id int) int64 { return int64(id*37%60) + 1 }
	noteMax := func(m *atomic.Int64, v int64) {
		for {
			cur := m.Load()
			if v <= cur || m.CompareAndSwap(cur, v) {
				return
			}
		}
	}
	check := func() {
		items, bytes := q.InUse()
		noteMax(&maxInUse, items)
		if items > maxItems || bytes > maxBytes {
			over.Add(1)
		}
	}
	ctx := context.Background()
	toComplete := make(chan *Item[int], 256)

	var prodWG, consWG, compWG sync.WaitGroup
	compWG.Go(func() {
		for it := range toComplete {
			q.Complete(it) // may race with Take and Release: must be harmless
		}
	})
	for p := range producers {
		prodWG.Go(func() {
			r := rand.New(rand.NewPCG(uint64(p), 1))
			for i := range perProd {
				id := p*perProd + i
				due := time.Now().Add(time.Duration(r.IntN(2000)-500) * time.Microsecond)
				it, err := q.Put(ctx, id, due, weight(id))
				if err != nil {
					t.Errorf("Put(%d): %v", id, err)
					return
				}
				h := heldItems.Add(1)
				b := heldBytes.Add(weight(id))
				noteMax(&maxHeld, h)
				if h > maxItems || b > maxBytes {
					over.Add(1)
				}
				check()
				if id%2 == 0 {
					toComplete <- it
				}
			}
		})
	}
	for range consumers {
		consWG.Go(func() {
			for {
				it, err := q.Take(ctx)
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Take: %v", err)
					return
				}
				id := it.Value
				takes[id].Add(1)
				check()
				if id%5 == 0 && !reparked[id].Swap(true) {
					reparks.Add(1)
					q.Repark(it, time.Now().Add(200*time.Microsecond))
					continue
				}
				heldItems.Add(-1)
				heldBytes.Add(-weight(id))
				releases[id].Add(1)
				q.Release(it)
			}
		})
	}
	prodWG.Wait()
	close(toComplete)
	compWG.Wait()
	q.Close()
	consWG.Wait()

	for id := range n {
		wantTakes := int32(1)
		if reparked[id].Load() {
			wantTakes = 2
		}
		if got := takes[id].Load(); got != wantTakes {
			t.Errorf("item %d taken %d times, want %d", id, got, wantTakes)
		}
		if got := releases[id].Load(); got != 1 {
			t.Errorf("item %d released %d times, want 1", id, got)
		}
	}
	if got := over.Load(); got != 0 {
		t.Errorf("capacity exceeded %d times", got)
	}
	if got := maxHeld.Load(); got > maxItems {
		t.Errorf("max held items = %d, want <= %d", got, maxItems)
	}
	if got := maxInUse.Load(); got > maxItems || got < 2 {
		t.Errorf("max InUse items = %d, want 2..%d", got, maxItems)
	}
	s := q.Stats()
	wantStats := Stats{
		CapItems: maxItems, CapBytes: maxBytes,
		Puts: n, Takes: n + reparks.Load(), Reparks: reparks.Load(),
	}
	blocked := s.BlockedPut
	s.Early, s.Expired, s.Drained, s.BlockedPut = 0, 0, 0, 0 // timing-dependent
	if s != wantStats {
		t.Errorf("final Stats() =\n%+v\nwant\n%+v", s, wantStats)
	}
	t.Logf("max InUse %d of %d items, reparks %d, Puts blocked %v in total", maxInUse.Load(), maxItems, reparks.Load(), blocked)
}
