package enrich

// Remote workers: the distributor's enrichment tasks served over HTTP, so
// that `bend work` processes on other machines take tasks from the same
// Queue, by the same fair rule, as the in-process Pool.
//
// Protocol (JSON over HTTP, every request with "Authorization: Bearer TOKEN"):
//
//	POST /v1/work/lease      {"max":N,"wait_ms":W,"enrichers":["name",...]}
//	                         -> {"ttl_ms":T,"tasks":[{"lease":"id","enricher":"name","attempt":k,"deadline_ms":D,"activity":{...}}]}
//	                         Waits up to W ms (at most 30s) for the first task, then
//	                         takes up to N-1 more without waiting; no task: an empty list.
//	                         deadline_ms, when present, is the time left before the
//	                         task's Deadline when it was leased: the worker does not
//	                         start an attempt it cannot finish in it, bounds the attempt
//	                         by it, and posts that result at once.
//	                         409 if the worker lacks one of the distributor's enrichers.
//	POST /v1/work/heartbeat  {"leases":["id",...]} -> {"lost":["id",...]}
//	                         Extends each lease held to now+T; lost ones have expired.
//	POST /v1/work/results    [{"lease":"id","value":<json>,"error":"..."}] -> {"accepted":n,"stale":m}
//	                         A non-empty error is a failed attempt; otherwise value is the result.
//
// A lease neither answered nor heartbeated within T is a failed attempt: its
// task is reported with ErrLeaseExpired, and the distributor retries it as
// the next attempt after its backoff, like any failure. So a worker that dies
// loses no enrichment, and an activity that kills every worker that takes it
// runs out of attempts (dead-lettered if required, marked missing if not)
// instead of circling for ever. A result that comes after the expiry is
// stale and ignored, so each attempt is reported exactly once.
//
// Metrics:
//
//	enrich.remote.leased   counter of tasks handed to remote workers
//	enrich.remote.expired  counter of leases that expired (reported as failed attempts)
//	enrich.remote.results  counter of results accepted and reported
//	enrich.remote.stale    counter of results for unknown or expired leases, ignored
//	enrich.remote.dropped  counter of tasks not leased: their activity had left
//	enrich.remote.leases   gauge of leases held now

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bendstream/bend/internal/activity"
	"github.com/bendstream/bend/internal/metricnames"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
)

// RemoteConfig is the "enrich.remote" section of config.yaml: the server
// from which `bend work` processes lease tasks.
type RemoteConfig struct {
	// Addr is the host:port the task server listens on, apart from the
	// admin server; "" turns remote workers off. Default "".
	Addr string `mapstructure:"addr"`
	// Token is the bearer token workers must send. Required when Addr is
	// set, unless AllowAnonymous. Prefer the environment
	// (BEND_ENRICH_REMOTE_TOKEN) to the file; it is never logged. Default "".
	Token string `mapstructure:"token"`
	// AllowAnonymous accepts workers without a token when Token is empty,
	// for trusted networks only; bend logs a warning. Default false.
	AllowAnonymous bool `mapstructure:"allow_anonymous"`
	// Lease is how long a leased task stays with its worker without a
	// heartbeat or a result before it goes back on the queue. Default 10s.
	Lease time.Duration `mapstructure:"lease"`
	// MaxBatch caps the tasks one lease request receives. Default 64.
	MaxBatch int `mapstructure:"max_batch"`
}

// DefaultRemoteConfig returns the documented defaults.
func DefaultRemoteConfig() RemoteConfig {
	return RemoteConfig{Lease: 10 * time.Second, MaxBatch: 64}
}

// Validate reports every invalid field by its config.yaml key.
func (c RemoteConfig) Validate() error {
	if c.Addr == "" {
		return nil // the task server is off; its other keys are unused
	}
	var errs []error
	{
		if _, port, err := net.SplitHostPort(c.Addr); err != nil {
			errs = append(errs, fmt.Errorf("enrich.remote.addr: %w", err))
		} else if port == "" {
			errs = append(errs, fmt.Errorf("enrich.remote.addr: %q has no port", c.Addr))
		}
		if c.Token == "" && !c.AllowAnonymous {
			errs = append(errs, errors.New("enrich.remote.token: required when enrich.remote.addr is set (or set enrich.remote.allow_anonymous)"))
		}
	}
	if c.Lease <= 0 {
		errs = append(errs, fmt.Errorf("enrich.remote.lease: must be positive, got %s", c.Lease))
	}
	if c.MaxBatch < 1 {
		errs = append(errs, fmt.Errorf("enrich.remote.max_batch: must be at least 1, got %d", c.MaxBatch))
	}
	return errors.Join(errs...)
}

