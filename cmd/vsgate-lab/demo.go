package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vsgate/vsgate/internal/e2e"
)

const demoUsage = `usage: vsgate-lab demo [-keep] [tun|afpacket|afxdp|handbook|ecmp|dr|both|all]
  Build a netlab topology (a client, the gateway, three real servers, in
  network namespaces of their own), run the vsgate binary beside this one
  in the gateway's namespace, check what an operator would check, print a report
  and remove everything (also on Ctrl-C). Needs root. make demo runs it.
    tun       "basic": vsgate on a TUN device (2 queues); the kernel
              routes the VIPs into it
    afpacket  "l2": vsgate on the gateway's two Ethernet interfaces
              through AF_PACKET (2 sockets each); it answers ARP/ND for
              the VIPs and the servers' gateway, the kernel forwards
              nothing
    afxdp     "l2" again, the frames through AF_XDP (device.type: afxdp):
              an XDP program redirects them to one socket per interface;
              ARP/ND through AF_PACKET; the hosts send whole checksums
    handbook  "basic" on TUN again, replaying the virtual-server handbook:
              its ipmasqadm and ipchains lines typed into vsgate adm as it
              writes them (198.18.2.x for its private /24, www.fuancn.cn in
              the namespaces' hosts files), its test, its telnet case and
              its three ProxyPass lines
    ecmp      "ecmp": vsgate on two and three gateways behind two FRR
              routers, announcing the VIPs by BGP; gateways killed,
              restarted, stopped and added under long-lived connections
              and a request stream, with the failover times and counts
    dr        "dr": direct routing (ipvsadm -g) on AF_PACKET: the client's
              packets reach the real servers unchanged, by MAC, and
              their answers do not cross the gateway
    both      tun and afpacket
    all       every pass (the default)
  -keep: after the tun and afpacket passes' steps, keep the lab and vsgate
  running and print the address of vsgate's status page (a port on this
  machine's loopback into the gateway's namespace) until Ctrl-C.
`

// demoPass is one run of the demo: steps on one gateway (Env), or, with
// ecmp set, the scale-out steps on several (ECMPEnv).
type demoPass struct {
	name  string
	opts  e2e.Options
	steps []e2e.Step
	where string // how vsgate runs, for the report
	ecmp  []e2e.ECMPStep
	dr    bool // the direct-routing pass (e2e.DirectRouting)
}

