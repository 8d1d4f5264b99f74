package deploy

import (
	"context"
	"io"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/admin"
	"github.com/bendstream/bend/internal/metricnames"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
)

// known returns every family name bend can expose: the names table mapped to
// Prometheus names (summaries with their _count and _sum series), the
// admin server's own families, and what a scrape of an admin server over an
// empty registry shows (go_*, process_*, bend_build_info).
func known(t *testing.T) map[string]bool {
	t.Helper()
	k := map[string]bool{}
	for _, e := range append(metricnames.Table(), metricnames.Sarama()...) {
		f := admin.PromFamily(e)
		k[f] = true
		if e.Kind == metricnames.Histogram || e.Kind == metricnames.Timer {
			k[f+"_count"], k[f+"_sum"] = true, true
		}
	}
	for _, e := range admin.Derived() {
		k[e.Pattern] = true
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	reg := metrics.NewRegistry()
	admin.RegisterRuntime(reg)
	s, err := admin.Start(admin.Config{}, reg, nil, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (\S+) `).FindAllStringSubmatch(rec.Body.String(), -1) {
		k[m[1]] = true
	}
	return k
}

func TestDashboardIsValid(t *testing.T) {
	d, err := ReadDashboard()
	if err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard uid %q title %q with %d panels: want all set", d.UID, d.Title, len(d.Panels))
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d repeats", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 {
			t.Errorf("panel %q has no size", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			if strings.TrimSpace(q.Expr) == "" || len(Metrics(q.Expr)) == 0 {
				t.Errorf("panel %q query %s reads no metric: %q", p.Title, q.RefID, q.Expr)
			}
		}
	}
	// What an operator watches, each on a panel.
	for _, want := range []string{"bend_ingest_published_total", "bend_sink_emitted_total", "bend_distributor_lag",
		"bend_backlog_drain_seconds", "bend_oldest_unprocessed_age_seconds", "bend_delayqueue_len",
		"bend_enrich_latency_seconds_count", "bend_enrich_errors_total", "bend_distributor_missing_total",
		"bend_sink_dead_letters_total", "bend_ingest_dead_letters_total", "bend_ready"} {
		refs, err := Referenced()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, w := range refs[want] {
			found = found || strings.HasPrefix(w, "grafana/")
		}
		if !found {
			t.Errorf("no dashboard panel shows %s", want)
		}
	}
}

func TestRulesCoverTheAlerts(t *testing.T) {
	r, err := ReadRules()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			got[rule.Alert] = true
		}
	}
	for _, want := range []string{"BendLagGrowing", "BendOldestInFlightOld", "BendDeadLetters", "BendNotReady"} {
		if !got[want] {
			t.Errorf("alerts.yml has no %s", want)
		}
	}
}

// TestReferencedMetricsExist: every metric the dashboard and the rules read
// is one bend exposes, so a rename fails here rather than as an empty panel
// or an alert that never fires.
func TestReferencedMetricsExist(t *testing.T) {
	refs, err := Referenced()
	if err != nil {
		t.Fatal(err)
	}
	k := known(t)
	for name, where := range refs {
		if !k[name] {
			t.Errorf("%s (used in %s) is not a metric bend exposes", name, strings.Join(where, "; "))
		}
	}
	if len(refs) < 10 {
		t.Errorf("only %d metrics referenced; the parser found too little", len(refs))
	}
}

// promtool runs promtool with args in the prometheus directory, skipping
// the test when promtool is not installed.
func promtool(t *testing.T, args ...string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not on PATH (Debian: apt-get install prometheus); rules not checked")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = "prometheus"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestPromtoolCheckRules(t *testing.T) { promtool(t, "check", "rules", "alerts.yml") }

// TestPromtoolTestRules runs the rules' unit tests: each alert fires on the
// series it is meant for and not on a healthy one.
func TestPromtoolTestRules(t *testing.T) { promtool(t, "test", "rules", "alerts_test.yml") }
