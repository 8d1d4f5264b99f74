package admin

import (
	"bytes"
	"context"
	"math"
	"os/exec"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/metricnames"
	dto "github.com/prometheus/client_model/go"
	metrics "github.com/rcrowley/go-metrics"
)

// fakeRegistry returns a registry holding bend's metrics and sarama's
// kinds of names, with non-zero values.
func fakeRegistry(t *testing.T) metrics.Registry {
	t.Helper()
	reg := metrics.NewRegistry()
	metrics.GetOrRegisterMeter("ingest.published", reg).Mark(1000)
	metrics.GetOrRegisterMeter("distributor.consumed", reg).Mark(900)
	metrics.GetOrRegisterMeter("sink.emitted", reg).Mark(800)
	metrics.GetOrRegisterMeter("sink.dead_letters", reg).Mark(3)
	metrics.GetOrRegisterCounter("distributor.retries", reg).Inc(7)
	metrics.GetOrRegisterCounter("distributor.missing", reg).Inc(1)
	metrics.GetOrRegisterCounter("distributor.inflight", reg).Inc(100)
	metrics.GetOrRegisterCounter("enrich.busy", reg).Inc(2)
	gauges := map[string]int64{
		"distributor.lag": 4200, "delayqueue.len": 90, "delayqueue.in_use": 100, "delayqueue.cap": 10000,
		"enrich.queue.depth": 12, "enrich.queue.cap": 1024, "enrich.workers": 4, "delayqueue.blocked_put_ns": 1500000000,
		"distributor.partition.bend.activities.0.lag":       3000,
		"distributor.partition.bend.activities.0.in_flight": 60,
		"distributor.partition.bend.activities.0.watermark": 12345,
		"distributor.partition.bend.activities.0.buffered":  7,
		"distributor.partition.bend.activities.1.lag":       1200,
		"distributor.partition.bend.activities.1.in_flight": 40,
		"distributor.partition.bend.activities.1.watermark": 999,
		"distributor.partition.bend.activities.1.buffered":  0,
	}
	for n, v := range gauges {
		metrics.GetOrRegisterGauge(n, reg).Update(v)
	}
	lat := metrics.GetOrRegisterHistogram("sink.latency", reg, metrics.NewUniformSample(100))
	for i := int64(1); i <= 100; i++ {
		lat.Update(i * 1000) // 1ms..100ms in microseconds
	}
	tm := metrics.GetOrRegisterTimer("enrich.stats.latency", reg)
	tm.Update(2 * time.Millisecond)
	metrics.GetOrRegisterCounter("enrich.stats.errors", reg).Inc(2)
	metrics.GetOrRegisterCounter("enrich.stats.timeouts", reg).Inc(1)
	// sarama's names.
	metrics.GetOrRegisterHistogram("request-latency-in-ms", reg, metrics.NewUniformSample(10)).Update(12)
	metrics.GetOrRegisterHistogram("request-latency-in-ms-for-broker-1", reg, metrics.NewUniformSample(10)).Update(12)
	metrics.GetOrRegisterMeter("incoming-byte-rate", reg).Mark(4096)
	metrics.GetOrRegisterMeter("incoming-byte-rate-for-broker-1", reg).Mark(4096)
	metrics.GetOrRegisterMeter("protocol-requests-rate-3-for-broker-1", reg).Mark(2)
	metrics.GetOrRegisterMeter("record-send-rate-for-topic-bend_activities", reg).Mark(10)
	metrics.GetOrRegisterHistogram("batch-size-for-topic-bend_activities", reg, metrics.NewUniformSample(10)).Update(512)
	metrics.GetOrRegisterCounter("consumer-group-join-total-MyGroup.x", reg).Inc(1)
	metrics.GetOrRegisterCounter("requests-in-flight-for-broker-1", reg).Inc(1)
	metrics.GetOrRegisterCounter("requests-in-flight", reg).Inc(1)
	metrics.GetOrRegisterHistogram("batch-size", reg, metrics.NewUniformSample(10)).Update(512)
	metrics.GetOrRegisterCounter(metricnames.Enricher("lang", metricnames.EnricherInFlight), reg).Inc(3)
	metrics.GetOrRegisterCounter(metricnames.Enricher("lang", metricnames.EnricherWaiting), reg).Inc(1)
	metrics.GetOrRegisterCounter(metricnames.Enricher("lang", metricnames.EnricherCacheMisses), reg).Inc(5)
	metrics.GetOrRegisterMeter(metricnames.Source("http", metricnames.SourceEvents), reg).Mark(40)
	RegisterRuntime(reg)
	return reg
}

