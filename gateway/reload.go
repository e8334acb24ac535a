package gateway

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vsgate/vsgate/gateway/adm"
	"github.com/vsgate/vsgate/nat"
)

// netPlan derives the wiring from the configuration: VIPs, masquerade and
// FULLNAT addresses are routed into the device; traffic from the real
// servers and masqueraded subnets is steered into it.
func (g *Gateway) netPlan() NetPlan { return g.netPlanFor(g.desired) }

// netPlanFor is the wiring configuration c needs.
func (g *Gateway) netPlanFor(c nat.Config) NetPlan {
	p := NetPlan{Device: g.opts.Device, Table: g.opts.Table, RulePriority: g.opts.RulePriority}
	if p.Table == 0 {
		p.Table = 100
	}
	if p.RulePriority == 0 {
		p.RulePriority = 1000
	}
	addAddr := func(a netip.Addr) {
		if !slices.Contains(p.Addrs, a) {
			p.Addrs = append(p.Addrs, a)
		}
	}
	addSteer := func(s netip.Prefix) {
		if !slices.Contains(p.Steer, s) {
			p.Steer = append(p.Steer, s)
		}
	}
	for _, m := range c.Marks {
		for _, a := range m.Addrs() {
			addAddr(a)
		}
	}
	for _, s := range c.Services {
		if s.Fwmark == 0 {
			addAddr(s.VIP)
		}
		if s.Mode == nat.ModeFullNAT {
			continue // real servers answer the FULLNAT address, routed below
		}
		for _, b := range s.Backends {
			addSteer(netip.PrefixFrom(b.Addr, b.Addr.BitLen()))
		}
	}
	for _, m := range c.Masquerade {
		addAddr(m.To)
		addSteer(m.Subnet()) // outbound flows leave it; inbound ones' hosts answer from it
	}
	for _, a := range c.FullNATPool {
		addAddr(a)
	}
	for _, a := range c.FullNATTakeover {
		addAddr(a)
	}
	if !g.opts.L7Netstack {
		for _, s := range g.wiredL7(c) {
			p.L7 = append(p.L7, s.VIP)
		}
	}
	return p
}

// ownedAddrs are the addresses vsgate answers ARP/ND for in AF_PACKET
// mode: the plan's (VIPs, masquerade, FULLNAT) and the configured ones.
func (g *Gateway) ownedAddrs() []netip.Addr { return g.ownedAddrsFor(g.desired) }

// ownedAddrsFor is ownedAddrs for configuration c.
func (g *Gateway) ownedAddrsFor(c nat.Config) []netip.Addr {
	owned := g.netPlanFor(c).Addrs
	for _, a := range g.opts.AFPacket.Addrs {
		if !slices.Contains(owned, a) {
			owned = append(owned, a)
		}
	}
	return owned
}

