package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"strings"

	gplot "gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// panel is one of plot's stacked charts: a y-axis label and its series.
type panel struct {
	label  string
	series []series
}

// series is one line of a panel.
type series struct {
	name string
	c    color.Color
	y    func(sample) float64
}

// plot draws the samples as four stacked panels sharing the time axis
// (ingest and emit rate; lag and parked; memory; CPU) into a PNG, with
// gonum/plot: real fonts, round ticks, a legend per panel.
func plot(path, title string, ss []sample) error {
	blue, orange := color.RGBA{31, 119, 180, 255}, color.RGBA{255, 127, 14, 255}
	green, red := color.RGBA{44, 160, 44, 255}, color.RGBA{214, 39, 40, 255}
	panels := []panel{
		{"events/s", []series{{"ingest", blue, func(s sample) float64 { return s.IngestRate }}, {"emit", orange, func(s sample) float64 { return s.EmitRate }}}},
		{"records", []series{{"lag", red, func(s sample) float64 { return float64(s.Lag) }}, {"parked", green, func(s sample) float64 { return float64(s.Parked) }}}},
		{"MB", []series{{"RSS", blue, func(s sample) float64 { return s.RSSMB }}, {"Go heap", green, func(s sample) float64 { return s.HeapMB }}}},
		{"CPU % of one core", []series{{"CPU", orange, func(s sample) float64 { return s.CPUPct }}}},
	}
	tmax := 1.0
	for _, s := range ss {
		tmax = math.Max(tmax, s.T)
	}
	rows := make([][]*gplot.Plot, len(panels))
	for i, pn := range panels {
		p, err := panelPlot(pn, ss, tmax)
		if err != nil {
			return err
		}
		if i == 0 {
			p.Title.Text = "bendbench " + title
			p.Title.TextStyle.Font.Size = vg.Points(14)
		}
		if i == len(panels)-1 {
			p.X.Label.Text = "seconds since bend started"
		}
		rows[i] = []*gplot.Plot{p}
	}
	return writeColumn(path, rows, 9*vg.Inch, 11*vg.Inch, 110)
}

// panelPlot builds one panel: its series as lines from 0 to a round
// maximum, with a grid and a legend.
func panelPlot(pn panel, ss []sample, tmax float64) (*gplot.Plot, error) {
	p := gplot.New()
	p.Y.Label.Text = pn.label
	p.X.Min, p.X.Max = 0, tmax
	p.Y.Min = 0
	p.Y.Tick.Marker = shortTicks{}
	p.Add(plotter.NewGrid())
	ymax := 0.0
	for k, sr := range pn.series {
		xys := make(plotter.XYs, len(ss))
		smax := 0.0
		for i, s := range ss {
			xys[i].X, xys[i].Y = s.T, sr.y(s)
			smax = math.Max(smax, xys[i].Y)
		}
		if k > 0 && smax == 0 {
			continue // not recorded (older summaries have no heap figure)
		}
		ymax = math.Max(ymax, smax)
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sr.name, err)
		}
		l.LineStyle.Color = sr.c
		l.LineStyle.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(sr.name, l)
	}
	// Headroom above the highest point keeps the legend clear of the lines.
	p.Y.Max = nice(ymax * 1.15)
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.XOffs = vg.Points(8)
	return p, nil
}

// shortTicks are gonum's default round ticks, labelled 20K, 1.5M.
type shortTicks struct{}

// Ticks implements gonum's plot.Ticker.
func (shortTicks) Ticks(lo, hi float64) []gplot.Tick {
	ts := gplot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = short(ts[i].Value)
		}
	}
	return ts
}

// nice rounds v up to a round axis maximum: 1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8
// times a power of ten.
func nice(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// short formats a tick value: 950, 20K, 1.5M; fractions keep one decimal.
func short(v float64) string {
	switch {
	case math.Abs(v) >= 1e6:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v/1e6), ".0") + "M"
	case math.Abs(v) >= 1e3:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v/1e3), ".0") + "K"
	case v != math.Trunc(v):
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0")
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

