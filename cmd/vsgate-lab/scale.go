package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/vsgate/vsgate/internal/e2e"
)

const scaleUsage = `usage: vsgate-lab scale [-d 5s] [-c 64]
  Measure requests a second through 1, 2 and 3 gateways behind netlab's
  "ecmp" routers (vsgate on TUN, the ECMP demo's configuration, the
  gateways joining one by one in one lab), keep-alive and a new connection
  per request, with wrk from the client; and what the connection sync
  sent meanwhile. Needs root, wrk and frr.
`

// runScale is vsgate-lab scale.
func runScale(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, scaleUsage) }
	d := fs.Duration("d", 5*time.Second, "how long each measurement runs")
	conns := fs.Int("c", 64, "wrk connections")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return 2
	}
	exe, err := vsgateBinary()
	if err != nil {
		fmt.Fprintf(stderr, "vsgate-lab scale: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stdout, "| gateways | workload | requests/s | sync records/s | sync datagrams/s |\n|---|---|---|---|---|\n")
	_, err = e2e.ECMPScale(ctx, exe, *d, *conns, func(r e2e.ScaleRow) {
		fmt.Fprintf(stdout, "| %d | %s | %.0f | %.0f | %.0f |\n", r.Gateways, r.Workload, r.RequestsPerS, r.SyncRecords, r.SyncDatagrams)
		fmt.Fprintf(stderr, "%s\n", r.Drops)
	})
	if err != nil {
		fmt.Fprintf(stderr, "vsgate-lab scale: %v\n", err)
		return 1
	}
	return 0
}
