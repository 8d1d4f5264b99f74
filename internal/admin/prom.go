package admin

import (
	"bufio"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	metrics "github.com/rcrowley/go-metrics"
)

// quantiles are the summary quantiles exposed for histograms and timers.
var quantiles = []float64{0.5, 0.75, 0.95, 0.99, 0.999}

// upDown names the go-metrics counters that are used as gauges (they go down
// as well as up); they are exposed as Prometheus gauges, not counters. Names
// are matched after labels are carved out (requests-in-flight-for-broker-1
// is requests-in-flight).
var upDown = map[string]bool{
	"distributor.inflight": true,
	"enrich.busy":          true,
	"requests-in-flight":   true,
}

// microseconds names the histograms whose values are microseconds; they are
// exposed in seconds.
var microseconds = map[string]bool{"sink.latency": true}

// labelRules turn the variable parts of registry names into labels, so that
// one Prometheus family holds, say, every partition's lag. They are tried in
// order, each on the result of the previous one.
var labelRules = []struct {
	re     *regexp.Regexp
	name   string   // replacement for the name, with $n references
	labels []string // label names of the capture groups, in order; "" skips a group
}{
	// distributor.partition.TOPIC.P.lag (topics may contain dots).
	{regexp.MustCompile(`^distributor\.partition\.(.+)\.(\d+)\.([a-z_]+)$`), "distributor.partition.$3", []string{"topic", "partition", ""}},
	// sarama: NAME-for-broker-ID, NAME-for-topic-TOPIC.
	{regexp.MustCompile(`^(.+)-for-broker-(-?\d+)$`), "$1", []string{"", "broker"}},
	{regexp.MustCompile(`^(.+)-for-topic-(.+)$`), "$1", []string{"", "topic"}},
	// sarama: consumer-group-{join,sync}-{total,failed}-GROUP.
	{regexp.MustCompile(`^consumer-group-(join|sync)-(total|failed)-(.+)$`), "consumer-group-$1-$2", []string{"", "", "group"}},
	// sarama: protocol-requests-rate-APIKEY.
	{regexp.MustCompile(`^protocol-requests-rate-(\d+)$`), "protocol-requests-rate", []string{"api_key"}},
	// enrich.NAME.{latency,errors,timeouts}.
	{regexp.MustCompile(`^enrich\.(.+)\.(latency|errors|timeouts)$`), "enrich.$2", []string{"enricher", ""}},
}

// unitRe finds an abbreviated time unit as the last word of a name:
// request-latency-in-ms, blocked_put_ns.
var unitRe = regexp.MustCompile(`[-._](in[-._])?(ms|us|ns)$`)

var unitScale = map[string]float64{"ms": 1e-3, "us": 1e-6, "ns": 1e-9}

// label is one Prometheus label.
type label struct{ name, value string }

// point is one exposed sample.
type point struct {
	suffix string // after the family name: "", "_sum", "_count"
	labels []label
	value  float64
}

// family is one Prometheus metric family.
type family struct {
	name, typ, help string
	points          []point
}

// families holds the families being built, by name.
type families map[string]*family

// add appends a point to the family name, creating it with typ and help.
// A point whose family exists with another type is dropped: two registry
// names that sanitise to one Prometheus name must not produce an invalid
// exposition.
func (fs families) add(name, typ, help string, p point) {
	f := fs[name]
	if f == nil {
		f = &family{name: name, typ: typ, help: help}
		fs[name] = f
	}
	if f.typ != typ {
		return
	}
	f.points = append(f.points, p)
}

// promName maps a go-metrics name to a Prometheus family name (without the
// type suffix), the labels carved out of it, and the factor that converts
// its values to base units (seconds).
func promName(name string, kind any) (string, []label, float64) {
	fam, labels, scale, _ := promNameBase(name, kind)
	return fam, labels, scale
}

