package main

import (
	"testing"
	"time"
)

func TestLongestGap(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms ...int) []time.Time {
		var ts []time.Time
		for _, m := range ms {
			ts = append(ts, t0.Add(time.Duration(m)*time.Millisecond))
		}
		return ts
	}
	for _, tc := range []struct {
		name     string
		ts       []time.Time
		from, to int // ms
		want     float64
	}{
		{"steady", at(0, 10, 20, 30, 40, 50), 15, 45, 10},
		{"pause inside", at(0, 10, 1500, 1510), 5, 1600, 1490},
		{"gap spanning the window's start", at(0, 900, 910), 500, 1000, 900},
		{"gap spanning the window's end", at(0, 10, 2000), 5, 100, 1990},
		{"no record after the window's start", at(0, 10), 100, 1100, 1090},
		{"no record at all", nil, 0, 1000, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := longestGap(tc.ts, t0.Add(time.Duration(tc.from)*time.Millisecond), t0.Add(time.Duration(tc.to)*time.Millisecond))
			if got != tc.want {
				t.Errorf("longestGap = %g ms, want %g", got, tc.want)
			}
		})
	}
}

func TestScaleoutSchedule(t *testing.T) {
	for _, full := range []bool{false, true} {
		running := map[int]bool{1: true}
		most, changes := 1, 0
		for _, a := range soSchedule(full) {
			for _, i := range a.Instances {
				changes++
				switch a.Kind {
				case soJoin, soRestart:
					if running[i] {
						t.Fatalf("full=%t: instance %d started twice", full, i)
					}
					running[i] = true
				default:
					if !running[i] {
						t.Fatalf("full=%t: instance %d stopped while not running", full, i)
					}
					delete(running, i)
				}
			}
			most = max(most, len(running))
		}
		if most != 4 || len(running) != 1 || !running[1] {
			t.Errorf("full=%t: at most %d instances, %v at the end; want 4, then instance 1 alone", full, most, running)
		}
		if full && changes < 20 {
			t.Errorf("full schedule: %d joins and leaves, want at least 20", changes)
		}
	}
}