// topicsPipeline is fakePipeline that names bend's topics.
type topicsPipeline struct{ fakePipeline }

func (*topicsPipeline) Topics() []string { return []string{"bend.activities", "bend.enriched"} }

// labelString formats labels as {a="x",b="y"}, in order.
func labelString(ls []label) string {
	if len(ls) == 0 {
		return ""
	}
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = l.name + `="` + l.value + `"`
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func TestPromName(t *testing.T) {
	for _, tc := range []struct {
		in        string
		kind      any
		want      string
		wantLabel string
		wantScale float64
	}{
		{"delayqueue.in_use", metrics.NewGauge(), "bend_delayqueue_in_use", "", 1},
		{"distributor.partition.a.b.3.lag", metrics.NewGauge(), "bend_distributor_partition_lag", `{topic="a.b",partition="3"}`, 1},
		{"request-latency-in-ms", metrics.NilHistogram{}, "bend_request_latency_seconds", "", 1e-3},
		{"request-latency-in-ms-for-broker-2", metrics.NilHistogram{}, "bend_broker_request_latency_seconds", `{broker="2"}`, 1e-3},
		{"record-send-rate-for-topic-t_x", metrics.NilMeter{}, "bend_topic_record_send", `{topic="t_x"}`, 1},
		{"batch-size", metrics.NilHistogram{}, "bend_batch_size", "", 1},
		{"batch-size-for-topic-t", metrics.NilHistogram{}, "bend_topic_batch_size", `{topic="t"}`, 1},
		{"consumer-group-join-total-G.1", metrics.NewCounter(), "bend_consumer_group_join_total", `{group="G.1"}`, 1},
		{"protocol-requests-rate-3", metrics.NilMeter{}, "bend_protocol_requests", `{api_key="3"}`, 1},
		{"protocol-requests-rate-3-for-broker-1", metrics.NilMeter{}, "bend_broker_protocol_requests", `{broker="1",api_key="3"}`, 1},
		{"enrich.Lang.latency", metrics.NilTimer{}, "bend_enrich_latency_seconds", `{enricher="Lang"}`, 1e-9},
		{"enrich.lang.in_flight", metrics.NewCounter(), "bend_enrich_in_flight", `{enricher="lang"}`, 1},
		{"enrich.queue.depth", metrics.NewGauge(), "bend_enrich_queue_depth", "", 1},
		{"ingest.http.events", metrics.NilMeter{}, "bend_ingest_source_events", `{source="http"}`, 1},
		{"ingest.http.requests", metrics.NilMeter{}, "bend_ingest_http_requests", "", 1},
		{"delayqueue.blocked_put_ns", metrics.NewGauge(), "bend_delayqueue_blocked_put_seconds", "", 1e-9},
		{"sink.latency", metrics.NilHistogram{}, "bend_sink_latency_seconds", "", 1e-6},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, labels, scale := promName(tc.in, tc.kind)
			if got != tc.want {
				t.Errorf("promName(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if l := labelString(labels); l != tc.wantLabel {
				t.Errorf("labels of %q = %s, want %s", tc.in, l, tc.wantLabel)
			}
			if scale != tc.wantScale {
				t.Errorf("scale of %q = %g, want %g", tc.in, scale, tc.wantScale)
			}
		})
	}
}

// scrape starts an admin server over reg and returns its /metrics body and
// its gathered families by name.
func scrape(t *testing.T, reg metrics.Registry) (string, map[string]*dto.MetricFamily) {
	t.Helper()
	s, err := Start(Config{}, reg, &topicsPipeline{}, nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	code, body := get(t, s.Handler(), "GET", "/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d: %s", code, body)
	}
	mfs, err := s.gather.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		byName[mf.GetName()] = mf
	}
	return body, byName
}

