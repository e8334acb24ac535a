package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/vsgate/vsgate/internal/netlab"
)

// Config says what to measure and how long. The zero value is not
// usable; start from DefaultConfig or QuickConfig.
type Config struct {
	Reps      int           // repetitions, interleaved across systems (median of these)
	Duration  time.Duration // per measurement (wrk -d, iperf3 -t)
	Workers   int           // gateway workers (vsgate queues, nginx workers, HAProxy threads, Apache processes) and wrk threads
	Conns     int           // wrk connections
	Systems   []string      // names to run; empty: all
	Workloads []string      // workload names to run; empty: all
	Exe       string        // the vsgate binary
	Profile   bool          // profile vsgate-nat-gso (else vsgate-nat), vsgate-afxdp and vsgate-l7 with perf after the measurements
	Quick     bool          // recorded in the report
	Progress  io.Writer     // progress output (nil: none)
}

// DefaultConfig is the full run of make bench-e2e: 3 repetitions of 4 s
// measurements (about 7 minutes).
func DefaultConfig() Config {
	return Config{Reps: 3, Duration: 4 * time.Second, Workers: 2, Conns: 32, Profile: true}
}

// QuickConfig is the CI run: one repetition of 1 s measurements (about a
// minute), no profile.
func QuickConfig() Config {
	return Config{Reps: 1, Duration: time.Second, Workers: 2, Conns: 16, Quick: true}
}

// clientTools are the programs the client runs, with their packages.
func clientTools() []string { return []string{"wrk:wrk", "iperf3:iperf3", "ip:iproute2"} }

// MissingClientTools returns the Debian packages of client tools that are
// not installed; without them nothing can be measured.
func MissingClientTools() []string { return missingTools(clientTools()) }

// ErrMissingTools is returned (wrapped) by Run when the client's tools are
// not installed; the message names the packages.
var ErrMissingTools = errors.New("bench: missing tools")

