package admin

import (
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	metrics "github.com/rcrowley/go-metrics"
)

// chromium returns the path of a headless-capable Chromium, skipping the
// test when there is none.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium on PATH (Debian: apt-get install chromium); dashboard not tested in a browser")
	return ""
}

// runChromium runs a headless Chromium on url with extra flags and returns
// its standard output.
func runChromium(t *testing.T, bin, url string, extra ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--no-first-run", "--no-default-browser-check", "--mute-audio", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir(), "--window-size=1200,800",
		// Virtual time runs the page's one-second polls without waiting
		// for them; every fetch still goes to the real server.
		"--virtual-time-budget=8000",
	}, extra...)
	args = append(args, url)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", extra, err, stderr.String())
	}
	return out
}

// feed keeps the fake registry moving so that every chart has non-zero data.
func feed(ctx context.Context, reg metrics.Registry, p *fakePipeline) {
	in := metrics.GetOrRegisterMeter("ingest.published", reg)
	out := metrics.GetOrRegisterMeter("sink.emitted", reg)
	parked := metrics.GetOrRegisterGauge("delayqueue.len", reg)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		in.Mark(100)  // about 5,000/s
		out.Mark(140) // about 7,000/s: the backlog drains
		p.lag.Store(int64(50000 - i*100 + (i%25)*40))
		if p.lag.Load() < 1000 {
			p.lag.Store(1000)
		}
		parked.Update(int64(2000 + (i%50)*60))
	}
}

// TestDashboardInChromium loads the dashboard in headless Chromium against a
// server whose metrics move, and checks from the rendered DOM that the
// tiles and every chart show non-zero data; then it takes a screenshot and
// checks that the chart lines were painted. BEND_DASHBOARD_PNG=path keeps
// the screenshot (docs/dashboard.png is made from a real run instead).
func TestDashboardInChromium(t *testing.T) {
	bin := chromium(t)
	reg := fakeRegistry(t)
	p := &fakePipeline{}
	p.lag.Store(50000)
	s, err := Start(Config{Addr: "127.0.0.1:0"}, reg, p, nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go feed(ctx, reg, p)
	// The rates need two samples (one second) before they are non-zero.
	deadline := time.Now().Add(10 * time.Second)
	for s.Snapshot(false).Rates.Emitted == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	url := "http://" + s.Addr().String() + "/"

	dom := string(runChromium(t, bin, url, "--dump-dom"))
	for _, id := range []string{"v-ingest", "v-emit", "v-lag", "v-parked", "v-inflight", "v-workers", "v-delay", "v-oldest", "v-drain"} {
		v := elementText(dom, id)
		if v == "" || v == "–" {
			t.Errorf("#%s shows %q, want a value", id, v)
			continue
		}
		if n, ok := parseShown(v); ok && n <= 0 {
			t.Errorf("#%s shows %q, want non-zero", id, v)
		}
	}
	if v := elementText(dom, "ready"); v != "ready" {
		t.Errorf("#ready shows %q, want ready", v)
	}
	for _, id := range []string{"chart-rates", "chart-lag", "chart-parked"} {
		points, last := chartAttrs(dom, id)
		if points < 2 {
			t.Errorf("#%s drew %d points, want at least 2 (the page polls every second)", id, points)
		}
		for i, v := range last {
			if v <= 0 {
				t.Errorf("#%s series %d ends at %g, want non-zero", id, i, v)
			}
		}
	}
	if !strings.Contains(dom, "bend.activities / 0") {
		t.Errorf("partition table lacks bend.activities / 0")
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
		return
	}

	shot := filepath.Join(t.TempDir(), "dashboard.png")
	runChromium(t, bin, url, "--screenshot="+shot)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("decoding screenshot: %v", err)
	}
	// Count pixels in the ingest and emit line colours (#2f6fde, #1f9d55).
	blue, green := 0, 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			r, g, bl = r>>8, g>>8, bl>>8
			switch {
			case near(r, 0x2f) && near(g, 0x6f) && near(bl, 0xde):
				blue++
			case near(r, 0x1f) && near(g, 0x9d) && near(bl, 0x55):
				green++
			}
		}
	}
	if blue < 30 || green < 30 {
		t.Errorf("screenshot has %d ingest-blue and %d emit-green pixels; want the rate lines drawn", blue, green)
	}
	if keep := os.Getenv("BEND_DASHBOARD_PNG"); keep != "" {
		data, _ := os.ReadFile(shot)
		if err := os.WriteFile(keep, data, 0o644); err != nil {
			t.Errorf("keeping screenshot: %v", err)
		}
	}
}

func near(a, b uint32) bool { return a+12 >= b && a <= b+12 }

// elementText returns the text of the element with id in dom.
func elementText(dom, id string) string {
	m := regexp.MustCompile(`id="` + regexp.QuoteMeta(id) + `"[^>]*>([^<]*)<`).FindStringSubmatch(dom)
	if m == nil {
		return ""
	}
	return strings.TrimSpace(m[1])
}

// chartAttrs returns a chart's data-points and data-last attributes.
func chartAttrs(dom, id string) (int, []float64) {
	m := regexp.MustCompile(`<svg id="` + regexp.QuoteMeta(id) + `"[^>]*>`).FindString(dom)
	pm := regexp.MustCompile(`data-points="(\d+)"`).FindStringSubmatch(m)
	lm := regexp.MustCompile(`data-last="([^"]*)"`).FindStringSubmatch(m)
	var points int
	if pm != nil {
		points, _ = strconv.Atoi(pm[1])
	}
	var last []float64
	if lm != nil {
		for _, f := range strings.Split(lm[1], ",") {
			v, _ := strconv.ParseFloat(f, 64)
			last = append(last, v)
		}
	}
	return points, last
}

// parseShown parses the leading number of a tile ("5.0k", "12 / 1024",
// "1.5s"); ok is false for text that is not a number.
func parseShown(s string) (float64, bool) {
	m := regexp.MustCompile(`^-?[0-9.]+`).FindString(s)
	if m == "" {
		return 0, false
	}
	v, err := strconv.ParseFloat(m, 64)
	return v, err == nil
}
