package enrich

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/bendstream/bend/internal/activity"
	metrics "github.com/rcrowley/go-metrics"
)

// lanesOf builds a queue over enrichers named by names, optional unless
// listed in required, each lane holding size tasks.
func lanesOf(size int, names []string, required ...string) ([]Resolved, *Queue, metrics.Registry) {
	var ens []Resolved
	for _, n := range names {
		req := false
		for _, r := range required {
			req = req || r == n
		}
		ens = append(ens, Resolved{Spec: Spec{Name: n, Timeout: time.Second, Required: req, QueueSize: size},
			Enricher: EnricherFunc(func(context.Context, *activity.Fields) (json.RawMessage, error) { return nil, nil })})
	}
	reg := metrics.NewRegistry()
	return ens, NewQueue(0, ens, reg), reg
}

// outsideBubble starts go-metrics' meter goroutine, which runs for the
// life of the process, outside any synctest bubble: started inside one (a
// Pool's latency timer holds a meter) it would keep the bubble from ending.
func outsideBubble() { metrics.NewMeter().Stop() }

// TestPickRule: the scheduler takes from the non-empty lane with the fewest
// tasks taken, ties in round-robin order.
func TestPickRule(t *testing.T) {
	for _, tc := range []struct {
		name       string
		queued     []int // tasks waiting per lane
		busy       []int // tasks taken per lane
		rr         int
		want       int // lane picked, -1 for none
		wantNextRR int
	}{
		{"all empty", []int{0, 0}, []int{3, 0}, 0, -1, 0},
		{"only one has work, however busy", []int{5, 0}, []int{4, 0}, 1, 0, 1},
		{"fewest busy wins", []int{5, 5}, []int{3, 1}, 0, 1, 0},
		{"tie goes round-robin from rr", []int{5, 5, 5}, []int{1, 1, 1}, 1, 1, 2},
		{"tie wraps around", []int{5, 0, 5}, []int{2, 0, 2}, 1, 2, 0},
		{"idle enricher first", []int{1, 9}, []int{0, 4}, 1, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			names := []string{"a", "b", "c"}[:len(tc.queued)]
			_, q, _ := lanesOf(16, names)
			for i, n := range tc.queued {
				for range n {
					q.Offer(&Task{Enricher: i, Report: func(*Task, json.RawMessage, error) {}})
				}
				q.lanes[i].busy = tc.busy[i]
			}
			q.rr = tc.rr
			got := -1
			if task := q.pickLocked(); task != nil {
				got = task.Enricher
			}
			if got != tc.want {
				t.Errorf("picked lane %d, want %d", got, tc.want)
			}
			if got >= 0 && q.rr != tc.wantNextRR {
				t.Errorf("rr = %d after the pick, want %d", q.rr, tc.wantNextRR)
			}
		})
	}
}