// Run measures every selected system under every workload of its layer,
// interleaved: for each repetition, each system in turn in a fresh lab.
// It returns the report even when some measurements failed (their
// samples carry Err); err is set only when nothing could run (no root,
// tools missing, ctx cancelled before the end).
func Run(ctx context.Context, c Config) (*Report, error) {
	if err := netlab.Check(); err != nil {
		return nil, err
	}
	if m := MissingClientTools(); len(m) > 0 {
		return nil, fmt.Errorf("%w: apt-get install -y %s", ErrMissingTools, strings.Join(m, " "))
	}
	start := time.Now()
	r := &Report{
		Started: start.UTC().Truncate(time.Second), Quick: c.Quick, Reps: c.Reps,
		Duration: c.Duration.String(), Workers: c.Workers, Conns: c.Conns,
		Machine: machine(), LoadStart: loadAvg(), Tools: []string{version("wrk", "-v"), version("iperf3", "-v")},
	}
	var run []System
	for _, s := range Systems() {
		if len(c.Systems) > 0 && !slices.Contains(c.Systems, s.Name) {
			continue
		}
		si := SystemInfo{Name: s.Name, Layer: s.Layer, Desc: s.Desc, Baseline: s.Baseline}
		if s.Name == "vsgate-nat" || s.Name == "vsgate-fullnat" {
			si.Version = "vsgate " + runtime.Version()
		} else if len(s.version) > 0 {
			si.Version = version(s.version[0], s.version[1:]...)
		}
		if m := s.Missing(); si.Skipped == "" && len(m) > 0 {
			si.Skipped = "missing: apt-get install -y " + strings.Join(m, " ")
		}
		r.Systems = append(r.Systems, si)
		if si.Skipped == "" {
			run = append(run, s)
		}
	}
	wls := Workloads()
	if len(c.Workloads) > 0 {
		wls = slices.DeleteFunc(wls, func(w Workload) bool { return !slices.Contains(c.Workloads, w.Name) })
	}
	for _, w := range wls {
		r.Workloads = append(r.Workloads, WorkloadInfo{Name: w.Name, Title: w.Title, Unit: w.Unit, Layers: w.Layers, How: strings.Join(w.args(c), " ")})
	}
	total := 0
	for _, s := range run {
		total += c.Reps * len(workloadsFor(s, wls))
	}
	var targets []profileTarget
	if c.Profile {
		targets = profileTargets(run)
	}
	for _, t := range targets {
		total += len(t.workloads)
	}
	pb := newProgress(c.Progress, total)
	defer pb.finish()
	for rep := 1; rep <= c.Reps; rep++ {
		for _, s := range run {
			if err := ctx.Err(); err != nil {
				r.Took = time.Since(start).Round(time.Second).String()
				return r, err
			}
			r.Samples = append(r.Samples, measureSystem(ctx, c, s, wls, rep, pb)...)
		}
	}
	if len(targets) > 0 && ctx.Err() == nil {
		r.Profiles = profileVsgate(ctx, c, targets, wls, pb)
	}
	r.Took = time.Since(start).Round(time.Second).String()
	r.LoadEnd = loadAvg()
	return r, ctx.Err()
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// workloadsFor returns the workloads that apply to s.
func workloadsFor(s System, wls []Workload) []Workload {
	var out []Workload
	for _, w := range wls {
		if w.has(s.Layer) && (!w.UDP || s.UDP) && (w.Flood == 0 || s.SynFlood) && (w.HTTP || !s.HTTPOnly) && (!w.TLS || s.TLS) {
			out = append(out, w)
		}
	}
	return out
}

// setUp builds a fresh lab for one system (fresh namespaces: no TIME_WAIT
// sockets or conntrack entries left by the previous system), starts the
// backends and the system, and waits until the service answers through
// it. The caller must call tearDown, also on error.
func setUp(ctx context.Context, c Config, s System) (_ *sysEnv, err error) {
	topo, err := netlab.Standard(cmp.Or(s.topo, netlab.TopoBasic), 1)
	if err != nil {
		return nil, err
	}
	topo.NoChecksumOffload = s.xdp
	lab, err := netlab.Build(ctx, topo, netlab.Options{})
	if err != nil {
		return nil, err
	}
	e := &sysEnv{lab: lab, gw: lab.MustHost(netlab.HostGW), client: lab.MustHost(netlab.HostClient), exe: c.Exe, workers: c.Workers}
	if e.dir, err = os.MkdirTemp("", "vsgate-bench-"+s.Name+"-"); err != nil {
		return e, err
	}
	// Many short connections: a wide port range and TIME_WAIT reuse on the
	// client and the gateway (both may open them), a long accept queue
	// everywhere. The same for every system.
	tune := []netlab.Sysctl{
		{Key: "net.ipv4.ip_local_port_range", Value: "1024 65535"},
		{Key: "net.ipv4.tcp_tw_reuse", Value: "1"},
		{Key: "net.core.somaxconn", Value: "8192"},
		{Key: "net.ipv4.tcp_max_syn_backlog", Value: "8192"},
	}
	for _, h := range lab.Hosts() {
		if err := h.SetSysctls(tune...); err != nil {
			return e, err
		}
	}
	for _, b := range lab.Topo.Plan.Backends {
		if _, err := lab.MustHost(b).StartHTTP(b, fmt.Sprintf(":%d", httpPort)); err != nil {
			return e, err
		}
	}
	if s.Layer == L4 {
		p, err := startProc(lab.MustHost(lab.Topo.Plan.Backends[0]), e.dir, "iperf3-server", "iperf3", "-s", "-p", fmt.Sprint(iperfPort))
		if err != nil {
			return e, err
		}
		e.others = append(e.others, p)
		if err := lab.MustHost(lab.Topo.Plan.Backends[0]).WaitTCP(ctx, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), iperfPort).String()); err != nil {
			return e, err
		}
	}
	if err := s.start(ctx, e); err != nil {
		return e, fmt.Errorf("%s: %w", s.Name, err)
	}
	ports := []uint16{httpPort}
	if s.Layer == L4 {
		ports = append(ports, iperfPort)
	}
	return e, e.ready(ctx, ports...)
}

