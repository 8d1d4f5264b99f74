package admin

import (
	"math"
	"regexp"
	"strings"

	"github.com/bendstream/bend/internal/buildinfo"
	"github.com/bendstream/bend/internal/metricnames"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	metrics "github.com/rcrowley/go-metrics"
)

// quantiles are the summary quantiles exposed for histograms and timers.
var quantiles = []float64{0.5, 0.75, 0.95, 0.99, 0.999}

// labelRule turns the variable part of registry names into labels, so that
// one Prometheus family holds, say, every partition's lag.
type labelRule struct {
	re     *regexp.Regexp
	name   string   // replacement for the name, with $n references
	labels []string // label names of the capture groups, in order; "" skips a group
	// scope prefixes the family name, so that sarama's per-broker and
	// per-topic series never share a family with its all-brokers and
	// all-topics aggregates (whose sum() would then count twice).
	scope string
}

// labelRules are tried in order, each on the result of the previous one.
var labelRules = []labelRule{
	// distributor.partition.TOPIC.P.lag (topics may contain dots).
	{re: regexp.MustCompile(`^distributor\.partition\.(.+)\.(\d+)\.([a-z_]+)$`), name: "distributor.partition.$3", labels: []string{"topic", "partition", ""}},
	// sarama: NAME-for-broker-ID, NAME-for-topic-TOPIC.
	{re: regexp.MustCompile(`^(.+)-for-broker-(-?\d+)$`), name: "$1", labels: []string{"", "broker"}, scope: "broker_"},
	{re: regexp.MustCompile(`^(.+)-for-topic-(.+)$`), name: "$1", labels: []string{"", "topic"}, scope: "topic_"},
	// sarama: consumer-group-{join,sync}-{total,failed}-GROUP.
	{re: regexp.MustCompile(`^consumer-group-(join|sync)-(total|failed)-(.+)$`), name: "consumer-group-$1-$2", labels: []string{"", "", "group"}},
	// sarama: protocol-requests-rate-APIKEY.
	{re: regexp.MustCompile(`^protocol-requests-rate-(\d+)$`), name: "protocol-requests-rate", labels: []string{"api_key"}},
	// enrich.NAME.latency and the other per-enricher names.
	{re: regexp.MustCompile(`^enrich\.(.+)\.(` + strings.Join([]string{
		metricnames.EnricherLatency, metricnames.EnricherErrors, metricnames.EnricherTimeouts, metricnames.EnricherInFlight,
		metricnames.EnricherWaiting, metricnames.EnricherLimit, metricnames.EnricherRequests, metricnames.EnricherCacheHits,
		metricnames.EnricherCacheMisses, metricnames.EnricherReloads, metricnames.EnricherReloadErrors,
		// Not EnricherStale: enrich.remote.stale would read as enricher "remote".
		metricnames.EnricherQueued, metricnames.EnricherQueueDepth, metricnames.EnricherQueueCap, metricnames.EnricherDeadline,
		metricnames.EnricherCut, metricnames.EnricherOverloaded}, "|") + `)$`),
		name: "enrich.$2", labels: []string{"enricher", ""}},
	// ingest.SOURCE.{events,published,rejected,bytes}.
	{re: regexp.MustCompile(`^ingest\.([a-z0-9_]+)\.(` + strings.Join([]string{
		metricnames.SourceEvents, metricnames.SourcePublished, metricnames.SourceRejected, metricnames.SourceBytes,
		metricnames.SourceNonActivity, metricnames.SourceNonActivityDropped}, "|") + `)$`),
		name: "ingest.source.$2", labels: []string{"source", ""}},
}

// microseconds names the histograms whose values are microseconds; they are
// exposed in seconds.
var microseconds = map[string]bool{metricnames.SinkLatency: true}

// unitRe finds an abbreviated time unit as the last word of a name:
// request-latency-in-ms, blocked_put_ns.
var unitRe = regexp.MustCompile(`[-._](in[-._])?(ms|us|ns)$`)

var unitScale = map[string]float64{"ms": 1e-3, "us": 1e-6, "ns": 1e-9}

// label is one Prometheus label.
type label struct{ name, value string }

// promName maps a go-metrics name to a Prometheus family name (without the
// type suffix), the labels carved out of it, and the factor that converts
// its values to base units (seconds).
func promName(name string, kind any) (string, []label, float64) {
	fam, labels, scale, _ := promNameBase(name, kind)
	return fam, labels, scale
}

