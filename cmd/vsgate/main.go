// Command vsgate is the one vsgate binary. Subcommands:
//
//	vsgate run -c FILE     run the gateway on its TUN device
//	vsgate check -c FILE   validate a configuration file without running it
//	vsgate adm ARGS        ipvsadm (and portfw, ipchains MASQ) for the running gateway
//	vsgate help            this list
//
// Each command is one entry in commands below. The test bench (netlab,
// the demo, the end-to-end benchmarks) is cmd/vsgate-lab: this binary
// runs privileged and holds only what runs a gateway.
package main

import (
	"fmt"
	"io"
	"os"
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
		{"run", "run the gateway: -c FILE", runRun},
		{"check", "validate a configuration file without running it: -c FILE", runCheck},
		{"adm", "change and list the running gateway, in ipvsadm's language", runAdm},
		{"help", "show this help", nil},
	}
}

// usage prints the subcommand list.
func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: vsgate COMMAND [ARGS]\n\ncommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-6s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nvsgate COMMAND -h shows a command's help.\n")
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
	}
	for _, c := range commands() {
		if c.name == args[0] && c.run != nil {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "vsgate: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