const (
	// maxLongPoll caps a lease request's wait_ms.
	maxLongPoll = 30 * time.Second
	// maxRequestBytes bounds lease and heartbeat bodies.
	maxRequestBytes = 1 << 20
	// maxResultsBytes bounds a results body.
	maxResultsBytes = 64 << 20
)

// Wire types of the protocol (see the comment at the top of this file).
type (
	leaseRequest struct {
		Max       int      `json:"max"`
		WaitMS    int      `json:"wait_ms"`
		Enrichers []string `json:"enrichers,omitempty"`
	}
	leaseResponse struct {
		TTLMS int64        `json:"ttl_ms"`
		Tasks []remoteTask `json:"tasks"`
	}
	remoteTask struct {
		Lease    string `json:"lease"`
		Enricher string `json:"enricher"`
		Attempt  int    `json:"attempt"`
		// DeadlineMS is the time left, in ms, before Task.Deadline; 0: none.
		DeadlineMS int64            `json:"deadline_ms,omitempty"`
		Activity   *activity.Fields `json:"activity"`
	}
	heartbeatRequest struct {
		Leases []string `json:"leases"`
	}
	heartbeatResponse struct {
		Lost []string `json:"lost"`
	}
	remoteResult struct {
		Lease string          `json:"lease"`
		Value json.RawMessage `json:"value,omitempty"`
		Error string          `json:"error,omitempty"`
		// urgent marks a result of a task with a deadline: posted at once.
		urgent bool
	}
	resultsResponse struct {
		Accepted int `json:"accepted"`
		Stale    int `json:"stale"`
	}
)

// lease is one task held by a remote worker.
type lease struct {
	t        *Task
	deadline time.Time
}

// Server serves a task Queue to remote workers: it is an http.Handler
// for the /v1/work/ endpoints, and Run fails the attempts of expired leases. Its
// methods are safe for concurrent use.
//
// Leases live only in the Server's memory. When Run returns (the
// distributor is stopping), outstanding leases are dropped: their
// activities are not lost, because their offsets are not committed until
// the sink acknowledges them, so Kafka redelivers them to the next run.
type Server struct {
	q      *Queue
	names  []string
	token  string
	ttl    time.Duration
	batch  int
	log    logrus.FieldLogger
	stop   chan struct{} // closed when Run returns
	stopMu sync.Once

	leased, expired, results, stale metrics.Counter
	dropped                         metrics.Counter // tasks whose activity had left, not leased

	mu     sync.Mutex
	leases map[string]*lease
}

// NewServer returns a Server handing out tasks of q, whose Enricher fields
// index enrichers (the distributor's). It validates cfg; an empty token
// with AllowAnonymous is logged as a warning. reg receives the metrics
// listed above.
func NewServer(cfg RemoteConfig, q *Queue, enrichers []Resolved, log logrus.FieldLogger, reg metrics.Registry) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{q: q, token: cfg.Token, ttl: cfg.Lease, batch: cfg.MaxBatch, log: log,
		stop: make(chan struct{}), leases: map[string]*lease{},
		leased:  metrics.GetOrRegisterCounter(metricnames.EnrichRemoteLeased, reg),
		expired: metrics.GetOrRegisterCounter(metricnames.EnrichRemoteExpired, reg),
		results: metrics.GetOrRegisterCounter(metricnames.EnrichRemoteResults, reg),
		stale:   metrics.GetOrRegisterCounter(metricnames.EnrichRemoteStale, reg),
		dropped: metrics.GetOrRegisterCounter(metricnames.EnrichRemoteDropped, reg),
	}
	for _, e := range enrichers {
		s.names = append(s.names, e.Name)
	}
	reg.GetOrRegister(metricnames.EnrichRemoteLeases, metrics.NewFunctionalGauge(func() int64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return int64(len(s.leases))
	}))
	if s.token == "" {
		log.Warn("enrich.remote: no token; any client that reaches enrich.remote.addr can lease tasks and post results")
	}
	return s, nil
}

