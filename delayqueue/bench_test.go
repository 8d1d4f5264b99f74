package delayqueue

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"
)

// BenchmarkPutTake measures one item's full life (Put, Take, Release) on one
// goroutine, with the item already due.
func BenchmarkPutTake(b *testing.B) {
	q, err := New[int](Config{MaxItems: 1024, MaxBytes: 1 << 20, EarlyRelease: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	due := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := q.Put(ctx, i, due, 100); err != nil {
			b.Fatal(err)
		}
		it, err := q.Take(ctx)
		if err != nil {
			b.Fatal(err)
		}
		q.Release(it)
	}
}

// BenchmarkPutTakeParallel measures Put under contention: b.RunParallel
// producers against GOMAXPROCS consumers that Take and Release, through a
// queue small enough that producers block. Half the items are completed
// early, the rest are due at once. ns/op is per item.
func BenchmarkPutTakeParallel(b *testing.B) {
	q, err := New[int](Config{MaxItems: 256, MaxBytes: 256 * 100, EarlyRelease: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				it, err := q.Take(ctx)
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					b.Error(err)
					return
				}
				q.Release(it)
			}
		})
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			due := time.Now()
			if i%2 == 0 {
				due = due.Add(time.Hour)
			}
			it, err := q.Put(ctx, i, due, 100)
			if err != nil {
				b.Error(err)
				return
			}
			if i%2 == 0 {
				q.Complete(it)
			}
			i++
		}
	})
	q.Close()
	wg.Wait()
}