// runDemo is `vsgate-lab demo`.
func runDemo(args []string, stdout, stderr io.Writer) int {
	tun := demoPass{name: "TUN", steps: e2e.TUNSteps(), where: "on TUN vsg0 (2 queues)"}
	afp := demoPass{name: "AF_PACKET", opts: e2e.Options{AFPacket: true}, steps: e2e.AFPacketSteps(), where: "on AF_PACKET, interfaces out and in (2 sockets each)"}
	afx := demoPass{name: "AF_XDP", opts: e2e.Options{AFPacket: true, XDP: true}, steps: e2e.AFXDPSteps(),
		where: "on AF_XDP, interfaces out and in (an XDP program each, and an AF_XDP socket and a worker per queue of their two, copy mode; ARP/ND on AF_PACKET)"}
	book := demoPass{name: "the handbook, replayed", opts: e2e.Options{Handbook: true}, steps: e2e.HandbookSteps(),
		where: "on TUN vsg0, with only the handbook's ProxyPass lines configured (method 2 is typed in with vsgate adm); the handbook's private real servers .1-.3 are 198.18.2.11-13 here, their /24 is 198.18.2.0/24, and www.fuancn.cn is the VIP 198.18.0.10 / 2001:db8::10 in the client's and the gateway's hosts files"}
	ecmp := demoPass{name: "ECMP: several gateways behind BGP routers", ecmp: e2e.ECMPSteps()}
	dr := demoPass{name: "direct routing", dr: true}
	keep := len(args) > 0 && args[0] == "-keep"
	if keep {
		args = args[1:]
	}
	var passes []demoPass
	switch {
	case len(args) == 0 || len(args) == 1 && args[0] == "all":
		passes = []demoPass{tun, afp, afx, book, ecmp, dr}
	case len(args) == 1 && args[0] == "ecmp":
		passes = []demoPass{ecmp}
	case len(args) == 1 && args[0] == "dr":
		passes = []demoPass{dr}
	case len(args) == 1 && args[0] == "both":
		passes = []demoPass{tun, afp}
	case len(args) == 1 && args[0] == "tun":
		passes = []demoPass{tun}
	case len(args) == 1 && args[0] == "afpacket":
		passes = []demoPass{afp}
	case len(args) == 1 && args[0] == "afxdp":
		passes = []demoPass{afx}
	case len(args) == 1 && args[0] == "handbook":
		passes = []demoPass{book}
	default:
		fmt.Fprint(stdout, demoUsage)
		if args[0] == "-h" || args[0] == "--help" {
			return 0
		}
		return 2
	}
	exe, err := vsgateBinary()
	if err != nil {
		fmt.Fprintf(stderr, "vsgate-lab demo: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 8*time.Minute)
	defer cancel()

	start := time.Now()
	passed, failed := 0, 0
	for i, p := range passes {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		ok, bad := p.run(ctx, exe, keep, stdout, stderr)
		passed, failed = passed+ok, failed+bad
	}
	fmt.Fprintf(stdout, "\n%d passed, %d failed (%v)\n", passed, failed, time.Since(start).Round(100*time.Millisecond))
	if !keep {
		fmt.Fprintln(stdout, "vsgate's status page: make demo MODE=tun KEEP=1 (vsgate-lab demo -keep tun) keeps the lab up after the steps and prints its address.")
	}
	if failed > 0 {
		return 1
	}
	return 0
}

// run builds the pass's lab, starts vsgate, runs the steps with a report
// and removes everything. It returns how many checks passed and failed
// (a failed start or cleanup counts as one).
func (p demoPass) run(ctx context.Context, exe string, keep bool, stdout, stderr io.Writer) (passed, failed int) {
	if p.ecmp != nil {
		return p.runECMP(ctx, exe, stdout, stderr)
	}
	if p.dr {
		fmt.Fprintf(stdout, "== %s: building the lab \"dr\" (client, gateway and three real servers on one switch; the real servers hold the VIP on lo), vsgate on AF_PACKET ...\n\n", p.name)
		start := time.Now()
		d, err := e2e.DirectRouting(ctx, exe)
		reporter(stdout, &failed)(e2e.Result{Step: "direct routing (-g): requests answered by the real servers themselves, the gateway's link carries none of the answers", Detail: d, Err: err, Took: time.Since(start)})
		return 1 - failed, failed
	}
	fmt.Fprintf(stdout, "== %s: building the lab (client, gateway, three real servers) and starting vsgate in the gateway ...\n", p.name)
	env, err := e2e.StartWith(ctx, exe, p.opts)
	if err != nil {
		fmt.Fprintf(stderr, "vsgate-lab demo: %v\n", err)
		if env != nil {
			env.Close()
		}
		return 0, 1
	}
	fmt.Fprintf(stdout, "  lab %s (%s) up; vsgate running in %s-gw %s\n\n", env.Lab.Prefix, env.Lab.Topo.Name, env.Lab.Prefix, p.where)
	results := e2e.RunSteps(ctx, env, p.steps, reporter(stdout, &failed))
	passed = len(results) - failed
	if failed > 0 {
		fmt.Fprintf(stdout, "\nvsgate's log:\n%s\n", env.Log())
	}
	if keep {
		keepUp(env, stdout, stderr)
	}
	fmt.Fprintln(stdout, "\ncleaning up: stopping vsgate (it undoes what it changed), removing the lab ...")
	if err := env.Close(); err != nil {
		fmt.Fprintf(stderr, "vsgate-lab demo: cleanup: %v\n", err)
		failed++
	}
	return passed, failed
}

// keepUp serves the status page of env's gateway on this machine's
// loopback until SIGINT or SIGTERM (not the demo's own time limit).
func keepUp(env *e2e.Env, stdout, stderr io.Writer) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	url, closePage, err := env.StatusPage(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "vsgate-lab demo: status page: %v\n", err)
		return
	}
	defer closePage()
	fmt.Fprintf(stdout, "\nvsgate's status page: %s (its data: %sstatus.json); the lab stays up until Ctrl-C\n", url, url)
	<-ctx.Done()
}

// reporter prints each step's result and counts the failed ones.
func reporter(stdout io.Writer, failed *int) func(e2e.Result) {
	return func(r e2e.Result) {
		mark := "PASS"
		if r.Err != nil {
			mark = "FAIL"
			*failed++
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
	}
}

// runECMP is run for the scale-out pass.
func (p demoPass) runECMP(ctx context.Context, exe string, stdout, stderr io.Writer) (passed, failed int) {
	fmt.Fprintf(stdout, "== %s: building the lab (client, FRR router, three gateways, FRR inside router, three real servers) and starting vsgate on two gateways ...\n", p.name)
	env, err := e2e.StartECMP(ctx, exe, 2)
	if err != nil {
		fmt.Fprintf(stderr, "vsgate-lab demo: %v\n", err)
		if env != nil {
			env.Close()
		}
		return 0, 1
	}
	fmt.Fprintf(stdout, "  lab %s (%s) up; %s\n\n", env.Lab.Prefix, env.Lab.Topo.Name, e2e.ECMPDemoWhere(env.Lab.Topo.Plan))
	results := e2e.RunECMPSteps(ctx, env, p.ecmp, reporter(stdout, &failed))
	passed = len(results) - failed
	if failed > 0 {
		for i := range 3 {
			fmt.Fprintf(stdout, "\ngateway %d's vsgate log:\n%s\n", i+1, env.GatewayLog(i))
		}
	}
	fmt.Fprintln(stdout, "\ncleaning up: stopping every vsgate and both routers, removing the lab ...")
	if err := env.Close(); err != nil {
		fmt.Fprintf(stderr, "vsgate-lab demo: cleanup: %v\n", err)
		failed++
	}
	return passed, failed
}
