package admin

import (
	"math"
	"strings"
	"testing"
	"time"

	metrics "github.com/rcrowley/go-metrics"
)

func TestDesiredScale(t *testing.T) {
	const nilV = -1.0
	for _, tc := range []struct {
		name          string
		lag, inFlight int64
		slope         float64
		r             Rates
		workers       int64
		target        time.Duration
		wantArrival   float64
		wantInst      float64 // nilV: nil
		wantWorkers   float64
	}{
		{"idle", 0, 0, 0, Rates{}, 4, time.Minute, 0, 0, 0},
		{"caught up", 0, 0, 0, Rates{Emitted: 1000}, 4, time.Minute, 1000, 1, 4},
		{"backlog of one target at full speed doubles", 60000, 0, 0, Rates{Emitted: 1000}, 4, time.Minute, 1000, 2, 8},
		{"growing lag counts as arrivals", 0, 0, 500, Rates{Emitted: 1000}, 2, time.Minute, 1500, 1.5, 3},
		{"shrinking lag lowers arrivals", 30000, 0, -500, Rates{Emitted: 1000}, 2, time.Minute, 500, 1, 2},
		{"in flight is not backlog", 60500, 500, 0, Rates{Emitted: 1000}, 1, time.Minute, 1000, 2, 2},
		{"dead letters are throughput", 60000, 0, 0, Rates{Emitted: 500, DeadLetters: 500}, 1, time.Minute, 1000, 2, 2},
		{"backlog, nothing emitted: unknown", 1000, 0, 0, Rates{}, 4, time.Minute, 0, nilV, 0},
		{"lag growing, nothing emitted: unknown", 1000, 0, 100, Rates{}, 4, time.Minute, 100, nilV, 0},
		{"falling faster than emitted (partitions revoked): no negative arrivals", 0, 0, -5000, Rates{Emitted: 1000}, 4, time.Minute, 0, 0, 0},
		{"zero target falls back to the default", 300000, 0, 0, Rates{Emitted: 1000}, 1, 0, 1000, 2, 2},
		{"short target calls for many", 100000, 0, 0, Rates{Emitted: 1000}, 1, 10 * time.Second, 1000, 11, 11},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := desiredScale(tc.lag, tc.inFlight, tc.slope, tc.r, tc.workers, tc.target)
			if math.Abs(got.ArrivalRate-tc.wantArrival) > 1e-9 {
				t.Errorf("arrival = %g, want %g", got.ArrivalRate, tc.wantArrival)
			}
			switch {
			case tc.wantInst == nilV:
				if got.DesiredInstances != nil || got.DesiredWorkers != nil {
					t.Errorf("desired = %v/%v, want nil", got.DesiredInstances, got.DesiredWorkers)
				}
			case got.DesiredInstances == nil || got.DesiredWorkers == nil:
				t.Errorf("desired = nil, want %g instances", tc.wantInst)
			default:
				if math.Abs(*got.DesiredInstances-tc.wantInst) > 1e-9 {
					t.Errorf("instances = %g, want %g", *got.DesiredInstances, tc.wantInst)
				}
				if math.Abs(*got.DesiredWorkers-tc.wantWorkers) > 1e-9 {
					t.Errorf("workers = %g, want %g", *got.DesiredWorkers, tc.wantWorkers)
				}
			}
		})
	}
}

func TestSlope(t *testing.T) {
	t0 := time.Unix(0, 0)
	for _, tc := range []struct {
		name string
		vs   []int64
		want float64
	}{
		{"one sample", []int64{5}, 0},
		{"rising", []int64{0, 10, 20}, 10},
		{"falling", []int64{100, 50, 0}, -50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := rateWindow{span: time.Minute}
			for i, v := range tc.vs {
				w.add(t0.Add(time.Duration(i)*time.Second), v)
			}
			if got := w.slope(); got != tc.want {
				t.Errorf("slope = %g, want %g", got, tc.want)
			}
		})
	}
}

// TestDesiredInstancesExposed: the signal reaches /metrics once something
// is emitted, and is absent while records wait and nothing is emitted.
func TestDesiredInstancesExposed(t *testing.T) {
	reg := metrics.NewRegistry()
	p := &fakePipeline{}
	s, err := Start(Config{DrainTarget: time.Minute}, reg, p, nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	scrape := func() string {
		code, body := get(t, s.Handler(), "GET", "/metrics")
		if code != 200 {
			t.Fatalf("/metrics: %d", code)
		}
		return body
	}
	if b := scrape(); !strings.Contains(b, FamilyDesiredInstances+" 0") {
		t.Errorf("idle: want %s 0 in\n%s", FamilyDesiredInstances, grepLines(b, "autoscale"))
	}
	p.lag.Store(1000)
	if b := scrape(); strings.Contains(b, FamilyDesiredInstances+" ") {
		t.Errorf("backlog without emits: want no %s, got\n%s", FamilyDesiredInstances, grepLines(b, "autoscale"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestDrainTargetValidate(t *testing.T) {
	for _, tc := range []struct {
		target time.Duration
		ok     bool
	}{{5 * time.Minute, true}, {0, true}, {-time.Second, false}} {
		err := Config{Addr: "127.0.0.1:9180", DrainTarget: tc.target}.Validate()
		if tc.ok != (err == nil) || (err != nil && !strings.Contains(err.Error(), "admin.drain_target")) {
			t.Errorf("Validate(drain_target %s) = %v, want ok %t (errors naming admin.drain_target)", tc.target, err, tc.ok)
		}
	}
}
