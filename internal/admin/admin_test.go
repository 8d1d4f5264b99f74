package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/testutil"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
)

// fakePipeline stands in for the distributor.
type fakePipeline struct {
	lag      atomic.Int64
	notReady atomic.Bool
}

func (f *fakePipeline) Lag() int64           { return f.lag.Load() }
func (f *fakePipeline) InFlight() int64      { return 100 }
func (f *fakePipeline) Delay() time.Duration { return 1500 * time.Millisecond }
func (f *fakePipeline) Ready() bool          { return !f.notReady.Load() }
func (f *fakePipeline) Oldest() time.Time    { return time.Now().Add(-3 * time.Second) }

// bare has only the required methods: readiness falls back to owned partitions.
type bare struct{}

func (bare) Lag() int64           { return 0 }
func (bare) InFlight() int64      { return 0 }
func (bare) Delay() time.Duration { return time.Second }

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func get(t *testing.T, h http.Handler, method, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Code, rec.Body.String()
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name, addr, wantErr string
	}{
		{"default", DefaultConfig().Addr, ""},
		{"off", "", ""},
		{"all interfaces", ":9180", ""},
		{"no port", "localhost", "admin.addr"},
		{"empty port", "localhost:", "admin.addr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Config{Addr: tc.addr}.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Validate(%q) = %v, want nil", tc.addr, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Validate(%q) = %v, want an error naming %s", tc.addr, err, tc.wantErr)
			}
		})
	}
}

func TestEndpoints(t *testing.T) {
	reg := fakeRegistry(t)
	p := &fakePipeline{}
	p.lag.Store(4200)
	reloads := 0
	reloadErr := error(nil)
	s, err := Start(Config{}, reg, p, func() error { reloads++; return reloadErr }, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Addr() != nil {
		t.Errorf("Addr() = %v with admin.addr empty, want nil", s.Addr())
	}
	h := s.Handler()

	for _, tc := range []struct {
		name, method, path string
		wantCode           int
		wantBody           string
	}{
		{"healthz", "GET", "/healthz", 200, "ok"},
		{"readyz", "GET", "/readyz", 200, "ready"},
		{"dashboard", "GET", "/", 200, `id="chart-rates"`},
		{"metrics", "GET", "/metrics", 200, "bend_ready 1\n"},
		{"metrics delay", "GET", "/metrics", 200, "bend_distributor_delay_seconds 1.5\n"},
		{"metrics oldest", "GET", "/metrics", 200, "bend_oldest_unprocessed_age_seconds "},
		{"history", "GET", "/history.json", 200, "["},
		{"reload", "POST", "/admin/reload", 200, "reloaded"},
		{"reload needs POST", "GET", "/admin/reload", 405, ""},
		{"unknown", "GET", "/nope", 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := get(t, h, tc.method, tc.path)
			if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
				t.Errorf("%s %s = %d %.200q, want %d containing %q", tc.method, tc.path, code, body, tc.wantCode, tc.wantBody)
			}
		})
	}
	if reloads != 1 {
		t.Errorf("reload hook called %d times, want 1", reloads)
	}
	reloadErr = errors.New("enrich.workers: must not be negative")
	if code, body := get(t, h, "POST", "/admin/reload"); code != 422 || !strings.Contains(body, "enrich.workers") {
		t.Errorf("failed reload = %d %q, want 422 naming the key", code, body)
	}
	p.notReady.Store(true)
	if code, _ := get(t, h, "GET", "/readyz"); code != 503 {
		t.Errorf("readyz while not ready = %d, want 503", code)
	}

	code, body := get(t, h, "GET", "/metrics.json")
	if code != 200 {
		t.Fatalf("/metrics.json = %d", code)
	}
	var snap Snapshot
	if err := json.Unmarshal([]byte(body), &snap); err != nil {
		t.Fatalf("decoding /metrics.json: %v", err)
	}
	if snap.Lag != 4200 || snap.InFlight != 100 || snap.Parked != 90 || snap.Workers != 4 || snap.DelaySeconds != 1.5 {
		t.Errorf("snapshot lag %d in-flight %d parked %d workers %d delay %g, want 4200 100 90 4 1.5",
			snap.Lag, snap.InFlight, snap.Parked, snap.Workers, snap.DelaySeconds)
	}
	if snap.Totals.Ingested != 1000 || snap.Totals.Emitted != 800 || snap.Totals.Retries != 7 || snap.Totals.EnrichErrors != 2 {
		t.Errorf("totals = %+v", snap.Totals)
	}
	if snap.OldestAgeSeconds == nil || *snap.OldestAgeSeconds < 2.9 || *snap.OldestAgeSeconds > 4 {
		t.Errorf("oldest age = %v, want about 3s", snap.OldestAgeSeconds)
	}
	if snap.Latency.Count != 100 || snap.Latency.P99 < 0.09 || snap.Latency.P99 > 0.1 {
		t.Errorf("latency = %+v, want 100 samples with p99 about 0.1s", snap.Latency)
	}
	if q := snap.Enrich["stats"]; q.Count != 1 || q.P50 != 0.002 {
		t.Errorf("enrich latency = %+v, want one sample of 2ms", q)
	}
	want := []Partition{
		{Topic: "bend.activities", Partition: 0, Lag: 3000, InFlight: 60, Watermark: 12345, Buffered: 7},
		{Topic: "bend.activities", Partition: 1, Lag: 1200, InFlight: 40, Watermark: 999},
	}
	if len(snap.Partitions) != 2 || snap.Partitions[0] != want[0] || snap.Partitions[1] != want[1] {
		t.Errorf("partitions = %+v, want %+v", snap.Partitions, want)
	}
	if _, ok := snap.Metrics["sink.emitted"]; !ok {
		t.Errorf("raw metrics lack sink.emitted")
	}
}