// Reload replaces the configuration: the engine's services and rules
// (established flows to backends that stay are untouched; flows to removed
// backends drain), health checks, the routes for addresses that came or
// went, and the L7 services: those that stay take their new directives
// (connections stay open, and their next request goes by the new routes
// and certificates), new ones are listened on, removed ones stop
// listening and close each connection after the request it is serving.
// On error the running configuration stays. The gateway owns opts.L7's handlers: it
// releases them when it refuses the reload.
func (g *Gateway) Reload(opts Options) (err error) {
	defer func() {
		if err != nil {
			closeL7(opts.L7)
		}
		g.noteReload(err)
	}()
	g.mu.Lock()
	defer g.mu.Unlock()
	// The running configuration is g.desired (installLocked sets it);
	// opts.NAT is only New's starting point. Health and MasqDefaults
	// change with it, and the L7 services' handlers once it went through
	// (swapL7Locked): a refused reload puts back these, not the whole
	// struct.
	if err := g.checkBGPReload(opts.BGP); err != nil {
		return err
	}
	if err := g.checkSyncReload(opts.Sync); err != nil {
		return err
	}
	if opts.L7Netstack != g.opts.L7Netstack {
		return errors.New("l7.stack changed: the L7 services' stack is chosen at start; restart vsgate to change it")
	}
	if opts.L7MaxConnections != g.opts.L7MaxConnections {
		return errors.New("l7.max_connections changed: the L7 services' connection cap is set at start; restart vsgate to change it")
	}
	// An L4 service on an L7 service's address is the first thing to say
	// about such a change.
	if _, err := withL7Services(opts.NAT, opts.L7); err != nil {
		return err
	}
	// The L7 services the reload adds get their listeners first: a port
	// that cannot be had refuses the reload before anything changed.
	added := g.addedL7(opts.L7)
	lns, err := g.listenL7(added)
	if err != nil {
		return err
	}
	oldHealth, oldMasq, oldBGP, oldL7 := g.opts.Health, g.opts.MasqDefaults, g.opts.BGP, g.opts.L7
	oldWired := g.wiredL7(g.desired)
	// The services the reload removes drain: their wiring stays until
	// their connections ended.
	removed := g.drainL7Locked(opts.L7)
	g.opts.Health, g.opts.MasqDefaults, g.opts.BGP, g.opts.L7 = opts.Health, opts.MasqDefaults, opts.BGP, opts.L7
	undoWiring, err := g.rewireL7Link(oldWired, g.wiredL7(opts.NAT))
	if err == nil {
		if err = g.installLocked(opts.NAT); err != nil {
			err = errors.Join(err, undoWiring())
		}
	}
	if err != nil {
		g.opts.Health, g.opts.MasqDefaults, g.opts.BGP, g.opts.L7 = oldHealth, oldMasq, oldBGP, oldL7
		for _, f := range removed {
			delete(g.l7draining, f)
		}
		for _, l := range lns {
			for _, ln := range l {
				ln.Close()
			}
		}
		return err
	}
	g.opts.L7 = oldL7
	g.swapL7Locked(opts.L7, added, lns, oldWired)
	g.checker.Set(g.healthTargets())
	g.log.Info("configuration reloaded", "services", len(opts.NAT.Services), "l7", len(opts.L7))
	return nil
}

// noteReload keeps the last reload's time and outcome for the status
// page.
func (g *Gateway) noteReload(err error) {
	r := &ReloadStatus{At: time.Now().UTC().Truncate(time.Second), OK: err == nil}
	if err != nil {
		r.Error = err.Error()
	}
	g.lastReload.Store(r)
}

// ReloadFromSource rereads the configuration from Options.Source and
// applies it with Reload (SIGHUP and `vsgate adm reload`).
func (g *Gateway) ReloadFromSource() error { return g.reloadSource(nil, nil) }

// reloadSource applies data, the configuration file's contents, or with
// nil what Source.Read reads; files are contents the caller sent of
// files the configuration names, by path.
func (g *Gateway) reloadSource(data []byte, files map[string]string) error {
	g.mu.Lock()
	src := g.opts.Source
	g.mu.Unlock()
	if src == nil {
		return errors.New("no configuration source to reload from")
	}
	if data == nil {
		var err error
		if data, err = src.Read(); err != nil {
			if errors.Is(err, fs.ErrPermission) {
				return &unreadableSourceError{path: src.Path, err: err}
			}
			return err
		}
	}
	read := os.ReadFile
	if src.Files != nil {
		read = src.Files.Read
	}
	readFile := func(name string) ([]byte, error) {
		if b, ok := files[name]; ok {
			if src.Files != nil {
				src.Files.Keep(name, []byte(b))
			}
			return []byte(b), nil
		}
		b, err := read(name)
		if errors.Is(err, fs.ErrPermission) {
			return nil, &unreadableSourceError{path: name, err: err}
		}
		return b, err
	}
	opts, err := src.Parse(data, readFile)
	if err != nil {
		return err
	}
	return g.Reload(opts)
}

// unreadableSourceError is a file the configuration is (or names) that
// the gateway's user may not read.
type unreadableSourceError struct {
	path string
	err  error
}

