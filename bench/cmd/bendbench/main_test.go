package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bendstream/bend/internal/config"
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
	c := bendConfig(scenarios["iobound"], "127.0.0.1:9092", "in", "out", "dlq", "g", "127.0.0.1:1", "http://127.0.0.1:2", nil)
	for _, want := range []string{"type: lookup", `url: "http://127.0.0.1:2/scores/{id}"`, "workers: 512", "seed: 42"} {
		if !strings.Contains(c, want) {
			t.Errorf("config lacks %q:\n%s", want, c)
		}
	}
}

// TestBendConfigBigEvents checks that the stalled-sink scenario's config
// loads: the webhook sink, no Kafka sink, the memory budget.
func TestBendConfigBigEvents(t *testing.T) {
	h := &webhook{url: "http://127.0.0.1:3/events"}
	c := bendConfig(scenarios["bigevents"], "127.0.0.1:9092", "in", "out", "dlq", "g", "127.0.0.1:1", "", h)
	path := filepath.Join(t.TempDir(), "bend.yaml")
	if err := os.WriteFile(path, []byte(c), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config.Load: %v\n%s", err, c)
	}
	if cfg.Sink.Webhook.URL != h.url || cfg.Sink.Kafka.Enabled || cfg.Distributor.MemoryBudget != 256<<20 {
		t.Errorf("webhook %q kafka %t budget %d, want %q false %d", cfg.Sink.Webhook.URL, cfg.Sink.Kafka.Enabled, cfg.Distributor.MemoryBudget, h.url, 256<<20)
	}
	if ev := bigEvent("act-7", 300<<10); len(ev) != 300<<10 {
		t.Errorf("bigEvent is %d bytes, want %d", len(ev), 300<<10)
	}
}
