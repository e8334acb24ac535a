package bench

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNewStat(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want Stat
	}{
		{nil, Stat{}},
		{[]float64{math.NaN()}, Stat{}},
		{[]float64{5}, Stat{Median: 5, Min: 5, Max: 5, N: 1}},
		{[]float64{3, 1, 2}, Stat{Median: 2, Min: 1, Max: 3, N: 3}},
		{[]float64{4, 1, 3, 2}, Stat{Median: 2.5, Min: 1, Max: 4, N: 4}},
		{[]float64{7, math.NaN(), 1, 4}, Stat{Median: 4, Min: 1, Max: 7, N: 3}},
	} {
		if got := NewStat(tc.in); got != tc.want {
			t.Errorf("NewStat(%v) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// testReport is a small report: a baseline and a system, three reps, one
// of them failed.
func testReport() *Report {
	r := &Report{
		Started: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), Reps: 3, Duration: "4s", Workers: 2, Conns: 32,
		Systems: []SystemInfo{
			{Name: "kernel-dnat", Layer: L4, Baseline: true},
			{Name: "vsgate-nat", Layer: L4},
			{Name: "nginx-http", Layer: L7, Baseline: true},
			{Name: "vsgate-l7", Layer: L7, Skipped: "missing: apt-get install -y wrk"},
		},
		Workloads: []WorkloadInfo{
			{Name: "http-keepalive", Title: "HTTP keep-alive", Unit: "req/s", Layers: []Layer{L4, L7}},
			{Name: "tcp-bulk", Title: "bulk TCP", Unit: "Gbit/s", Layers: []Layer{L4}},
		},
	}
	add := func(sys, wl string, rep int, v, gw, all, pkts, reqs float64, err string) {
		r.Samples = append(r.Samples, Sample{System: sys, Workload: wl, Rep: rep, Value: v, GwCPU: gw, AllCPU: all,
			Packets: pkts, Requests: reqs, P50ms: 1, P99ms: float64(rep), Err: err})
	}
	for rep, v := range []float64{100, 120, 80} {
		add("kernel-dnat", "http-keepalive", rep+1, v, -1, 8, 2e6, v*4, "")
		add("vsgate-nat", "http-keepalive", rep+1, v/2, 4, 8, 1e6, v*2, "")
	}
	add("kernel-dnat", "tcp-bulk", 1, 20, -1, 8, 1e6, 0, "")
	add("vsgate-nat", "tcp-bulk", 1, 1, 2, 8, 4e6, 0, "")
	add("vsgate-nat", "tcp-bulk", 2, 0, 0, 0, 0, 0, "iperf3: boom")
	add("nginx-http", "http-keepalive", 1, 50, 1, 8, 1e6, 200, "")
	return r
}

func TestSummarize(t *testing.T) {
	rows := testReport().Summarize()
	get := func(sys, wl string) Row {
		t.Helper()
		r, ok := rowFor(rows, sys, wl)
		if !ok {
			t.Fatalf("no row %s %s", sys, wl)
		}
		return r
	}
	k := get("kernel-dnat", "http-keepalive")
	if k.Value != (Stat{Median: 100, Min: 80, Max: 120, N: 3}) || k.Ratio != 1 {
		t.Errorf("baseline row %+v", k)
	}
	if k.GwCPUPerMpkt.N != 0 {
		t.Errorf("kernel gateway CPU should be unattributable (NaN), got %v", k.GwCPUPerMpkt)
	}
	// machine CPU: 8 s over 2M packets = 4 s per million.
	if k.AllCPUPerMpkt.Median != 4 {
		t.Errorf("kernel machine CPU per Mpkt = %v, want 4", k.AllCPUPerMpkt.Median)
	}
	v := get("vsgate-nat", "http-keepalive")
	if v.Ratio != 0.5 {
		t.Errorf("vsgate ratio = %v, want 0.5", v.Ratio)
	}
	// 4 s of gateway CPU per 1M packets; per thousand requests: 200, 240
	// and 160 requests, so 4 s / 200 = 20 ms per request = 20,000 ms per
	// thousand (the median of 20,000, 16,667 and 25,000).
	if v.GwCPUPerMpkt.Median != 4 {
		t.Errorf("gateway CPU per Mpkt = %v, want 4", v.GwCPUPerMpkt.Median)
	}
	if got, want := v.GwCPUPerKreq.Median, 4/(200/1e6); math.Abs(got-want) > 1e-6 {
		t.Errorf("gateway CPU ms per 1k requests = %v, want %v", got, want)
	}
	if v.P99.Median != 2 {
		t.Errorf("p99 median = %v, want 2", v.P99.Median)
	}
	b := get("vsgate-nat", "tcp-bulk")
	if b.Value.N != 1 || len(b.Failed) != 1 || !strings.Contains(b.Failed[0], "boom") {
		t.Errorf("failed samples must be left out and listed: %+v", b)
	}
	if b.Ratio != 0.05 {
		t.Errorf("bulk ratio = %v, want 0.05", b.Ratio)
	}
	if n := get("nginx-http", "http-keepalive"); n.Ratio != 1 {
		t.Errorf("L7 baseline ratio = %v", n.Ratio)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	r := testReport()
	p := filepath.Join(t.TempDir(), "e2e.json")
	if err := r.WriteJSON(p); err != nil {
		t.Fatal(err)
	}
	got, err := ReadJSON(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Samples) != len(r.Samples) || got.Samples[4] != r.Samples[4] || !got.Started.Equal(r.Started) {
		t.Errorf("round trip changed the report: %+v", got.Samples[4])
	}
	if _, err := ReadJSON(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("ReadJSON of a missing file: no error")
	}
}

func TestWriteOutputs(t *testing.T) {
	dir := t.TempDir()
	md, err := WriteOutputs(testReport(), dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| kernel-dnat (baseline) | 100 (80.0–120) |",
		"| vsgate-nat | 50.0 (40.0–60.0) **0.50x** |",
		"missing: apt-get install -y wrk",
		"(bench/e2e-l4.png)",
		"vsgate-nat tcp-bulk rep 2: iperf3: boom",
		"vsgate is behind kernel DNAT in: vsgate-nat http-keepalive 0.50x; vsgate-nat tcp-bulk 0.05x",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	for _, f := range []string{"e2e.md", "e2e-l4.png", "e2e-l7.png"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: not written (%v)", f, err)
		}
	}
}

func TestFmtNum(t *testing.T) {
	for v, want := range map[float64]string{1234567: "1,234,567", 999: "999", 12.34: "12.3", 0: "0", 1.234: "1.23", 0.1234: "0.123", -4321: "-4,321"} {
		if got := fmtNum(v); got != want {
			t.Errorf("fmtNum(%v) = %q, want %q", v, got, want)
		}
	}
	if got := fmtNum(math.NaN()); got != "–" {
		t.Errorf("fmtNum(NaN) = %q", got)
	}
}

func TestParseStat(t *testing.T) {
	// Field 2 with spaces and parentheses; utime 150, stime 50 ticks.
	st, err := parseStat("1234 (my (odd) prog) S 77 1234 1234 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 3 0 100 0 0")
	if err != nil || st.ppid != 77 || st.cpu != 2 {
		t.Errorf("parseStat = %+v, %v; want ppid 77, 2 s", st, err)
	}
	if _, err := parseStat("garbage"); err == nil {
		t.Error("parseStat(garbage): no error")
	}
	busy, err := parseCPULine("cpu  100 5 50 1000 20 1 4 0 0 0")
	if err != nil || busy != 1.6 {
		t.Errorf("parseCPULine = %v, %v; want 1.6", busy, err)
	}
	stats := map[int]procStat{10: {ppid: 1}, 11: {ppid: 10}, 12: {ppid: 11}, 13: {ppid: 1}}
	if got := descendantsOf(10, stats); len(got) != 2 {
		t.Errorf("descendantsOf = %v, want 11 and 12", got)
	}
}

const wrkOut = `Running 1s test @ http://198.18.0.10:80/
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   350.12us  200.00us   6.34ms   90.00%
    Req/Sec    24.90k     1.20k   26.00k    70.00%
  Latency Distribution
     50%  250.00us
     75%  400.00us
     90%  600.00us
     99%    1.50s
  49551 requests in 1.00s, 10.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 3
Requests/sec:  49551.38
Transfer/sec:     10.00MB
`

func TestParseWrk(t *testing.T) {
	var s Sample
	if err := parseWrk([]byte(wrkOut), &s); err != nil {
		t.Fatal(err)
	}
	if s.Value != 49551.38 || s.Requests != 49551 || s.Errors != 6 || s.P50ms != 0.25 || s.P99ms != 1500 {
		t.Errorf("parseWrk = %+v", s)
	}
	if err := parseWrk([]byte("unable to connect to 198.18.0.10:80 Connection refused"), &s); err == nil {
		t.Error("parseWrk of an error: no error")
	}
}

func TestParseIperf(t *testing.T) {
	var s Sample
	tcp := `{"start":{},"end":{"sum_received":{"seconds":4.0,"bits_per_second":2.5e10}}}`
	if err := parseIperfTCP([]byte(tcp), &s); err != nil || s.Value != 25 {
		t.Errorf("parseIperfTCP = %v, %v; want 25", s.Value, err)
	}
	s = Sample{}
	udp := `{"end":{"sum":{"seconds":2,"packets":1000,"lost_packets":200}}}`
	if err := parseIperfUDP([]byte(udp), &s); err != nil || s.Value != 400 || s.Errors != 200 {
		t.Errorf("parseIperfUDP = %+v, %v; want 400 pkt/s, 200 lost", s, err)
	}
	if err := parseIperfTCP([]byte(`{"error":"unable to connect to server"}`), &s); err == nil || !strings.Contains(err.Error(), "unable to connect") {
		t.Errorf("parseIperfTCP of an error = %v", err)
	}
}

func TestParsePerfReport(t *testing.T) {
	in := `    21.52%  [k] finish_task_switch.isra.0
     4.04%  [.] github.com/vsgate/vsgate/nat.(*Engine).Expire
     2.00%  [k] tun_get_user
some noise
`
	k, top := parsePerfReport(in, 2)
	if math.Abs(k-23.52) > 1e-9 || len(top) != 2 || top[1].Kernel || top[1].Symbol != "github.com/vsgate/vsgate/nat.(*Engine).Expire" {
		t.Errorf("parsePerfReport = %v, %+v", k, top)
	}
}

func TestSummarizeGoBench(t *testing.T) {
	in := `goos: linux
pkg: github.com/vsgate/vsgate/packet
BenchmarkParse/v4tcp64-2   	100	     9.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkParse/v4tcp64-2   	100	     9.4 ns/op	       0 B/op	       0 allocs/op
BenchmarkParse/v4tcp64-2   	100	     9.2 ns/op	       0 B/op	       0 allocs/op
PASS
pkg: github.com/vsgate/vsgate/nat
BenchmarkEngine/established-2	2000	117 ns/op	8600000 pkt/s	0 B/op	0 allocs/op
`
	md, err := SummarizeGoBench(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"### github.com/vsgate/vsgate/packet", "| `Parse/v4tcp64` | 3 | 9.20 | 0 | 0 |",
		"| benchmark | runs | ns/op | pkt/s | B/op | allocs/op |", "| `Engine/established` | 1 | 117 | 8,600,000 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("summary lacks %q:\n%s", want, md)
		}
	}
	if _, err := SummarizeGoBench(strings.NewReader("PASS\n")); err == nil {
		t.Error("no results: no error")
	}
}

func TestBar(t *testing.T) {
	if got := bar(5, 10, 10, 62*time.Second); got != "[#####-----] 5/10 1m02s, ~1m02s left" {
		t.Errorf("bar = %q", got)
	}
	if got := bar(12, 10, 4, 0); got != "[####] 10/10 0m00s" {
		t.Errorf("bar over total = %q", got)
	}
}

// TestSplice: the section replaces what is between the markers, and a file
// without markers is left alone.
func TestSplice(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "B.md")
	os.WriteFile(p, []byte("# head\n"+spliceBegin+"\nold\n"+spliceEnd+"\n# tail\n"), 0o644)
	if err := Splice(p, "new section"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if want := "# head\n" + spliceBegin + "\nnew section\n" + spliceEnd + "\n# tail\n"; string(b) != want {
		t.Fatalf("got:\n%s", b)
	}
	os.WriteFile(p, []byte("no markers\n"), 0o644)
	Splice(p, "x")
	if b, _ := os.ReadFile(p); string(b) != "no markers\n" {
		t.Fatalf("a file without markers changed: %q", b)
	}
}

func TestOfCeiling(t *testing.T) {
	r := testReport()
	r.Systems = append(r.Systems, SystemInfo{Name: "direct", Layer: L4})
	for rep, v := range []float64{200, 250, 150} {
		r.Samples = append(r.Samples, Sample{System: "direct", Workload: "http-keepalive", Rep: rep + 1, Value: v})
	}
	got := strings.Join(ofCeiling(r.Summarize(), "direct", nil), "; ")
	// direct's median is 200: kernel-dnat's 100 is 0.50x of it, vsgate's
	// 50 0.25x; bulk has no direct row, so no ratio.
	want := "kernel-dnat http-keepalive 0.50x; vsgate-nat http-keepalive 0.25x; nginx-http http-keepalive 0.25x"
	if got != want {
		t.Errorf("ofCeiling = %q, want %q", got, want)
	}
	// Another ceiling, for some systems only: vsgate-nat's 50 req/s of
	// kernel-dnat's 100, its 1 Gbit/s of 20; nginx-http is not asked for.
	got = strings.Join(ofCeiling(r.Summarize(), "kernel-dnat", func(s string) bool { return strings.HasPrefix(s, "vsgate") }), "; ")
	if want := "vsgate-nat http-keepalive 0.50x; vsgate-nat tcp-bulk 0.05x"; got != want {
		t.Errorf("ofCeiling(kernel-dnat, vsgate*) = %q, want %q", got, want)
	}
}
