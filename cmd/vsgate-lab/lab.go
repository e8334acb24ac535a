package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vsgate/vsgate/internal/netlab"
)

const labUsage = `lab commands:
  vsgate-lab up [-n N] [-kernel] [-servers=false] [-prefix P] [basic|clients|ecmp|l2]
      Build a topology and keep it until Ctrl-C (SIGINT) or SIGTERM, in the
      foreground: the built-in servers (HTTP :80, UDP echo :53, TCP echo :7 on
      every backend) run in this process. -kernel also sets up the kernel
      reference gateway (nftables DNAT round robin + masquerade) in the
      gateway. State: ` + netlab.RunDir + `/PREFIX.json.
  vsgate-lab down [PREFIX]
      Stop the running lab(s): SIGTERM to the "vsgate-lab up" process, or remove
      the namespaces if that process is gone.
  vsgate-lab exec [-prefix P] HOST -- CMD [ARGS]
      Run a command inside a host of the running lab (via ip netns exec).
  vsgate-lab list
      Show live runs and leftovers.
  vsgate-lab clean [PREFIX]
      Remove leftovers of crashed runs (namespaces named vsg*); live runs
      are left alone.
`

// labState is what "lab up" writes to RunDir/PREFIX.json.
type labState struct {
	Prefix   string      `json:"prefix"`
	Topology string      `json:"topology"`
	PID      int         `json:"pid"`
	Kernel   bool        `json:"kernel_reference"`
	VIPs     []string    `json:"vips,omitempty"`
	Hosts    []hostState `json:"hosts"`
}

type hostState struct {
	Name  string   `json:"name"`
	Netns string   `json:"netns"`
	Addrs []string `json:"addrs"`
}

func statePath(prefix string) string { return filepath.Join(netlab.RunDir, prefix+".json") }

// parseInterleaved parses flags that may come before or after positional
// arguments.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// upFlags are the flags of "lab up".
type upFlags struct {
	fs              *flag.FlagSet
	n               *int
	kernel, servers *bool
	prefix          *string
}

func newUpFlags() upFlags {
	fs := flag.NewFlagSet("vsgate-lab up", flag.ContinueOnError)
	return upFlags{
		fs:      fs,
		n:       fs.Int("n", 3, "number of clients (clients topology)"),
		kernel:  fs.Bool("kernel", false, "set up the kernel reference gateway (nftables) in the gateway"),
		servers: fs.Bool("servers", true, "start the built-in servers on the backends"),
		prefix:  fs.String("prefix", "", "run prefix, vsg + 5 hex digits (default: random)"),
	}
}