// TestLaneOrder: an optional lane gives its newest task first and, when
// full, drops its oldest as overloaded; a required lane is FIFO, and Push
// waits for room until its ctx ends.
func TestLaneOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, q, reg := lanesOf(3, []string{"opt", "req"}, "req")
		var mu sync.Mutex
		dropped := map[int]error{}
		task := func(lane, id int) *Task {
			return &Task{Enricher: lane, Attempt: id, Report: func(t *Task, _ json.RawMessage, err error) {
				mu.Lock()
				dropped[t.Attempt] = err
				mu.Unlock()
			}}
		}
		for id := 1; id <= 5; id++ {
			if ok := q.Offer(task(0, id)); !ok {
				t.Errorf("Offer(%d) = false on a newest-first lane, want true", id)
			}
		}
		if !errors.Is(dropped[1], ErrOverloaded) || !errors.Is(dropped[2], ErrOverloaded) || len(dropped) != 2 {
			t.Errorf("dropped %v, want tasks 1 and 2 as overloaded", dropped)
		}
		if got := reg.Get("enrich.opt.overloaded").(metrics.Counter).Count(); got != 2 {
			t.Errorf("enrich.opt.overloaded = %d, want 2", got)
		}
		for _, want := range []int{5, 4, 3} {
			got, err := q.take(context.Background(), nil, false)
			if err != nil || got == nil || got.Attempt != want {
				t.Fatalf("take = %v, %v; want task %d (newest first)", got, err, want)
			}
			q.done(got)
		}

		ctx := context.Background()
		for id := 1; id <= 3; id++ {
			if err := q.Push(ctx, task(1, id)); err != nil {
				t.Fatal(err)
			}
		}
		if ok := q.Offer(task(1, 9)); ok || !errors.Is(dropped[9], ErrOverloaded) {
			t.Errorf("Offer to a full FIFO lane = %v (dropped %v), want false, the offered task overloaded", ok, dropped[9])
		}
		pushed := make(chan error, 1)
		go func() { pushed <- q.Push(ctx, task(1, 4)) }()
		synctest.Wait()
		select {
		case err := <-pushed:
			t.Fatalf("Push into a full lane returned %v, want it to wait", err)
		default:
		}
		if got := reg.Get("enrich.req.queued").(metrics.Gauge).Value(); got != 4 {
			t.Errorf("enrich.req.queued = %d with 3 waiting and one Push blocked, want 4", got)
		}
		for _, want := range []int{1, 2, 3, 4} {
			got, err := q.take(ctx, nil, true)
			if err != nil || got.Attempt != want {
				t.Fatalf("take = %v, %v; want task %d (oldest first)", got, err, want)
			}
			q.done(got)
			if want == 1 {
				if err := <-pushed; err != nil {
					t.Fatalf("Push after room appeared: %v", err)
				}
			}
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		for range 3 {
			_ = q.Push(ctx, task(1, 7))
		}
		if err := q.Push(cctx, task(1, 8)); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Push into a full lane until ctx ends = %v, want context.DeadlineExceeded", err)
		}
	})
}

// TestFairness runs a Pool over two enrichers in virtual time: a slow one
// (500 ms an attempt) with far more work than the workers can do, and a
// fast one (1 ms) whose tasks arrive at a steady rate. The fast enricher
// must keep its throughput beside the slow one, which still gets the
// workers the fast one leaves; alone, the slow one gets every worker.
func TestFairness(t *testing.T) {
	const (
		workers  = 4
		slowTime = 500 * time.Millisecond
		fastTime = time.Millisecond
		every    = 2 * time.Millisecond // fast arrivals: half a worker's worth
		span     = 4 * time.Second
	)
	for _, tc := range []struct {
		name       string
		slow, fast bool
	}{
		{"fast alone", false, true},
		{"fast beside slow", true, true},
		{"slow alone takes every worker", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outsideBubble()
			synctest.Test(t, func(t *testing.T) {
				var slowBusy, slowTop atomic.Int64
				sleep := func(d time.Duration, count bool) Enricher {
					return EnricherFunc(func(ctx context.Context, _ *activity.Fields) (json.RawMessage, error) {
						if count {
							if n := slowBusy.Add(1); n > slowTop.Load() {
								slowTop.Store(n)
							}
							defer slowBusy.Add(-1)
						}
						select {
						case <-time.After(d):
							return json.RawMessage(`1`), nil
						case <-ctx.Done():
							return nil, ctx.Err()
						}
					})
				}
				ens := []Resolved{
					{Spec: Spec{Name: "slow", Timeout: time.Second, Required: true, QueueSize: 1000}, Enricher: sleep(slowTime, true)},
					{Spec: Spec{Name: "fast", Timeout: time.Second, Required: true, QueueSize: 1000}, Enricher: sleep(fastTime, false)},
				}
				reg := metrics.NewRegistry()
				q := NewQueue(0, ens, reg)
				p := NewPool(workers, ens, quietLog(), reg)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				go func() { _ = p.Run(ctx, q) }()

				var slowDone, fastDone atomic.Int64
				var waitMu sync.Mutex
				var fastWait time.Duration // summed push-to-report time of fast tasks
				if tc.slow {
					for range 1000 {
						_ = q.Push(ctx, &Task{Enricher: 0, Report: func(*Task, json.RawMessage, error) { slowDone.Add(1) }})
					}
				}
				start := time.Now()
				var pushed int64
				if tc.fast {
					for time.Since(start) < span {
						at := time.Now()
						_ = q.Push(ctx, &Task{Enricher: 1, Report: func(*Task, json.RawMessage, error) {
							waitMu.Lock()
							fastWait += time.Since(at)
							waitMu.Unlock()
							fastDone.Add(1)
						}})
						pushed++
						time.Sleep(every)
					}
				} else {
					time.Sleep(span)
				}
				// The fast tasks pushed last get a slow attempt's time to
				// finish: a worker frees up at least that often.
				time.Sleep(slowTime)
				synctest.Wait()
				t.Logf("fast: %d of %d done, mean wait %s; slow: %d done, at most %d at once",
					fastDone.Load(), pushed, fastWait/time.Duration(max(pushed, 1)), slowDone.Load(), slowTop.Load())
				if tc.fast && fastDone.Load() != pushed {
					t.Errorf("fast tasks done = %d of %d: its throughput fell", fastDone.Load(), pushed)
				}
				if tc.fast && tc.slow {
					// Arrivals need half a worker. A free worker takes the
					// fast lane first, so a fast task waits for the next
					// worker to finish at most: about slowTime/workers,
					// slowTime at the start, when every worker took a
					// slow task at once. Behind the 1,000 slow tasks of
					// one shared FIFO it would wait minutes.
					if mean := fastWait / time.Duration(pushed); mean > slowTime/2 {
						t.Errorf("fast tasks waited %s on average beside the slow enricher, want at most %s", mean, slowTime/2)
					}
					if slowDone.Load() == 0 {
						t.Error("the slow enricher got no worker: the scheduler must be work-conserving")
					}
				}
				if tc.slow && !tc.fast && slowTop.Load() != workers {
					t.Errorf("slow alone ran at most %d at once, want every worker (%d)", slowTop.Load(), workers)
				}
				cancel()
			})
		})
	}
}

