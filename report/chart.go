package report

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strings"

	"github.com/pg-batch-exporter/pg-batch-exporter/internal/units"
)

// chart is a line chart over a window, drawn as inline SVG (no script, no external asset).
type chart struct {
	Title string
	Help  string // what the chart shows, under its title
	Unit  string // bytes, count, sessions
	Lines []line
	XMax  float64 // seconds: the window's length
	// Step draws each change as a jump at the reading that saw it: a count of events
	// (checkpoints) grew somewhere between two snapshots, by a whole event, never by half.
	Step bool
}

type line struct {
	Name   string
	Color  string
	Dashed bool // the baseline
	Points []point
}

// Plot sizes in SVG user units; the SVG scales to its container.
const (
	chartW, chartH                       = 600, 200
	padLeft, padRight, padTop, padBottom = 70, 14, 10, 26
	plotW, plotH                         = chartW - padLeft - padRight, chartH - padTop - padBottom
	tickCount                            = 4
	baselineColor                        = "#8a8f98"
)

// palette is colour-blind friendly (Okabe-Ito), most distinct first.
var palette = []string{"#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9"}

// Empty tells whether no line has a point.
func (c chart) Empty() bool {
	for _, l := range c.Lines {
		if len(l.Points) > 0 {
			return false
		}
	}
	return true
}

// SVG draws the chart: axes with ticks in the chart's unit, one path per line.
func (c chart) SVG() template.HTML {
	xmin, xmax, ymax := 0.0, c.XMax, 0.0
	for _, l := range c.Lines {
		for _, p := range l.Points {
			xmin, xmax, ymax = math.Min(xmin, p.T), math.Max(xmax, p.T), math.Max(ymax, p.V)
		}
	}
	if xmax <= xmin {
		xmax = xmin + 1
	}
	ystep := niceStep(ymax, tickCount, c.Unit)
	ytop := ystep * math.Max(1, math.Ceil(ymax/ystep))
	x := func(t float64) float64 { return padLeft + (t-xmin)/(xmax-xmin)*plotW }
	y := func(v float64) float64 { return padTop + plotH - v/ytop*plotH }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`,
		chartW, chartH, html.EscapeString(c.Title))
	for v := 0.0; v <= ytop+ystep/2; v += ystep {
		fmt.Fprintf(&b, `<line class="gridline" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>`, padLeft, chartW-padRight, y(v), y(v))
		fmt.Fprintf(&b, `<text class="tick" x="%d" y="%.1f" text-anchor="end">%s</text>`, padLeft-6, y(v)+4, html.EscapeString(formatValue(v, c.Unit)))
	}
	xstep := niceStep(xmax-xmin, 5, "seconds")
	for t := math.Ceil(xmin/xstep) * xstep; t <= xmax+xstep/1000; t += xstep {
		fmt.Fprintf(&b, `<line class="xtick" x1="%.1f" x2="%.1f" y1="%d" y2="%d"/>`, x(t), x(t), padTop+plotH, padTop+plotH+4)
		fmt.Fprintf(&b, `<text class="tick" x="%.1f" y="%d" text-anchor="middle">%s</text>`, x(t), chartH-8, html.EscapeString(formatOffset(t)))
	}
	fmt.Fprintf(&b, `<line class="axis" x1="%d" x2="%d" y1="%d" y2="%d"/>`, padLeft, chartW-padRight, padTop+plotH, padTop+plotH)
	for _, l := range c.Lines {
		if len(l.Points) == 0 {
			continue
		}
		var d strings.Builder
		for i, p := range l.Points {
			switch {
			case i == 0:
				fmt.Fprintf(&d, "M%.1f %.1f ", x(p.T), y(p.V))
			case c.Step:
				fmt.Fprintf(&d, "H%.1f V%.1f ", x(p.T), y(p.V))
			default:
				fmt.Fprintf(&d, "L%.1f %.1f ", x(p.T), y(p.V))
			}
		}
		dash := ""
		if l.Dashed {
			dash = ` stroke-dasharray="5 4"`
		}
		fmt.Fprintf(&b, `<path class="series" d="%s" stroke="%s"%s><title>%s</title></path>`,
			strings.TrimSpace(d.String()), l.Color, dash, html.EscapeString(l.Name))
		if len(l.Points) == 1 { // a lone point draws no line: mark it
			p := l.Points[0]
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`, x(p.T), y(p.V), l.Color)
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // built from numbers and escaped text only
}

// niceStep is a round tick step (1, 2 or 5 × 10^n; for bytes powers of 1024 times those; for
// seconds whole minutes and hours past a minute) giving about n ticks up to max.
func niceStep(max float64, n int, unit string) float64 {
	if max <= 0 {
		return 1
	}
	raw := max / float64(n)
	scale := 1.0
	switch {
	case unit == "bytes":
		for raw/scale >= 1024 {
			scale *= 1024
		}
	case unit == "seconds" && raw >= 60:
		scale = 60
		if raw >= 3600 {
			scale = 3600
		}
	case unit == "count":
		raw = math.Max(raw, 1)
	}
	r := raw / scale
	mag := math.Pow(10, math.Floor(math.Log10(r)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= r {
			return m * mag * scale
		}
	}
	return 10 * mag * scale
}

// formatValue shows a value in its unit: bytes in KiB/MiB/GiB, sessions with a decimal.
func formatValue(v float64, unit string) string {
	switch unit {
	case "bytes":
		return units.Bytes(v)
	case "sessions":
		return units.TrimZeros(fmt.Sprintf("%.2f", v))
	case "seconds":
		return units.Seconds(v)
	}
	return units.TrimZeros(fmt.Sprintf("%.1f", v))
}

// formatOffset labels the time axis: seconds from the window's start.
func formatOffset(t float64) string {
	if t == 0 {
		return "0"
	}
	if math.Abs(t) < 60 {
		return units.TrimZeros(fmt.Sprintf("%+.1f", t)) + "s"
	}
	return "+" + units.Seconds(t)
}
