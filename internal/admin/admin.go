// Package admin is bend's operator-facing HTTP server: metrics, health,
// a live dashboard and admin actions, on admin.addr (default 127.0.0.1:9180).
//
// Endpoints:
//
//	GET  /              live dashboard (one embedded HTML page, no external assets)
//	GET  /metrics       every metric of the registry in the Prometheus text format
//	GET  /metrics.json  the derived figures (Snapshot) and every raw metric, as JSON
//	GET  /history.json  the dashboard's charts over the last 5 minutes, one point a second
//	GET  /healthz       200 while the process serves requests
//	GET  /readyz        200 when bend is ready (Kafka reachable, consumer group joined), else 503
//	POST /admin/reload  re-read the configuration file now, as SIGHUP does
//	GET  /admin/replay         the replay-while-running state (paused, by which replay)
//	POST /admin/replay/pause   stop reading, drain and commit; answer the owned partitions
//	POST /admin/replay/reset   commit target offsets for the owned partitions (still paused)
//	POST /admin/replay/resume  end the pause; after a reset, rejoin the group
//	GET  /debug/pprof/  the Go profiler
//
// The replay endpoints are `bend replay --live`'s; their JSON messages are
// internal/replay's, documented in docs/operating.md ("Replay while running").
// With admin.token set, /admin/* and /debug/pprof/ need "Authorization: Bearer <token>".
// Without a token they are served only when admin.addr is a loopback
// address; on any other address they answer 403, so that an admin server
// published beyond the host (a container's :9180) never offers
// unauthenticated actions.
//
// /metrics is served by prometheus/client_golang: a collector over the
// go-metrics registry, the go_* and process_* collectors and
// bend_build_info. Prometheus names: a go-metrics name gets the prefix
// bend_, its dots and dashes become underscores, and the variable parts of
// per-partition, per-enricher, per-source, per-broker, per-topic and
// per-group names become labels
// (distributor.partition.T.3.lag → bend_distributor_partition_lag{topic="T",partition="3"});
// sarama's per-broker and per-topic series get families of their own
// (bend_broker_*, bend_topic_*), apart from its aggregates, and its topic
// labels carry bend's topic names. Counters and meters are counters
// (suffix _total; a meter's "-rate" is dropped), up-down counters and
// gauges are gauges, histograms and timers are summaries, times are in
// seconds. Help texts and kinds come from internal/metricnames. The derived
// figures bend_ready, bend_distributor_delay_seconds,
// bend_oldest_unprocessed_age_seconds, bend_backlog_drain_seconds and the
// autoscaling signal bend_autoscale_desired_instances and
// bend_autoscale_desired_workers are added; bend_go_memory_limit_bytes is absent when no limit is set.
//
// The admin server reads the registry and the pipeline; it changes nothing
// but through the reload hook.
package admin

import (
	"context"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bendstream/bend/internal/metricnames"
	"github.com/bendstream/bend/internal/replay"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
)

// Config is the "admin" section of config.yaml.
type Config struct {
	// Addr is the host:port the admin server listens on; "" turns it off.
	// The endpoints include admin actions: bind it to a trusted interface.
	// Default "127.0.0.1:9180".
	Addr string `mapstructure:"addr"`
	// Token, when set, is the bearer token required by the admin actions
	// (POST /admin/reload) and the profiler (/debug/pprof/); the dashboard,
	// metrics and probes stay readable without it. Unset, those answer 403
	// unless Addr is a loopback address. Set it from the environment
	// (BEND_ADMIN_TOKEN) rather than the file. Default "".
	Token string `mapstructure:"token"`
	// DrainTarget is the time within which the autoscaling signal
	// (bend_autoscale_desired_instances) wants the backlog drained; 0
	// means the default. Default 5m.
	DrainTarget time.Duration `mapstructure:"drain_target"`
}

