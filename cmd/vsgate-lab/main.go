// Command vsgate-lab is vsgate's test bench: network-namespace topologies
// (netlab), the end-to-end demo and the end-to-end benchmarks. It runs the
// vsgate binary beside it (or the one -vsgate names) inside the labs it
// builds. Subcommands:
//
//	vsgate-lab up|down|exec|list|clean   netlab topologies (see -h)
//	vsgate-lab demo                      the end-to-end demo (make demo)
//	vsgate-lab bench                     end-to-end benchmarks (make bench-e2e)
//	vsgate-lab help                      this list
//
// It is a binary of its own so that the gateway's binary, which runs
// privileged, holds only what runs a gateway: none of netlab, the
// benchmark harness or its plotting.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// command is one subcommand: run gets the arguments after its name and
// returns the exit status.
type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

// commands lists the subcommands in the order usage shows them.
func commands() []command {
	return []command{
		{"up", "build a topology and keep it until Ctrl-C", labUp},
		{"down", "stop running labs", labDown},
		{"exec", "run a command in a host of the running lab", labExec},
		{"list", "show live runs and leftovers", func(_ []string, stdout, stderr io.Writer) int { return labList(stdout, stderr) }},
		{"clean", "remove leftovers of crashed runs", labClean},
		{"demo", "the end-to-end demo (make demo; needs root)", runDemo},
		{"bench", "end-to-end benchmarks vs nftables, HAProxy, nginx, Apache (root)", runBench},
		{"help", "show this help", nil},
	}
}

// usage prints the subcommand list.
func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: vsgate-lab COMMAND [ARGS]\n\ncommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-6s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\n%s\nvsgate-lab demo -h and vsgate-lab bench -h show theirs.\n", labUsage)
}

// run dispatches args (without the program name) and returns the exit
// status: 2 for usage errors.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return 0
	case "ls":
		args[0] = "list"
	}
	for _, c := range commands() {
		if c.name == args[0] && c.run != nil {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "vsgate-lab: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// vsgateBinary is the gateway binary the demo and benchmarks run: vsgate
// in this binary's directory (make builds both there), else vsgate on
// PATH.
func vsgateBinary() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	beside := filepath.Join(filepath.Dir(self), "vsgate")
	if fi, err := os.Stat(beside); err == nil && fi.Mode().IsRegular() {
		return beside, nil
	}
	if p, err := exec.LookPath("vsgate"); err == nil {
		return filepath.Abs(p)
	}
	return "", errors.New("no vsgate binary beside vsgate-lab (" + beside + ") or on PATH: build it with make build")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