// TestDeadlines: a task whose deadline has passed, or is nearer than its
// enricher's recent attempts take, is dropped unrun (ErrDeadline, counted);
// one with time enough runs with its context ending at the deadline; an
// attempt running past the deadline is cut there (ErrCut) and reports
// before it.
func TestDeadlines(t *testing.T) {
	const attempt = 100 * time.Millisecond
	for _, tc := range []struct {
		name    string
		left    time.Duration // from the pick to the deadline; 0: none
		warm    bool          // the pool has seen attempts of 100 ms
		took    time.Duration // what the enricher would take
		wantErr error
		wantRun bool
	}{
		{"no deadline", 0, true, attempt, nil, true},
		{"passed", -time.Millisecond, true, attempt, ErrDeadline, false},
		{"too near for the attempts seen", 50 * time.Millisecond, true, attempt, ErrDeadline, false},
		{"time enough", 500 * time.Millisecond, true, attempt, nil, true},
		{"unknown attempt time: tried, cut at the deadline", 50 * time.Millisecond, false, attempt, ErrCut, true},
		{"slower than the attempts seen: cut", 150 * time.Millisecond, true, 400 * time.Millisecond, ErrCut, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outsideBubble()
			synctest.Test(t, func(t *testing.T) {
				var ran atomic.Int64
				var took atomic.Int64
				took.Store(int64(attempt))
				e := EnricherFunc(func(ctx context.Context, _ *activity.Fields) (json.RawMessage, error) {
					ran.Add(1)
					select {
					case <-time.After(time.Duration(took.Load())):
						return json.RawMessage(`1`), nil
					case <-ctx.Done():
						return nil, ctx.Err()
					}
				})
				ens := []Resolved{{Spec: Spec{Name: "x", Timeout: time.Second}, Enricher: e}}
				reg := metrics.NewRegistry()
				q := NewQueue(8, ens, reg)
				p := NewPool(1, ens, quietLog(), reg)
				if tc.warm {
					for range 4 {
						p.Do(context.Background(), &Task{Report: func(*Task, json.RawMessage, error) {}})
					}
					ran.Store(0)
				}
				took.Store(int64(tc.took))
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				go func() { _ = p.Run(ctx, q) }()
				var gotErr error
				var reportedAt time.Time
				reported := make(chan struct{})
				task := &Task{Report: func(_ *Task, _ json.RawMessage, err error) {
					gotErr, reportedAt = err, time.Now()
					close(reported)
				}}
				if tc.left != 0 {
					task.Deadline = time.Now().Add(tc.left)
				}
				q.Offer(task)
				<-reported
				if !errors.Is(gotErr, tc.wantErr) || (tc.wantErr == nil) != (gotErr == nil) {
					t.Errorf("reported %v, want %v", gotErr, tc.wantErr)
				}
				if got := ran.Load() > 0; got != tc.wantRun {
					t.Errorf("ran = %v, want %v", got, tc.wantRun)
				}
				if tc.left > 0 && reportedAt.After(task.Deadline) {
					t.Errorf("reported %s after the deadline", reportedAt.Sub(task.Deadline))
				}
				wantDropped := int64(0)
				if errors.Is(tc.wantErr, ErrDeadline) {
					wantDropped = 1
				}
				if got := reg.Get("enrich.x.deadline").(metrics.Counter).Count(); got != wantDropped {
					t.Errorf("enrich.x.deadline = %d, want %d", got, wantDropped)
				}
				cancel()
			})
		})
	}
}