// maxHeaderBytes bounds a request's header; larger ones get 431. Only the
// replay endpoints read a body, at most maxBodyBytes (413 beyond).
const (
	maxHeaderBytes = 16 << 10
	maxBodyBytes   = 1 << 20
)

// String redacts the token.
func (c Config) String() string {
	tok := ""
	if c.Token != "" {
		tok = "[redacted]"
	}
	return fmt.Sprintf("{Addr:%s Token:%s DrainTarget:%s}", c.Addr, tok, c.DrainTarget)
}

// GoString redacts the token.
func (c Config) GoString() string { return "admin.Config" + c.String() }

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config { return Config{Addr: "127.0.0.1:9180", DrainTarget: DefaultDrainTarget} }

// Validate reports every invalid field by its config.yaml key.
func (c Config) Validate() error {
	if c.DrainTarget < 0 {
		return fmt.Errorf("admin.drain_target: %s must not be negative (e.g. 5m)", c.DrainTarget)
	}
	if c.Addr == "" {
		return nil
	}
	if _, port, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("admin.addr: %w", err)
	} else if port == "" {
		return fmt.Errorf("admin.addr: %q has no port", c.Addr)
	}
	return nil
}

// Pipeline is the running pipeline as the admin server sees it beyond the
// registry; *distributor.Distributor satisfies it. Its methods must be safe
// for concurrent use.
//
// If it also has a method Ready() bool, /readyz uses it; otherwise bend is
// ready while it owns at least one partition. If it has a method
// Oldest() time.Time (the timestamp of the oldest record read and not yet
// acknowledged, zero when none), its age is reported. If it has a method
// Topics() []string (bend's topic names), sarama's per-topic metrics are
// labelled with those names instead of sarama's (dots as underscores).
type Pipeline interface {
	// Lag returns the records of the owned partitions not yet passed by
	// their commit watermarks.
	Lag() int64
	// InFlight returns the records read and not yet acknowledged.
	InFlight() int64
	// Delay returns distributor.delay as currently in force.
	Delay() time.Duration
}

type readier interface{ Ready() bool }

type oldester interface{ Oldest() time.Time }

type topicser interface{ Topics() []string }

// replayer is the instance side of a replay while running
// (*distributor.Distributor); without it the replay endpoints answer 501.
type replayer interface {
	ReplayPause(ctx context.Context, req replay.PauseRequest) (replay.PauseAnswer, error)
	ReplayReset(req replay.ResetRequest) (replay.ResetAnswer, error)
	ReplayResume(req replay.ResumeRequest) (replay.ResumeAnswer, error)
	ReplayStatus() replay.Status
}

//go:embed dashboard.html
var dashboard []byte

// Server is a running admin server. Its methods are safe for concurrent use.
type Server struct {
	reg    metrics.Registry
	p      Pipeline
	reload func() error
	log    logrus.FieldLogger
	start  time.Time
	token  string
	// open: the admin actions are served without a token (admin.addr is
	// loopback, or the server does not listen).
	open   bool
	prom   http.Handler
	gather prometheus.Gatherer // what prom serves

	ln   net.Listener
	srv  *http.Server
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once

	mu      sync.Mutex
	rates   map[string]*rateWindow
	lag     rateWindow // the lag, for its slope
	target  time.Duration
	history []HistoryPoint // the last HistoryLen seconds, oldest first
}

// HistoryLen is how many one-second points /history.json keeps.
const HistoryLen = 300

// HistoryPoint is one second of the dashboard's charts.
type HistoryPoint struct {
	Time     time.Time `json:"time"`
	Ingested float64   `json:"ingested"` // per second
	Emitted  float64   `json:"emitted"`  // per second
	Lag      int64     `json:"lag"`
	Parked   int64     `json:"parked"`
	InFlight int64     `json:"in_flight"`
}

