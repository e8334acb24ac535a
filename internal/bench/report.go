package bench

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"time"
)

// Layer says which baseline a system is compared with: L4 systems with
// kernel nftables DNAT, L7 systems with nginx.
type Layer string

// The two layers.
const (
	L4 Layer = "L4"
	L7 Layer = "L7"
)

// Sample is one measurement: one workload against one system in one
// repetition. Plain data; the zero value is an empty sample.
type Sample struct {
	System   string  `json:"system"`
	Workload string  `json:"workload"`
	Rep      int     `json:"rep"`              // 1-based repetition
	Value    float64 `json:"value"`            // in the workload's unit; 0 when Err is set
	P50ms    float64 `json:"p50_ms,omitempty"` // latency percentiles (HTTP keep-alive only)
	P99ms    float64 `json:"p99_ms,omitempty"`
	Requests float64 `json:"requests,omitempty"` // HTTP requests completed
	Packets  float64 `json:"packets"`            // packets received by the gateway's two interfaces
	Errors   float64 `json:"errors,omitempty"`   // wrk socket errors + non-2xx, iperf3 lost datagrams
	// FloodSYNs is how many spoofed SYNs the client sent during a flood
	// workload.
	FloodSYNs float64 `json:"flood_syns,omitempty"`
	GwCPU     float64 `json:"gw_cpu_s"`      // CPU seconds of the gateway process tree; -1: not attributable (kernel)
	AllCPU    float64 `json:"machine_cpu_s"` // busy CPU seconds of the whole machine (/proc/stat)
	Seconds   float64 `json:"seconds"`       // wall time of the measurement
	Err       string  `json:"err,omitempty"`
}

// SystemInfo describes a system under test in the report. Plain data.
type SystemInfo struct {
	Name     string `json:"name"`
	Layer    Layer  `json:"layer"`
	Desc     string `json:"desc"`
	Version  string `json:"version,omitempty"`
	Baseline bool   `json:"baseline,omitempty"`
	Skipped  string `json:"skipped,omitempty"` // why it was not measured
}

// WorkloadInfo describes a workload in the report. Plain data.
type WorkloadInfo struct {
	Name   string  `json:"name"`
	Title  string  `json:"title"`
	Unit   string  `json:"unit"`
	Layers []Layer `json:"layers"`
	How    string  `json:"how"` // the exact client command
}