// promNameBase is promName that also returns the go-metrics name without
// its labelled parts.
func promNameBase(name string, kind any) (fam string, labels []label, scale float64, unlabelled string) {
	base := name
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
	}
	unlabelled = base
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
	return "bend_" + sanitise(base), labels, scale, unlabelled
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

// collect converts every metric in reg to Prometheus families.
func collect(reg metrics.Registry) families {
	fs := families{}
	reg.Each(func(name string, m any) {
		fam, labels, scale, unlabelled := promNameBase(name, m)
		help := "go-metrics " + kindName(m) + " " + name
		switch m := m.(type) {
		case metrics.Counter:
			if upDown[unlabelled] {
				fs.add(fam, "gauge", help, point{labels: labels, value: float64(m.Count()) * scale})
				return
			}
			fs.add(fam+"_total", "counter", help, point{labels: labels, value: float64(m.Count()) * scale})
		case metrics.Meter:
			fs.add(fam+"_total", "counter", help, point{labels: labels, value: float64(m.Count())})
		case metrics.Gauge:
			fs.add(fam, "gauge", help, point{labels: labels, value: float64(m.Value()) * scale})
		case metrics.GaugeFloat64:
			fs.add(fam, "gauge", help, point{labels: labels, value: m.Value() * scale})
		case metrics.Histogram:
			s := m.Snapshot()
			addSummary(fs, fam, help, labels, scale, s.Percentiles(quantiles), s.Mean(), s.Count())
		case metrics.Timer:
			s := m.Snapshot()
			addSummary(fs, fam, help, labels, scale, s.Percentiles(quantiles), s.Mean(), s.Count())
		}
	})
	return fs
}

// addSummary adds a go-metrics histogram or timer as a summary. go-metrics
// keeps only a sample of the observations, so _sum is estimated as the
// sample's mean times the total count.
func addSummary(fs families, fam, help string, labels []label, scale float64, ps []float64, mean float64, count int64) {
	if fs[fam] != nil && fs[fam].typ != "summary" {
		return
	}
	for i, q := range quantiles {
		ql := append(slices.Clone(labels), label{"quantile", strconv.FormatFloat(q, 'g', -1, 64)})
		fs.add(fam, "summary", help, point{labels: ql, value: ps[i] * scale})
	}
	fs.add(fam, "summary", help, point{suffix: "_sum", labels: labels, value: mean * float64(count) * scale})
	fs.add(fam, "summary", help, point{suffix: "_count", labels: labels, value: float64(count)})
}

func kindName(m any) string {
	switch m.(type) {
	case metrics.Counter:
		return "counter"
	case metrics.Meter:
		return "meter"
	case metrics.Gauge:
		return "gauge"
	case metrics.GaugeFloat64:
		return "gauge"
	case metrics.Histogram:
		return "histogram"
	case metrics.Timer:
		return "timer"
	default:
		return "metric"
	}
}

// write writes fs in the Prometheus text exposition format (version 0.0.4),
// families and points in a stable order.
func (fs families) write(w io.Writer) error {
	bw := bufio.NewWriter(w)
	names := make([]string, 0, len(fs))
	for n := range fs {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		f := fs[n]
		bw.WriteString("# HELP " + f.name + " " + escapeHelp(f.help) + "\n")
		bw.WriteString("# TYPE " + f.name + " " + f.typ + "\n")
		seen := map[string]bool{}
		for _, p := range f.points {
			line := f.name + p.suffix + formatLabels(p.labels)
			if seen[line] {
				continue // a duplicate series would make the exposition invalid
			}
			seen[line] = true
			bw.WriteString(line + " " + formatValue(p.value) + "\n")
		}
	}
	return bw.Flush()
}

func formatLabels(ls []label) string {
	if len(ls) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, l := range ls {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l.name + `="` + escapeLabel(l.value) + `"`)
	}
	b.WriteByte('}')
	return b.String()
}

func formatValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
func escapeLabel(s string) string { return labelEscaper.Replace(s) }