// Serve serves the endpoints on ln and runs Run until ctx ends, then
// closes ln, gives requests in progress up to 2s and returns nil after
// both stopped. Outstanding leases are dropped (see Server).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	runErr := s.Run(ctx) // closes s.stop: long polls return at once
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx) // a request still running after 2s is cut; its lease is dropped anyway
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("enrich.remote: serving: %w", err)
	}
	return runErr
}

// Run reports the tasks of expired leases as failed attempts
// (ErrLeaseExpired) until ctx ends, then stops the Server: long polls
// return, later requests get 503, and outstanding leases are dropped. Run
// returns nil; it must be called once.
func (s *Server) Run(ctx context.Context) error {
	defer s.stopMu.Do(func() { close(s.stop) })
	tick := time.NewTicker(max(s.ttl/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			if n := len(s.leases); n > 0 {
				s.log.WithField("leases", n).Info("enrich.remote: stopping; outstanding leases dropped, their records will be redelivered")
			}
			for _, l := range s.leases {
				s.q.done(l.t)
			}
			clear(s.leases)
			s.mu.Unlock()
			return nil
		case now := <-tick.C:
			expired := s.expire(now)
			if len(expired) == 0 {
				continue
			}
			s.log.WithField("tasks", len(expired)).Warn("enrich.remote: leases expired (a worker died or stalled); their attempts failed and will be retried")
			err := fmt.Errorf("%w after %s", ErrLeaseExpired, s.ttl)
			for _, t := range expired {
				s.q.done(t)
				t.Report(t, nil, err)
			}
		}
	}
}

// expire removes and returns the tasks of the leases past their deadline.
func (s *Server) expire(now time.Time) []*Task {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Task
	for id, l := range s.leases {
		if now.After(l.deadline) {
			delete(s.leases, id)
			out = append(out, l.t)
		}
	}
	s.expired.Inc(int64(len(out)))
	return out
}

// ServeHTTP serves the /v1/work/ endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="bend"`)
		http.Error(w, "missing or bad bearer token", http.StatusUnauthorized)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	select {
	case <-s.stop:
		http.Error(w, "distributor stopping", http.StatusServiceUnavailable)
		return
	default:
	}
	switch r.URL.Path {
	case "/v1/work/lease":
		s.serveLease(w, r)
	case "/v1/work/heartbeat":
		s.serveHeartbeat(w, r)
	case "/v1/work/results":
		s.serveResults(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) authorized(r *http.Request) bool {
	if s.token == "" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) == 1
}

// decode reads a JSON body of at most limit bytes into v, answering 400 or
// 413 itself when it cannot.
func decode(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	err := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit)).Decode(v)
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return true
	case errors.As(err, &tooBig):
		http.Error(w, fmt.Sprintf("body over %d bytes", limit), http.StatusRequestEntityTooLarge)
	default:
		http.Error(w, "bad JSON: "+err.Error(), http.StatusBadRequest)
	}
	return false
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v) // a worker that went away: its leases expire
}

