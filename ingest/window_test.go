package ingest

import (
	"context"
	"errors"
	"testing"
	"time"
)

// acquireAsync starts w.acquire in a goroutine and returns its result channel.
func acquireAsync(ctx context.Context, w *window, recs, n int64) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- w.acquire(ctx, recs, n) }()
	return ch
}

// blocked fails unless ch stays empty for a moment.
func blocked(t *testing.T, ch <-chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("%s returned %v, want it to wait", what, err)
	case <-time.After(50 * time.Millisecond):
	}
}

// granted fails unless ch yields nil soon.
func granted(t *testing.T, ch <-chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s still waiting", what)
	}
}

func TestWindow(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, w *window)
	}{
		{"takes records and bytes together", func(t *testing.T, w *window) {
			granted(t, acquireAsync(ctx, w, 10, 100), "fits")
			if r, n := w.held(); r != 10 || n != 100 {
				t.Fatalf("held %d, %d; want 10, 100", r, n)
			}
			byRecords := acquireAsync(ctx, w, 1, 0)
			blocked(t, byRecords, "over the record limit")
			w.release(1, 0)
			granted(t, byRecords, "after a record came back")
			byBytes := acquireAsync(ctx, w, 0, 1)
			blocked(t, byBytes, "over the byte limit")
			w.release(0, 1)
			granted(t, byBytes, "after a byte came back")
		}},
		{"first in, first out", func(t *testing.T, w *window) {
			granted(t, acquireAsync(ctx, w, 8, 0), "first")
			big := acquireAsync(ctx, w, 5, 0)
			blocked(t, big, "big")
			small := acquireAsync(ctx, w, 1, 0) // would fit, but queues behind big
			blocked(t, small, "small behind big")
			w.release(4, 0) // 4 held: room for big (5), then small (1)
			granted(t, big, "big")
			granted(t, small, "small")
		}},
		{"a cancelled head lets the next one in", func(t *testing.T, w *window) {
			granted(t, acquireAsync(ctx, w, 8, 0), "first")
			cctx, cancel := context.WithCancel(ctx)
			head := acquireAsync(cctx, w, 5, 0)
			blocked(t, head, "head")
			next := acquireAsync(ctx, w, 2, 0)
			blocked(t, next, "next")
			cancel()
			if err := <-head; !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled head: %v", err)
			}
			granted(t, next, "next")
			if r, _ := w.held(); r != 10 {
				t.Fatalf("held %d records, want 10", r)
			}
		}},
		{"larger than the window waits for ctx", func(t *testing.T, w *window) {
			cctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
			defer cancel()
			if err := w.acquire(cctx, 11, 0); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("acquire beyond the window: %v", err)
			}
			granted(t, acquireAsync(ctx, w, 10, 100), "the whole window afterwards")
		}},
		{"over-release panics", func(t *testing.T, w *window) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			w.release(1, 0)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newWindow(10, 100)) })
	}
}
