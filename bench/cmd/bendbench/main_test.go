package main

import (
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bendstream/bend/internal/config"
)

func TestNice(t *testing.T) {
	for _, tc := range []struct{ in, want float64 }{{0, 1}, {7, 8}, {12, 15}, {49659, 50000}, {150073, 200000}, {93000, 100000}, {1.1e6, 1.5e6}} {
		if got := nice(tc.in); got != tc.want {
			t.Errorf("nice(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestPlot renders a run and checks the PNG: its size, and each series'
// colour drawn (a line, or a legend swatch at least).
func TestPlot(t *testing.T) {
	var ss []sample
	for i := range 120 {
		ss = append(ss, sample{T: float64(i), IngestRate: 8000, EmitRate: 7000 + float64(i*10), Lag: int64(120000 - i*1000),
			Parked: 4000, RSSMB: 120, HeapMB: 40, CPUPct: 150})
	}
	path := filepath.Join(t.TempDir(), "p.png")
	if err := plot(path, "test", ss); err != nil {
		t.Fatal(err)
	}
	img := decodePNG(t, path)
	if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 1000 {
		t.Errorf("plot is %dx%d, want at least 800x1000", b.Dx(), b.Dy())
	}
	want := map[color.RGBA]string{{31, 119, 180, 255}: "blue", {255, 127, 14, 255}: "orange", {44, 160, 44, 255}: "green", {214, 39, 40, 255}: "red"}
	counts := map[string]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			if n, ok := want[color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8), uint8(a >> 8)}]; ok {
				counts[n]++
			}
		}
	}
	for _, n := range want {
		if counts[n] < 200 {
			t.Errorf("%d %s pixels, want a line of them", counts[n], n)
		}
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

// decodePNG reads the PNG file path, failing the test if it is not one.
func decodePNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("decoding the plot: %v", err)
	}
	return img
}