// Machine describes where the run happened. Plain data.
type Machine struct {
	CPU    string `json:"cpu"`
	Cores  int    `json:"cores"`
	Memory string `json:"memory"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
}

// ProfileLine is one symbol of a CPU profile summary. Plain data.
type ProfileLine struct {
	Percent float64 `json:"percent"`
	Kernel  bool    `json:"kernel"`
	Symbol  string  `json:"symbol"`
}

// Profile is a CPU profile summary of a gateway under one workload. Plain
// data.
type Profile struct {
	System   string        `json:"system"`
	Workload string        `json:"workload"`
	Kernel   float64       `json:"kernel_percent"` // share of samples in the kernel
	Top      []ProfileLine `json:"top"`
	Err      string        `json:"err,omitempty"`
}

// Report is everything one run measured: what the JSON file holds and
// what the markdown and the chart are made from. Plain data; not safe for
// concurrent mutation.
type Report struct {
	Started   time.Time      `json:"started"`
	Took      string         `json:"took"`
	Quick     bool           `json:"quick"`
	Reps      int            `json:"reps"`
	Duration  string         `json:"duration"` // per measurement
	Workers   int            `json:"workers"`
	Conns     int            `json:"conns"`
	Machine   Machine        `json:"machine"`
	LoadStart string         `json:"loadavg_start,omitempty"` // /proc/loadavg before the run
	LoadEnd   string         `json:"loadavg_end,omitempty"`   // and after: other load on the machine shows here
	Tools     []string       `json:"tools"`                   // versions of the client tools
	Systems   []SystemInfo   `json:"systems"`
	Workloads []WorkloadInfo `json:"workloads"`
	Samples   []Sample       `json:"samples"`
	Profiles  []Profile      `json:"profiles,omitempty"`
}

// WriteJSON writes r, indented, to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadJSON reads a report written by WriteJSON.
func ReadJSON(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("bench: %s: %w", path, err)
	}
	return &r, nil
}

// Stat is the median and range of a set of values. N == 0 means no value
// (every sample failed). Plain data.
type Stat struct {
	Median, Min, Max float64
	N                int
}

// NewStat summarises vs: median (mean of the middle two for an even
// count), min and max. NaN values are ignored.
func NewStat(vs []float64) Stat {
	var s []float64
	for _, v := range vs {
		if !math.IsNaN(v) {
			s = append(s, v)
		}
	}
	if len(s) == 0 {
		return Stat{}
	}
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Stat{Median: med, Min: s[0], Max: s[n-1], N: n}
}

// Row is the summary of one system under one workload. Plain data.
type Row struct {
	System, Workload string
	Value            Stat
	P50, P99         Stat    // ms
	GwCPUPerMpkt     Stat    // gateway CPU seconds per million gateway packets
	GwCPUPerKreq     Stat    // gateway CPU ms per thousand requests
	AllCPUPerMpkt    Stat    // machine CPU seconds per million gateway packets
	AllCPUPerKreq    Stat    // machine CPU ms per thousand requests
	Ratio            float64 // Value.Median / baseline's; NaN without a baseline
	Errors           float64 // median
	Failed           []string
}

// Summarize groups the report's samples by system and workload, in the
// order of r.Systems and r.Workloads. Ratios are to the baseline system
// of the row's layer (SystemInfo.Baseline), workload by workload.
func (r *Report) Summarize() []Row {
	type key struct{ sys, wl string }
	groups := map[key][]Sample{}
	for _, s := range r.Samples {
		k := key{s.System, s.Workload}
		groups[k] = append(groups[k], s)
	}
	baseline := map[Layer]string{}
	layer := map[string]Layer{}
	for _, si := range r.Systems {
		layer[si.Name] = si.Layer
		if si.Baseline {
			baseline[si.Layer] = si.Name
		}
	}
	var rows []Row
	for _, si := range r.Systems {
		for _, wl := range r.Workloads {
			ss := groups[key{si.Name, wl.Name}]
			if len(ss) == 0 {
				continue
			}
			rows = append(rows, summarizeGroup(si.Name, wl.Name, ss))
		}
	}
	med := map[key]float64{}
	for _, row := range rows {
		med[key{row.System, row.Workload}] = row.Value.Median
	}
	for i := range rows {
		rows[i].Ratio = math.NaN()
		b, ok := baseline[layer[rows[i].System]]
		if !ok || rows[i].Value.N == 0 {
			continue
		}
		if bm := med[key{b, rows[i].Workload}]; bm > 0 {
			rows[i].Ratio = rows[i].Value.Median / bm
		}
	}
	return rows
}

// summarizeGroup summarises the samples of one system and workload.
func summarizeGroup(sys, wl string, ss []Sample) Row {
	slices.SortFunc(ss, func(a, b Sample) int { return cmp.Compare(a.Rep, b.Rep) })
	row := Row{System: sys, Workload: wl}
	var vals, p50, p99, gpm, gpk, apm, apk, errs []float64
	nan := math.NaN()
	per := func(cpu, n, scale float64) float64 {
		if cpu < 0 || n <= 0 {
			return nan
		}
		return cpu / (n / scale)
	}
	for _, s := range ss {
		if s.Err != "" {
			row.Failed = append(row.Failed, fmt.Sprintf("rep %d: %s", s.Rep, s.Err))
			continue
		}
		vals = append(vals, s.Value)
		errs = append(errs, s.Errors)
		if s.P50ms > 0 {
			p50 = append(p50, s.P50ms)
			p99 = append(p99, s.P99ms)
		}
		gpm = append(gpm, per(s.GwCPU, s.Packets, 1e6))
		apm = append(apm, per(s.AllCPU, s.Packets, 1e6))
		// CPU ms per thousand requests = CPU s per million requests.
		gpk = append(gpk, per(s.GwCPU, s.Requests, 1e6))
		apk = append(apk, per(s.AllCPU, s.Requests, 1e6))
	}
	row.Value, row.P50, row.P99 = NewStat(vals), NewStat(p50), NewStat(p99)
	row.GwCPUPerMpkt, row.GwCPUPerKreq = NewStat(gpm), NewStat(gpk)
	row.AllCPUPerMpkt, row.AllCPUPerKreq = NewStat(apm), NewStat(apk)
	row.Errors = NewStat(errs).Median
	return row
}
