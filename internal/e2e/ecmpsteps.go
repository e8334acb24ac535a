package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/vsgate/vsgate/internal/netlab"
)

// ECMPStep is one check of the scale-out demo.
type ECMPStep struct {
	Name string
	Run  func(ctx context.Context, e *ECMPEnv, s *ECMPState) (detail string, err error)
}

// ECMPState is what the scale-out steps carry from one to the next.
type ECMPState struct {
	traffic *Traffic
	last    TrafficReport // the report when the previous step ended
}

// RunECMPSteps runs steps in order on e, reporting each (report may be
// nil), and stops the traffic at the end.
func RunECMPSteps(ctx context.Context, e *ECMPEnv, steps []ECMPStep, report func(Result)) []Result {
	st := &ECMPState{}
	var rs []Result
	for _, s := range steps {
		start := time.Now()
		d, err := s.Run(ctx, e, st)
		r := Result{Step: s.Name, Detail: d, Err: err, Took: time.Since(start)}
		rs = append(rs, r)
		if report != nil {
			report(r)
		}
	}
	if st.traffic != nil {
		st.traffic.Stop()
	}
	return rs
}

// ECMPSteps is the failover demo: two gateways behind FRR routers, 20
// long-lived connections and a request stream through them while one
// gateway is killed, restarted, stopped and a third one joins; a VIP
// withdrawn with its last real server; one gateway alone killed and
// restarted. Every step but the last asserts that no long-lived
// connection broke and no request failed.
func ECMPSteps() []ECMPStep {
	return []ECMPStep{
		{"two gateways announce the VIPs by BGP: both routers spread over both (ECMP)", stepECMPUp},
		{"35 long-lived connections (NAT, FULLNAT, persistent) and a request stream go through both gateways", stepECMPTraffic},
		{"kill -9 one gateway: the routers drop it within a second, 0 connections broken (FULLNAT and persistence through the sync)", stepECMPKill},
		{"restart it: it takes its share back, 0 connections broken", stepECMPRestart},
		{"graceful stop of the other: routes withdrawn before it drains and exits, 0 broken", stepECMPGraceful},
		{"it comes back and a third gateway joins: 0 connections broken", stepECMPThird},
		{"a gateway hangs (SIGSTOP: no FIN, no RST, no BGP message): the routers drop it when the 3 s hold time runs out, or with BFD in 300 ms; 0 broken; it goes on (SIGCONT) and is taken back, 0 broken", stepECMPFreeze},
		{"a VIP whose last real server fails is withdrawn, and announced again when it is back", stepECMPLonely},
		{"one gateway alone: kill -9 and restart under long-lived NAT connections, 0 broken", stepECMPAlone},
	}
}

// settle is how long each step lets the traffic run after a change, so
// that every long-lived connection sends lines through the new paths.
const settle = 3 * time.Second

// waitPaths is WaitPaths with a 20 s bound (a hold time is 3 s).
func waitPaths(ctx context.Context, e *ECMPEnv, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	return e.WaitPaths(ctx, n)
}

func stepECMPUp(ctx context.Context, e *ECMPEnv, _ *ECMPState) (string, error) {
	start := time.Now()
	if err := waitPaths(ctx, e, 2); err != nil {
		return "", err
	}
	out, err := e.Adm(ctx, 0, "bgp")
	if err != nil {
		return "", err
	}
	if strings.Count(out, "ESTABLISHED") != 4 {
		return out, fmt.Errorf("gateway 1 has not 4 established sessions (both routers, both families)")
	}
	return fmt.Sprintf("VIPs %v and %v via 2 gateways at the router, default routes via 2 gateways at the inside router, %v after start\ngateway 1's vsgate adm bgp:\n%s",
		e.Lab.Topo.Plan.VIP4, e.Lab.Topo.Plan.VIP6, time.Since(start).Round(time.Millisecond), out), nil
}

// flowsPerGateway counts each running gateway's service flows.
func flowsPerGateway(ctx context.Context, e *ECMPEnv) (map[int]int, error) {
	n := map[int]int{}
	for i := range e.gws {
		if e.gws[i] == nil {
			continue
		}
		out, err := e.Adm(ctx, i, "-L", "-n", "-c")
		if err != nil {
			return nil, err
		}
		n[i] = strings.Count(out, "\nTCP ")
	}
	return n, nil
}