func (s *Server) serveLease(w http.ResponseWriter, r *http.Request) {
	var req leaseRequest
	if !decode(w, r, maxRequestBytes, &req) {
		return
	}
	if req.Enrichers != nil {
		var missing []string
		for _, n := range s.names {
			if !slices.Contains(req.Enrichers, n) {
				missing = append(missing, n)
			}
		}
		if len(missing) > 0 {
			http.Error(w, "worker lacks enrichers "+strings.Join(missing, ", "), http.StatusConflict)
			return
		}
	}
	n := min(max(req.Max, 1), s.batch)
	wait := min(max(time.Duration(req.WaitMS)*time.Millisecond, 0), maxLongPoll)
	tasks := make([]*Task, 0, n)
	wctx, cancel := context.WithTimeout(r.Context(), wait)
	t, err := s.q.take(wctx, s.stop, true)
	cancel()
	switch {
	case t != nil:
		// Taken, so it is leased even if the worker has just left: its
		// lease then expires and the task is retried. (Dropping it here
		// lost it: it stayed taken and was never reported.)
		tasks = append(tasks, t)
	case errors.Is(err, errQuit):
		http.Error(w, "distributor stopping", http.StatusServiceUnavailable)
		return
	case r.Context().Err() != nil:
		return // the worker left; take hands out no task with an error
	}
	for len(tasks) > 0 && len(tasks) < n && r.Context().Err() == nil {
		t, err := s.q.take(r.Context(), nil, false)
		if t == nil || err != nil {
			break
		}
		tasks = append(tasks, t)
	}
	// Tasks whose activity has left, or whose deadline has passed, are
	// dropped, never leased (take drops most; this catches the rest).
	now := time.Now()
	live := tasks[:0]
	for _, t := range tasks {
		var err error
		switch {
		case t.Stale != nil && t.Stale():
			err = ErrStale
		case !t.Deadline.IsZero() && t.Deadline.Sub(now) < time.Millisecond:
			err = ErrDeadline
		default:
			live = append(live, t)
			continue
		}
		s.dropped.Inc(1)
		s.q.done(t)
		t.Report(t, nil, err)
	}
	tasks = live
	// Register the leases before answering: if the answer never arrives,
	// they expire and the tasks are retried as their next attempt.
	resp := leaseResponse{TTLMS: s.ttl.Milliseconds(), Tasks: make([]remoteTask, 0, len(tasks))}
	deadline := time.Now().Add(s.ttl)
	s.mu.Lock()
	for _, t := range tasks {
		id := rand.Text()
		s.leases[id] = &lease{t: t, deadline: deadline}
		rt := remoteTask{Lease: id, Enricher: s.names[t.Enricher], Attempt: t.Attempt, Activity: t.Activity}
		if !t.Deadline.IsZero() {
			rt.DeadlineMS = t.Deadline.Sub(now).Milliseconds()
		}
		resp.Tasks = append(resp.Tasks, rt)
	}
	s.mu.Unlock()
	s.leased.Inc(int64(len(tasks)))
	reply(w, resp)
}

func (s *Server) serveHeartbeat(w http.ResponseWriter, r *http.Request) {
	var req heartbeatRequest
	if !decode(w, r, maxRequestBytes, &req) {
		return
	}
	resp := heartbeatResponse{Lost: []string{}}
	deadline := time.Now().Add(s.ttl)
	s.mu.Lock()
	for _, id := range req.Leases {
		if l, ok := s.leases[id]; ok {
			l.deadline = deadline
		} else {
			resp.Lost = append(resp.Lost, id)
		}
	}
	s.mu.Unlock()
	reply(w, resp)
}

func (s *Server) serveResults(w http.ResponseWriter, r *http.Request) {
	var req []remoteResult
	if !decode(w, r, maxResultsBytes, &req) {
		return
	}
	var resp resultsResponse
	for _, res := range req {
		s.mu.Lock()
		l, ok := s.leases[res.Lease]
		delete(s.leases, res.Lease)
		s.mu.Unlock()
		if !ok {
			resp.Stale++
			continue
		}
		var err error
		value := res.Value
		if res.Error != "" {
			err, value = wireError(res.Error), nil
		} else if len(bytes.TrimSpace(value)) == 0 {
			value = json.RawMessage("null") // the distributor splices value verbatim
		}
		resp.Accepted++
		s.q.done(l.t)
		l.t.Report(l.t, value, err) // outside s.mu: Report may queue a retry
	}
	s.results.Inc(int64(resp.Accepted))
	s.stale.Inc(int64(resp.Stale))
	reply(w, resp)
}

// wireError turns a remote worker's error text back into an error, keeping
// the sentinels the distributor branches on (ErrDeadline, ErrCut).
func wireError(text string) error {
	switch {
	case text == ErrDeadline.Error():
		return ErrDeadline
	case strings.HasPrefix(text, ErrCut.Error()):
		return fmt.Errorf("%w%s", ErrCut, strings.TrimPrefix(text, ErrCut.Error()))
	}
	return errors.New(text)
}

// WorkerConfig configures a remote worker (`bend work`).
type WorkerConfig struct {
	// URL is the distributor's task server, e.g. "http://host:9190". Required.
	URL string
	// Token is the bearer token (enrich.remote.token of the distributor).
	Token string
	// Workers is the number of goroutines running tasks. Default 4.
	Workers int
	// Batch is the tasks one lease request asks for (the server caps it
	// at enrich.remote.max_batch) and the prefetch: the worker holds at
	// most Workers+2*Batch leases, running or waiting for a goroutine.
	// Default 64.
	Batch int
	// Wait is how long a lease request waits for a task. Default 10s.
	Wait time.Duration
	// Client sends the requests. Default: a client with no overall timeout
	// (each request has its own deadline).
	Client *http.Client
}

