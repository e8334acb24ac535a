package gateway

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"reflect"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/vsgate/vsgate/bgp"
	"github.com/vsgate/vsgate/gateway/adm"
	"github.com/vsgate/vsgate/nat"
)

// BGPOptions run the embedded BGP speaker (package bgp): the gateway
// announces each service's VIP while the service has a healthy real
// server, and Prefixes while it runs; a graceful stop withdraws them all
// and keeps forwarding for Drain before it closes.
type BGPOptions struct {
	Speaker  bgp.Config
	Prefixes []netip.Prefix
	Drain    time.Duration
	// Announce is each service's policy by adm.ServiceKey: "always",
	// "never", or "healthy" (also for a service not listed).
	Announce map[string]string
}

// syncDumpWait bounds how long a starting gateway waits for its sync
// peers' flows before it announces its routes.
const syncDumpWait = 2 * time.Second

// Announce policies (BGPOptions.Announce).
const (
	announceAlways = "always"
	announceNever  = "never"
)

// startBGP starts the speaker and announces what the configuration says:
// with a connection sync, once the peers have sent their flows (or 2 s
// have passed: a peer may be down), so that the routers send this
// gateway nothing it cannot continue.
func (g *Gateway) startBGP() error {
	if g.sync != nil {
		if !g.sync.WaitDumps(syncDumpWait) {
			g.log.Warn("sync: not every peer sent its flows before the routes were announced", "waited", syncDumpWait)
		}
	}
	sp, err := bgp.Start(context.Background(), g.opts.BGP.Speaker, g.log)
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.speaker = sp
	g.announceLocked()
	return nil
}

// routesLocked are the prefixes the gateway announces now: the VIP of
// every service whose policy and health say so, and the fixed prefixes.
// Caller holds g.mu.
func (g *Gateway) routesLocked() []netip.Prefix {
	var out []netip.Prefix
	add := func(p netip.Prefix) {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	for _, s := range g.desired.Services {
		switch g.opts.BGP.Announce[adm.ServiceKey(s)] {
		case announceNever:
			continue
		case announceAlways:
		default:
			if !g.healthyLocked(s) {
				continue
			}
		}
		for _, p := range announcedPrefixes(g.desired, s) {
			add(p)
		}
	}
	for _, p := range g.opts.BGP.Prefixes {
		add(p)
	}
	return out
}

// healthyLocked reports whether service s has a real server the health
// checks do not hold down: a backend, or an L7 service's member.
func (g *Gateway) healthyLocked(s nat.Service) bool {
	if s.Mode == nat.ModeL7 {
		for _, l := range g.opts.L7 {
			if l.VIP == netip.AddrPortFrom(s.VIP, s.Port) {
				for _, m := range l.Members {
					if !g.l7down[l7HealthKey(l.VIP, m)] {
						return true
					}
				}
			}
		}
		return false
	}
	for _, b := range s.Backends {
		if !g.down[healthKey(s, b)] {
			return true
		}
	}
	return false
}

// announceLocked tells the speaker the routes of the running
// configuration, unless a stop has withdrawn them. Caller holds g.mu.
func (g *Gateway) announceLocked() {
	if g.speaker == nil || g.withdrawn {
		return
	}
	if err := g.speaker.Announce(g.routesLocked()); err != nil {
		g.log.Error("bgp: announcing", "err", err)
	}
}

// withdrawRoutes takes back every route for a graceful stop: from here on
// the routers send new packets to the other gateways.
func (g *Gateway) withdrawRoutes() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.speaker == nil || g.withdrawn {
		return
	}
	g.withdrawn = true
	if err := g.speaker.Withdraw(); err != nil {
		g.log.Error("bgp: withdrawing", "err", err)
	}
}

// checkBGPReload refuses a reload that changes the speaker itself (AS,
// router id, peers, timers): the sessions would have to be torn down.
// What is announced (services, their policies, bgp.announce) may change.
func (g *Gateway) checkBGPReload(next *BGPOptions) error {
	cur := g.opts.BGP
	switch {
	case cur == nil && next == nil:
		return nil
	case cur == nil:
		return fmt.Errorf("bgp: the running gateway has no BGP speaker: adding one needs a restart")
	case next == nil:
		return fmt.Errorf("bgp: the running gateway announces by BGP: removing the bgp block needs a restart")
	case !reflect.DeepEqual(cur.Speaker, next.Speaker):
		return fmt.Errorf("bgp: the speaker's settings (as, router_id, timers, communities, next_hop, peers) changed: that needs a restart")
	}
	return nil
}

// writeBGP writes `vsgate adm bgp`: the sessions, then the routes
// announced and why.
func (g *Gateway) writeBGP(w io.Writer) {
	if g.speaker == nil {
		fmt.Fprintln(w, "no BGP speaker (the configuration has no bgp: block)")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "Peer\tAS\tState\tSince\tHold\tSent\tBFD")
	now := time.Now()
	for _, p := range g.speaker.Peers() {
		since, hold, bfd := "-", "-", "-"
		if !p.Since.IsZero() {
			since = now.Sub(p.Since).Truncate(time.Second).String()
		}
		if p.HoldTime != 0 {
			hold = p.HoldTime.String()
		}
		if p.BFD != "" {
			bfd = p.BFD
		}
		fmt.Fprintf(tw, "%v\t%d\t%s\t%s\t%s\t%d\t%s\n", p.Addr, p.AS, p.State, since, hold, p.Sent, bfd)
	}
	tw.Flush()
	g.mu.Lock()
	defer g.mu.Unlock()
	announced := g.speaker.Routes()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "Route\tAnnounced\tWhy")
	seen := map[netip.Prefix]bool{}
	for _, s := range g.desired.Services {
		for _, p := range announcedPrefixes(g.desired, s) {
			policy := g.opts.BGP.Announce[adm.ServiceKey(s)]
			if policy == "" {
				policy = "healthy"
			}
			why := fmt.Sprintf("%s: announce %s", adm.ServiceKey(s), policy)
			if policy == "healthy" {
				if g.healthyLocked(s) {
					why += ", a real server is up"
				} else {
					why += ", no real server is up"
				}
			}
			if g.withdrawn {
				why += "; withdrawn for the stop"
			}
			fmt.Fprintf(tw, "%v\t%s\t%s\n", p, yesNo(slices.Contains(announced, p)), why)
			seen[p] = true
		}
	}
	for _, p := range g.opts.BGP.Prefixes {
		if !seen[p] {
			fmt.Fprintf(tw, "%v\t%s\tbgp.announce\n", p, yesNo(slices.Contains(announced, p)))
		}
	}
	tw.Flush()
}

// announcedPrefixes are the routes service s of configuration c stands
// for: its VIP, or for a firewall-mark service the destinations of the
// marks of its mark and family.
func announcedPrefixes(c nat.Config, s nat.Service) []netip.Prefix {
	if s.Fwmark == 0 {
		return []netip.Prefix{netip.PrefixFrom(s.VIP, s.VIP.BitLen())}
	}
	var out []netip.Prefix
	for _, m := range c.Marks {
		if m.Mark == s.Fwmark && m.Dst.Addr().Is6() == s.VIP.Is6() {
			out = append(out, m.Dst)
		}
	}
	return out
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
