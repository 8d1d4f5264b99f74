package enrich

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/activity"
	"github.com/bendstream/bend/internal/testutil"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
)

const testToken = "s3cret"

// remoteFixture is a task server over loopback HTTP with its queue, and a
// record of every Report call.
type remoteFixture struct {
	q   *Queue
	srv *Server
	url string
	reg metrics.Registry

	mu             sync.Mutex
	reports        map[string][]error // activity id -> the error of each final report
	values         map[string]json.RawMessage
	attempts       map[string]int // activity id -> the attempt of its last final report
	expiredReports []string       // activity ids reported with ErrLeaseExpired, in order
}

func newRemoteFixture(t *testing.T, ttl time.Duration) *remoteFixture {
	t.Helper()
	f := &remoteFixture{q: NewQueue(64, testEnrichers(t), nil), reg: metrics.NewRegistry(),
		reports: map[string][]error{}, values: map[string]json.RawMessage{}, attempts: map[string]int{}}
	cfg := DefaultRemoteConfig()
	cfg.Token, cfg.Lease = testToken, ttl
	srv, err := NewServer(cfg, f.q, testEnrichers(t), quietLog(), f.reg)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	f.srv = srv
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	f.url = hs.URL
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

func testEnrichers(t *testing.T) []Resolved {
	t.Helper()
	es, err := Config{Enrichers: []Spec{{Name: "stats", Required: true}}}.Build(nil, nil)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return es
}

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// push queues one task per id, each reporting into f.
func (f *remoteFixture) push(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		a := &activity.Fields{ID: fmt.Sprintf("act-%d", i), Text: "hello #bend http://x.test"}
		report := func(t *Task, v json.RawMessage, err error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if errors.Is(err, ErrLeaseExpired) {
				// As the distributor does: the next attempt, queued.
				f.expiredReports = append(f.expiredReports, t.Activity.ID)
				next := *t
				next.Attempt++
				go func() { _ = f.q.Push(context.Background(), &next) }()
				return
			}
			f.reports[t.Activity.ID] = append(f.reports[t.Activity.ID], err)
			f.values[t.Activity.ID] = v
			f.attempts[t.Activity.ID] = t.Attempt
		}
		task := &Task{Enricher: 0, Activity: a, Attempt: 1, Report: report}
		if err := f.q.Push(context.Background(), task); err != nil {
			t.Fatal(err)
		}
	}
}

func (f *remoteFixture) reported() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reports)
}

// wantEachOnceOK fails unless each of the n tasks was reported exactly once, without error, with a value.
func (f *remoteFixture) wantEachOnceOK(t *testing.T, n int) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reports) != n {
		t.Errorf("%d tasks reported, want %d", len(f.reports), n)
	}
	for id, errs := range f.reports {
		if len(errs) != 1 || errs[0] != nil {
			t.Errorf("%s reported %d times, errors %v; want once, nil", id, len(errs), errs)
		}
		if !json.Valid(f.values[id]) || bytes.Equal(f.values[id], []byte("null")) {
			t.Errorf("%s value %q, want the stats JSON", id, f.values[id])
		}
	}
}

func (f *remoteFixture) count(name string) int64 {
	return f.reg.Get(name).(metrics.Counter).Count()
}

