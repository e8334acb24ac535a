package gateway

import (
	"net/netip"

	"github.com/vsgate/vsgate/gateway/adm"
	"github.com/vsgate/vsgate/gateway/health"
	"github.com/vsgate/vsgate/nat"
)

// healthKey names a backend for the checker.
func healthKey(s nat.Service, b nat.Backend) string { return adm.BackendKey(s, b) }

// healthTargets lists every backend of every checked service.
func (g *Gateway) healthTargets() []health.Target {
	var ts []health.Target
	for _, s := range g.desired.Services {
		spec, ok := g.opts.Health[adm.ServiceKey(s)]
		if !ok {
			continue
		}
		for _, b := range s.Backends {
			port := b.Port
			if spec.Port != 0 {
				port = spec.Port
			}
			ts = append(ts, health.Target{Key: healthKey(s, b), Addr: netip.AddrPortFrom(b.Addr, port), Spec: spec})
		}
	}
	for _, s := range g.opts.L7 {
		if s.Health == nil {
			continue
		}
		for _, m := range s.Members {
			addr := m
			if s.Health.Port != 0 {
				addr = netip.AddrPortFrom(m.Addr(), s.Health.Port)
			}
			ts = append(ts, health.Target{Key: l7HealthKey(s.VIP, m), Addr: addr, Spec: *s.Health})
		}
	}
	return ts
}

// l7HealthKey names an L7 member for the checker.
func l7HealthKey(vip, member netip.AddrPort) string {
	return "L7 " + vip.String() + " " + member.String()
}

// healthChanged applies a checker verdict, unless the checker has been
// Set anew since its prober saw it (Set runs under g.mu, so the answer
// holds while g.mu is held here).
func (g *Gateway) healthChanged(v health.Verdict) {
	// Under the lock: a reload replaces the L7 services and their handlers.
	g.mu.Lock()
	defer g.mu.Unlock()
	if !v.Current() {
		return
	}
	for _, s := range g.opts.L7 {
		for _, m := range s.Members {
			if l7HealthKey(s.VIP, m) == v.Key && s.Proxy != nil {
				s.Proxy.SetMemberDown(m, !v.Up)
				g.log.Info("l7 member health", "member", v.Key, "up", v.Up, "check", v.Why)
				if v.Up {
					delete(g.l7down, v.Key)
				} else {
					g.l7down[v.Key] = true
				}
				g.announceLocked()
				return
			}
		}
	}
	if v.Up {
		delete(g.down, v.Key)
		g.log.Info("backend up", "backend", v.Key, "check", v.Why)
	} else {
		g.down[v.Key] = true
		g.log.Warn("backend down", "backend", v.Key, "check", v.Why)
	}
	if err := g.installLocked(g.desired); err != nil {
		g.log.Error("applying health state", "err", err)
	}
}
