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
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/vsgate/vsgate/internal/cli"
)

// program lists the subcommands in the order usage shows them.
func program() cli.Program {
	return cli.Program{Name: "vsgate-lab", Footer: "\n" + labUsage + "\nvsgate-lab demo -h and vsgate-lab bench -h show theirs.\n", Commands: []cli.Command{
		{Name: "up", Summary: "build a topology and keep it until Ctrl-C", Run: labUp},
		{Name: "down", Summary: "stop running labs", Run: labDown},
		{Name: "exec", Summary: "run a command in a host of the running lab", Run: labExec},
		{Name: "list", Summary: "show live runs and leftovers", Run: func(_ []string, stdout, stderr io.Writer) int { return labList(stdout, stderr) }},
		{Name: "clean", Summary: "remove leftovers of crashed runs", Run: labClean},
		{Name: "demo", Summary: "the end-to-end demo (make demo; needs root)", Run: runDemo},
		{Name: "bench", Summary: "end-to-end benchmarks vs nftables, HAProxy, nginx, Apache (root)", Run: runBench},
		{Name: "scale", Summary: "requests/s through 1, 2 and 3 gateways behind ECMP (root)", Run: runScale},
		{Name: "help", Summary: "show this help"},
	}}
}

// run dispatches args (without the program name) and returns the exit
// status: 2 for usage errors. "ls" is list.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "ls" {
		args = append([]string{"list"}, args[1:]...)
	}
	return program().Run(args, stdout, stderr)
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
