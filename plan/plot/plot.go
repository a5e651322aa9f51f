// Package plot draws what plan predicts and what bench measures: seconds per
// token per mode as bars, and a copy/compute timeline of one pass. It is
// apart from package plan so that the engine, which plans residency with
// plan, does not link the plotting, font and PDF libraries; only the command
// line imports it.
package plot

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"offload/internal/atomicfile"
	"offload/internal/units"
	"offload/plan"
)

// Bar is one bar of a bar chart.
type Bar struct {
	Label string
	Value float64
}

// Modes draws predicted seconds per token for each mode as a bar chart,
// to an .svg or .png file.
func Modes(pred plan.Prediction, path string) error {
	return Figure(ModeBars(pred), nil, predictionTitle(pred), path)
}

// Timeline draws spans as a timeline, one row per track, to an .svg or
// .png file.
func Timeline(spans []plan.Span, path string) error {
	return Figure(nil, spans, "", path)
}

// ModeBars is s/token per mode, for Figure.
func ModeBars(pred plan.Prediction) []Bar {
	bars := make([]Bar, len(pred.Modes))
	for i, m := range pred.Modes {
		bars[i] = Bar{m.Mode.String(), m.SecondsPerToken}
	}
	return bars
}

func predictionTitle(pred plan.Prediction) string {
	return fmt.Sprintf("%s %s, %s, link %s", pred.Model, pred.Params.DType, pred.Params.GPU.Name, units.Rate(pred.Params.Link))
}

// Figure draws a bar chart of s/token (if bars is not empty) above a
// transfer/compute timeline (if spans is not empty) into one file. The
// format follows the extension (.svg or .png). The file is written under a
// temporary name and renamed, so a failure never leaves a partial image.
func Figure(bars []Bar, spans []plan.Span, title, path string) error {
	format := strings.TrimPrefix(strings.ToLower(filepath.Ext(path)), ".")
	if format != "svg" && format != "png" {
		return fmt.Errorf("plot %s: want a .svg or .png file name", path)
	}
	if len(bars) == 0 && len(spans) == 0 {
		return fmt.Errorf("plot %s: nothing to draw", path)
	}
	var plots [][]*plot.Plot
	if len(bars) > 0 {
		p, err := barPlot(bars, title)
		if err != nil {
			return fmt.Errorf("plot %s: %w", path, err)
		}
		plots = append(plots, []*plot.Plot{p})
	}
	if len(spans) > 0 {
		p, err := timelinePlot(spans)
		if err != nil {
			return fmt.Errorf("plot %s: %w", path, err)
		}
		if len(bars) == 0 {
			p.Title.Text = title
		}
		plots = append(plots, []*plot.Plot{p})
	}
	w, h := 18*vg.Centimeter, 9*vg.Centimeter*vg.Length(len(plots))
	c, err := draw.NewFormattedCanvas(w, h, format)
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2,
		PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 4, PadY: vg.Centimeter}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return writeFileAtomic(path, buf.Bytes())
}

func barPlot(bars []Bar, title string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = "seconds / token"
	vals := make(plotter.Values, len(bars))
	names := make([]string, len(bars))
	for i, b := range bars {
		if math.IsNaN(b.Value) || math.IsInf(b.Value, 0) || b.Value < 0 {
			return nil, fmt.Errorf("bar %q has value %v", b.Label, b.Value)
		}
		vals[i], names[i] = b.Value, b.Label
	}
	bc, err := plotter.NewBarChart(vals, vg.Centimeter)
	if err != nil {
		return nil, err
	}
	bc.Color = color.RGBA{R: 0x44, G: 0x77, B: 0xaa, A: 0xff}
	p.Add(bc)
	p.NominalX(names...)
	labels := make([]string, len(bars))
	xys := make(plotter.XYs, len(bars))
	for i, b := range bars {
		labels[i] = fmt.Sprintf("%.3g", b.Value)
		xys[i] = plotter.XY{X: float64(i), Y: b.Value}
	}
	lb, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
	if err != nil {
		return nil, err
	}
	for i := range lb.TextStyle {
		lb.TextStyle[i].XAlign = draw.XCenter
		lb.TextStyle[i].YAlign = draw.YBottom
	}
	p.Add(lb)
	p.Y.Min = 0
	p.X.Min, p.X.Max = -0.6, float64(len(bars))-0.4 // room for the end bars' labels
	return p, nil
}

// timeline is a plotter drawing each span as a box in its track's row.
type timeline struct {
	spans  []plan.Span
	row    map[string]int
	colors map[string]color.Color
}

var trackColors = []color.Color{
	color.RGBA{R: 0xee, G: 0x66, B: 0x77, A: 0xff},
	color.RGBA{R: 0x22, G: 0x88, B: 0x33, A: 0xff},
	color.RGBA{R: 0x44, G: 0x77, B: 0xaa, A: 0xff},
	color.RGBA{R: 0xcc, G: 0xbb, B: 0x44, A: 0xff},
}

func (t *timeline) Plot(c draw.Canvas, plt *plot.Plot) {
	tx, ty := plt.Transforms(&c)
	for _, s := range t.spans {
		r := float64(t.row[s.Track])
		x0, x1 := tx(ms(s.Start)), tx(ms(s.End))
		if x1-x0 < 0.3 { // keep instants visible
			x1 = x0 + 0.3
		}
		y0, y1 := ty(r-0.35), ty(r+0.35)
		pts := c.ClipPolygonXY([]vg.Point{{X: x0, Y: y0}, {X: x1, Y: y0}, {X: x1, Y: y1}, {X: x0, Y: y1}})
		c.FillPolygon(t.colors[s.Track], pts)
	}
}

func (t *timeline) DataRange() (xmin, xmax, ymin, ymax float64) {
	xmin, xmax = math.Inf(1), math.Inf(-1)
	for _, s := range t.spans {
		xmin = math.Min(xmin, ms(s.Start))
		xmax = math.Max(xmax, ms(s.End))
	}
	return xmin, xmax, -0.5, float64(len(t.row)) - 0.5
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func timelinePlot(spans []plan.Span) (*plot.Plot, error) {
	t := &timeline{spans: spans, row: map[string]int{}, colors: map[string]color.Color{}}
	var tracks []string
	for _, s := range spans {
		if s.End < s.Start {
			return nil, fmt.Errorf("span %s/%s ends before it starts", s.Track, s.Name)
		}
		if _, ok := t.row[s.Track]; !ok {
			t.row[s.Track] = len(tracks)
			t.colors[s.Track] = trackColors[len(tracks)%len(trackColors)]
			tracks = append(tracks, s.Track)
		}
	}
	p := plot.New()
	p.X.Label.Text = "milliseconds"
	p.Add(t)
	p.NominalY(tracks...)
	return p, nil
}

// writeFileAtomic writes data to a registered temporary file beside path
// (internal/atomicfile) and renames it into place.
func writeFileAtomic(path string, data []byte) error {
	return atomicfile.Write(path, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}