func startWorker(t *testing.T, ctx context.Context, cfg WorkerConfig) <-chan error {
	t.Helper()
	w, err := NewWorker(cfg, testEnrichers(t), quietLog(), metrics.NewRegistry())
	if err != nil {
		t.Fatalf("NewWorker: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return done
}

// TestRemoteWorkerProcessesTasks: tasks leased over HTTP by the real worker
// come back through each task's Report.
func TestRemoteWorkerProcessesTasks(t *testing.T) {
	f := newRemoteFixture(t, 2*time.Second)
	const n = 50
	f.push(t, n)
	ctx, cancel := context.WithCancel(context.Background())
	done := startWorker(t, ctx, WorkerConfig{URL: f.url, Token: testToken, Workers: 3, Batch: 4, Wait: 200 * time.Millisecond})
	testutil.Eventually(t, 10*time.Second, "every task reported", func() bool { return f.reported() == n })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	f.wantEachOnceOK(t, n)
	if got := f.count("enrich.remote.leased"); got != n {
		t.Errorf("enrich.remote.leased = %d, want %d", got, n)
	}
	if got := f.count("enrich.remote.results"); got != n {
		t.Errorf("enrich.remote.results = %d, want %d", got, n)
	}
}

// rawPost posts body to the fixture and returns the status and answer.
func (f *remoteFixture) rawPost(t *testing.T, path, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRemoteDeadWorkerLeasesExpire: a worker leases tasks and dies (no
// heartbeat, no result). Its leases expire: each of those tasks is reported
// once with ErrLeaseExpired (a failed attempt), the fixture retries it as
// attempt 2, as the distributor does, and a live worker completes it: each
// task ends reported exactly once, OK. The dead worker's late results are
// stale and ignored.
func TestRemoteDeadWorkerLeasesExpire(t *testing.T) {
	f := newRemoteFixture(t, 300*time.Millisecond)
	const n = 20
	f.push(t, n)
	code, body := f.rawPost(t, "/v1/work/lease", testToken, `{"max":8,"wait_ms":1000}`)
	if code != http.StatusOK {
		t.Fatalf("lease: %d %s", code, body)
	}
	var dead leaseResponse
	if err := json.Unmarshal([]byte(body), &dead); err != nil {
		t.Fatal(err)
	}
	if len(dead.Tasks) != 8 || dead.TTLMS != 300 {
		t.Fatalf("dead worker leased %d tasks, ttl %d ms; want 8, 300", len(dead.Tasks), dead.TTLMS)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := startWorker(t, ctx, WorkerConfig{URL: f.url, Token: testToken, Workers: 2, Batch: 3, Wait: 100 * time.Millisecond})
	testutil.Eventually(t, 10*time.Second, "every task reported", func() bool { return f.reported() == n })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}

	// The dead worker wakes up and posts: all stale.
	late := make([]remoteResult, 0, len(dead.Tasks))
	for _, rt := range dead.Tasks {
		late = append(late, remoteResult{Lease: rt.Lease, Error: "too late"})
	}
	b, _ := json.Marshal(late)
	code, body = f.rawPost(t, "/v1/work/results", testToken, string(b))
	if code != http.StatusOK || !strings.Contains(body, `"stale":8`) {
		t.Errorf("late results: %d %s, want 200 with stale 8", code, body)
	}
	f.wantEachOnceOK(t, n)
	if got := f.count("enrich.remote.expired"); got != 8 {
		t.Errorf("enrich.remote.expired = %d, want 8", got)
	}
	f.mu.Lock()
	expired := slices.Clone(f.expiredReports)
	retried := 0
	for _, id := range expired {
		if f.attempts[id] == 2 {
			retried++
		}
	}
	f.mu.Unlock()
	if len(expired) != 8 || retried != 8 {
		t.Errorf("expired reports %v, %d of them completed at attempt 2; want 8 and 8", expired, retried)
	}
	if got := f.count("enrich.remote.stale"); got != 8 {
		t.Errorf("enrich.remote.stale = %d, want 8", got)
	}
}

// TestRemoteHeartbeatKeepsLease: a heartbeated lease outlives its ttl.
func TestRemoteHeartbeatKeepsLease(t *testing.T) {
	f := newRemoteFixture(t, 200*time.Millisecond)
	f.push(t, 1)
	_, body := f.rawPost(t, "/v1/work/lease", testToken, `{"max":1,"wait_ms":1000}`)
	var lr leaseResponse
	if err := json.Unmarshal([]byte(body), &lr); err != nil || len(lr.Tasks) != 1 {
		t.Fatalf("lease: %s (%v)", body, err)
	}
	id := lr.Tasks[0].Lease
	for range 6 { // 600ms, three ttls
		time.Sleep(100 * time.Millisecond)
		if code, body := f.rawPost(t, "/v1/work/heartbeat", testToken, `{"leases":["`+id+`","nope"]}`); code != http.StatusOK || body != "{\"lost\":[\"nope\"]}\n" {
			t.Fatalf("heartbeat: %d %q", code, body)
		}
	}
	if got := f.count("enrich.remote.expired"); got != 0 {
		t.Fatalf("enrich.remote.expired = %d after heartbeats, want 0", got)
	}
	code, body := f.rawPost(t, "/v1/work/results", testToken, `[{"lease":"`+id+`","value":{"n":1}}]`)
	if code != http.StatusOK || !strings.Contains(body, `"accepted":1`) {
		t.Fatalf("results: %d %s", code, body)
	}
	if f.reported() != 1 || string(f.values["act-0"]) != `{"n":1}` {
		t.Errorf("reported %d, value %s; want 1, {\"n\":1}", f.reported(), f.values["act-0"])
	}
}

// TestRemoteRejects: authentication, bad requests and enricher mismatch.
func TestRemoteRejects(t *testing.T) {
	f := newRemoteFixture(t, time.Second)
	for _, tc := range []struct {
		name, path, token, body string
		want                    int
	}{
		{"no token", "/v1/work/lease", "", `{"max":1}`, http.StatusUnauthorized},
		{"bad token", "/v1/work/lease", "wrong", `{"max":1}`, http.StatusUnauthorized},
		{"bad token on results", "/v1/work/results", "wrong", `[]`, http.StatusUnauthorized},
		{"bad JSON", "/v1/work/lease", testToken, `{"max":`, http.StatusBadRequest},
		{"results not a list", "/v1/work/results", testToken, `{"lease":"x"}`, http.StatusBadRequest},
		{"missing enricher", "/v1/work/lease", testToken, `{"max":1,"enrichers":["lang"]}`, http.StatusConflict},
		{"unknown path", "/v1/work/nope", testToken, `{}`, http.StatusNotFound},
		{"empty poll", "/v1/work/lease", testToken, `{"max":1,"wait_ms":10,"enrichers":["stats"]}`, http.StatusOK},
		{"oversized lease request", "/v1/work/lease", testToken, `{"max":1,"x":"` + strings.Repeat("a", maxRequestBytes) + `"}`, http.StatusRequestEntityTooLarge},
		{"oversized results", "/v1/work/results", testToken, `[` + strings.Repeat(" ", maxResultsBytes) + `]`, http.StatusRequestEntityTooLarge},
		{"oversized without a token", "/v1/work/results", "", `[` + strings.Repeat(" ", maxResultsBytes) + `]`, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, body := f.rawPost(t, tc.path, tc.token, tc.body); got != tc.want {
				t.Errorf("got %d %q, want %d", got, body, tc.want)
			}
		})
	}

	// The worker gives up on a refusal that retrying cannot fix.
	done := startWorker(t, context.Background(), WorkerConfig{URL: f.url, Token: "wrong", Workers: 2})
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "401") {
			t.Errorf("Run with a bad token: %v, want a 401 error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run with a bad token did not return")
	}
}

func TestRemoteConfigValidate(t *testing.T) {
	base := DefaultRemoteConfig()
	for _, tc := range []struct {
		name    string
		mod     func(*RemoteConfig)
		wantErr string
	}{
		{"default (off)", func(*RemoteConfig) {}, ""},
		{"on with token", func(c *RemoteConfig) { c.Addr, c.Token = "127.0.0.1:9190", "t" }, ""},
		{"on without token", func(c *RemoteConfig) { c.Addr = "127.0.0.1:9190" }, "enrich.remote.token"},
		{"on anonymous", func(c *RemoteConfig) { c.Addr, c.AllowAnonymous = ":9190", true }, ""},
		{"bad addr", func(c *RemoteConfig) { c.Addr, c.Token = "nope", "t" }, "enrich.remote.addr"},
		{"zero lease", func(c *RemoteConfig) { c.Addr, c.Token, c.Lease = ":9190", "t", 0 }, "enrich.remote.lease"},
		{"zero batch", func(c *RemoteConfig) { c.Addr, c.Token, c.MaxBatch = ":9190", "t", 0 }, "enrich.remote.max_batch"},
		{"off ignores the rest", func(c *RemoteConfig) { c.Lease, c.MaxBatch = 0, 0 }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.mod(&c)
			err := c.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("got %v, want no error", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("got %v, want an error naming %s", err, tc.wantErr)
			}
		})
	}
}

// TestRemoteWorkerHeartbeatsSlowTask: a task running for several lease
// durations keeps its lease through the worker's heartbeats.
func TestRemoteWorkerHeartbeatsSlowTask(t *testing.T) {
	f := newRemoteFixture(t, 200*time.Millisecond)
	f.push(t, 2)
	es := testEnrichers(t)
	es[0].Timeout = 5 * time.Second
	inner := es[0].Enricher
	es[0].Enricher = EnricherFunc(func(ctx context.Context, a *activity.Fields) (json.RawMessage, error) {
		time.Sleep(700 * time.Millisecond)
		return inner.Enrich(ctx, a)
	})
	w, err := NewWorker(WorkerConfig{URL: f.url, Token: testToken, Workers: 1, Batch: 2, Wait: 100 * time.Millisecond},
		es, quietLog(), metrics.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	testutil.Eventually(t, 10*time.Second, "both tasks reported", func() bool { return f.reported() == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	f.wantEachOnceOK(t, 2)
	if got := f.count("enrich.remote.expired"); got != 0 {
		t.Errorf("enrich.remote.expired = %d, want 0: heartbeats should hold the leases", got)
	}
}

// TestRemoteServeBoundsHeaders: Serve's HTTP server answers 431 to an
// oversized header before any handler (or token check) runs.
func TestRemoteServeBoundsHeaders(t *testing.T) {
	cfg := DefaultRemoteConfig()
	cfg.Token = testToken
	srv, err := NewServer(cfg, NewQueue(4, testEnrichers(t), nil), testEnrichers(t), quietLog(), metrics.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	for _, tc := range []struct {
		name   string
		header int
		want   int
	}{
		{"small header, no token", 100, http.StatusUnauthorized},
		{"oversized header", 64 << 10, http.StatusRequestHeaderFieldsTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := testutil.StatusWithHeader(t, "POST", "http://"+ln.Addr().String()+"/v1/work/lease", `{"max":1}`, tc.header); got != tc.want {
				t.Errorf("status %d, want %d", got, tc.want)
			}
		})
	}
}

// TestRemoteWorkerLeasesInBatches: a worker with many goroutines leases
// for all of them with one request at a time, so the task server holds one
// long poll per worker process, not one per goroutine, and with plenty of
// fast tasks each request carries many.
func TestRemoteWorkerLeasesInBatches(t *testing.T) {
	f := newRemoteFixture(t, 5*time.Second)
	var leases, open, maxOpen atomic.Int64
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/work/lease" {
			leases.Add(1)
			n := open.Add(1)
			for m := maxOpen.Load(); n > m && !maxOpen.CompareAndSwap(m, n); m = maxOpen.Load() {
			}
			// A request is open until its answer starts: the worker can
			// send the next one as soon as it has read this answer, maybe
			// before this handler has returned.
			cw := &closeOnWrite{ResponseWriter: w, close: func() { open.Add(-1) }}
			defer cw.done()
			w = cw
		}
		f.srv.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	const n = 3000
	pushed := make(chan struct{})
	go func() { defer close(pushed); f.push(t, n) }() // blocks while the queue (64) is full
	ctx, cancel := context.WithCancel(context.Background())
	done := startWorker(t, ctx, WorkerConfig{URL: hs.URL, Token: testToken, Workers: 64, Batch: 64, Wait: 200 * time.Millisecond})
	testutil.Eventually(t, 30*time.Second, "every task reported", func() bool { return f.reported() == n })
	<-pushed
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	f.wantEachOnceOK(t, n)
	// Each request returns what the queue holds (up to 64); the last few,
	// long polls finding nothing, carry none.
	if got := leases.Load(); got > n/8 {
		t.Errorf("%d lease requests for %d tasks (%.1f tasks each); want at most %d: leasing must batch across the worker's goroutines",
			got, n, float64(n)/float64(got), n/8)
	}
	if got := maxOpen.Load(); got != 1 {
		t.Errorf("%d lease requests open at once; want 1 per worker process", got)
	}
	t.Logf("%d lease requests for %d tasks", leases.Load(), n)
}

// closeOnWrite calls close once, when the answer starts or the handler
// returns, whichever is first.
type closeOnWrite struct {
	http.ResponseWriter
	close func()
	once  sync.Once
}

func (c *closeOnWrite) done() { c.once.Do(c.close) }

func (c *closeOnWrite) WriteHeader(code int) {
	c.done()
	c.ResponseWriter.WriteHeader(code)
}

func (c *closeOnWrite) Write(b []byte) (int, error) {
	c.done()
	return c.ResponseWriter.Write(b)
}
