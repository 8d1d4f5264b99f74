package enrich

import (
	"context"
	"encoding/json"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/activity"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
)

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPoolSetWorkers resizes a running pool up, down, to zero and back
// while tasks flow, and checks that every task is reported exactly once
// and the enrich.workers gauge follows.
func TestPoolSetWorkers(t *testing.T) {
	slow := EnricherFunc(func(ctx context.Context, _ *activity.Fields) (json.RawMessage, error) {
		select {
		case <-time.After(time.Millisecond):
		case <-ctx.Done():
		}
		return json.RawMessage(`1`), nil
	})
	reg := metrics.NewRegistry()
	log := logrus.New()
	log.SetOutput(io.Discard)
	ens := []Resolved{{Spec: Spec{Name: "x", Timeout: time.Second}, Enricher: slow}}
	p := NewPool(2, ens, log, reg)
	workers := reg.Get("enrich.workers").(metrics.Gauge)

	q := NewQueue(16, ens, reg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, q) }()

	var mu sync.Mutex
	reported := map[int]int{}
	next := 0
	push := func(n int) {
		t.Helper()
		for range n {
			id := next
			next++
			task := &Task{Activity: &activity.Fields{}, Attempt: 1, Report: func(*Task, json.RawMessage, error) {
				mu.Lock()
				reported[id]++
				mu.Unlock()
			}}
			if err := q.Push(ctx, task); err != nil {
				t.Fatal(err)
			}
		}
	}
	allReported := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(reported) == next
	}

	for _, tc := range []struct {
		name    string
		workers int
	}{
		{"initial", 2}, {"grow", 8}, {"shrink", 1}, {"grow again", 5}, {"to zero", 0}, {"back", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name != "initial" {
				p.SetWorkers(tc.workers)
			}
			if p.Workers() != tc.workers {
				t.Errorf("Workers() = %d, want %d", p.Workers(), tc.workers)
			}
			waitFor(t, 5*time.Second, "the running workers to follow", func() bool { return workers.Value() == int64(tc.workers) })
			if tc.workers == 0 {
				push(3) // nobody takes them until workers come back
				time.Sleep(20 * time.Millisecond)
				if q.Len() != 3 {
					t.Errorf("with no workers the queue holds %d tasks, want 3", q.Len())
				}
				return
			}
			push(200)
			waitFor(t, 10*time.Second, "every task reported", allReported)
		})
	}
	mu.Lock()
	for id, n := range reported {
		if n != 1 {
			t.Errorf("task %d reported %d times, want once", id, n)
		}
	}
	mu.Unlock()

	q.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the queue closed")
	}
	if workers.Value() != 0 {
		t.Errorf("enrich.workers = %d after Run returned, want 0", workers.Value())
	}
}

// TestPoolRunStopsOnCancel checks that Run returns nil when ctx ends, also
// with no workers.
func TestPoolRunStopsOnCancel(t *testing.T) {
	for _, n := range []int{0, 3} {
		log := logrus.New()
		log.SetOutput(io.Discard)
		p := NewPool(n, nil, log, metrics.NewRegistry())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx, NewQueue(1, nil, nil)) }()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("workers %d: Run = %v, want nil", n, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("workers %d: Run did not return after cancel", n)
		}
	}
}