// TestRemoteLeaseScheduling: a lease takes from the lanes by the same rule
// as the local workers (fewest taken first), drops tasks whose activity
// left or whose deadline passed before leasing them, carries the time left
// before a task's deadline, and holds the leased tasks as taken until
// their results arrive.
func TestRemoteLeaseScheduling(t *testing.T) {
	q, srv, reg := newLeaseServer(t, DefaultRemoteConfig().Lease, Spec{Name: "stats", Required: true}, Spec{Name: "noop"})
	hs := httptest.NewServer(srv)
	defer hs.Close()
	var mu sync.Mutex
	reports := map[string]error{}
	report := func(t *Task, _ json.RawMessage, err error) {
		mu.Lock()
		reports[t.Activity.ID] = err
		mu.Unlock()
	}
	task := func(lane int, id string) *Task {
		return &Task{Enricher: lane, Attempt: 1, Activity: &activity.Fields{ID: id, Text: "hi"}, Report: report}
	}
	ctx := context.Background()
	for _, id := range []string{"s1", "s2", "s3", "s4"} {
		_ = q.Push(ctx, task(0, id))
	}
	gone := task(1, "gone")
	gone.Stale = func() bool { return true }
	late := task(1, "late")
	late.Deadline = time.Now().Add(-time.Second)
	soon := task(1, "soon")
	soon.Deadline = time.Now().Add(time.Minute)
	q.Offer(gone)
	q.Offer(late)
	q.Offer(soon)

	f := &remoteFixture{url: hs.URL}
	code, body := f.rawPost(t, "/v1/work/lease", testToken, `{"max":4,"wait_ms":100}`)
	if code != http.StatusOK {
		t.Fatalf("lease: %d %s", code, body)
	}
	var resp leaseResponse
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, rt := range resp.Tasks {
		got = append(got, rt.Activity.ID)
		if rt.Activity.ID == "soon" && (rt.DeadlineMS <= 0 || rt.DeadlineMS > 60000) {
			t.Errorf("soon: deadline_ms = %d, want the minute left", rt.DeadlineMS)
		}
		if rt.Activity.ID != "soon" && rt.DeadlineMS != 0 {
			t.Errorf("%s: deadline_ms = %d, want none", rt.Activity.ID, rt.DeadlineMS)
		}
	}
	// Ties go round-robin, the lane with fewer taken first: s1, then the
	// newest optional task (soon), s2, then the optional lane again (late
	// and gone, dropped unrun), and s3.
	if want := "s1,soon,s2,s3"; strings.Join(got, ",") != want {
		t.Errorf("leased %v, want %s", got, want)
	}
	mu.Lock()
	if !errors.Is(reports["gone"], ErrStale) || !errors.Is(reports["late"], ErrDeadline) {
		t.Errorf("reports %v: want gone stale and late past its deadline, both unrun", reports)
	}
	mu.Unlock()
	if got := reg.Get("enrich.stats.queued").(metrics.Gauge).Value(); got != 4 {
		t.Errorf("enrich.stats.queued = %d with three leased and one waiting, want 4", got)
	}
	var results []remoteResult
	for _, rt := range resp.Tasks {
		results = append(results, remoteResult{Lease: rt.Lease, Value: json.RawMessage(`{}`)})
	}
	b, _ := json.Marshal(results)
	if code, body := f.rawPost(t, "/v1/work/results", testToken, string(b)); code != http.StatusOK {
		t.Fatalf("results: %d %s", code, body)
	}
	if got := reg.Get("enrich.stats.queued").(metrics.Gauge).Value(); got != 1 {
		t.Errorf("enrich.stats.queued = %d after the results, want 1 (one waiting)", got)
	}
}

