package main

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestNice(t *testing.T) {
	for _, tc := range []struct{ in, want float64 }{{0, 1}, {7, 10}, {12, 20}, {49659, 50000}, {150073, 200000}} {
		if got := nice(tc.in); got != tc.want {
			t.Errorf("nice(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestPlot(t *testing.T) {
	ss := []sample{{T: 1, IngestRate: 10, EmitRate: 5, Lag: 3, RSSMB: 30, CPUPct: 50}, {T: 2, IngestRate: 12, EmitRate: 12, RSSMB: 31, CPUPct: 60}}
	if err := plot(filepath.Join(t.TempDir(), "p.png"), "test", ss); err != nil {
		t.Fatal(err)
	}
}

func TestBendConfigLookup(t *testing.T) {
	c := bendConfig(scenarios["iobound"], "127.0.0.1:9092", "in", "out", "dlq", "g", "127.0.0.1:1", "http://127.0.0.1:2")
	for _, want := range []string{"type: lookup", `url: "http://127.0.0.1:2/scores/{id}"`, "workers: 512", "seed: 42"} {
		if !strings.Contains(c, want) {
			t.Errorf("config lacks %q:\n%s", want, c)
		}
	}
}