// Start listens on cfg.Addr and serves until Close. reg is the pipeline's
// registry, p the pipeline; reload, if not nil, backs POST /admin/reload.
// With an empty cfg.Addr it returns a Server that serves nothing. An
// address that cannot be bound is an error.
func Start(cfg Config, reg metrics.Registry, p Pipeline, reload func() error, log logrus.FieldLogger) (*Server, error) {
	s := &Server{reg: reg, p: p, reload: reload, log: log, start: time.Now(), stop: make(chan struct{}), token: cfg.Token,
		open: true, rates: map[string]*rateWindow{}, lag: rateWindow{span: RateWindow}, target: cfg.DrainTarget}
	for _, n := range rated {
		s.rates[n] = &rateWindow{span: RateWindow}
	}
	var topics []string
	if t, ok := p.(topicser); ok {
		topics = t.Topics()
	}
	s.gather = s.promRegistry(topics)
	s.prom = promhttp.HandlerFor(s.gather, promhttp.HandlerOpts{
		ErrorLog: promLogger{log}, ErrorHandling: promhttp.ContinueOnError})
	if cfg.Addr == "" {
		return s, nil
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("admin.addr: %w (choose another address, or \"\" to turn the admin server off)", err)
	}
	s.ln = ln
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
		s.open = false
		log.WithField("addr", ln.Addr().String()).Warn("admin.addr is not a loopback address and admin.token is unset: " +
			"POST /admin/reload and /debug/pprof/ answer 403 (set admin.token to enable them)")
	}
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: maxHeaderBytes}
	s.sample(time.Now())
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.WithError(err).Error("admin server stopped")
		}
	}()
	go func() {
		defer s.wg.Done()
		s.sampleEvery(time.Second)
	}()
	log.WithField("addr", "http://"+ln.Addr().String()+"/").Info("admin server listening (dashboard, /metrics, /healthz, /readyz)")
	return s, nil
}

// Addr returns the address the server listens on, or nil when it is off.
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Close stops the server: it stops accepting, gives requests in progress
// up to 2s, and returns after its goroutines exited. Idempotent.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		close(s.stop)
		if s.srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			err = s.srv.Shutdown(ctx)
		}
		s.wg.Wait()
	})
	return err
}

// sampleEvery samples the rated counts every interval until Close.
func (s *Server) sampleEvery(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			s.sample(now)
		case <-s.stop:
			return
		}
	}
}

// sample records the rated counts and a history point.
func (s *Server) sample(now time.Time) {
	hp := HistoryPoint{Time: now, Parked: gauge(s.reg, metricnames.DelayQueueLen)}
	if s.p != nil {
		hp.Lag, hp.InFlight = s.p.Lag(), s.p.InFlight()
	}
	counts := map[string]int64{}
	for _, n := range rated {
		counts[n] = count(s.reg, n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for n, w := range s.rates {
		w.add(now, counts[n])
	}
	s.lag.add(now, hp.Lag)
	hp.Ingested, hp.Emitted = s.rates[metricnames.IngestPublished].rate(), s.rates[metricnames.SinkEmitted].rate()
	if len(s.history) == HistoryLen {
		s.history = append(s.history[:0], s.history[1:]...)
	}
	s.history = append(s.history, hp)
}

// History returns the points of the last HistoryLen seconds, oldest first.
func (s *Server) History() []HistoryPoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.history)
}