// TestLaneSizes: a lane holds its enricher's own queue_size, or an equal
// share of the total between the enrichers that queue every task; an
// inline enricher's lane (retries only) gets a share without taking one.
func TestLaneSizes(t *testing.T) {
	ens, err := Config{Enrichers: []Spec{
		{Name: "stats"}, // optional, instant: inline
		{Name: "a", Type: "noop", Required: true},
		{Name: "b", Type: "noop", Required: true, QueueSize: 7},
		{Name: "c", Type: "noop", Required: true},
	}}.Build(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := metrics.NewRegistry()
	NewQueue(100, ens, reg)
	for _, tc := range []struct {
		name string
		want int64
	}{{"stats", 50}, {"a", 50}, {"b", 7}, {"c", 50}} {
		if got := reg.Get("enrich." + tc.name + ".lane_cap").(metrics.Gauge).Value(); got != tc.want {
			t.Errorf("enrich.%s.lane_cap = %d, want %d", tc.name, got, tc.want)
		}
	}
	if got := reg.Get("enrich.queue.cap").(metrics.Gauge).Value(); got != 157 {
		t.Errorf("enrich.queue.cap = %d, want 157", got)
	}
}

// TestLeaseForDepartedWorkerIsNotLost: a task taken for a lease request
// whose worker has already gone (its request's context ended) must be
// leased anyway, so that its lease expires and it is reported and retried;
// before, it stayed taken and was never reported, and its activity waited
// forever.
func TestLeaseForDepartedWorkerIsNotLost(t *testing.T) {
	q, srv, _ := newLeaseServer(t, 200*time.Millisecond, Spec{Name: "stats", Required: true})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { _ = srv.Run(ctx) }()
	reported := make(chan error, 1)
	task := &Task{Enricher: 0, Attempt: 1, Activity: &activity.Fields{ID: "a1", Text: "hi"},
		Report: func(_ *Task, _ json.RawMessage, err error) { reported <- err }}
	if err := q.Push(ctx, task); err != nil {
		t.Fatal(err)
	}
	gone, leave := context.WithCancel(context.Background())
	leave() // the worker left before its request was served
	req := httptest.NewRequestWithContext(gone, http.MethodPost, "/v1/work/lease", strings.NewReader(`{"max":4,"wait_ms":100}`))
	req.Header.Set("Authorization", "Bearer "+testToken)
	srv.ServeHTTP(httptest.NewRecorder(), req)
	select {
	case err := <-reported:
		if !errors.Is(err, ErrLeaseExpired) {
			t.Fatalf("task reported %v, want ErrLeaseExpired", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the task taken for the departed worker was never reported: lost")
	}
}

// newLeaseServer builds a task queue of 16 per lane for specs and a task
// server over it with the test token and lease ttl.
func newLeaseServer(t *testing.T, ttl time.Duration, specs ...Spec) (*Queue, *Server, metrics.Registry) {
	t.Helper()
	ens, err := Config{Enrichers: specs}.Build(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := metrics.NewRegistry()
	q := NewQueue(16, ens, reg)
	cfg := DefaultRemoteConfig()
	cfg.Token = testToken
	cfg.Lease = ttl
	srv, err := NewServer(cfg, q, ens, quietLog(), reg)
	if err != nil {
		t.Fatal(err)
	}
	return q, srv, reg
}
