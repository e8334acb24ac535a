package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vsgate/vsgate/gateway/e2e"
)

const demoUsage = `usage: vsgate demo
  Build the netlab "basic" topology (a client, the gateway, three real
  servers, in network namespaces of their own), run this vsgate binary in
  the gateway's namespace on a TUN device, check what an operator would
  check, print a report and remove everything (also on Ctrl-C). Needs
  root. make demo runs it.
`

// runDemo is `vsgate demo`.
func runDemo(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprint(stdout, demoUsage)
		if args[0] == "-h" || args[0] == "--help" {
			return 0
		}
		return 2
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "vsgate demo: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()

	start := time.Now()
	fmt.Fprintln(stdout, "vsgate demo: building the lab (client, gateway, three real servers) and starting vsgate in the gateway ...")
	env, err := e2e.Start(ctx, exe)
	if err != nil {
		fmt.Fprintf(stderr, "vsgate demo: %v\n", err)
		if env != nil {
			env.Close()
		}
		return 1
	}
	fmt.Fprintf(stdout, "  lab %s up; vsgate running in %s-gw on TUN vsg0 (2 queues)\n\n", env.Lab.Prefix, env.Lab.Prefix)
	failed := 0
	results := e2e.Run(ctx, env, func(r e2e.Result) {
		mark := "PASS"
		if r.Err != nil {
			mark = "FAIL"
			failed++
		}
		fmt.Fprintf(stdout, "[%s] %s\n", mark, r.Step)
		if r.Detail != "" {
			for _, l := range strings.Split(strings.TrimRight(r.Detail, "\n"), "\n") {
				fmt.Fprintf(stdout, "       %s\n", l)
			}
		}
		if r.Err != nil {
			fmt.Fprintf(stdout, "       error: %v\n", r.Err)
		}
	})
	if failed > 0 {
		fmt.Fprintf(stdout, "\nvsgate's log:\n%s\n", env.Log())
	}
	fmt.Fprintln(stdout, "\ncleaning up: stopping vsgate (it removes its routes and rules), removing the lab ...")
	if err := env.Close(); err != nil {
		fmt.Fprintf(stderr, "vsgate demo: cleanup: %v\n", err)
		failed++
	}
	fmt.Fprintf(stdout, "%d passed, %d failed (%v)\n", len(results)-failed, failed, time.Since(start).Round(100*time.Millisecond))
	if failed > 0 {
		return 1
	}
	return 0
}
