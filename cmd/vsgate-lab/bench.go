package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/vsgate/vsgate/internal/bench"
)

const benchUsage = `usage: vsgate-lab bench [-quick] [-reps N] [-d DURATION] [-workers N] [-conns N]
                    [-systems a,b,...] [-workloads a,b,...] [-out DIR] [-profile=false]
       vsgate-lab bench report [-out DIR] FILE.json
       vsgate-lab bench summarize [-o FILE] bench.txt

  vsgate-lab bench measures the whole gateway in netlab (needs root): vsgate on
  TUN (NAT and FULLNAT) and on AF_PACKET, kernel nftables DNAT, HAProxy and
  nginx (L4), and nginx, HAProxy and Apache as HTTP proxies (L7),
  interleaved and repeated,
  under HTTP keep-alive (wrk), new connections (wrk, Connection: close),
  bulk TCP (iperf3) and small UDP packets (iperf3 -u -l 64). Each system
  runs in a fresh lab; everything is removed afterwards, also on Ctrl-C.
  It writes DIR/e2e.json (every sample), DIR/e2e.md (the report section for
  docs/BENCHMARKS.md) and DIR/e2e-l4.png, DIR/e2e-l7.png (charts).

  vsgate-lab bench report regenerates the markdown and charts from a JSON file.
  vsgate-lab bench summarize turns 'go test -bench' output (make bench's
  bench.txt) into a markdown table of medians.
`

// runBench is `vsgate-lab bench`.
func runBench(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "summarize":
			return runBenchSummarize(args[1:], stdout, stderr)
		case "report":
			return runBenchReport(args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, benchUsage) }
	quick := fs.Bool("quick", false, "one repetition of short runs (CI; about a minute)")
	reps := fs.Int("reps", 0, "repetitions (default 3; quick 1)")
	dur := fs.Duration("d", 0, "duration of each measurement (default 4s; quick 1s)")
	workers := fs.Int("workers", 0, "gateway workers and wrk threads (default 2)")
	conns := fs.Int("conns", 0, "wrk connections (default 32; quick 16)")
	systems := fs.String("systems", "", "comma-separated systems to run (default all)")
	workloads := fs.String("workloads", "", "comma-separated workloads to run (default all)")
	out := fs.String("out", "docs/bench", "directory for e2e.json, e2e.md and the charts")
	profile := fs.Bool("profile", true, "profile vsgate-nat-gso (else vsgate-nat), vsgate-afxdp and vsgate-l7 with perf after the measurements (not in -quick)")
	exe := fs.String("vsgate", "", "vsgate binary to benchmark (default the one beside this binary)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprint(stderr, benchUsage)
		return 2
	}
	c := bench.DefaultConfig()
	if *quick {
		c = bench.QuickConfig()
	} else {
		c.Profile = *profile
	}
	if *reps > 0 {
		c.Reps = *reps
	}
	if *dur > 0 {
		c.Duration = *dur
	}
	if *workers > 0 {
		c.Workers = *workers
	}
	if *conns > 0 {
		c.Conns = *conns
	}
	var systemNames, workloadNames []string
	for _, s := range bench.Systems() {
		systemNames = append(systemNames, s.Name)
	}
	for _, w := range bench.Workloads() {
		workloadNames = append(workloadNames, w.Name)
	}
	var err error
	if c.Systems, err = pickNames("system", *systems, systemNames); err == nil {
		c.Workloads, err = pickNames("workload", *workloads, workloadNames)
	}
	if err != nil {
		fmt.Fprintf(stderr, "vsgate-lab bench: %v\n", err)
		return 2
	}
	c.Exe = *exe
	if c.Exe == "" {
		var err error
		if c.Exe, err = vsgateBinary(); err != nil {
			fmt.Fprintf(stderr, "vsgate-lab bench: %v\n", err)
			return 1
		}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintf(stderr, "vsgate-lab bench: %v\n", err)
		return 1
	}
	c.Progress = stderr
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// A hard bound on the whole run, whatever the flags say.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	fmt.Fprintf(stderr, "vsgate-lab bench: %d repetition(s) of %v per measurement, %d workers, %d connections; each system in a fresh netlab lab\n",
		c.Reps, c.Duration, c.Workers, c.Conns)
	r, err := bench.Run(ctx, c)
	if r == nil {
		fmt.Fprintf(stderr, "vsgate-lab bench: %v\n", err)
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "vsgate-lab bench: stopped early: %v (writing what was measured)\n", err)
	}
	if werr := writeBenchOutputs(r, *out, stdout); werr != nil {
		fmt.Fprintf(stderr, "vsgate-lab bench: %v\n", werr)
		return 1
	}
	if err != nil {
		return 1
	}
	return 0
}

// writeBenchOutputs writes the JSON, markdown and charts of r into dir
// and prints the tables.
func writeBenchOutputs(r *bench.Report, dir string, stdout io.Writer) error {
	if err := r.WriteJSON(filepath.Join(dir, "e2e.json")); err != nil {
		return err
	}
	md, err := bench.WriteOutputs(r, dir)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, md)
	fmt.Fprintf(stdout, "\nwrote %s\n", strings.Join([]string{
		filepath.Join(dir, "e2e.json"), filepath.Join(dir, "e2e.md"),
		filepath.Join(dir, "e2e-l4.png"), filepath.Join(dir, "e2e-l7.png")}, ", "))
	return nil
}

// runBenchReport is `vsgate-lab bench report`.
func runBenchReport(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, benchUsage) }
	out := fs.String("out", "", "output directory (default: the JSON file's)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprint(stderr, benchUsage)
		return 2
	}
	r, err := bench.ReadJSON(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "vsgate-lab bench report: %v\n", err)
		return 1
	}
	dir := *out
	if dir == "" {
		dir = filepath.Dir(fs.Arg(0))
	}
	md, err := bench.WriteOutputs(r, dir)
	if err != nil {
		fmt.Fprintf(stderr, "vsgate-lab bench report: %v\n", err)
		return 1
	}
	fmt.Fprint(stdout, md)
	return 0
}

// runBenchSummarize is `vsgate-lab bench summarize`.
func runBenchSummarize(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench summarize", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, benchUsage) }
	outFile := fs.String("o", "", "write the markdown to this file instead of stdout")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprint(stderr, benchUsage)
		return 2
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "vsgate-lab bench summarize: %v\n", err)
		return 1
	}
	defer f.Close()
	md, err := bench.SummarizeGoBench(f)
	if err != nil {
		fmt.Fprintf(stderr, "vsgate-lab bench summarize: %s: %v\n", fs.Arg(0), err)
		return 1
	}
	if *outFile == "" {
		fmt.Fprint(stdout, md)
		return 0
	}
	if err := os.WriteFile(*outFile, []byte(md), 0o644); err != nil {
		fmt.Fprintf(stderr, "vsgate-lab bench summarize: %v\n", err)
		return 1
	}
	return 0
}

// pickNames splits list, a comma-separated flag value, into names that
// must each be one of known; an empty list picks none (meaning all).
func pickNames(what, list string, known []string) ([]string, error) {
	if list == "" {
		return nil, nil
	}
	var out []string
	for _, n := range strings.Split(list, ",") {
		if !slices.Contains(known, n) {
			return nil, fmt.Errorf("unknown %s %q", what, n)
		}
		out = append(out, n)
	}
	return out, nil
}