func TestExposition(t *testing.T) {
	out, _ := scrape(t, fakeRegistry(t))
	for _, want := range []string{
		"# TYPE bend_ingest_published_total counter\nbend_ingest_published_total 1000\n",
		"# TYPE bend_distributor_inflight gauge\nbend_distributor_inflight 100\n",
		"# TYPE bend_distributor_retries_total counter\nbend_distributor_retries_total 7\n",
		`bend_distributor_partition_lag{partition="0",topic="bend.activities"} 3000`,
		`bend_distributor_partition_lag{partition="1",topic="bend.activities"} 1200`,
		"# TYPE bend_sink_latency_seconds summary\n",
		`bend_sink_latency_seconds{quantile="0.5"} 0.0504999`,
		"bend_sink_latency_seconds_count 100\n",
		"bend_sink_latency_seconds_sum 5.05",
		`bend_enrich_latency_seconds{enricher="stats",quantile="0.99"} 0.002`,
		`bend_enrich_errors_total{enricher="stats"} 2`,
		"# TYPE bend_enrich_in_flight gauge\n",
		`bend_enrich_in_flight{enricher="lang"} 3`,
		"# TYPE bend_enrich_waiting gauge\n",
		`bend_enrich_cache_misses_total{enricher="lang"} 5`,
		`bend_ingest_source_events_total{source="http"} 40`,
		"bend_delayqueue_blocked_put_seconds 1.5\n",
		`bend_consumer_group_join_total_total{group="MyGroup.x"} 1`,
		"# HELP bend_delayqueue_len Activities parked in the delay queue.\n",
		"# TYPE bend_requests_in_flight gauge\n",
		"# TYPE bend_broker_requests_in_flight gauge\n",
		// sarama's topic label is bend's topic name, as on the partition metrics.
		`bend_topic_record_send_total{topic="bend.activities"} 10`,
		`bend_topic_batch_size_count{topic="bend.activities"} 1`,
		"bend_batch_size_count 1\n",
		"# TYPE bend_build_info gauge\n",
		"# TYPE go_goroutines gauge\n",
		"# TYPE process_resident_memory_bytes gauge\n",
		"bend_ready 1\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
	for _, bad := range []string{`topic="bend_activities"`, "bend_enrich_in_flight_total", "bend_enrich_waiting_total",
		"not in the metricnames table", "bend_go_memory_limit_bytes"} {
		if strings.Contains(out, bad) {
			t.Errorf("exposition has %q", bad)
		}
	}
	if t.Failed() {
		t.Logf("exposition:\n%s", out)
	}
}

// TestFamiliesAreConsistent checks what sum() relies on: every series of a
// family has the same label names, so no aggregate hides among its parts,
// and every family has a help text that says more than its name.
func TestFamiliesAreConsistent(t *testing.T) {
	_, fams := scrape(t, fakeRegistry(t))
	for name, mf := range fams {
		if h := mf.GetHelp(); h == "" || strings.Contains(h, name) || strings.HasPrefix(h, "go-metrics ") {
			t.Errorf("%s: help %q says no more than the name", name, h)
		}
		var first []string
		for i, m := range mf.GetMetric() {
			var ls []string
			for _, lp := range m.GetLabel() {
				ls = append(ls, lp.GetName())
			}
			if i == 0 {
				first = ls
			} else if !slices.Equal(ls, first) {
				t.Errorf("%s mixes label sets %v and %v", name, first, ls)
			}
		}
	}
	for _, tc := range []struct{ family, label string }{
		{"bend_batch_size", ""}, {"bend_topic_batch_size", "topic"},
		{"bend_request_latency_seconds", ""}, {"bend_broker_request_latency_seconds", "broker"},
		{"bend_incoming_byte_total", ""}, {"bend_broker_incoming_byte_total", "broker"},
	} {
		mf := fams[tc.family]
		if mf == nil {
			t.Errorf("no family %s", tc.family)
			continue
		}
		for _, m := range mf.GetMetric() {
			has := slices.ContainsFunc(m.GetLabel(), func(lp *dto.LabelPair) bool { return lp.GetName() == tc.label })
			if has != (tc.label != "") {
				t.Errorf("%s: series %v, want label %q only", tc.family, m.GetLabel(), tc.label)
			}
		}
	}
}

func TestBuildInfo(t *testing.T) {
	_, fams := scrape(t, metrics.NewRegistry())
	mf := fams[FamilyBuildInfo]
	if mf == nil || len(mf.GetMetric()) != 1 {
		t.Fatalf("bend_build_info: %v", mf)
	}
	m := mf.GetMetric()[0]
	if v := m.GetGauge().GetValue(); v != 1 {
		t.Errorf("bend_build_info = %g, want 1", v)
	}
	got := map[string]string{}
	for _, lp := range m.GetLabel() {
		got[lp.GetName()] = lp.GetValue()
	}
	bi, _ := debug.ReadBuildInfo()
	if got["goversion"] != bi.GoVersion || got["version"] == "" || got["commit"] == "" {
		t.Errorf("bend_build_info labels = %v, want version, commit and goversion %s", got, bi.GoVersion)
	}
}

// TestMemoryLimit: without a limit the family is absent (Go reports
// MaxInt64); with one it is the limit.
func TestMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit int64
		want  string
	}{
		{"unset", math.MaxInt64, ""},
		{"set", 3 << 30, "bend_go_memory_limit_bytes 3.221225472e+09\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := debug.SetMemoryLimit(tc.limit)
			defer debug.SetMemoryLimit(old)
			reg := metrics.NewRegistry()
			RegisterRuntime(reg)
			out, _ := scrape(t, reg)
			has := strings.Contains(out, "bend_go_memory_limit_bytes")
			if tc.want == "" && has {
				t.Errorf("exposition has bend_go_memory_limit_bytes without a limit")
			}
			if tc.want != "" && !strings.Contains(out, tc.want) {
				t.Errorf("exposition lacks %q", tc.want)
			}
		})
	}
}