// promNameBase is promName that also returns the pattern: the go-metrics
// name without its labelled parts, as the metricnames table lists it.
func promNameBase(name string, kind any) (fam string, labels []label, scale float64, pattern string) {
	base, scope := name, ""
	for _, r := range labelRules {
		m := r.re.FindStringSubmatch(base)
		if m == nil {
			continue
		}
		for i, ln := range r.labels {
			if ln != "" {
				labels = append(labels, label{ln, m[i+1]})
			}
		}
		base = r.re.ReplaceAllString(base, r.name)
		scope = r.scope + scope
	}
	pattern = base
	scale = 1.0
	switch {
	case microseconds[name]:
		scale = 1e-6
		base += "_seconds"
	case unitRe.MatchString(base):
		m := unitRe.FindStringSubmatch(base)
		scale = unitScale[m[2]]
		base = base[:len(base)-len(m[0])] + "_seconds"
	default:
		if _, ok := kind.(metrics.Timer); ok {
			scale = 1e-9 // go-metrics timers record nanoseconds
			base += "_seconds"
		}
	}
	if _, ok := kind.(metrics.Meter); ok {
		// A meter's count is exposed; "request-rate" counts requests.
		base = strings.TrimSuffix(strings.TrimSuffix(base, "-rate"), ".rate")
	}
	return "bend_" + scope + sanitise(base), labels, scale, pattern
}

// PromFamily returns the Prometheus family name an entry of the metricnames
// table is exposed as (counters and meters with their _total suffix).
func PromFamily(e metricnames.Entry) string {
	var kind any
	switch e.Kind {
	case metricnames.Counter, metricnames.UpDown:
		kind = metrics.NewCounter()
	case metricnames.Meter:
		kind = metrics.NilMeter{}
	case metricnames.Gauge:
		kind = metrics.NewGauge()
	case metricnames.Histogram:
		kind = metrics.NilHistogram{}
	case metricnames.Timer:
		kind = metrics.NilTimer{}
	}
	fam, _, _, _ := promNameBase(e.Pattern, kind)
	if e.Kind == metricnames.Counter || e.Kind == metricnames.Meter {
		fam += "_total"
	}
	return fam
}