// ErrRejected wraps a task server's refusal that retrying cannot fix: a bad
// token, or a worker lacking one of the distributor's enrichers.
var ErrRejected = errors.New("enrich: rejected by the task server")

// Worker is a remote worker: it leases tasks from a Server, runs them with
// its own enrichers and posts the results.
type Worker struct {
	cfg   WorkerConfig
	pool  *Pool
	index map[string]int
	names []string
	log   logrus.FieldLogger

	ttl     atomic.Int64  // the server's lease duration in ns, 0 until known
	postRTT atomic.Int64  // ns the last results post took: a result's way back
	ttlSeen chan struct{} // capacity 1: wakes heartbeat when ttl changes

	mu     sync.Mutex
	active map[string]struct{} // leases held: heartbeated
}

// NewWorker returns a worker running enrichers, which must carry the names
// the distributor's have (the server refuses a worker that lacks one).
// reg receives the enrichers' metrics as for Pool.
func NewWorker(cfg WorkerConfig, enrichers []Resolved, log logrus.FieldLogger, reg metrics.Registry) (*Worker, error) {
	if cfg.URL == "" {
		return nil, errors.New("enrich: worker needs the distributor's URL")
	}
	if cfg.Workers == 0 {
		cfg.Workers = 4
	}
	if cfg.Batch == 0 {
		cfg.Batch = 64
	}
	if cfg.Wait == 0 {
		cfg.Wait = 10 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	if cfg.Workers < 0 || cfg.Batch < 0 || cfg.Wait < 0 {
		return nil, errors.New("enrich: worker count, batch and wait must not be negative")
	}
	cfg.URL = strings.TrimSuffix(cfg.URL, "/")
	w := &Worker{cfg: cfg, pool: NewPool(cfg.Workers, enrichers, log, reg), index: map[string]int{}, log: log,
		active: map[string]struct{}{}, ttlSeen: make(chan struct{}, 1)}
	for i, e := range enrichers {
		w.index[e.Name] = i
		w.names = append(w.names, e.Name)
	}
	return w, nil
}

// Run leases and runs tasks until ctx ends, then returns nil. At the end
// it posts the results it has, and abandons tasks not finished: their
// leases expire and the distributor retries them. Network errors and a
// stopping server are retried after a pause; a refusal that retrying
// cannot fix ends Run with an error wrapping ErrRejected.
//
// One goroutine leases for the whole process, a batch at a time with the
// next one prefetched; Workers goroutines run the tasks; one goroutine
// posts the results, gathered for a few milliseconds (a result with a
// deadline at once). So the requests a process makes follow its batches,
// not its goroutines: with many workers, per-goroutine leasing held a long
// poll per goroutine and made a request per task when tasks were scarce.
func (w *Worker) Run(ctx context.Context) error {
	hbCtx, stopHB := context.WithCancel(ctx)
	defer stopHB()
	hbDone := make(chan struct{})
	go func() { defer close(hbDone); w.heartbeat(hbCtx) }()
	defer func() { <-hbDone }()
	defer stopHB()

	rctx, stop := context.WithCancel(ctx)
	defer stop()
	run := &workerRun{
		tasks:   make(chan leasedTask, 2*w.cfg.Batch+w.cfg.Workers),
		results: make(chan remoteResult, 2*w.cfg.Batch+w.cfg.Workers),
		room:    make(chan struct{}, 1),
	}
	var leaseErr error
	leaserDone := make(chan struct{})
	go func() {
		defer close(leaserDone)
		defer close(run.tasks)
		if err := w.leaser(rctx, run); err != nil {
			leaseErr = err
			stop()
		}
	}()
	var workers sync.WaitGroup
	for range w.cfg.Workers {
		workers.Go(func() { w.runTasks(rctx, run) })
	}
	posterDone := make(chan struct{})
	go func() { defer close(posterDone); w.poster(ctx, run) }()
	<-leaserDone
	workers.Wait()
	close(run.results)
	<-posterDone
	return leaseErr // nil unless the server refused this worker
}

// postLinger is how long the poster gathers results for one post, unless
// a batch fills or a result has a deadline: a few milliseconds against the
// request per result it saves.
const postLinger = 20 * time.Millisecond

// workerRun is the state Run's goroutines share.
type workerRun struct {
	tasks   chan leasedTask   // leased, not yet started; closed by the leaser
	results chan remoteResult // finished attempts for the poster; closed by Run
	// outstanding counts tasks leased and not yet handed to the poster
	// (buffered in tasks or running); the leaser keeps it at most
	// Workers+2*Batch.
	outstanding atomic.Int64
	room        chan struct{} // capacity 1: wakes the leaser when a task finishes
}

// leasedTask is a task as leased, with the time its lease arrived.
type leasedTask struct {
	remoteTask
	got time.Time
}

// leaser leases tasks into run.tasks until ctx ends, a whole batch at a
// time: it holds at most Workers+2*Batch tasks (running, or waiting for a
// goroutine) and asks for Batch more whenever that many fit, so the next
// batch is on its way while the last runs, and the task server answers few
// large requests whether the enricher is fast or slow. It returns a
// refusal that retrying cannot fix.
func (w *Worker) leaser(ctx context.Context, run *workerRun) error {
	pause := 100 * time.Millisecond
	limit := int64(w.cfg.Workers + 2*w.cfg.Batch)
	for ctx.Err() == nil {
		free := limit - run.outstanding.Load()
		if free < int64(w.cfg.Batch) {
			select {
			case <-run.room:
			case <-ctx.Done():
				return nil
			}
			continue
		}
		tasks, err := w.lease(ctx, w.cfg.Batch)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, ErrRejected) {
				return err
			}
			w.log.WithError(err).Warn("leasing tasks; retrying")
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				return nil
			}
			pause = min(pause*2, 5*time.Second)
			continue
		}
		pause = 100 * time.Millisecond
		got := time.Now()
		run.outstanding.Add(int64(len(tasks)))
		for _, rt := range tasks {
			run.tasks <- leasedTask{remoteTask: rt, got: got} // never blocks: outstanding <= cap
		}
	}
	return nil
}

