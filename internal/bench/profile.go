package bench

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// profileTarget is one system to profile and the workloads to profile it
// under.
type profileTarget struct {
	system    string
	workloads []string
}

// profileTargets are what is profiled, of the systems run: the TUN NAT
// gateway (vsgate-nat-gso, else vsgate-nat) under every L4 workload, the
// AF_XDP one under the request and small-UDP workloads, and the L7 gateway (vsgate-l7) under the HTTP ones.
func profileTargets(run []System) []profileTarget {
	has := func(name string) bool {
		return slices.ContainsFunc(run, func(s System) bool { return s.Name == name })
	}
	var out []profileTarget
	switch {
	case has("vsgate-nat-gso"):
		out = append(out, profileTarget{"vsgate-nat-gso", []string{"tcp-bulk", "http-keepalive", "http-close", "udp-64"}})
	case has("vsgate-nat"):
		out = append(out, profileTarget{"vsgate-nat", []string{"tcp-bulk", "http-keepalive", "http-close", "udp-64"}})
	}
	if has("vsgate-afxdp") {
		out = append(out, profileTarget{"vsgate-afxdp", []string{"http-keepalive", "http-close", "udp-64"}})
	}
	if has("vsgate-l7") {
		out = append(out, profileTarget{"vsgate-l7", []string{"http-keepalive", "http-close"}})
	}
	return out
}

// profileVsgate runs each target system once more in a fresh lab and
// records it with perf (kernel and user stacks of the vsgate process
// only) during each of its workloads. Without perf it returns profiles
// that say so.
func profileVsgate(ctx context.Context, c Config, targets []profileTarget, wls []Workload, pb *progress) []Profile {
	var out []Profile
	for _, t := range targets {
		out = append(out, profileSystem(ctx, c, t, wls, pb)...)
	}
	return out
}

func profileSystem(ctx context.Context, c Config, t profileTarget, wls []Workload, pb *progress) []Profile {
	var sys System
	for _, s := range Systems() {
		if s.Name == t.system {
			sys = s
		}
	}
	var out []Profile
	perf, perr := exec.LookPath("perf")
	e, err := setUp(ctx, c, sys)
	defer func() {
		if err := tearDown(e); err != nil {
			pb.logf("teardown profile: %v", err)
		}
	}()
	for _, name := range t.workloads {
		i := slices.IndexFunc(wls, func(x Workload) bool { return x.Name == name })
		if i < 0 {
			continue // a workload this run does not measure
		}
		w := wls[i]
		pb.step("profile " + sys.Name + " " + name + " (perf)")
		p := Profile{System: sys.Name, Workload: name}
		switch {
		case perr != nil:
			p.Err = "perf not installed (apt-get install -y linux-perf)"
		case err != nil:
			p.Err = err.Error()
		default:
			p = perfProfile(ctx, c, e, w, perf, p)
		}
		out = append(out, p)
	}
	return out
}

// perfProfile records the vsgate process with perf while w runs and
// summarises the flat profile.
func perfProfile(ctx context.Context, c Config, e *sysEnv, w Workload, perf string, p Profile) Profile {
	data := filepath.Join(e.dir, "perf-"+w.Name+".data")
	pid := strconv.Itoa(e.procs[0].pid())
	rctx, cancel := context.WithTimeout(ctx, c.Duration+30*time.Second)
	defer cancel()
	rec := exec.CommandContext(rctx, perf, "record", "-q", "-F", "999", "-p", pid, "-o", data,
		"--", "sleep", durArg(c.Duration))
	recOut := make(chan error, 1)
	var recText strings.Builder
	rec.Stdout, rec.Stderr = &recText, &recText
	if err := rec.Start(); err != nil {
		p.Err = "perf record: " + err.Error()
		return p
	}
	go func() { recOut <- rec.Wait() }()
	if _, err := runClient(ctx, e, w, c); err != nil {
		p.Err = err.Error()
	}
	if err := <-recOut; err != nil {
		p.Err = fmt.Sprintf("perf record: %v: %s", err, tail([]byte(recText.String())))
		return p
	}
	out, err := exec.CommandContext(rctx, perf, "report", "-i", data, "--stdio", "--no-children",
		"--sort", "sym", "--percent-limit", "0", "-q").Output()
	if err != nil {
		p.Err = "perf report: " + err.Error()
		return p
	}
	p.Kernel, p.Top = parsePerfReport(string(out), 15)
	return p
}

// rePerfLine matches a flat perf report line: "  12.34%  [k] symbol".
var rePerfLine = regexp.MustCompile(`^\s*([0-9.]+)%\s+\[([k.])\]\s+(.+?)\s*$`)

// parsePerfReport returns the share of samples in the kernel and the top
// n symbols.
func parsePerfReport(s string, n int) (kernel float64, top []ProfileLine) {
	for _, l := range strings.Split(s, "\n") {
		m := rePerfLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		pct, _ := strconv.ParseFloat(m[1], 64)
		k := m[2] == "k"
		if k {
			kernel += pct
		}
		if len(top) < n {
			top = append(top, ProfileLine{Percent: pct, Kernel: k, Symbol: m[3]})
		}
	}
	return kernel, top
}