// sanitise lowercases s and replaces every character Prometheus does not
// allow in a metric name (dots and dashes among them) with an underscore.
func sanitise(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// registryCollector is a prometheus.Collector over a go-metrics registry.
// It is unchecked (Describe sends nothing): the registry's names appear as
// the pipeline runs (a partition is claimed, a broker is met).
type registryCollector struct {
	reg     metrics.Registry
	entries map[string]metricnames.Entry // by pattern
	// topics maps sarama's topic labels (dots replaced by underscores) back
	// to bend's topic names, so that every topic label holds the real name.
	topics map[string]string
}

func newRegistryCollector(reg metrics.Registry, topics []string) *registryCollector {
	c := &registryCollector{reg: reg, entries: map[string]metricnames.Entry{}, topics: map[string]string{}}
	for _, t := range [][]metricnames.Entry{metricnames.Table(), metricnames.Sarama()} {
		for _, e := range t {
			c.entries[e.Pattern] = e
		}
	}
	for _, t := range topics {
		c.topics[strings.ReplaceAll(t, ".", "_")] = t
	}
	return c
}

// Describe sends nothing: the collector is unchecked.
func (c *registryCollector) Describe(chan<- *prometheus.Desc) {}

// famState is what Collect remembers of a family it emitted: its type and
// label names, which every later series of the family must share, and the
// series emitted, which must not repeat.
type famState struct {
	typ    string
	labels string
	series map[string]bool
}

// Collect converts every metric of the registry. A series whose family
// already exists with another type or other label names, or that repeats a
// series (two registry names sanitising to one), is skipped, so that the
// exposition stays valid.
func (c *registryCollector) Collect(ch chan<- prometheus.Metric) {
	seen := map[string]*famState{}
	c.reg.Each(func(name string, m any) {
		fam, labels, scale, pattern := promNameBase(name, m)
		e, known := c.entries[pattern]
		help := e.Help
		if !known {
			help = "bend metric " + pattern + " (go-metrics " + kindName(m) + "; not in the metricnames table)"
		}
		for i, l := range labels {
			if l.name == "topic" {
				if t, ok := c.topics[l.value]; ok {
					labels[i].value = t
				}
			}
		}
		names := make([]string, len(labels))
		values := make([]string, len(labels))
		for i, l := range labels {
			names[i], values[i] = l.name, l.value
		}
		admit := func(fam, typ string) bool {
			key := strings.Join(names, ",")
			s := seen[fam]
			if s == nil {
				s = &famState{typ: typ, labels: key, series: map[string]bool{}}
				seen[fam] = s
			}
			if s.typ != typ || s.labels != key {
				return false
			}
			series := strings.Join(values, "\xff")
			if s.series[series] {
				return false
			}
			s.series[series] = true
			return true
		}
		emit := func(fam, typ string, vt prometheus.ValueType, v float64) {
			if admit(fam, typ) {
				ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(fam, help, names, nil), vt, v, values...)
			}
		}
		switch m := m.(type) {
		case metrics.Counter:
			if known && e.Kind == metricnames.UpDown {
				emit(fam, "gauge", prometheus.GaugeValue, float64(m.Count())*scale)
				return
			}
			emit(fam+"_total", "counter", prometheus.CounterValue, float64(m.Count())*scale)
		case metrics.Meter:
			emit(fam+"_total", "counter", prometheus.CounterValue, float64(m.Count()))
		case metrics.Gauge:
			v := m.Value()
			if name == metricnames.GoMemoryLimitBytes && v == math.MaxInt64 {
				return // no memory limit: the family is absent rather than 9.2e18
			}
			emit(fam, "gauge", prometheus.GaugeValue, float64(v)*scale)
		case metrics.GaugeFloat64:
			emit(fam, "gauge", prometheus.GaugeValue, m.Value()*scale)
		case metrics.Histogram:
			if admit(fam, "summary") {
				s := m.Snapshot()
				ch <- summary(fam, help, names, values, scale, s.Percentiles(quantiles), s.Mean(), s.Count())
			}
		case metrics.Timer:
			if admit(fam, "summary") {
				s := m.Snapshot()
				ch <- summary(fam, help, names, values, scale, s.Percentiles(quantiles), s.Mean(), s.Count())
			}
		}
	})
}

// summary builds a go-metrics histogram or timer as a summary. go-metrics
// keeps only a sample of the observations, so _sum is estimated as the
// sample's mean times the total count.
func summary(fam, help string, names, values []string, scale float64, ps []float64, mean float64, count int64) prometheus.Metric {
	qs := make(map[float64]float64, len(quantiles))
	for i, q := range quantiles {
		qs[q] = ps[i] * scale
	}
	return prometheus.MustNewConstSummary(prometheus.NewDesc(fam, help, names, nil),
		uint64(max(count, 0)), mean*float64(count)*scale, qs, values...)
}

func kindName(m any) string {
	switch m.(type) {
	case metrics.Counter:
		return "counter"
	case metrics.Meter:
		return "meter"
	case metrics.Gauge, metrics.GaugeFloat64:
		return "gauge"
	case metrics.Histogram:
		return "histogram"
	case metrics.Timer:
		return "timer"
	default:
		return "metric"
	}
}

// Families added by the admin server beside the registry's.
const (
	FamilyReady     = "bend_ready"
	FamilyDelay     = "bend_distributor_delay_seconds"
	FamilyOldestAge = "bend_oldest_unprocessed_age_seconds"
	FamilyDrain     = "bend_backlog_drain_seconds"
	FamilyBuildInfo = "bend_build_info"
	// FamilyDesiredInstances and FamilyDesiredWorkers are the autoscaling
	// signal (Snapshot.Scale).
	FamilyDesiredInstances = "bend_autoscale_desired_instances"
	FamilyDesiredWorkers   = "bend_autoscale_desired_workers"
	familyDesiredInstHelp  = "Instances as fast as this one that its partitions' backlog and input rate call for to drain within admin.drain_target: (arrival rate + backlog/drain_target) / (emit + dead-letter rate); the group's count is the ceiling of the sum over its members. Absent while records wait and nothing is emitted."
	familyDesiredWorkHelp  = "enrich.workers scaled like bend_autoscale_desired_instances: the workers this instance needs when enrichment limits it."
	familyReadyHelp        = "1 when bend is ready (what /readyz answers), else 0."
	familyDelayHelp        = "distributor.delay as currently in force."
	familyOldestHelp       = "Age of the oldest record read and not yet acknowledged; absent when none is in flight."
	familyDrainHelp        = "Estimated time to drain the backlog at the current rates; absent while the backlog grows."
	familyBuildHelp        = "Always 1; the labels name the running build (module version, VCS commit, Go version)."
)