// plotScaleout draws each scale-out run as two panels sharing the time
// axis: the output's records/s with the steps marked, and every input
// partition's longest output pause at each step (kept: same owner before
// and after; moved: the others) on a log scale with the 1 s line.
func plotScaleout(path string, runs []soRun) error {
	blue, orange := color.RGBA{31, 119, 180, 255}, color.RGBA{255, 127, 14, 255}
	gray, red := color.RGBA{150, 150, 150, 255}, color.RGBA{214, 39, 40, 255}
	var rows [][]*gplot.Plot
	for _, r := range runs {
		mode := "dynamic"
		if r.Static {
			mode = "static"
		}
		tmax := 1.0
		if len(r.Events) > 0 {
			tmax = r.Events[len(r.Events)-1].At + soStep.Seconds()
		}
		// Output rate.
		rp := gplot.New()
		rp.Title.Text = fmt.Sprintf("bendbench scaleout: %s, %s membership", r.Assignor, mode)
		rp.Title.TextStyle.Font.Size = vg.Points(13)
		rp.Y.Label.Text = "output records/s"
		if r.LiveRate > 0 {
			rp.Y.Label.Text = "output/s (preload clipped)"
		}
		rp.X.Min, rp.X.Max, rp.Y.Min = 0, tmax, 0
		rp.Y.Tick.Marker = shortTicks{}
		rp.Add(plotter.NewGrid())
		xys := make(plotter.XYs, 0, len(r.Rate))
		ymax := 0.0
		for i, v := range r.Rate {
			if t := float64(i) * r.RateStep; t <= tmax {
				xys = append(xys, plotter.XY{X: t, Y: v})
				ymax = math.Max(ymax, v)
			}
		}
		// The preload drains at tens of thousands a second: the axis is
		// sized for the live input, where the steps happen.
		if r.LiveRate > 0 {
			ymax = math.Min(ymax, 2*r.LiveRate)
		}
		rp.Y.Max = nice(ymax * 1.25)
		for i := range xys {
			xys[i].Y = math.Min(xys[i].Y, rp.Y.Max)
		}
		if len(xys) > 1 {
			l, err := plotter.NewLine(xys)
			if err != nil {
				return err
			}
			l.LineStyle.Color, l.LineStyle.Width = blue, vg.Points(1)
			rp.Add(l)
		}
		var lx plotter.XYs
		var ltext []string
		for _, e := range r.Events {
			m, err := plotter.NewLine(plotter.XYs{{X: e.At, Y: 0}, {X: e.At, Y: rp.Y.Max}})
			if err != nil {
				return err
			}
			m.LineStyle.Color, m.LineStyle.Width = gray, vg.Points(0.8)
			m.LineStyle.Dashes = []vg.Length{vg.Points(3), vg.Points(3)}
			rp.Add(m)
			lx = append(lx, plotter.XY{X: e.At, Y: rp.Y.Max * 0.97})
			ltext = append(ltext, stepLabel(e.soAction))
		}
		if len(lx) > 0 {
			lb, err := plotter.NewLabels(plotter.XYLabels{XYs: lx, Labels: ltext})
			if err != nil {
				return err
			}
			for i := range lb.TextStyle {
				lb.TextStyle[i].Font.Size = vg.Points(8)
				lb.TextStyle[i].XAlign = draw.XLeft
				lb.TextStyle[i].YAlign = draw.YTop
			}
			lb.Offset = vg.Point{X: vg.Points(2)}
			rp.Add(lb)
		}
		// Pauses per partition per step.
		pp := gplot.New()
		pp.Y.Label.Text = "pause per partition (s)"
		pp.X.Label.Text = "seconds since the first instance started"
		pp.X.Min, pp.X.Max = 0, tmax
		pp.Y.Scale, pp.Y.Tick.Marker = gplot.LogScale{}, gplot.LogTicks{Prec: -1}
		pp.Y.Min, pp.Y.Max = 0.01, 30
		pp.Add(plotter.NewGrid())
		var kept, moved plotter.XYs
		for _, e := range r.Events {
			for p, ms := range e.PauseMS {
				if ms <= 0 {
					continue
				}
				y := math.Min(math.Max(ms/1000, pp.Y.Min), pp.Y.Max)
				if p < len(e.OwnersBefore) && p < len(e.OwnersAfter) && e.OwnersBefore[p] != 0 && e.OwnersBefore[p] == e.OwnersAfter[p] {
					kept = append(kept, plotter.XY{X: e.At + 1, Y: y})
				} else {
					moved = append(moved, plotter.XY{X: e.At + 2.5, Y: y})
				}
			}
		}
		for _, set := range []struct {
			name  string
			xys   plotter.XYs
			c     color.Color
			shape draw.GlyphDrawer
		}{{"kept", kept, blue, draw.CircleGlyph{}}, {"moved", moved, orange, draw.CrossGlyph{}}} {
			if len(set.xys) == 0 {
				continue
			}
			s, err := plotter.NewScatter(set.xys)
			if err != nil {
				return err
			}
			s.GlyphStyle.Color, s.GlyphStyle.Shape, s.GlyphStyle.Radius = set.c, set.shape, vg.Points(3)
			pp.Add(s)
			pp.Legend.Add(set.name, s)
		}
		one, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 1}, {X: tmax, Y: 1}})
		if err != nil {
			return err
		}
		one.LineStyle.Color, one.LineStyle.Width = red, vg.Points(1.2)
		one.LineStyle.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
		pp.Add(one)
		pp.Legend.Add("1 s", one)
		pp.Legend.Top, pp.Legend.Left = false, false // the bottom right: pauses under 10 ms are rare
		pp.Legend.XOffs, pp.Legend.YOffs = -vg.Points(6), vg.Points(4)
		rows = append(rows, []*gplot.Plot{rp}, []*gplot.Plot{pp})
	}
	if len(rows) == 0 {
		return fmt.Errorf("no runs to plot")
	}
	return writeColumn(path, rows, 10*vg.Inch, vg.Length(len(rows))*2.6*vg.Inch, 100)
}

// writeColumn draws rows (one plot each), aligned in one column of a w x h
// image at dpi, to the PNG file path.
func writeColumn(path string, rows [][]*gplot.Plot, w, h vg.Length, dpi int) error {
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(dpi))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(rows), Cols: 1, PadTop: vg.Points(6), PadBottom: vg.Points(6),
		PadLeft: vg.Points(6), PadRight: vg.Points(12), PadY: vg.Points(10)}
	canvases := gplot.Align(rows, tiles, dc)
	for i := range rows {
		rows[i][0].Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

// stepLabel is a step's short label on the plot: "+3,4", "TERM 4", "KILL 3".
func stepLabel(a soAction) string {
	ids := make([]string, len(a.Instances))
	for i, n := range a.Instances {
		ids[i] = fmt.Sprint(n)
	}
	list := strings.Join(ids, ",")
	switch a.Kind {
	case soJoin:
		return "+" + list
	case soRestart:
		return "restart " + list
	case soTerm:
		return "TERM " + list
	case soKill:
		return "KILL " + list
	}
	return string(a.Kind) + " " + list
}
