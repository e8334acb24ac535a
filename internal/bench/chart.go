package bench

import (
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// writeChart draws the ratio to the layer's baseline of every system
// under every workload of the layer as grouped bars, with a line at 1.
func writeChart(r *Report, rows []Row, l Layer, path string) error {
	var wls []WorkloadInfo
	for _, wl := range r.Workloads {
		for _, x := range wl.Layers {
			if x == l {
				wls = append(wls, wl)
			}
		}
	}
	var systems []string
	for _, s := range r.Systems {
		if s.Layer == l && s.Skipped == "" {
			systems = append(systems, s.Name)
		}
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: throughput relative to %s (median, higher is better)", l, r.baselineOf(l))
	p.Y.Label.Text = "ratio to baseline"
	p.Legend.Top = true
	var names []string
	for _, wl := range wls {
		names = append(names, fmt.Sprintf("%s\n(%s)", wl.Name, wl.Unit))
	}
	width := vg.Points(float64(60) / math.Max(1, float64(len(systems))))
	top := 1.0
	for i, s := range systems {
		vals := make(plotter.Values, len(wls))
		for j, wl := range wls {
			if row, ok := rowFor(rows, s, wl.Name); ok && !math.IsNaN(row.Ratio) {
				vals[j] = row.Ratio
				top = math.Max(top, row.Ratio)
			}
		}
		bc, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return err
		}
		bc.Color = plotutil.Color(i)
		bc.LineStyle.Width = 0
		bc.Offset = width * vg.Length(float64(i)-float64(len(systems)-1)/2)
		p.Add(bc)
		p.Legend.Add(s, bc)
	}
	one := plotter.NewFunction(func(float64) float64 { return 1 })
	one.Color = color.Gray{Y: 80}
	one.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
	p.Add(one)
	p.NominalX(names...)
	p.Y.Min = 0
	p.Y.Max = top * 1.4 // room for the legend above the bars
	return p.Save(8*vg.Inch, 4.5*vg.Inch, path)
}