// Derived lists the families the admin server adds beside the registry's
// (bend_ready, bend_build_info and the derived figures), with their help.
func Derived() []metricnames.Entry {
	return []metricnames.Entry{
		{Pattern: FamilyReady, Kind: metricnames.Gauge, Help: familyReadyHelp},
		{Pattern: FamilyDelay, Kind: metricnames.Gauge, Help: familyDelayHelp},
		{Pattern: FamilyOldestAge, Kind: metricnames.Gauge, Help: familyOldestHelp},
		{Pattern: FamilyDrain, Kind: metricnames.Gauge, Help: familyDrainHelp},
		{Pattern: FamilyBuildInfo, Kind: metricnames.Gauge, Help: familyBuildHelp},
		{Pattern: FamilyDesiredInstances, Kind: metricnames.Gauge, Help: familyDesiredInstHelp},
		{Pattern: FamilyDesiredWorkers, Kind: metricnames.Gauge, Help: familyDesiredWorkHelp},
	}
}

// derivedCollector exposes the figures of Snapshot that the registry does
// not hold: readiness, the delay, the oldest age and the drain estimate.
type derivedCollector struct{ s *Server }

var (
	readyDesc  = prometheus.NewDesc(FamilyReady, familyReadyHelp, nil, nil)
	delayDesc  = prometheus.NewDesc(FamilyDelay, familyDelayHelp, nil, nil)
	oldestDesc = prometheus.NewDesc(FamilyOldestAge, familyOldestHelp, nil, nil)
	drainDesc  = prometheus.NewDesc(FamilyDrain, familyDrainHelp, nil, nil)
	desInDesc  = prometheus.NewDesc(FamilyDesiredInstances, familyDesiredInstHelp, nil, nil)
	desWkDesc  = prometheus.NewDesc(FamilyDesiredWorkers, familyDesiredWorkHelp, nil, nil)
)

func (d derivedCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, x := range []*prometheus.Desc{readyDesc, delayDesc, oldestDesc, drainDesc, desInDesc, desWkDesc} {
		ch <- x
	}
}

func (d derivedCollector) Collect(ch chan<- prometheus.Metric) {
	snap := d.s.Snapshot(false)
	ready := 0.0
	if snap.Ready {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(readyDesc, prometheus.GaugeValue, ready)
	if d.s.p != nil {
		ch <- prometheus.MustNewConstMetric(delayDesc, prometheus.GaugeValue, snap.DelaySeconds)
	}
	if snap.OldestAgeSeconds != nil {
		ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, *snap.OldestAgeSeconds)
	}
	if snap.DrainSeconds != nil {
		ch <- prometheus.MustNewConstMetric(drainDesc, prometheus.GaugeValue, *snap.DrainSeconds)
	}
	if d.s.p != nil && snap.Scale.DesiredInstances != nil {
		ch <- prometheus.MustNewConstMetric(desInDesc, prometheus.GaugeValue, *snap.Scale.DesiredInstances)
		ch <- prometheus.MustNewConstMetric(desWkDesc, prometheus.GaugeValue, *snap.Scale.DesiredWorkers)
	}
}

// promRegistry builds the Prometheus registry /metrics serves: the go-metrics
// registry, the derived figures, bend_build_info and the standard go_* and
// process_* collectors.
func (s *Server) promRegistry(topics []string) *prometheus.Registry {
	pr := prometheus.NewPedanticRegistry()
	bi := buildinfo.Get()
	pr.MustRegister(
		newRegistryCollector(s.reg, topics),
		derivedCollector{s},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: FamilyBuildInfo, Help: familyBuildHelp,
			ConstLabels: prometheus.Labels{"version": bi.Version, "commit": bi.Commit, "goversion": bi.GoVersion}},
			func() float64 { return 1 }),
	)
	return pr
}
