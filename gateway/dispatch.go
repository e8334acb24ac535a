package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/vsgate/vsgate/gateway/adm"
	"github.com/vsgate/vsgate/gateway/names"
	"github.com/vsgate/vsgate/nat"
)

// handle runs one control request: ipvsadm's language, portfw and
// ipchains, as `vsgate adm` sends them.
func (g *Gateway) handle(ctx context.Context, req Request) Response {
	if len(req.Args) > 0 && req.Args[0] == "pcap" {
		return g.handlePcap(req.Args[1:])
	}
	if len(req.Args) == 1 && req.Args[0] == "bgp" {
		var out bytes.Buffer
		g.writeBGP(&out)
		return Response{Output: out.String()}
	}
	if len(req.Args) == 1 && req.Args[0] == "drops" {
		var out bytes.Buffer
		g.writeDrops(&out)
		return Response{Output: out.String()}
	}
	if len(req.Args) == 1 && req.Args[0] == "reload" {
		var data []byte
		if req.Stdin != "" {
			data = []byte(req.Stdin)
		}
		if err := g.reloadSource(data, req.Files); err != nil {
			r := Response{Error: "reload refused, the running configuration stays: " + err.Error(), Status: 1}
			if u := (*unreadableSourceError)(nil); errors.As(err, &u) {
				if g.opts.Source != nil && u.path == g.opts.Source.Path {
					r.ReadFile = u.path
				} else {
					r.ReadNamed = u.path
				}
			}
			return r
		}
		return Response{Output: "configuration reloaded\n"}
	}
	ctx, cancel := context.WithTimeout(ctx, names.DefaultTimeout)
	defer cancel()
	c, err := adm.Parse(ctx, req.Args, g.names)
	if err != nil {
		return Response{Error: err.Error(), Status: exitStatus(err, 2)}
	}
	if !c.Modifies() {
		g.mu.Lock()
		cfg := g.desired
		g.mu.Unlock()
		out, err := g.query(ctx, c, cfg)
		if err != nil {
			return Response{Output: out, Error: err.Error(), Status: exitStatus(err, 1)}
		}
		return Response{Output: out}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if c.Op == adm.OpRestore {
		// Line by line, each line a change of its own, as ipvsadm -R.
		query := func(c *adm.Command, cfg nat.Config) (string, error) { return g.query(ctx, c, cfg) }
		_, st := adm.Restore(ctx, g.desired, req.Stdin, g.opts.MasqDefaults, g.names, g.installLocked, query)
		g.checker.Set(g.healthTargets())
		g.log.Info("configuration restored", "refused lines", len(st.Errors), "status", st.Status)
		return Response{Output: st.Output, Error: strings.Join(st.Errors, "\n"), Status: st.Status}
	}
	next, err := adm.Apply(g.desired, c, g.opts.MasqDefaults)
	if err == nil {
		err = g.installLocked(next)
	}
	if err != nil {
		// What ipvsadm's kernel refuses exits 255.
		return Response{Error: err.Error(), Status: exitStatus(err, 255)}
	}
	g.checker.Set(g.healthTargets())
	g.log.Info("configuration changed", "command", req.Args)
	return Response{}
}

// query runs a command that changes no configuration — a listing, -S, -Z,
// -h, -v — against cfg, the configuration in force, and the engine. It
// takes no lock of g's: -R runs it with g.mu held. Its errors carry
// ipvsadm's exit status (adm.ExitError).
func (g *Gateway) query(ctx context.Context, c *adm.Command, cfg nat.Config) (string, error) {
	var out bytes.Buffer
	switch c.Op {
	case adm.OpHelp:
		out.WriteString(c.Help())
	case adm.OpVersion:
		out.WriteString(adm.IpvsadmVersion)
	case adm.OpList:
		if c.Daemon {
			g.writeDaemons(&out)
			break
		}
		v := g.view(ctx, c, cfg)
		if c.VIP.IsValid() && !v.HasService(c) {
			return "", &adm.ExitError{Msg: adm.ErrNoService.Error(), Status: 1} // ipvsadm: nothing on stdout, exit 1
		}
		adm.WriteList(&out, c, v)
	case adm.OpSave:
		var n *adm.Names
		if !c.Numeric {
			n = adm.LookupSaveNames(ctx, g.names, serviceAddrs(cfg))
		}
		adm.WriteSave(&out, cfg, n)
	case adm.OpPortfwList:
		adm.WritePortfw(&out, g.view(ctx, c, cfg))
	case adm.OpMarkList:
		adm.WriteMarks(&out, cfg, c.MarkIPv6)
	case adm.OpMasqList:
		adm.WriteMasq(&out, cfg, g.masqNames(ctx, c, cfg))
	case adm.OpStartDaemon, adm.OpStopDaemon:
		return "", g.daemon(c)
	case adm.OpZero:
		if !c.VIP.IsValid() {
			g.engine.ZeroStats()
			break
		}
		found := c.Fwmark != 0 && g.engine.ZeroFwmark(c.Fwmark, c.FwmarkIPv6)
		for _, ap := range c.VIP.Addrs {
			if c.Fwmark == 0 && g.engine.ZeroService(c.Proto, ap.Addr(), ap.Port()) {
				found = true
			}
		}
		if !found {
			return "", &adm.ExitError{Msg: adm.ErrNoService.Error(), Status: 255}
		}
	}
	return out.String(), nil
}

// view gathers what a listing shows; without -n, with the names of its
// addresses and ports. cfg is the configuration in force.
func (g *Gateway) view(ctx context.Context, c *adm.Command, cfg nat.Config) *adm.View {
	v := &adm.View{Services: g.engine.Services(), Size: g.engine.Capacity(), Timeouts: g.engine.Config().Timeouts.Effective()}
	if r := g.rates.Load(); r != nil {
		v.Rates = *r
	}
	if c.Conns {
		for f := range g.engine.AllFlows() {
			if isServiceFlow(cfg, f) {
				v.Flows = append(v.Flows, f)
			}
		}
	}
	if !c.Numeric {
		v.Names = adm.LookupNames(ctx, g.names, serviceAddrs(cfg))
	}
	return v
}

// serviceAddrs are the addresses a listing of cfg's services names: the
// VIPs and the real servers.
func serviceAddrs(cfg nat.Config) []netip.Addr {
	var addrs []netip.Addr
	for _, s := range cfg.Services {
		addrs = append(addrs, s.VIP)
		for _, b := range s.Backends {
			addrs = append(addrs, b.Addr)
		}
	}
	return addrs
}

// masqNames are the names ipchains -L without -n shows: the hosts of host
// rules and the addresses masqueraded to.
func (g *Gateway) masqNames(ctx context.Context, c *adm.Command, cfg nat.Config) *adm.Names {
	if c.Numeric {
		return nil
	}
	var addrs []netip.Addr
	for _, m := range cfg.Masquerade {
		addrs = append(addrs, m.To)
		if m.Subnet().IsSingleIP() {
			addrs = append(addrs, m.Subnet().Addr())
		}
	}
	return adm.LookupNames(ctx, g.names, addrs)
}

// isServiceFlow tells virtual-service flows from masquerade flows.
func isServiceFlow(cfg nat.Config, f nat.FlowInfo) bool {
	return slices.ContainsFunc(cfg.Services, func(s nat.Service) bool {
		return s.Proto == f.Proto && (s.Port == 0 || s.Port == f.OrigDst.Port()) && s.VIP == f.OrigDst.Addr()
	}) || slices.ContainsFunc(cfg.Marks, func(m nat.Mark) bool { return m.Dst.Contains(f.OrigDst.Addr()) })
}

// handlePcap is `vsgate adm pcap start FILE` and `vsgate adm pcap stop`.
func (g *Gateway) handlePcap(args []string) Response {
	switch {
	case len(args) == 2 && args[0] == "start":
		path, err := g.StartCapture(args[1])
		if err != nil {
			return Response{Error: "pcap: " + err.Error(), Status: 1}
		}
		return Response{Output: "capturing to " + path + "\n"}
	case len(args) == 1 && args[0] == "stop":
		n, err := g.StopCapture()
		if err != nil {
			return Response{Error: "pcap: " + err.Error(), Status: 1}
		}
		return Response{Output: fmt.Sprintf("capture stopped: %d packets\n", n)}
	}
	return Response{Error: "usage: pcap start NAME | pcap stop", Status: 2}
}

// exitStatus is the exit status an adm refusal carries, or def.
func exitStatus(err error, def int) int {
	if ee := (*adm.ExitError)(nil); errors.As(err, &ee) {
		return ee.Status
	}
	return def
}
