package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"strings"
)

// plot draws the samples as four stacked panels (ingest and emit rate; lag
// and parked; RSS; CPU) into a PNG. Standard library only, with a built-in
// 3x5 pixel font, so the harness adds no dependency to the module.
func plot(path, title string, ss []sample) error {
	const w, ph, left, top, gap = 900, 150, 70, 30, 34
	type series struct {
		name string
		c    color.RGBA
		y    func(sample) float64
	}
	blue, orange := color.RGBA{31, 119, 180, 255}, color.RGBA{255, 127, 14, 255}
	green, red := color.RGBA{44, 160, 44, 255}, color.RGBA{214, 39, 40, 255}
	panels := []struct {
		label string
		ss    []series
	}{
		{"EVENTS/S", []series{{"INGEST", blue, func(s sample) float64 { return s.IngestRate }}, {"EMIT", orange, func(s sample) float64 { return s.EmitRate }}}},
		{"RECORDS", []series{{"LAG", red, func(s sample) float64 { return float64(s.Lag) }}, {"PARKED", green, func(s sample) float64 { return float64(s.Parked) }}}},
		{"RSS MB", []series{{"RSS", blue, func(s sample) float64 { return s.RSSMB }}}},
		{"CPU % OF 1 CORE", []series{{"CPU", orange, func(s sample) float64 { return s.CPUPct }}}},
	}
	h := top + len(panels)*(ph+gap) + 10
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	black, grey := color.RGBA{0, 0, 0, 255}, color.RGBA{220, 220, 220, 255}
	text(img, 10, 8, strings.ToUpper("BENDBENCH "+title), black, 3)
	tmax := 1.0
	for _, s := range ss {
		tmax = math.Max(tmax, s.T)
	}
	pw := w - left - 20
	for pi, p := range panels {
		y0 := top + pi*(ph+gap) + 14
		ymax := 0.0
		for _, sr := range p.ss {
			for _, s := range ss {
				ymax = math.Max(ymax, sr.y(s))
			}
		}
		ymax = nice(ymax)
		// frame, grid, labels
		for k := 0; k <= 4; k++ {
			gy := y0 + ph - k*ph/4
			hline(img, left, left+pw, gy, grey)
			text(img, 4, gy-5, short(ymax*float64(k)/4), black, 2)
		}
		for k := 0; k <= 10; k++ {
			x := left + k*pw/10
			vline(img, x, y0, y0+ph, grey)
			{
				text(img, x-6, y0+ph+4, fmt.Sprintf("%.0f", tmax*float64(k)/10), black, 2)
			}
		}
		hline(img, left, left+pw, y0+ph, black)
		vline(img, left, y0, y0+ph, black)
		lx := left + 6
		text(img, lx, y0-12, p.label, black, 2)
		lx += 8 * (len(p.label) + 2)
		for _, sr := range p.ss {
			fill(img, lx, y0-11, 10, 6, sr.c)
			text(img, lx+14, y0-12, sr.name, sr.c, 2)
			lx += 14 + 8*(len(sr.name)+2)
			px, py := -1, -1
			for _, s := range ss {
				x := left + int(s.T/tmax*float64(pw))
				y := y0 + ph - int(sr.y(s)/ymax*float64(ph))
				if px >= 0 {
					line(img, px, py, x, y, sr.c)
					line(img, px, py+1, x, y+1, sr.c)
				}
				px, py = x, y
			}
		}
	}
	text(img, w-230, h-12, "SECONDS SINCE BEND STARTED", black, 2)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// nice rounds v up to 1, 2 or 5 times a power of ten.
func nice(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func short(v float64) string {
	switch {
	case v >= 1e6:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v/1e6), ".0") + "M"
	case v >= 1e3:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v/1e3), ".0") + "K"
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func hline(img *image.RGBA, x0, x1, y int, c color.RGBA) {
	for x := x0; x <= x1; x++ {
		img.SetRGBA(x, y, c)
	}
}

func vline(img *image.RGBA, x, y0, y1 int, c color.RGBA) {
	for y := y0; y <= y1; y++ {
		img.SetRGBA(x, y, c)
	}
}

func fill(img *image.RGBA, x, y, w, h int, c color.RGBA) {
	for i := range w {
		for j := range h {
			img.SetRGBA(x+i, y+j, c)
		}
	}
}

// line draws with Bresenham's algorithm.
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := 1, 1
	if x0 > x1 {
		sx = -1
	}
	if y0 > y1 {
		sy = -1
	}
	e := dx + dy
	for {
		img.SetRGBA(x0, y0, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			x0 += sx
		} else {
			e += dx
			y0 += sy
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// text draws s in the 3x5 font, each font pixel scale x scale.
func text(img *image.RGBA, x, y int, s string, c color.RGBA, scale int) {
	for _, r := range s {
		g, ok := glyphs[r]
		if !ok {
			g = glyphs['?']
		}
		for row := range 5 {
			for col := range 3 {
				if g[row*3+col] == '#' {
					fill(img, x+col*scale, y+row*scale, scale, scale, c)
				}
			}
		}
		x += 4 * scale
	}
}

// glyphs is a 3x5 pixel font: 15 characters per glyph, row by row.
var glyphs = map[rune]string{
	'0': "####.##.##.####",
	'1': ".#.##..#..#.###",
	'2': "###..#####..###",
	'3': "###..#.##..####",
	'4': "#.##.####..#..#",
	'5': "####..###..####",
	'6': "####..####.####",
	'7': "###..#.#..#..#.",
	'8': "####.#####.####",
	'9': "####.####..####",
	'.': ".............#.",
	' ': "...............",
	'%': "#.#..#.#.#..#.#",
	'/': "..#..#.#.#..#..",
	'-': "......###......",
	'?': "###..#.#.....#.",
	'A': ".#.#.#####.##.#",
	'B': "##.#.###.#.###.",
	'C': "####..#..#..###",
	'D': "##.#.##.##.###.",
	'E': "####..##.#..###",
	'F': "####..##.#..#..",
	'G': "####..#.##.####",
	'H': "#.##.#####.##.#",
	'I': "###.#..#..#.###",
	'J': "..#..#..##.####",
	'K': "#.##.###.#.##.#",
	'L': "#..#..#..#..###",
	'M': "#.########.##.#",
	'N': "##.#.##.##.##.#",
	'O': "####.##.##.####",
	'P': "####.#####..#..",
	'Q': "####.##.####..#",
	'R': "##.#.###.#.##.#",
	'S': "####..###..####",
	'T': "###.#..#..#..#.",
	'U': "#.##.##.##.####",
	'V': "#.##.##.##.#.#.",
	'W': "#.##.########.#",
	'X': "#.##.#.#.#.##.#",
	'Y': "#.##.#.#..#..#.",
	'Z': "###..#.#.#..###",
}