// runTasks runs leased tasks until the leaser stops or ctx ends, handing
// each result to the poster. Once ctx ends it starts no more: the tasks
// left are abandoned and their leases expire.
func (w *Worker) runTasks(ctx context.Context, run *workerRun) {
	for lt := range run.tasks {
		if ctx.Err() != nil {
			w.abandon(lt.Lease, run)
			continue
		}
		res := remoteResult{Lease: lt.Lease, urgent: lt.DeadlineMS > 0}
		idx, ok := w.index[lt.Enricher]
		if !ok || lt.Activity == nil {
			res.Error = fmt.Sprintf("remote worker cannot run enricher %q", lt.Enricher)
			run.results <- res
			continue
		}
		t := &Task{Enricher: idx, Activity: lt.Activity, Attempt: lt.Attempt,
			Report: func(_ *Task, v json.RawMessage, err error) {
				res.Value = v
				if err != nil {
					res.Error = err.Error()
				}
			}}
		if lt.DeadlineMS > 0 {
			// The server's clock is not ours: count from the lease's
			// arrival, less the way back of the result.
			t.Deadline = lt.got.Add(time.Duration(lt.DeadlineMS)*time.Millisecond - time.Duration(w.postRTT.Load()))
		}
		w.pool.Do(ctx, t)
		if ctx.Err() != nil {
			w.abandon(lt.Lease, run) // cut short by the stop, not a real failure: let the lease expire
			continue
		}
		run.results <- res // never blocks: results has room for every outstanding task
	}
}

// abandon drops a leased task unrun or unfinished at the stop: its lease
// expires at the server and the distributor retries it.
func (w *Worker) abandon(lease string, run *workerRun) {
	w.mu.Lock()
	delete(w.active, lease)
	w.mu.Unlock()
	w.finished(run, 1)
}

// finished notes n tasks no longer outstanding and wakes the leaser.
func (w *Worker) finished(run *workerRun, n int) {
	run.outstanding.Add(-int64(n))
	select {
	case run.room <- struct{}{}:
	default:
	}
}

