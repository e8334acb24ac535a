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

// healthChanged applies a checker verdict.
func (g *Gateway) healthChanged(key string, up bool, why string) {
	for _, s := range g.opts.L7 {
		for _, m := range s.Members {
			if l7HealthKey(s.VIP, m) == key && s.SetDown != nil {
				s.SetDown(m, !up)
				g.log.Info("l7 member health", "member", key, "up", up, "check", why)
				return
			}
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if up {
		delete(g.down, key)
		g.log.Info("backend up", "backend", key, "check", why)
	} else {
		g.down[key] = true
		g.log.Warn("backend down", "backend", key, "check", why)
	}
	if err := g.installLocked(g.desired); err != nil {
		g.log.Error("applying health state", "err", err)
	}
}
