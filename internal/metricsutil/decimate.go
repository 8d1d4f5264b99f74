// Package metricsutil holds what bend adds to go-metrics: cheaper samples for
// the histograms updated once per record.
package metricsutil

import (
	"sync/atomic"

	metrics "github.com/rcrowley/go-metrics"
)

// DefaultEvery is how many observations per-record latency histograms count
// for each one they keep in their sample.
const DefaultEvery = 8

// decimated counts every observation but passes only every nth to its
// underlying sample. go-metrics' exponentially decaying sample computes an
// exponential and reorders a heap on every update, which at tens of
// thousands of records a second cost bend ~8% of its CPU; percentiles from
// every eighth observation are the same to within the sample's own error.
type decimated struct {
	s     metrics.Sample
	every int64
	count atomic.Int64
}

// Decimate returns a Sample whose Count is every observation and whose
// values (percentiles, mean, min, max) come from s, which receives the
// first observation and then every nth. n < 2 returns s itself.
func Decimate(s metrics.Sample, n int) metrics.Sample {
	if n < 2 {
		return s
	}
	return &decimated{s: s, every: int64(n)}
}

// NewTimer returns a timer whose histogram is an exponentially decaying
// sample (go-metrics' default: 1028 values, biased to the last 5 minutes)
// decimated by DefaultEvery.
func NewTimer() metrics.Timer {
	return metrics.NewCustomTimer(NewHistogram(), metrics.NewMeter())
}

// NewHistogram returns an exponentially decaying histogram (as NewTimer's)
// decimated by DefaultEvery.
func NewHistogram() metrics.Histogram {
	return metrics.NewHistogram(Decimate(metrics.NewExpDecaySample(1028, 0.015), DefaultEvery))
}

// GetOrRegisterTimer returns the timer registered under name, registering
// a NewTimer first if there is none.
func GetOrRegisterTimer(name string, r metrics.Registry) metrics.Timer {
	return r.GetOrRegister(name, NewTimer).(metrics.Timer)
}

// GetOrRegisterHistogram returns the histogram registered under name,
// registering a NewHistogram first if there is none.
func GetOrRegisterHistogram(name string, r metrics.Registry) metrics.Histogram {
	return r.GetOrRegister(name, NewHistogram).(metrics.Histogram)
}

// Update counts v and passes it on when it is the first or an nth.
func (d *decimated) Update(v int64) {
	if (d.count.Add(1)-1)%d.every == 0 {
		d.s.Update(v)
	}
}

// Count is the number of observations, kept or not.
func (d *decimated) Count() int64 { return d.count.Load() }

// Snapshot copies the kept values with the full count.
func (d *decimated) Snapshot() metrics.Sample {
	return metrics.NewSampleSnapshot(d.count.Load(), d.s.Values())
}

// Clear forgets every observation.
func (d *decimated) Clear() { d.s.Clear(); d.count.Store(0) }

// Max of the kept values.
func (d *decimated) Max() int64 { return d.s.Max() }

// Mean of the kept values.
func (d *decimated) Mean() float64 { return d.s.Mean() }

// Min of the kept values.
func (d *decimated) Min() int64 { return d.s.Min() }

// Percentile of the kept values.
func (d *decimated) Percentile(p float64) float64 { return d.s.Percentile(p) }

// Percentiles of the kept values.
func (d *decimated) Percentiles(ps []float64) []float64 { return d.s.Percentiles(ps) }

// Size is the number of kept values.
func (d *decimated) Size() int { return d.s.Size() }

// StdDev of the kept values.
func (d *decimated) StdDev() float64 { return d.s.StdDev() }

// Sum of the kept values.
func (d *decimated) Sum() int64 { return d.s.Sum() }

// Values are the kept values.
func (d *decimated) Values() []int64 { return d.s.Values() }

// Variance of the kept values.
func (d *decimated) Variance() float64 { return d.s.Variance() }