func (e *unreadableSourceError) Error() string {
	return fmt.Sprintf("%v: vsgate runs as uid %d, which may not read it (vsgate adm reload reads it with its caller's rights)", e.err, os.Getuid())
}

func (e *unreadableSourceError) Unwrap() error { return e.err }

// installLocked makes desired the operator's configuration and gives the
// engine that configuration with the health checks' verdicts applied,
// rewiring for addresses that changed. All or nothing: the addresses are
// checked first; the new wiring is made beside the old (what both need is
// never removed); then the engine takes the configuration; only then does
// the old wiring's remainder go. If any step fails, the gateway is left
// as it was and the error says which step. Caller holds g.mu.
func (g *Gateway) installLocked(desired nat.Config) error {
	desired, err := withL7Services(desired, g.wiredL7(desired)) // the L7 services being installed (Reload sets them first) and those draining
	if err != nil {
		return err
	}
	if err := checkAddrs(desired); err != nil {
		return err
	}
	if g.link == nil {
		for _, s := range desired.Services {
			if s.Mode == nat.ModeDR {
				return fmt.Errorf("service %s is direct routing (-g): that needs the AF_PACKET device (device.type: afpacket), which writes the real server's MAC into the frame; a TUN carries no frames", adm.ServiceKey(s))
			}
		}
	}
	eff := desired
	eff.Services = slices.Clone(desired.Services)
	for i := range eff.Services {
		s := &eff.Services[i]
		s.Backends = slices.Clone(s.Backends)
		for j := range s.Backends {
			if g.down[healthKey(*s, s.Backends[j])] {
				s.Backends[j].Down = true
			}
		}
	}
	var next *netState
	removeOld := func() error { return nil }
	switch {
	case g.link != nil:
		for _, a := range g.netPlanFor(desired).Addrs {
			if slices.Contains(g.opts.AFPacket.Addrs, a) {
				return fmt.Errorf("%v is one of the gateway's own addresses (device.addresses): a service, masquerade or FULLNAT address must be another", a)
			}
		}
		if err := g.link.SetOwned(g.ownedAddrsFor(desired)); err != nil {
			return fmt.Errorf("AF_PACKET addresses: %w", err)
		}
	case g.net != nil:
		h, err := netlink.NewHandle()
		if err != nil {
			return err
		}
		defer h.Close()
		if next, removeOld, err = rewire(h, g.net, g.netPlanFor(desired)); err != nil {
			return fmt.Errorf("network wiring (nothing changed): %w", err)
		}
	}
	if err := g.engine.Update(eff); err != nil {
		switch {
		case g.link != nil:
			err = errors.Join(err, g.link.SetOwned(g.ownedAddrs()))
		case next != nil:
			err = errors.Join(err, next.undoNew())
		}
		return err
	}
	g.desired = desired
	if next != nil {
		g.net = next
		if err := removeOld(); err != nil {
			g.log.Warn("rewire: removing the old wiring", "err", err)
		}
	}
	g.announceLocked()
	return nil
}

// checkAddrs refuses a configuration with an address no client can reach
// through a gateway (nat.CheckServiceAddr), whatever the device.
func checkAddrs(c nat.Config) error {
	for _, s := range c.Services {
		if s.Fwmark != 0 {
			continue // its addresses are its marks'
		}
		if err := nat.CheckServiceAddr(s.VIP); err != nil {
			return fmt.Errorf("service %s: %w", adm.ServiceKey(s), err)
		}
	}
	for _, m := range c.Marks {
		for _, a := range m.Addrs() {
			if err := nat.CheckServiceAddr(a); err != nil {
				return fmt.Errorf("mark %d of %v: %w", m.Mark, m.Dst, err)
			}
		}
	}
	for _, m := range c.Masquerade {
		if err := nat.CheckServiceAddr(m.To); err != nil {
			return fmt.Errorf("masquerade %v: %w", m.Subnet(), err)
		}
	}
	for _, a := range c.FullNATPool {
		if err := nat.CheckServiceAddr(a); err != nil {
			return fmt.Errorf("FULLNAT pool: %w", err)
		}
	}
	return nil
}