// tearDown stops the system's processes (by PID), removes the lab and the
// temp dir.
func tearDown(e *sysEnv) error {
	if e == nil {
		return nil
	}
	e.close()
	err := e.lab.Close()
	if e.dir != "" {
		os.RemoveAll(e.dir)
	}
	return err
}

// measureSystem runs every workload of s once (one repetition).
func measureSystem(ctx context.Context, c Config, s System, wls []Workload, rep int, pb *progress) []Sample {
	mine := workloadsFor(s, wls)
	var out []Sample
	e, err := setUp(ctx, c, s)
	defer func() {
		if err := tearDown(e); err != nil {
			pb.logf("teardown %s: %v", s.Name, err)
		}
	}()
	for _, w := range mine {
		pb.step(fmt.Sprintf("rep %d/%d  %-14s %s", rep, c.Reps, s.Name, w.Name))
		smp := Sample{System: s.Name, Workload: w.Name, Rep: rep}
		if err != nil {
			smp.Err = err.Error()
		} else {
			smp = measure(ctx, c, e, w, smp)
		}
		if smp.Err != "" {
			pb.logf("%s %s rep %d: %s", s.Name, w.Name, rep, firstLine(smp.Err))
		}
		out = append(out, smp)
	}
	return out
}

// counters are the gateway-side readings taken before and after a
// measurement.
type counters struct {
	gwCPU, allCPU, packets float64
	at                     time.Time
}

// read takes the readings.
func (e *sysEnv) read() counters {
	var c counters
	c.at = time.Now()
	var roots []int
	for _, p := range e.procs {
		roots = append(roots, p.pid())
	}
	c.gwCPU = treeCPU(roots)
	c.allCPU, _ = machineBusy()
	for _, ifs := range []string{netlab.IfGWOut, netlab.IfGWIn} {
		if l, err := e.gw.Netlink().LinkByName(e.lab.IfName(ifs)); err == nil && l.Attrs().Statistics != nil {
			c.packets += float64(l.Attrs().Statistics.RxPackets)
		}
	}
	return c
}

// measure runs one workload against a running system.
func measure(ctx context.Context, c Config, e *sysEnv, w Workload, smp Sample) Sample {
	flood := make(chan error, 1)
	fctx, stopFlood := context.WithCancel(ctx)
	if w.Flood > 0 {
		go func() {
			n, err := e.client.SYNFlood(fctx, netip.AddrPortFrom(vip4(), httpPort), netip.MustParsePrefix(floodNet), w.Flood)
			smp.FloodSYNs = float64(n)
			flood <- err
		}()
	} else {
		flood <- nil
	}
	before := e.read()
	out, err := runClient(ctx, e, w, c)
	after := e.read()
	stopFlood()
	err = errors.Join(err, <-flood)
	for _, p := range e.procs {
		if p.exited() {
			err = errors.Join(err, fmt.Errorf("bench: %s exited during the run: %s", p.name, p.logTail()))
		}
	}
	if err == nil {
		err = w.parse(out, &smp)
	}
	if err != nil {
		smp.Err = err.Error()
		smp.Value = 0
		return smp
	}
	smp.Seconds = after.at.Sub(before.at).Seconds()
	smp.Packets = after.packets - before.packets
	smp.AllCPU = after.allCPU - before.allCPU
	smp.GwCPU = after.gwCPU - before.gwCPU
	if e.kernel {
		smp.GwCPU = -1
	}
	return smp
}

// machine describes this machine.
func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "MemTotal:") {
				var kb float64
				fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "MemTotal:")), "%f", &kb)
				m.Memory = fmt.Sprintf("%.0f GiB", kb/(1<<20))
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	return m
}

// version returns the first line a program prints about its version.
func version(name string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return firstLine(strings.TrimSpace(string(out)))
}

// firstLine returns s up to its first newline.
func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