func TestReadinessFallback(t *testing.T) {
	reg := metrics.NewRegistry()
	s, err := Start(Config{}, reg, bare{}, nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if code, _ := get(t, s.Handler(), "GET", "/readyz"); code != 503 {
		t.Errorf("readyz without owned partitions = %d, want 503", code)
	}
	metrics.GetOrRegisterGauge("distributor.partition.t.0.lag", reg)
	if code, _ := get(t, s.Handler(), "GET", "/readyz"); code != 200 {
		t.Errorf("readyz owning a partition = %d, want 200", code)
	}
	if code, _ := get(t, s.Handler(), "POST", "/admin/reload"); code != 501 {
		t.Errorf("reload without a hook = %d, want 501", code)
	}
}

func TestStartFailsOnBusyAddress(t *testing.T) {
	s, err := Start(Config{Addr: "127.0.0.1:0"}, metrics.NewRegistry(), bare{}, nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Start(Config{Addr: s.Addr().String()}, metrics.NewRegistry(), bare{}, nil, quietLog()); err == nil {
		t.Fatal("second Start on the same address succeeded, want an error")
	}
	res, err := http.Get("http://" + s.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("healthz over TCP = %d", res.StatusCode)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestRateWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		name    string
		samples []int64 // one per second from t0
		want    float64
	}{
		{"none", nil, 0},
		{"one", []int64{5}, 0},
		{"steady", []int64{0, 10, 20, 30}, 10},
		{"only the last 5s count", []int64{0, 0, 0, 0, 0, 100, 200, 300, 400, 500, 600}, 100},
		{"decreasing is 0", []int64{10, 5}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &rateWindow{span: 5 * time.Second}
			for i, v := range tc.samples {
				w.add(t0.Add(time.Duration(i)*time.Second), v)
			}
			if got := w.rate(); got != tc.want {
				t.Errorf("rate = %g, want %g", got, tc.want)
			}
		})
	}
}

func TestDrainSeconds(t *testing.T) {
	for _, tc := range []struct {
		name          string
		lag, inFlight int64
		r             Rates
		want          float64 // -1: nil
	}{
		{"no backlog", 0, 0, Rates{Ingested: 10}, 0},
		{"everything unread is in flight", 500, 500, Rates{Ingested: 100, Emitted: 50}, 0},
		{"growing", 1000, 0, Rates{Ingested: 100, Emitted: 50}, -1},
		{"steady", 1000, 0, Rates{Ingested: 100, Emitted: 100}, -1},
		{"draining", 1000, 0, Rates{Ingested: 100, Emitted: 300}, 5},
		{"in flight is not backlog", 1200, 200, Rates{Ingested: 100, Emitted: 300}, 5},
		{"dead letters drain too", 1000, 0, Rates{Ingested: 100, Emitted: 250, DeadLetters: 50}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := drainSeconds(tc.lag, tc.inFlight, tc.r)
			switch {
			case tc.want < 0 && got != nil:
				t.Errorf("drainSeconds = %g, want nil", *got)
			case tc.want >= 0 && (got == nil || *got != tc.want):
				t.Errorf("drainSeconds = %v, want %g", got, tc.want)
			}
		})
	}
}