// poster posts results as they finish: whatever finished while the
// previous post was on its way goes in the next, gathering for up to
// postLinger or a batch's worth, so a slow enricher's results do not each
// make a request; a result with a deadline goes at once, with what has
// finished beside it.
// Finished work is posted even while stopping (bounded by the lease ttl).
// It returns when run.results is closed and drained.
func (w *Worker) poster(ctx context.Context, run *workerRun) {
	var batch []remoteResult
	linger := time.NewTimer(0)
	<-linger.C
	for first := range run.results {
		batch = append(batch[:0], first)
		urgent := first.urgent
		linger.Reset(postLinger)
	more:
		for len(batch) < w.cfg.Batch {
			var r remoteResult
			var ok bool
			if urgent {
				select { // what has finished already, no wait
				case r, ok = <-run.results:
				default:
					break more
				}
			} else {
				select {
				case r, ok = <-run.results:
				case <-linger.C:
					break more
				}
			}
			if !ok {
				break more
			}
			batch = append(batch, r)
			urgent = urgent || r.urgent
		}
		if !linger.Stop() {
			select {
			case <-linger.C:
			default:
			}
		}
		// The results are delivered or their leases expire: either way
		// they leave the outstanding count now, making room for a lease.
		w.finished(run, len(batch))
		// No longer heartbeated: the server ends these leases as it takes
		// the results (a heartbeat naming them meanwhile would hear them
		// "lost"), or, if the post fails, lets them expire.
		w.mu.Lock()
		for _, r := range batch {
			delete(w.active, r.Lease)
		}
		w.mu.Unlock()
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.leaseTTL())
		start := time.Now()
		if err := w.post(pctx, "/v1/work/results", batch, &resultsResponse{}); err != nil {
			w.log.WithError(err).Warn("posting results; their leases will expire and the tasks run again")
		} else {
			w.postRTT.Store(int64(time.Since(start)))
		}
		cancel()
	}
}

// leaseTTL returns the server's lease duration, or 10s before it is known.
func (w *Worker) leaseTTL() time.Duration {
	if d := time.Duration(w.ttl.Load()); d > 0 {
		return d
	}
	return 10 * time.Second
}

// lease asks for up to n tasks and marks them active.
func (w *Worker) lease(ctx context.Context, n int) ([]remoteTask, error) {
	rctx, cancel := context.WithTimeout(ctx, w.cfg.Wait+10*time.Second)
	defer cancel()
	var resp leaseResponse
	req := leaseRequest{Max: max(n, 1), WaitMS: int(w.cfg.Wait.Milliseconds()), Enrichers: w.names}
	if err := w.post(rctx, "/v1/work/lease", req, &resp); err != nil {
		return nil, err
	}
	if ttl := int64(time.Duration(resp.TTLMS) * time.Millisecond); ttl > 0 && w.ttl.Swap(ttl) != ttl {
		select {
		case w.ttlSeen <- struct{}{}:
		default:
		}
	}
	w.mu.Lock()
	for _, t := range resp.Tasks {
		w.active[t.Lease] = struct{}{}
	}
	w.mu.Unlock()
	return resp.Tasks, nil
}

// heartbeat extends the active leases every third of the lease duration
// until ctx ends.
func (w *Worker) heartbeat(ctx context.Context) {
	timer := time.NewTimer(w.leaseTTL() / 3)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
		case <-w.ttlSeen: // the first lease told the real ttl: re-arm
			timer.Reset(w.leaseTTL() / 3)
			continue
		case <-ctx.Done():
			return
		}
		timer.Reset(w.leaseTTL() / 3)
		w.mu.Lock()
		ids := make([]string, 0, len(w.active))
		for id := range w.active {
			ids = append(ids, id)
		}
		w.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		hctx, cancel := context.WithTimeout(ctx, w.leaseTTL()/3)
		var resp heartbeatResponse
		err := w.post(hctx, "/v1/work/heartbeat", heartbeatRequest{Leases: ids}, &resp)
		cancel()
		if err != nil && ctx.Err() == nil {
			w.log.WithError(err).Warn("heartbeat failed; leases may expire and their tasks run again")
		} else if len(resp.Lost) > 0 {
			w.log.WithField("leases", len(resp.Lost)).Warn("leases lost (expired); the distributor retries their tasks")
		}
	}
}

// post sends v as JSON to path and decodes the answer into out.
func (w *Worker) post(ctx context.Context, path string, v, out any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if w.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+w.cfg.Token)
	}
	resp, err := w.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		err := fmt.Errorf("%s: %s: %s", path, resp.Status, bytes.TrimSpace(msg))
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusConflict {
			return fmt.Errorf("%w: %w", ErrRejected, err)
		}
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s: decoding answer: %w", path, err)
	}
	return nil
}