func labUp(args []string, stdout, stderr io.Writer) int {
	f := newUpFlags()
	f.fs.SetOutput(stderr)
	n, kernel, servers, prefix := f.n, f.kernel, f.servers, f.prefix
	pos, err := parseInterleaved(f.fs, args)
	if err != nil {
		return 2
	}
	name := netlab.TopoBasic
	switch len(pos) {
	case 0:
	case 1:
		name = pos[0]
	default:
		fmt.Fprintf(stderr, "vsgate-lab up: one topology at most, got %v\n", pos)
		return 2
	}
	topo, err := netlab.Standard(name, *n)
	if err != nil {
		fmt.Fprintln(stderr, "vsgate-lab up:", err)
		return 2
	}
	if err := netlab.Check(); err != nil {
		fmt.Fprintln(stderr, "vsgate-lab up:", err, "(run as root)")
		return 1
	}

	// Signals first: a Ctrl-C while building cancels the build, which
	// removes what it made.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	lab, err := netlab.Build(ctx, topo, netlab.Options{Prefix: *prefix})
	if err != nil {
		fmt.Fprintln(stderr, "vsgate-lab up:", err)
		return 1
	}
	defer func() {
		if err := lab.Close(); err != nil {
			fmt.Fprintln(stderr, "vsgate-lab up: close:", err)
		}
		_ = os.Remove(statePath(lab.Prefix))
		fmt.Fprintf(stdout, "lab %s removed\n", lab.Prefix)
	}()
	fail := func(err error) int {
		fmt.Fprintln(stderr, "vsgate-lab up:", err)
		return 1
	}
	if *servers && len(topo.Plan.Backends) > 0 {
		if err := lab.StartBackends(); err != nil {
			return fail(err)
		}
	}
	if *kernel {
		ref, err := lab.KernelRefFor()
		if err != nil {
			return fail(err)
		}
		if err := lab.StartKernelRef(ctx, ref); err != nil {
			return fail(err)
		}
	}
	st := labState{Prefix: lab.Prefix, Topology: topo.Name, PID: os.Getpid(), Kernel: *kernel}
	for _, v := range []any{topo.Plan.VIP4, topo.Plan.VIP6} {
		st.VIPs = append(st.VIPs, fmt.Sprint(v))
	}
	for _, h := range lab.Hosts() {
		addrs, err := h.Addrs()
		if err != nil {
			return fail(err)
		}
		hs := hostState{Name: h.Name, Netns: h.NSName}
		for _, a := range addrs {
			hs.Addrs = append(hs.Addrs, a.String())
		}
		st.Hosts = append(st.Hosts, hs)
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := os.WriteFile(statePath(lab.Prefix), append(b, '\n'), 0o644); err != nil {
		return fail(err)
	}
	printLab(stdout, st, *servers)
	<-ctx.Done()
	fmt.Fprintf(stdout, "\nstopping lab %s\n", lab.Prefix)
	return 0
}

// printLab prints hosts, namespaces and addresses.
func printLab(w io.Writer, st labState, servers bool) {
	fmt.Fprintf(w, "lab %s: topology %s (pid %d)\n", st.Prefix, st.Topology, st.PID)
	fmt.Fprintf(w, "  VIP %s\n", strings.Join(st.VIPs, ", "))
	for _, h := range st.Hosts {
		fmt.Fprintf(w, "  %-7s netns %-18s %s\n", h.Name, h.Netns, strings.Join(h.Addrs, " "))
	}
	if servers {
		fmt.Fprintln(w, "  backends serve HTTP :80, UDP echo :53, TCP echo :7")
	}
	if st.Kernel {
		fmt.Fprintln(w, "  kernel reference gateway (nftables) is active in the gateway")
	}
	fmt.Fprintf(w, "try:   vsgate-lab exec client -- curl -s http://%s/\n", firstOr(st.VIPs, ""))
	fmt.Fprintln(w, "stop:  Ctrl-C here, or vsgate-lab down")
}

func firstOr(s []string, def string) string {
	if len(s) == 0 {
		return def
	}
	return s[0]
}

// liveRuns returns the prefixes of live runs (namespaces present and the
// run lock held), sorted.
func liveRuns() []string {
	var out []string
	for _, ns := range netlab.Leftovers(netlab.NamePrefix) {
		if len(ns) < netlab.PrefixLen {
			continue
		}
		p := ns[:netlab.PrefixLen]
		if !slices.Contains(out, p) && netlab.InUse(p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// readState reads a run's state file.
func readState(prefix string) (labState, error) {
	var st labState
	b, err := os.ReadFile(statePath(prefix))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// isLabUp reports whether pid is a "lab up" process of this binary's kind.
func isLabUp(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	return strings.HasPrefix(filepath.Base(args[0]), "vsgate-lab") && slices.Contains(args, "up")
}

func labDown(args []string, stdout, stderr io.Writer) int {
	var prefixes []string
	switch len(args) {
	case 0:
		// Every run with a state file: those are "lab up" runs, not tests.
		files, _ := filepath.Glob(filepath.Join(netlab.RunDir, netlab.NamePrefix+"*.json"))
		for _, f := range files {
			prefixes = append(prefixes, strings.TrimSuffix(filepath.Base(f), ".json"))
		}
	case 1:
		prefixes = args
	default:
		fmt.Fprint(stderr, labUsage)
		return 2
	}
	if len(prefixes) == 0 {
		fmt.Fprintln(stdout, "no lab is up")
		return 0
	}
	status := 0
	for _, p := range prefixes {
		if err := downOne(p, stdout); err != nil {
			fmt.Fprintln(stderr, "vsgate-lab down:", err)
			status = 1
		}
	}
	return status
}

// downOne stops run p: SIGTERM to its "lab up" process (found by the PID
// in its state file) and wait; or, if that process is gone, Clean.
func downOne(p string, stdout io.Writer) error {
	st, err := readState(p)
	if err == nil && netlab.InUse(p) && isLabUp(st.PID) {
		if err := syscall.Kill(st.PID, syscall.SIGTERM); err != nil {
			return fmt.Errorf("lab %s: signal pid %d: %w", p, st.PID, err)
		}
		deadline := time.Now().Add(15 * time.Second)
		for netlab.InUse(p) {
			if time.Now().After(deadline) {
				return fmt.Errorf("lab %s: pid %d still running after 15s", p, st.PID)
			}
			time.Sleep(20 * time.Millisecond)
		}
		fmt.Fprintf(stdout, "lab %s stopped (pid %d)\n", p, st.PID)
		return nil
	}
	if netlab.InUse(p) {
		return fmt.Errorf("lab %s is in use by a process that is not \"vsgate-lab up\" (a test?); not touching it", p)
	}
	removed, err := netlab.Clean(p)
	_ = os.Remove(statePath(p))
	fmt.Fprintf(stdout, "lab %s: removed %d leftovers\n", p, len(removed))
	return err
}

func labExec(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vsgate-lab exec", flag.ContinueOnError)
	fs.SetOutput(stderr)
	prefix := fs.String("prefix", "", "run prefix (default: the only live run)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	rest := fs.Args()
	if len(rest) >= 2 && rest[1] == "--" {
		rest = append(rest[:1:1], rest[2:]...)
	}
	if len(rest) < 2 {
		fmt.Fprint(stderr, labUsage)
		return 2
	}
	host, cmdArgs := rest[0], rest[1:]
	p := *prefix
	if p == "" {
		live := liveRuns()
		if len(live) != 1 {
			fmt.Fprintf(stderr, "vsgate-lab exec: %d live runs %v: name one with -prefix\n", len(live), live)
			return 1
		}
		p = live[0]
	}
	ns := p + "-" + host
	if _, err := os.Stat(filepath.Join(netlab.NetnsDir, ns)); err != nil {
		fmt.Fprintf(stderr, "vsgate-lab exec: no host %s in run %s\n", host, p)
		return 1
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, cmdArgs...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		fmt.Fprintln(stderr, "vsgate-lab exec:", err)
		return 1
	}
	return 0
}

func labList(stdout, stderr io.Writer) int {
	seen := map[string]bool{}
	for _, ns := range netlab.Leftovers(netlab.NamePrefix) {
		if len(ns) < netlab.PrefixLen || seen[ns[:netlab.PrefixLen]] {
			continue
		}
		p := ns[:netlab.PrefixLen]
		seen[p] = true
		what := "leftover (vsgate-lab clean removes it)"
		if netlab.InUse(p) {
			what = "live"
			if st, err := readState(p); err == nil {
				what = fmt.Sprintf("live: lab up %s, pid %d", st.Topology, st.PID)
			}
		}
		fmt.Fprintf(stdout, "%s  %s\n", p, what)
	}
	if len(seen) == 0 {
		fmt.Fprintln(stdout, "no labs")
	}
	return 0
}

func labClean(args []string, stdout, stderr io.Writer) int {
	prefix := netlab.NamePrefix
	switch len(args) {
	case 0:
	case 1:
		prefix = args[0]
	default:
		fmt.Fprint(stderr, labUsage)
		return 2
	}
	removed, err := netlab.Clean(prefix)
	for _, r := range removed {
		fmt.Fprintln(stdout, "removed", r)
	}
	files, _ := filepath.Glob(filepath.Join(netlab.RunDir, prefix+"*.json"))
	for _, f := range files {
		if p := strings.TrimSuffix(filepath.Base(f), ".json"); !netlab.InUse(p) {
			_ = os.Remove(f)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "vsgate-lab clean:", err)
		return 1
	}
	if len(removed) == 0 {
		fmt.Fprintln(stdout, "nothing to clean")
	}
	return 0
}
