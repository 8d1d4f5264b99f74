package main

import (
	"image/color"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestStepPauses(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Millisecond) }
	// every returns a record every 10 ms in [from, to) ms.
	every := func(spans ...[2]int) []time.Time {
		var ts []time.Time
		for _, s := range spans {
			for m := s[0]; m < s[1]; m += 10 {
				ts = append(ts, ms(m))
			}
		}
		return ts
	}
	steps := []time.Time{ms(0), ms(2000), ms(4000)}
	end := ms(6000)
	for _, tc := range []struct {
		name   string
		ts     []time.Time
		want   []float64 // ms, per step
		wantAt []int     // ms, when the longest pause began, per step
	}{
		{"steady", every([2]int{0, 6000}), []float64{10, 10, 10}, []int{0, 1500, 3500}},
		// The output stops 10 ms before the next step (a SIGKILL: the
		// step's time is taken just before the signal): the pause is that
		// step's, not the one before.
		{"stop just before the next step", every([2]int{0, 4000}, [2]int{5000, 6000}), []float64{10, 10, 1010}, []int{0, 1500, 3990}},
		{"stop after a step", every([2]int{0, 2300}, [2]int{3100, 6000}), []float64{10, 810, 10}, []int{0, 2290, 3500}},
		// A pause longer than a window counts in full at the step where
		// it began, and not at the next one.
		{"pause across a step", every([2]int{0, 2100}, [2]int{4500, 6000}), []float64{10, 2410, 10}, []int{0, 2090, 4500}},
		{"output starts after the first step", every([2]int{400, 6000}), []float64{400, 10, 10}, []int{0, 1500, 3500}},
		{"output ends before the run", every([2]int{0, 5000}), []float64{10, 10, 1010}, []int{0, 1500, 4990}},
		{"no output", nil, []float64{6000, 4000, 2000}, []int{0, 2000, 4000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := stepPauses(tc.ts, steps, end)
			for k := range steps {
				if got[k].ms != tc.want[k] || !got[k].at.Equal(ms(tc.wantAt[k])) {
					t.Errorf("step %d: pause %g ms from %v, want %g ms from %d ms", k, got[k].ms, got[k].at.Sub(t0), tc.want[k], tc.wantAt[k])
				}
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

// TestPlotScaleout renders two runs and checks the PNG: its size, and the
// output rate line (blue), the moved pauses (orange) and the 1 s line (red).
func TestPlotScaleout(t *testing.T) {
	var runs []soRun
	for _, as := range []string{"cooperative-sticky", "range"} {
		r := soRun{Assignor: as, RateStep: 0.5, LiveRate: 2000}
		for i := range 240 {
			r.Rate = append(r.Rate, 2000+float64(i%7)*10)
		}
		for k, a := range append([]soAction{{soJoin, []int{1}}}, soSchedule(false)...) {
			e := soEvent{soAction: a, At: float64(k) * 15, OwnersBefore: make([]int, soPartitions), OwnersAfter: make([]int, soPartitions)}
			for p := range soPartitions {
				e.OwnersAfter[p] = 1 + p%2
				if k > 0 {
					e.OwnersBefore[p] = 1 + (p+k)%2
				}
				e.PauseMS = append(e.PauseMS, float64(50+p*100+k*200))
			}
			r.Events = append(r.Events, e)
		}
		runs = append(runs, r)
	}
	path := filepath.Join(t.TempDir(), "scaleout.png")
	if p := os.Getenv("BENDBENCH_KEEP_PLOT"); p != "" {
		path = p
	}
	if err := plotScaleout(path, runs); err != nil {
		t.Fatal(err)
	}
	img := decodePNG(t, path)
	b := img.Bounds()
	if b.Dx() < 800 || b.Dy() < 800 {
		t.Errorf("plot is %dx%d, want at least 800x800", b.Dx(), b.Dy())
	}
	want := map[color.RGBA]string{{31, 119, 180, 255}: "blue", {255, 127, 14, 255}: "orange", {214, 39, 40, 255}: "red"}
	counts := map[string]int{}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			for c, n := range want {
				// near the colour: thin lines and glyphs are antialiased
				if d := abs(int(r>>8)-int(c.R)) + abs(int(g>>8)-int(c.G)) + abs(int(bl>>8)-int(c.B)); d < 30 {
					counts[n]++
				}
			}
		}
	}
	for _, n := range want {
		if counts[n] < 20 {
			t.Errorf("%s: %d pixels, want the series drawn", n, counts[n])
		}
	}
}

func abs(v int) int { return max(v, -v) }
