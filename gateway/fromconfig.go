package gateway

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"

	"github.com/vsgate/vsgate/gateway/adm"
	"github.com/vsgate/vsgate/gateway/config"
	"github.com/vsgate/vsgate/gateway/connsync"
	"github.com/vsgate/vsgate/gateway/health"
	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/proxy"
)

// FromConfig is the one conversion from a configuration (gateway/config)
// to the gateway's options: services, masquerade, health checks of real
// servers and L7 members, the device, the control socket, captures,
// metrics, and a proxy for every L7 service. closeL7 releases the proxies
// (after Close). Owner and Source are the caller's to set.
func FromConfig(cfg *config.Config, log *slog.Logger) (opts Options, closeL7 func(), err error) {
	if opts, err = ReloadOptions(cfg, log); err != nil {
		return Options{}, nil, err
	}
	if opts.L7, closeL7, err = l7Services(cfg, log); err != nil {
		return Options{}, nil, err
	}
	return opts, closeL7, nil
}

// ReloadOptions turns a configuration into the options a reload applies:
// services, masquerade, health checks and the rest FromConfig sets, but
// no L7 services (they are fixed at start).
func ReloadOptions(cfg *config.Config, log *slog.Logger) (Options, error) {
	n, err := cfg.NAT()
	if err != nil {
		return Options{}, err
	}
	o := Options{
		NAT: n, Device: cfg.Device.Name, Queues: cfg.Device.Queues, Offloads: cfg.Device.Offloads,
		ControlSocket: cfg.Control.Socket, PcapDir: cfg.Pcap.Dir, Logger: log, L7Netstack: cfg.L7Stack == config.L7Netstack,
		MasqDefaults: adm.Defaults{Inside: cfg.MasqueradeInside},
		Health:       map[string]health.Spec{},
	}
	if cfg.MasqueradeTo.IsValid() {
		o.MasqDefaults.MasqTo = []netip.Addr{cfg.MasqueradeTo}
	}
	if cfg.Device.Type == config.DeviceAFPacket {
		o.AFPacket = &AFPacketOptions{Interfaces: cfg.Device.Interfaces, Queues: cfg.Device.Queues, Addrs: cfg.Device.Addresses}
	}
	if cfg.Metrics.Listen.IsValid() {
		o.MetricsListen = cfg.Metrics.Listen.String()
		o.MetricsPprof = cfg.Metrics.Pprof
	}
	for i, s := range cfg.Services {
		if s.Health == nil {
			continue
		}
		o.Health[adm.ServiceKey(n.Services[i])] = healthSpec(s.Health)
	}
	if s := cfg.Sync; s != nil {
		o.Sync = &connsync.Config{Listen: s.Listen, Peers: s.Peers, Key: []byte(s.Key), Master: s.Master, Backup: s.Backup,
			Interval: s.Interval, Refresh: s.Refresh, Rate: s.Rate}
	}
	if b := cfg.BGP; b != nil {
		o.BGP = &BGPOptions{Speaker: b.Speaker, Prefixes: b.Prefixes, Drain: b.Drain, Announce: map[string]string{}}
		for i, s := range cfg.Services {
			o.BGP.Announce[adm.ServiceKey(n.Services[i])] = s.Announce
		}
	}
	return o, nil
}

// healthSpec is a service's health: block as the checker takes it.
func healthSpec(h *config.Health) health.Spec {
	return health.Spec{Type: h.Type, Interval: h.Interval, Timeout: h.Timeout, Rise: h.Rise, Fall: h.Fall,
		Path: h.Path, Expect: h.Expect, Port: h.Port}
}

// l7Services builds a proxy for every HTTP service. They are fixed for the
// life of the process: a reload changes L4 services only.
func l7Services(cfg *config.Config, log *slog.Logger) ([]L7Service, func(), error) {
	var out []L7Service
	var proxies []*proxy.Proxy
	closeAll := func() {
		for _, p := range proxies {
			p.Close()
		}
	}
	name, _ := os.Hostname()
	for _, s := range cfg.Services {
		if s.Mode != nat.ModeL7 || s.L7 == nil {
			continue
		}
		source := s.L7.Source
		if source == "" {
			source = fmt.Sprintf("l7 directives of %v", s.VIP)
		}
		pc, err := proxy.ParseDirectives(s.L7.Text, source, s.L7.FirstLine)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		p, err := proxy.New(pc, proxy.Options{ServerName: name, Logger: log})
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		proxies = append(proxies, p)
		svc := L7Service{VIP: s.VIP, Handler: p, SetDown: p.SetMemberDown}
		for _, m := range p.Members() {
			if ap, err := netip.ParseAddrPort(m.Addr); err == nil {
				svc.Members = append(svc.Members, ap)
			}
		}
		if s.Health != nil {
			spec := healthSpec(s.Health)
			svc.Health = &spec
		}
		out = append(out, svc)
	}
	return out, closeAll, nil
}
