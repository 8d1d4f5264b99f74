package admin

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

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
	metrics.GetOrRegisterGaugeFloat64("compression-ratio-ish", reg).Update(0.5)
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
	return reg
}

func TestPromName(t *testing.T) {
	for _, tc := range []struct {
		name      string
		kind      any
		want      string
		wantLabel string
		wantScale float64
	}{
		{"dots to underscores", metrics.NewGauge(), "bend_delayqueue_in_use", "", 1},
		{"partition labels, dotted topic", metrics.NewGauge(), "bend_distributor_partition_lag", `{topic="a.b",partition="3"}`, 1},
		{"broker label and ms", metrics.NewHistogram(metrics.NewUniformSample(1)), "bend_request_latency_seconds", `{broker="2"}`, 1e-3},
		{"topic label, meter rate dropped", metrics.NewMeter(), "bend_record_send", `{topic="t_x"}`, 1},
		{"group label", metrics.NewCounter(), "bend_consumer_group_join_total", `{group="G.1"}`, 1},
		{"api key and broker", metrics.NewMeter(), "bend_protocol_requests", `{broker="1",api_key="3"}`, 1},
		{"enricher label, timer in seconds", metrics.NewTimer(), "bend_enrich_latency_seconds", `{enricher="Lang"}`, 1e-9},
		{"ns gauge", metrics.NewGauge(), "bend_delayqueue_blocked_put_seconds", "", 1e-9},
		{"microsecond histogram", metrics.NewHistogram(metrics.NewUniformSample(1)), "bend_sink_latency_seconds", "", 1e-6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := map[string]string{
				"dots to underscores":              "delayqueue.in_use",
				"partition labels, dotted topic":   "distributor.partition.a.b.3.lag",
				"broker label and ms":              "request-latency-in-ms-for-broker-2",
				"topic label, meter rate dropped":  "record-send-rate-for-topic-t_x",
				"group label":                      "consumer-group-join-total-G.1",
				"api key and broker":               "protocol-requests-rate-3-for-broker-1",
				"enricher label, timer in seconds": "enrich.Lang.latency",
				"ns gauge":                         "delayqueue.blocked_put_ns",
				"microsecond histogram":            "sink.latency",
			}[tc.name]
			got, labels, scale := promName(in, tc.kind)
			if got != tc.want {
				t.Errorf("promName(%q) = %q, want %q", in, got, tc.want)
			}
			if l := formatLabels(labels); l != tc.wantLabel {
				t.Errorf("labels of %q = %s, want %s", in, l, tc.wantLabel)
			}
			if scale != tc.wantScale {
				t.Errorf("scale of %q = %g, want %g", in, scale, tc.wantScale)
			}
		})
	}
}

func TestExposition(t *testing.T) {
	var b bytes.Buffer
	if err := collect(fakeRegistry(t)).write(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"# TYPE bend_ingest_published_total counter\nbend_ingest_published_total 1000\n",
		"# TYPE bend_distributor_inflight gauge\nbend_distributor_inflight 100\n",
		"# TYPE bend_distributor_retries_total counter\nbend_distributor_retries_total 7\n",
		`bend_distributor_partition_lag{topic="bend.activities",partition="0"} 3000`,
		`bend_distributor_partition_lag{topic="bend.activities",partition="1"} 1200`,
		"# TYPE bend_sink_latency_seconds summary\n",
		`bend_sink_latency_seconds{quantile="0.5"} 0.0504999`,
		"bend_sink_latency_seconds_count 100\n",
		"bend_sink_latency_seconds_sum 5.05\n",
		`bend_enrich_latency_seconds{enricher="stats",quantile="0.99"} 0.002`,
		`bend_enrich_errors_total{enricher="stats"} 2`,
		"bend_delayqueue_blocked_put_seconds 1.5\n",
		`bend_consumer_group_join_total_total{group="MyGroup.x"} 1`,
		"# HELP bend_delayqueue_len go-metrics gauge delayqueue.len\n",
		"# TYPE bend_requests_in_flight gauge\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("exposition:\n%s", out)
	}
}

func TestExpositionEscapesAndSkipsClashes(t *testing.T) {
	reg := metrics.NewRegistry()
	metrics.GetOrRegisterGauge(`distributor.partition.we"ird\.0.lag`, reg).Update(1)
	metrics.GetOrRegisterGauge("a.b", reg).Update(1)
	metrics.GetOrRegisterGauge("a-b", reg).Update(2) // same Prometheus name and series: one is kept
	metrics.GetOrRegisterCounter("c", reg).Inc(1)
	metrics.GetOrRegisterGauge("c_total", reg).Update(1) // clashes with the counter's family
	var b bytes.Buffer
	if err := collect(reg).write(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
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
	var b bytes.Buffer
	if err := collect(fakeRegistry(t)).write(&b); err != nil {
		t.Fatal(err)
	}
	promtool(t, b.Bytes())
}