func TestExpositionSkipsClashes(t *testing.T) {
	reg := metrics.NewRegistry()
	metrics.GetOrRegisterGauge(`distributor.partition.we"ird\.0.lag`, reg).Update(1)
	metrics.GetOrRegisterGauge("a.b", reg).Update(1)
	metrics.GetOrRegisterGauge("a-b", reg).Update(2) // same Prometheus name and series: one is kept
	metrics.GetOrRegisterCounter("c", reg).Inc(1)
	metrics.GetOrRegisterGauge("c_total", reg).Update(1) // clashes with the counter's family
	metrics.GetOrRegisterGaugeFloat64("f.x", reg).Update(0.5)
	out, _ := scrape(t, reg)
	if !strings.Contains(out, "\nbend_f_x 0.5\n") || !strings.Contains(out, "# HELP bend_f_x bend metric f.x (go-metrics gauge; not in the metricnames table)") {
		t.Errorf("float gauge missing or without its fallback help:\n%s", out)
	}
	if !strings.Contains(out, `topic="we\"ird\\"`) {
		t.Errorf("label value not escaped:\n%s", out)
	}
	if n := strings.Count(out, "\nbend_a_b "); n != 1 {
		t.Errorf("bend_a_b exposed %d times, want once:\n%s", n, out)
	}
	if n := strings.Count(out, "# TYPE bend_c_total"); n != 1 {
		t.Errorf("bend_c_total has %d TYPE lines, want 1:\n%s", n, out)
	}
}

// TestTableFamilies: every entry of the names table maps to a distinct
// Prometheus family.
func TestTableFamilies(t *testing.T) {
	seen := map[string]string{}
	for _, e := range append(append(metricnames.Table(), metricnames.Sarama()...), Derived()...) {
		f := e.Pattern
		if !strings.HasPrefix(f, "bend_") {
			f = PromFamily(e)
		}
		if other, ok := seen[f]; ok {
			t.Errorf("%s and %s are both exposed as %s", other, e.Pattern, f)
		}
		seen[f] = e.Pattern
	}
}

// promtool runs `promtool check metrics` on exposition, skipping the test
// when promtool is not installed.
func promtool(t *testing.T, exposition []byte) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not on PATH (Debian: apt-get install prometheus); exposition not linted")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(exposition)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s\nexposition:\n%s", err, out, exposition)
	}
}

func TestPromtoolAcceptsExposition(t *testing.T) {
	out, _ := scrape(t, fakeRegistry(t))
	promtool(t, []byte(out))
}