// Handler returns the server's endpoints, for tests and for mounting
// elsewhere.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(dashboard)
	})
	mux.HandleFunc("GET /metrics", s.serveProm)
	mux.HandleFunc("GET /metrics.json", s.serveJSON)
	mux.HandleFunc("GET /history.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		h := s.History()
		if h == nil {
			h = []HistoryPoint{}
		}
		_ = json.NewEncoder(w).Encode(h)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready() {
			http.Error(w, "not ready: Kafka unreachable or consumer group not joined", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("POST /admin/reload", s.authorized(func(w http.ResponseWriter, _ *http.Request) {
		if s.reload == nil {
			http.Error(w, "reload is not available (no configuration file)", http.StatusNotImplemented)
			return
		}
		if err := s.reload(); err != nil {
			http.Error(w, "reload rejected: "+err.Error(), http.StatusUnprocessableEntity)
			return
		}
		_, _ = w.Write([]byte("reloaded\n"))
	}))
	s.replayRoutes(mux)
	mux.HandleFunc("/debug/pprof/", s.authorized(pprof.Index))
	mux.HandleFunc("/debug/pprof/cmdline", s.authorized(pprof.Cmdline))
	mux.HandleFunc("/debug/pprof/profile", s.authorized(pprof.Profile))
	mux.HandleFunc("/debug/pprof/symbol", s.authorized(pprof.Symbol))
	mux.HandleFunc("/debug/pprof/trace", s.authorized(pprof.Trace))
	return mux
}

// authorized wraps h so that, when admin.token is set, requests without
// "Authorization: Bearer <token>" get 401. The comparison takes constant
// time. Without a token, h is served only on a loopback address (403
// elsewhere).
func (s *Server) authorized(h http.HandlerFunc) http.HandlerFunc {
	if s.token == "" {
		return func(w http.ResponseWriter, r *http.Request) {
			if !s.open {
				http.Error(w, "forbidden: admin actions need admin.token (BEND_ADMIN_TOKEN) when admin.addr is not a loopback address",
					http.StatusForbidden)
				return
			}
			h(w, r)
		}
	}
	want := []byte("Bearer " + s.token)
	return func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", "Bearer")
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h(w, r)
	}
}

// ready reports readiness: the pipeline's own Ready if it has one, else
// whether it owns a partition (it has joined the group and fetched
// metadata, so Kafka was reachable).
func (s *Server) ready() bool {
	if r, ok := s.p.(readier); ok {
		return r.Ready()
	}
	owns := false
	s.reg.Each(func(name string, _ any) {
		if strings.HasPrefix(name, metricnames.PartitionPrefix) {
			owns = true
		}
	})
	return owns
}

// Snapshot returns the current figures; raw adds every metric.
func (s *Server) Snapshot(raw bool) Snapshot {
	now := time.Now()
	snap := fromRegistry(s.reg, raw)
	snap.Time = now
	snap.UptimeSeconds = now.Sub(s.start).Seconds()
	snap.Ready = s.ready()
	if s.p != nil {
		snap.Lag = s.p.Lag()
		snap.InFlight = s.p.InFlight()
		snap.DelaySeconds = s.p.Delay().Seconds()
		if o, ok := s.p.(oldester); ok {
			if t := o.Oldest(); !t.IsZero() {
				age := max(now.Sub(t).Seconds(), 0)
				snap.OldestAgeSeconds = &age
			}
		}
	}
	s.mu.Lock()
	snap.Rates = Rates{
		Ingested:    s.rates[metricnames.IngestPublished].rate(),
		Consumed:    s.rates[metricnames.DistributorConsumed].rate(),
		Emitted:     s.rates[metricnames.SinkEmitted].rate(),
		DeadLetters: s.rates[metricnames.SinkDeadLetters].rate(),
		Retries:     s.rates[metricnames.DistributorRetries].rate(),
	}
	lagSlope := s.lag.slope()
	s.mu.Unlock()
	snap.DrainSeconds = drainSeconds(snap.Lag, snap.InFlight, snap.Rates)
	snap.Scale = desiredScale(snap.Lag, snap.InFlight, lagSlope, snap.Rates, snap.Workers, s.target)
	return snap
}

func (s *Server) serveJSON(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if err := json.NewEncoder(w).Encode(s.Snapshot(true)); err != nil {
		s.log.WithError(err).Debug("writing /metrics.json")
	}
}

func (s *Server) serveProm(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	s.prom.ServeHTTP(w, r)
}

// promLogger logs promhttp's gathering errors (a series skipped) at debug
// level: they do not stop the scrape.
type promLogger struct{ log logrus.FieldLogger }

func (l promLogger) Println(v ...any) { l.log.Debug(v...) }