func fmtFlows(n map[int]int) string {
	var parts []string
	for i := range 3 {
		if v, ok := n[i]; ok {
			parts = append(parts, fmt.Sprintf("gw%d %d", i+1, v))
		}
	}
	return strings.Join(parts, ", ")
}

func stepECMPTraffic(ctx context.Context, e *ECMPEnv, st *ECMPState) (string, error) {
	t, err := e.StartTraffic(ctx, 20)
	if err != nil {
		return "", err
	}
	st.traffic = t
	time.Sleep(settle)
	flows, err := flowsPerGateway(ctx, e)
	if err != nil {
		return "", err
	}
	r := t.Report()
	st.last = r
	d := fmt.Sprintf("%v\nflows by gateway: %s", r, fmtFlows(flows))
	if err := r.check(); err != nil {
		return d, err
	}
	if r.Sticky() == "" {
		return d, fmt.Errorf("the persistent service's connections went to more than one real server")
	}
	if flows[0] == 0 || flows[1] == 0 {
		return d, fmt.Errorf("a gateway has no flows: ECMP did not spread")
	}
	return d, nil
}

// since reports the traffic of one step: what changed since the last
// report, asserting nothing broke.
// drops lists each running gateway's drops by reason (vsgate adm drops),
// the ones that are not zero.
func drops(ctx context.Context, e *ECMPEnv) string {
	var b strings.Builder
	for i := range e.gws {
		if e.gws[i] == nil {
			continue
		}
		out, err := e.Adm(ctx, i, "drops")
		if err != nil {
			fmt.Fprintf(&b, "gw%d: %v\n", i+1, err)
			continue
		}
		var lines []string
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) >= 2 && !strings.HasPrefix(l, "Dropped") && !strings.HasPrefix(l, "Lost") && f[len(f)-1] != "0" {
				lines = append(lines, strings.Join(f, " "))
			}
		}
		if len(lines) > 0 {
			fmt.Fprintf(&b, "gw%d drops: %s\n", i+1, strings.Join(lines, ", "))
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

func since(st *ECMPState) (string, error) {
	if st.traffic == nil {
		return "", fmt.Errorf("no traffic: its step failed")
	}
	r := st.traffic.Report()
	delta := r
	delta.Requests -= st.last.Requests
	delta.FailedRequests -= st.last.FailedRequests
	delta.Lines -= st.last.Lines
	st.last = r
	return delta.String(), r.check()
}

// stickyBackend opens a new connection to the persistent service and
// returns the real server that answers it.
func (e *ECMPEnv) stickyBackend(ctx context.Context) (string, error) {
	c, err := e.client.DialContext(ctx, "tcp", netip.AddrPortFrom(e.Lab.Topo.Plan.VIP4, persistentPort).String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintln(c, "who"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	rs, _, _ := strings.Cut(line, ": ")
	return rs, nil
}

// firstAnswer times one new request from the client.
func firstAnswer(ctx context.Context, e *ECMPEnv) (time.Duration, error) {
	start := time.Now()
	resp, err := e.client.HTTPClient(10 * time.Second).Get("http://" + e.Lab.Topo.Plan.VIP4.String() + "/")
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return time.Since(start), nil
}

func stepECMPKill(ctx context.Context, e *ECMPEnv, st *ECMPState) (string, error) {
	start := time.Now()
	if err := e.Kill(0); err != nil {
		return "", err
	}
	if err := waitPaths(ctx, e, 1); err != nil {
		return "", err
	}
	withdrawn := time.Since(start)
	first, err := firstAnswer(ctx, e)
	if err != nil {
		return "", fmt.Errorf("the first request after the withdrawal: %w", err)
	}
	sticky, err := e.stickyBackend(ctx)
	if err != nil {
		return "", err
	}
	time.Sleep(settle)
	d, err := since(st)
	if want := st.last.Sticky(); err == nil && sticky != want {
		err = fmt.Errorf("a new connection to the persistent service went to %s at the surviving gateway, its template's real server is %s", sticky, want)
	}
	sync, _ := e.Adm(ctx, 1, "-L", "--daemon")
	return fmt.Sprintf("kill -9 to both routers' withdrawal: %v; a new request then answered in %v; a new persistent connection went to %s, as its template says\n%s\n%s\ngw2's vsgate adm -L --daemon: %s",
		withdrawn.Round(time.Millisecond), first.Round(time.Millisecond), sticky, d, drops(ctx, e), strings.TrimSpace(sync)), err
}

func stepECMPRestart(ctx context.Context, e *ECMPEnv, st *ECMPState) (string, error) {
	start := time.Now()
	if err := e.StartGateway(ctx, 0); err != nil {
		return "", err
	}
	if err := waitPaths(ctx, e, 2); err != nil {
		return "", err
	}
	back := time.Since(start)
	time.Sleep(settle)
	flows, err := flowsPerGateway(ctx, e)
	if err != nil {
		return "", err
	}
	d, err := since(st)
	d = fmt.Sprintf("start to both routers' second path: %v; flows by gateway: %s\n%s", back.Round(time.Millisecond), fmtFlows(flows), d)
	if err == nil && flows[0] == 0 {
		err = fmt.Errorf("the restarted gateway took no flows")
	}
	return d, err
}

func stepECMPGraceful(ctx context.Context, e *ECMPEnv, st *ECMPState) (string, error) {
	start := time.Now()
	if err := e.Stop(1); err != nil {
		return "", err
	}
	if err := waitPaths(ctx, e, 1); err != nil {
		return "", err
	}
	withdrawn := time.Since(start)
	if e.Exited(1) {
		return "", fmt.Errorf("gateway 2 exited before the routers dropped its routes (%v)", withdrawn)
	}
	if err := e.Wait(1); err != nil {
		return "", err
	}
	exited := time.Since(start)
	log := e.GatewayLog(1)
	if !strings.Contains(log, "routes withdrawn, draining") {
		return "", fmt.Errorf("gateway 2's log does not say it withdrew and drained")
	}
	time.Sleep(settle)
	d, err := since(st)
	return fmt.Sprintf("SIGTERM to both routers' withdrawal: %v; exit after the 2 s drain: %v\n%s\n%s",
		withdrawn.Round(time.Millisecond), exited.Round(time.Millisecond), d, drops(ctx, e)), err
}

func stepECMPThird(ctx context.Context, e *ECMPEnv, st *ECMPState) (string, error) {
	for _, i := range []int{1, 2} {
		if err := e.StartGateway(ctx, i); err != nil {
			return "", err
		}
	}
	if err := waitPaths(ctx, e, 3); err != nil {
		return "", err
	}
	time.Sleep(settle)
	flows, err := flowsPerGateway(ctx, e)
	if err != nil {
		return "", err
	}
	d, err := since(st)
	d = fmt.Sprintf("3 paths at both routers; flows by gateway: %s\n%s", fmtFlows(flows), d)
	if err == nil && (flows[1] == 0 || flows[2] == 0) {
		err = fmt.Errorf("a new gateway took no flows")
	}
	return d, err
}

// stepECMPFreeze hangs gateway 3 twice. First with BFD off at the
// routers for its sessions (the baseline): the hold timer drops it. Then
// with BFD: what drops it must be BFD — both routers' bfdd have each of
// its four sessions down because its packets stopped (the detection time
// expired), and bgpd says why it dropped the BGP sessions.
func stepECMPFreeze(ctx context.Context, e *ECMPEnv, st *ECMPState) (string, error) {
	const frozen = 2
	p := e.Lab.Topo.Plan
	up4, up6 := p.GatewayUplink(frozen)
	in4, in6 := p.GatewayInside(frozen)
	sessions := []struct {
		router *netlab.FRR
		as     int
		addr   netip.Addr
	}{{e.rtr, netlab.ECMPRouterAS, up4.Self}, {e.rtr, netlab.ECMPRouterAS, up6.Self}, {e.rin, netlab.ECMPInsideAS, in4.Self}, {e.rin, netlab.ECMPInsideAS, in6.Self}}
	bfd := func(on bool) error {
		for _, s := range sessions {
			line := fmt.Sprintf("no neighbor %v bfd", s.addr)
			if on {
				line = fmt.Sprintf("neighbor %v bfd profile %s", s.addr, netlab.FRRBFDProfile)
			}
			if out, err := s.router.VTY(ctx, "configure terminal", fmt.Sprintf("router bgp %d", s.as), line); err != nil {
				return fmt.Errorf("%s: %w", out, err)
			}
		}
		return nil
	}
	// hang freezes the gateway, waits for both routers to drop it, checks
	// why with ok, and returns how long it took.
	hang := func(ok func(s BFDSession) error) (time.Duration, []string, error) {
		start := time.Now()
		if err := e.Freeze(frozen); err != nil {
			return 0, nil, err
		}
		if err := waitPaths(ctx, e, 2); err != nil {
			return 0, nil, err
		}
		dropped := time.Since(start)
		var reasons []string
		for _, s := range sessions {
			peers, err := s.router.BFDPeers(ctx)
			if err != nil {
				return 0, nil, err
			}
			why, err := s.router.LastReset(ctx, s.addr.String())
			if err != nil {
				return 0, nil, err
			}
			b, hasBFD := peers[s.addr.String()]
			if err := ok(BFDSession{b, hasBFD, why}); err != nil {
				return 0, nil, fmt.Errorf("the routers dropped gateway 3 after %v, but its session %v: %w", dropped.Round(time.Millisecond), s.addr, err)
			}
			if hasBFD {
				why = "BFD " + b.Diagnostic + ", BGP " + why
			}
			reasons = append(reasons, fmt.Sprintf("%v: %s", s.addr, why))
		}
		return dropped, reasons, nil
	}
	// thaw lets the gateway go on and waits until both routers have it
	// again, with every BFD session up if want.
	thaw := func(withBFD bool) (time.Duration, error) {
		start := time.Now()
		if err := e.Thaw(frozen); err != nil {
			return 0, err
		}
		if err := waitPaths(ctx, e, 3); err != nil {
			return 0, err
		}
		if withBFD {
			wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			err := waitFor(wctx, "gateway 3's BFD sessions up", func() (bool, error) {
				for _, s := range sessions {
					peers, err := s.router.BFDPeers(ctx)
					if err != nil || peers[s.addr.String()].Status != "up" {
						return false, err
					}
				}
				return true, nil
			})
			if err != nil {
				return 0, err
			}
		}
		return time.Since(start), nil
	}
	defer e.Thaw(frozen) // whatever fails: a stopped process is no use to the next step
	// BFD off at the routers: the gateway's BFD hears them say so
	// (AdminDown) and resets its BGP sessions; wait until each is up
	// again before the hang.
	established := make([]int, len(sessions))
	for i, s := range sessions {
		n, _, err := s.router.Connections(ctx, s.addr.String())
		if err != nil {
			return "", err
		}
		established[i] = n
	}
	if err := bfd(false); err != nil {
		return "", err
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err := waitFor(wctx, "gateway 3's sessions established again without BFD", func() (bool, error) {
		for i, s := range sessions {
			n, up, err := s.router.Connections(ctx, s.addr.String())
			if err != nil || n == established[i] || !up {
				return false, err
			}
		}
		return true, nil
	})
	if err != nil {
		return "", err
	}
	if err := waitPaths(ctx, e, 3); err != nil {
		return "", err
	}
	holdDropped, holdReasons, err := hang(func(s BFDSession) error {
		if s.Present || !strings.Contains(s.BGP, "Hold Timer") {
			return fmt.Errorf("BFD session %v (present: %v), BGP reset for %q: not the hold timer alone", s.Peer, s.Present, s.BGP)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if err := bfd(true); err != nil {
		return "", err
	}
	if _, err := thaw(true); err != nil {
		return "", err
	}
	baseline, err := since(st)
	if err != nil {
		return baseline, err
	}
	bfdDropped, bfdReasons, err := hang(func(s BFDSession) error {
		if !s.Present || s.Peer.Status != "down" || !strings.Contains(s.Peer.Diagnostic, "detection time expired") {
			return fmt.Errorf("BFD session %+v (present: %v): not down for lack of its packets", s.Peer, s.Present)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	first, err := firstAnswer(ctx, e)
	if err != nil {
		return "", fmt.Errorf("the first request after the withdrawal: %w", err)
	}
	time.Sleep(settle)
	during, err := since(st)
	if err != nil {
		return during, err
	}
	rejoined, err := thaw(true)
	if err != nil {
		return "", err
	}
	time.Sleep(settle)
	after, err := since(st)
	return fmt.Sprintf("without BFD (the baseline), SIGSTOP to both routers' withdrawal: %v; why: %s\n%s\n"+
		"with BFD (%d × %v), SIGSTOP to both routers' withdrawal: %v; why: %s; a new request then answered in %v\n%s\n"+
		"SIGCONT to 3 paths and 4 BFD sessions up again: %v\n%s\n%s",
		holdDropped.Round(time.Millisecond), strings.Join(holdReasons, ", "), baseline,
		netlab.FRRBFDMultiplier, netlab.FRRBFDInterval, bfdDropped.Round(time.Millisecond), strings.Join(bfdReasons, ", "), first.Round(time.Millisecond), during,
		rejoined.Round(time.Millisecond), after, drops(ctx, e)), err
}

// BFDSession is what a router says of one of a gateway's sessions after
// dropping it: its BFD session (if it has one) and why BGP went down.
type BFDSession struct {
	Peer    netlab.BFDPeer
	Present bool
	BGP     string
}

func stepECMPLonely(ctx context.Context, e *ECMPEnv, st *ECMPState) (string, error) {
	vip := netip.PrefixFrom(lonelyVIP.Addr(), 32)
	rtr := e.Lab.Topo.Plan.Router
	wait := func(n int) (time.Duration, error) {
		start := time.Now()
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		err := waitFor(ctx, fmt.Sprintf("%d paths for %v", n, vip), func() (bool, error) {
			got, err := e.Paths(rtr, vip)
			return got == n, err
		})
		return time.Since(start), err
	}
	if _, err := wait(3); err != nil {
		return "", err
	}
	if err := e.lonely.Close(); err != nil {
		return "", err
	}
	down, err := wait(0)
	if err != nil {
		return "", err
	}
	b3 := e.Lab.MustHost(e.Lab.Topo.Plan.Backends[2])
	if e.lonely, err = b3.StartHTTP("b3-lonely", ":8080"); err != nil {
		return "", err
	}
	up, err := wait(3)
	if err != nil {
		return "", err
	}
	d, err := since(st)
	return fmt.Sprintf("%v: withdrawn %v after its real server stopped (checks every 1 s, fall 2), announced by all 3 gateways %v after it came back\n%s",
		lonelyVIP, down.Round(time.Millisecond), up.Round(time.Millisecond), d), err
}

// stepECMPAlone leaves one gateway, kills it and starts it again: while
// none runs the VIPs have no route (new requests fail, counted and
// reported, not asserted); the long-lived NAT connections (mh) wait in
// TCP's retransmissions and go on through the restarted gateway, which
// takes them up mid-stream on the same real servers. The FULLNAT and
// persistent (rr) ones cannot: their mappings lived on the killed
// gateway alone, with no peer to hold them; how many broke is reported.
func stepECMPAlone(ctx context.Context, e *ECMPEnv, st *ECMPState) (string, error) {
	for _, i := range []int{1, 2} {
		if err := e.Stop(i); err != nil {
			return "", err
		}
		if err := e.Wait(i); err != nil {
			return "", err
		}
	}
	if err := waitPaths(ctx, e, 1); err != nil {
		return "", err
	}
	time.Sleep(settle)
	if st.traffic == nil {
		return "", fmt.Errorf("no traffic: its step failed")
	}
	before := st.traffic.Report()
	start := time.Now()
	if err := e.Kill(0); err != nil {
		return "", err
	}
	if err := waitPaths(ctx, e, 0); err != nil {
		return "", err
	}
	if err := e.StartGateway(ctx, 0); err != nil {
		return "", err
	}
	if err := waitPaths(ctx, e, 1); err != nil {
		return "", err
	}
	outage := time.Since(start)
	time.Sleep(settle)
	r := st.traffic.Report()
	st.last = r
	failed := r.FailedRequests - before.FailedRequests
	d := fmt.Sprintf("no gateway for %v (kill -9 to the restarted one's routes); %d new requests failed meanwhile (not asserted: nothing routes the VIP then)\n%s\nbroken, by service: %v (FULLNAT and rr+persistence mappings lived on the killed gateway alone)",
		outage.Round(time.Millisecond), failed, r, r.BrokenBy)
	if n := r.BrokenBy["nat"]; n > 0 {
		return d, fmt.Errorf("%d long-lived NAT connections broke", n)
	}
	return d, nil
}

// ECMPDemoWhere describes the pass for the demo's report.
func ECMPDemoWhere(p netlab.Plan) string {
	return fmt.Sprintf("on TUN in %s, BGP to FRR on %s and %s", strings.Join(p.Gateways, ", "), p.Router, p.InsideRouter)
}
