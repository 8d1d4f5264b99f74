package admin

import (
	"math"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/bendstream/bend/internal/metricnames"
	metrics "github.com/rcrowley/go-metrics"
)

// Snapshot is what /metrics.json reports: the figures an operator watches,
// derived from the registry and the pipeline, and every raw metric.
// `bend status` and the dashboard read it.
type Snapshot struct {
	Time          time.Time `json:"time"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	// Ready is what /readyz answers.
	Ready bool `json:"ready"`
	// Rates are per second, over the last RateWindow.
	Rates Rates `json:"rates"`
	// Totals are counts since the start.
	Totals Totals `json:"totals"`
	// Lag is the records of the owned partitions not yet passed by their
	// commit watermarks: the backlog.
	Lag int64 `json:"lag"`
	// DrainSeconds estimates the time to drain the backlog: the records
	// not yet read (Lag - InFlight) divided by (emit + dead-letter rate -
	// ingest rate). Nil while the backlog is not shrinking; 0 without one.
	DrainSeconds *float64 `json:"drain_seconds"`
	// Scale is the autoscaling signal: how many instances, and workers,
	// the backlog and the input rate call for to drain within
	// admin.drain_target.
	Scale Scale `json:"scale"`
	// OldestAgeSeconds is the age of the oldest record read and not yet
	// acknowledged. Nil when the pipeline does not report it or nothing is
	// in flight.
	OldestAgeSeconds *float64 `json:"oldest_age_seconds"`
	// InFlight is the records read and not yet acknowledged by the sink.
	InFlight int64 `json:"in_flight"`
	// Parked is the activities in the delay queue (delayqueue.len).
	Parked     int64      `json:"parked"`
	DelayQueue DelayQueue `json:"delay_queue"`
	TaskQueue  TaskQueue  `json:"task_queue"`
	// Workers is the running in-process enrichment workers, BusyWorkers
	// those running an enricher now.
	Workers     int64 `json:"workers"`
	BusyWorkers int64 `json:"busy_workers"`
	// DelaySeconds is distributor.delay as currently in force.
	DelaySeconds float64 `json:"delay_seconds"`
	// Latency is the ingest-to-emit latency (sink.latency).
	Latency Quantiles `json:"ingest_to_emit_seconds"`
	// Enrich is each enricher's latency of successful attempts.
	Enrich map[string]Quantiles `json:"enrich_latency_seconds"`
	// Partitions lists the owned partitions, by topic and partition.
	Partitions []Partition `json:"partitions"`
	// Metrics is every metric of the registry by its go-metrics name:
	// counters and gauges as numbers, meters, histograms and timers as objects.
	Metrics map[string]any `json:"metrics,omitempty"`
}

// Rates are events per second over the last RateWindow.
type Rates struct {
	Ingested    float64 `json:"ingested"`     // ingest.published
	Consumed    float64 `json:"consumed"`     // distributor.consumed
	Emitted     float64 `json:"emitted"`      // sink.emitted
	DeadLetters float64 `json:"dead_letters"` // sink.dead_letters (the distributor's; ingest's are not in the backlog)
	Retries     float64 `json:"retries"`      // distributor.retries
}

// Totals are counts since the start.
type Totals struct {
	Ingested     int64 `json:"ingested"`
	Consumed     int64 `json:"consumed"`
	Emitted      int64 `json:"emitted"`
	DeadLetters  int64 `json:"dead_letters"`        // sink.dead_letters + ingest.dead_letters: all written to the dead-letter topic
	IngestDead   int64 `json:"ingest_dead_letters"` // of which ingest.dead_letters (invalid events at the edge)
	Retries      int64 `json:"retries"`
	Missing      int64 `json:"missing"`       // distributor.missing
	EnrichErrors int64 `json:"enrich_errors"` // enrich.*.errors summed
}

// DelayQueue is the delay queue's depth (delayqueue.*).
type DelayQueue struct {
	Len   int64 `json:"len"`
	InUse int64 `json:"in_use"`
	Cap   int64 `json:"cap"`
}

// TaskQueue is the enrichment task queue's depth (enrich.queue.*).
type TaskQueue struct {
	Depth int64 `json:"depth"`
	Cap   int64 `json:"cap"`
}

// Quantiles summarise a latency distribution in seconds.
type Quantiles struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// Partition is one owned partition (distributor.partition.TOPIC.P.*).
type Partition struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Lag       int64  `json:"lag"`
	InFlight  int64  `json:"in_flight"`
	Watermark int64  `json:"watermark"`
	Buffered  int64  `json:"buffered"`
}

// RateWindow is the span over which Snapshot's rates are computed.
const RateWindow = 5 * time.Second

// rated names the counts whose rates Snapshot reports.
var rated = []string{metricnames.IngestPublished, metricnames.DistributorConsumed, metricnames.SinkEmitted, metricnames.SinkDeadLetters, metricnames.DistributorRetries}

// rateWindow computes a rate from samples of a cumulative count taken over
// the last span. Not safe for concurrent use.
type rateWindow struct {
	span time.Duration
	ts   []time.Time
	vs   []int64
}

// add records count v at t and forgets samples no longer needed: the oldest
// kept is the latest one at least span before t.
func (w *rateWindow) add(t time.Time, v int64) {
	w.ts = append(w.ts, t)
	w.vs = append(w.vs, v)
	for len(w.ts) > 2 && t.Sub(w.ts[1]) >= w.span {
		w.ts, w.vs = w.ts[1:], w.vs[1:]
	}
}

// rate returns the count's increase per second between the oldest and the
// newest sample, or 0 with fewer than two samples or a decreasing count.
func (w *rateWindow) rate() float64 {
	n := len(w.ts)
	if n < 2 {
		return 0
	}
	dt := w.ts[n-1].Sub(w.ts[0]).Seconds()
	dv := w.vs[n-1] - w.vs[0]
	if dt <= 0 || dv < 0 {
		return 0
	}
	return float64(dv) / dt
}

// slope returns the value's change per second between the oldest and the
// newest sample (negative when it falls), or 0 with fewer than two.
func (w *rateWindow) slope() float64 {
	n := len(w.ts)
	if n < 2 {
		return 0
	}
	dt := w.ts[n-1].Sub(w.ts[0]).Seconds()
	if dt <= 0 {
		return 0
	}
	return float64(w.vs[n-1]-w.vs[0]) / dt
}

// count returns the cumulative count of a counter or meter, 0 if name is
// missing or something else.
func count(reg metrics.Registry, name string) int64 {
	switch m := reg.Get(name).(type) {
	case metrics.Counter:
		return m.Count()
	case metrics.Meter:
		return m.Count()
	case metrics.Timer:
		return m.Count()
	case metrics.Histogram:
		return m.Count()
	}
	return 0
}

// gauge returns the value of a gauge, or the count of a counter used as
// one; 0 if name is missing.
func gauge(reg metrics.Registry, name string) int64 {
	switch m := reg.Get(name).(type) {
	case metrics.Gauge:
		return m.Value()
	case metrics.GaugeFloat64:
		return int64(m.Value())
	case metrics.Counter:
		return m.Count()
	}
	return 0
}

var (
	partitionRe = regexp.MustCompile(`^distributor\.partition\.(.+)\.(\d+)\.(lag|watermark|in_flight|buffered)$`)
	enrichRe    = regexp.MustCompile(`^enrich\.(.+)\.(latency|errors)$`)
)

// fromRegistry fills the figures the registry holds: totals, queues,
// workers, latencies and partitions. Rates, readiness, lag, delay and age
// come from elsewhere.
func fromRegistry(reg metrics.Registry, raw bool) Snapshot {
	s := Snapshot{
		Totals: Totals{
			Ingested:    count(reg, metricnames.IngestPublished),
			Consumed:    count(reg, metricnames.DistributorConsumed),
			Emitted:     count(reg, metricnames.SinkEmitted),
			DeadLetters: count(reg, metricnames.SinkDeadLetters) + count(reg, metricnames.IngestDeadLetters),
			IngestDead:  count(reg, metricnames.IngestDeadLetters),
			Retries:     count(reg, metricnames.DistributorRetries),
			Missing:     count(reg, metricnames.DistributorMissing),
		},
		InFlight: gauge(reg, metricnames.DistributorInflight),
		Lag:      gauge(reg, metricnames.DistributorLag),
		Parked:   gauge(reg, metricnames.DelayQueueLen),
		DelayQueue: DelayQueue{
			Len:   gauge(reg, metricnames.DelayQueueLen),
			InUse: gauge(reg, metricnames.DelayQueueInUse),
			Cap:   gauge(reg, metricnames.DelayQueueCap),
		},
		TaskQueue:   TaskQueue{Depth: gauge(reg, metricnames.EnrichQueueDepth), Cap: gauge(reg, metricnames.EnrichQueueCap)},
		Workers:     gauge(reg, metricnames.EnrichWorkers),
		BusyWorkers: gauge(reg, metricnames.EnrichBusy),
		Enrich:      map[string]Quantiles{},
	}
	if h, ok := reg.Get(metricnames.SinkLatency).(metrics.Histogram); ok {
		hs := h.Snapshot()
		s.Latency = quantilesOf(hs.Count(), hs.Percentiles([]float64{0.5, 0.95, 0.99}), float64(hs.Max()), 1e-6)
	}
	parts := map[string]*Partition{}
	if raw {
		s.Metrics = map[string]any{}
	}
	reg.Each(func(name string, m any) {
		if raw {
			s.Metrics[name] = rawValue(m)
		}
		if mm := partitionRe.FindStringSubmatch(name); mm != nil {
			key := mm[1] + "/" + mm[2]
			p := parts[key]
			if p == nil {
				n, _ := strconv.ParseInt(mm[2], 10, 32)
				p = &Partition{Topic: mm[1], Partition: int32(n)}
				parts[key] = p
			}
			v := gauge(reg, name)
			switch mm[3] {
			case "lag":
				p.Lag = v
			case "watermark":
				p.Watermark = v
			case "in_flight":
				p.InFlight = v
			case "buffered":
				p.Buffered = v
			}
			return
		}
		if mm := enrichRe.FindStringSubmatch(name); mm != nil {
			switch m := m.(type) {
			case metrics.Timer:
				ts := m.Snapshot()
				s.Enrich[mm[1]] = quantilesOf(ts.Count(), ts.Percentiles([]float64{0.5, 0.95, 0.99}), float64(ts.Max()), 1e-9)
			case metrics.Counter:
				s.Totals.EnrichErrors += m.Count()
			}
		}
	})
	for _, p := range parts {
		s.Partitions = append(s.Partitions, *p)
	}
	slices.SortFunc(s.Partitions, func(a, b Partition) int {
		if a.Topic != b.Topic {
			if a.Topic < b.Topic {
				return -1
			}
			return 1
		}
		return int(a.Partition - b.Partition)
	})
	return s
}

func quantilesOf(n int64, ps []float64, maxV, scale float64) Quantiles {
	return Quantiles{Count: n, P50: finite(ps[0] * scale), P95: finite(ps[1] * scale), P99: finite(ps[2] * scale), Max: finite(maxV * scale)}
}

// drainSeconds estimates the time to drain the backlog: the records not yet
// read (lag minus those in flight) at the rate the pipeline gains on
// ingest. 0 when nothing is waiting to be read; nil while the backlog does
// not shrink.
func drainSeconds(lag, inFlight int64, r Rates) *float64 {
	backlog := lag - inFlight
	if backlog <= 0 {
		zero := 0.0
		return &zero
	}
	net := r.Emitted + r.DeadLetters - r.Ingested
	if net <= 0 {
		return nil
	}
	v := float64(backlog) / net
	return &v
}

// Scale is the autoscaling signal of one instance (see desiredScale).
type Scale struct {
	// TargetSeconds is admin.drain_target.
	TargetSeconds float64 `json:"target_seconds"`
	// ArrivalRate is the records/s arriving on the owned partitions:
	// emit + dead-letter rate + the lag's growth per second.
	ArrivalRate float64 `json:"arrival_rate"`
	// DesiredInstances is how many instances as fast as this one its
	// partitions call for (fractional; the group's count is the ceiling
	// of the sum over its members). Nil while it cannot be told: records
	// wait but nothing is emitted.
	DesiredInstances *float64 `json:"desired_instances"`
	// DesiredWorkers is enrich.workers scaled the same way; it is what
	// this instance needs when enrichment is what limits it. Nil with
	// DesiredInstances.
	DesiredWorkers *float64 `json:"desired_workers"`
}

// DefaultDrainTarget is admin.drain_target's default.
const DefaultDrainTarget = 5 * time.Minute

// desiredScale computes the autoscaling signal of one instance:
//
//	arrival  = emit + dead-letter rate + d(lag)/dt (records/s reaching the owned partitions)
//	demand   = arrival + backlog / target          (what drains the backlog within target)
//	desired  = demand / (emit + dead-letter rate)  (instances as fast as this one)
//	workers  = desired * workers
//
// backlog is lag minus in flight (the records not yet read), at least 0,
// and arrival is at least 0. With no demand, desired is 0 (an idle
// instance); with demand and nothing emitted, the rate this instance can
// reach is unknown and desired is nil. A caught-up instance reports about
// 1: throughput measures capacity only while the backlog is not empty, so
// the signal tells when to add instances and that the current count
// suffices, not how many fewer would do.
func desiredScale(lag, inFlight int64, lagSlope float64, r Rates, workers int64, target time.Duration) Scale {
	if target <= 0 {
		target = DefaultDrainTarget
	}
	out := r.Emitted + r.DeadLetters
	sc := Scale{TargetSeconds: target.Seconds(), ArrivalRate: max(out+lagSlope, 0)}
	backlog := float64(max(lag-inFlight, 0))
	demand := sc.ArrivalRate + backlog/target.Seconds()
	var d float64
	switch {
	case demand <= 0:
		d = 0
	case out <= 0:
		return sc
	default:
		d = demand / out
	}
	w := d * float64(workers)
	sc.DesiredInstances, sc.DesiredWorkers = &d, &w
	return sc
}

// rawValue is a metric as /metrics.json shows it.
func rawValue(m any) any {
	switch m := m.(type) {
	case metrics.Counter:
		return m.Count()
	case metrics.Gauge:
		return m.Value()
	case metrics.GaugeFloat64:
		return finite(m.Value())
	case metrics.Meter:
		s := m.Snapshot()
		return map[string]any{"count": s.Count(), "rate1": finite(s.Rate1()), "rate5": finite(s.Rate5()),
			"rate15": finite(s.Rate15()), "mean_rate": finite(s.RateMean())}
	case metrics.Histogram:
		s := m.Snapshot()
		ps := s.Percentiles([]float64{0.5, 0.95, 0.99})
		return map[string]any{"count": s.Count(), "min": s.Min(), "max": s.Max(), "mean": finite(s.Mean()),
			"p50": finite(ps[0]), "p95": finite(ps[1]), "p99": finite(ps[2])}
	case metrics.Timer:
		s := m.Snapshot()
		ps := s.Percentiles([]float64{0.5, 0.95, 0.99})
		return map[string]any{"count": s.Count(), "min_ns": s.Min(), "max_ns": s.Max(), "mean_ns": finite(s.Mean()),
			"p50_ns": finite(ps[0]), "p95_ns": finite(ps[1]), "p99_ns": finite(ps[2]), "rate1": finite(s.Rate1())}
	}
	return nil
}

// finite maps NaN and infinities, which JSON cannot carry, to 0.
func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}