func TestLiveRates(t *testing.T) {
	reg := metrics.NewRegistry()
	m := metrics.GetOrRegisterMeter("ingest.published", reg)
	s, err := Start(Config{Addr: "127.0.0.1:0"}, reg, bare{}, nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	deadline := time.Now().Add(10 * time.Second)
	for s.Snapshot(false).Rates.Ingested == 0 {
		if time.Now().After(deadline) {
			t.Fatal("ingest rate still 0 after 10s of marking")
		}
		m.Mark(100)
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHistoryIsBounded(t *testing.T) {
	reg := metrics.NewRegistry()
	m := metrics.GetOrRegisterMeter("ingest.published", reg)
	p := &fakePipeline{}
	s, err := Start(Config{}, reg, p, nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Unix(1000, 0)
	for i := range HistoryLen + 50 {
		m.Mark(10)
		p.lag.Store(int64(i))
		s.sample(t0.Add(time.Duration(i) * time.Second))
	}
	h := s.History()
	if len(h) != HistoryLen {
		t.Fatalf("history holds %d points, want %d", len(h), HistoryLen)
	}
	if first, last := h[0], h[len(h)-1]; first.Lag != 50 || last.Lag != HistoryLen+49 || last.Ingested != 10 {
		t.Errorf("history spans lag %d..%d with last rate %g, want 50..%d and 10/s", first.Lag, last.Lag, last.Ingested, HistoryLen+49)
	}
}

// TestTokenGuardsActions: with admin.token set, reload and the profiler need
// the bearer token; the dashboard, metrics and probes do not.
func TestTokenGuardsActions(t *testing.T) {
	reloads := 0
	s, err := Start(Config{Token: "t0k"}, metrics.NewRegistry(), nil, func() error { reloads++; return nil }, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h := s.Handler()
	for _, tc := range []struct {
		method, path, auth string
		want               int
	}{
		{"POST", "/admin/reload", "", http.StatusUnauthorized},
		{"POST", "/admin/reload", "Bearer wrong", http.StatusUnauthorized},
		{"POST", "/admin/reload", "Bearer t0k", http.StatusOK},
		{"GET", "/debug/pprof/", "", http.StatusUnauthorized},
		{"GET", "/healthz", "", http.StatusOK},
		{"GET", "/metrics", "", http.StatusOK},
	} {
		req := httptest.NewRequest(tc.method, tc.path, nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%s %s (auth %q) = %d, want %d", tc.method, tc.path, tc.auth, rec.Code, tc.want)
		}
	}
	if reloads != 1 {
		t.Errorf("reloads = %d, want 1 (only the authorised request)", reloads)
	}
	if strings.Contains(fmt.Sprintf("%v %+v %#v", Config{Token: "t0k"}, Config{Token: "t0k"}, Config{Token: "t0k"}), "t0k") {
		t.Error("the admin token is printed")
	}
}

// TestOversizedHeaderRejected: the admin server bounds request headers.
func TestOversizedHeaderRejected(t *testing.T) {
	s, err := Start(Config{Addr: "127.0.0.1:0", Token: "secret"}, metrics.NewRegistry(), bare{}, nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct {
		name   string
		header int
		want   int
	}{
		{"small header", 100, http.StatusUnauthorized},
		{"oversized header", 64 << 10, http.StatusRequestHeaderFieldsTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := testutil.StatusWithHeader(t, "POST", "http://"+s.Addr().String()+"/admin/reload", "", tc.header); got != tc.want {
				t.Errorf("status %d, want %d", got, tc.want)
			}
		})
	}
}

// TestActionsOffBeyondLoopbackWithoutToken: without admin.token the admin
// actions are served on a loopback address only; on any other address they
// answer 403 while the metrics and probes stay readable.
func TestActionsOffBeyondLoopbackWithoutToken(t *testing.T) {
	for _, tc := range []struct {
		name, addr, token, auth string
		wantReload, wantPprof   int
	}{
		{"loopback, no token", "127.0.0.1:0", "", "", http.StatusOK, http.StatusOK},
		{"all interfaces, no token", "0.0.0.0:0", "", "", http.StatusForbidden, http.StatusForbidden},
		{"all interfaces, token, none sent", "0.0.0.0:0", "s3", "", http.StatusUnauthorized, http.StatusUnauthorized},
		{"all interfaces, token sent", "0.0.0.0:0", "s3", "Bearer s3", http.StatusOK, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reloads := 0
			s, err := Start(Config{Addr: tc.addr, Token: tc.token}, metrics.NewRegistry(), bare{}, func() error { reloads++; return nil }, quietLog())
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_, port, _ := net.SplitHostPort(s.Addr().String())
			base := "http://127.0.0.1:" + port
			do := func(method, path string) int {
				req, _ := http.NewRequest(method, base+path, nil)
				if tc.auth != "" {
					req.Header.Set("Authorization", tc.auth)
				}
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				return res.StatusCode
			}
			if got := do("POST", "/admin/reload"); got != tc.wantReload {
				t.Errorf("POST /admin/reload = %d, want %d", got, tc.wantReload)
			}
			if got := do("GET", "/debug/pprof/cmdline"); got != tc.wantPprof {
				t.Errorf("GET /debug/pprof/cmdline = %d, want %d", got, tc.wantPprof)
			}
			for _, p := range []string{"/metrics", "/healthz", "/readyz", "/metrics.json"} {
				if got := do("GET", p); got != http.StatusOK && got != http.StatusServiceUnavailable {
					t.Errorf("GET %s = %d, want it readable", p, got)
				}
			}
			if wantReloads := map[bool]int{true: 1, false: 0}[tc.wantReload == http.StatusOK]; reloads != wantReloads {
				t.Errorf("reloads = %d, want %d", reloads, wantReloads)
			}
		})
	}
}
