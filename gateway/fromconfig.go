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
// to the gateway's options, for New and for a Reload alike: services,
// masquerade, health checks of real servers and L7 members, the device,
// the control socket, captures, metrics, and a proxy for every L7
// service. The gateway given the options owns the proxies (it closes them
// when a reload replaces them, or at Close; a refused reload closes the
// ones it was given). Owner and Source are the caller's to set. readFile
// reads the files the L7 services' TLS directives name.
func FromConfig(cfg *config.Config, log *slog.Logger, readFile func(string) ([]byte, error)) (Options, error) {
	n, err := cfg.NAT()
	if err != nil {
		return Options{}, err
	}
	o := Options{
		NAT: n, Device: cfg.Device.Name, Queues: cfg.Device.Queues, Offloads: cfg.Device.Offloads,
		ControlSocket: cfg.Control.Socket, PcapDir: cfg.Pcap.Dir, Logger: log, L7Netstack: cfg.L7Stack == config.L7Netstack, L7MaxConnections: cfg.L7MaxConnections,
		MasqDefaults: adm.Defaults{Inside: cfg.MasqueradeInside},
		Health:       map[string]health.Spec{},
	}
	if cfg.MasqueradeTo.IsValid() {
		o.MasqDefaults.MasqTo = []netip.Addr{cfg.MasqueradeTo}
	}
	if cfg.Device.Ethernet() {
		o.AFPacket = &AFPacketOptions{Interfaces: cfg.Device.Interfaces, Queues: cfg.Device.Queues, Addrs: cfg.Device.Addresses,
			XDP: cfg.Device.Type == config.DeviceAFXDP}
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
	if o.L7, err = l7Services(cfg, log, readFile); err != nil {
		return Options{}, err
	}
	return o, nil
}

// healthSpec is a service's health: block as the checker takes it.
func healthSpec(h *config.Health) health.Spec {
	return health.Spec{Type: h.Type, Interval: h.Interval, Timeout: h.Timeout, Rise: h.Rise, Fall: h.Fall,
		Path: h.Path, Expect: h.Expect, Port: h.Port}
}

// l7Services builds a proxy for every HTTP service; on error it has
// closed those it built.
func l7Services(cfg *config.Config, log *slog.Logger, readFile func(string) ([]byte, error)) ([]L7Service, error) {
	var out []L7Service
	closeAll := func() { closeL7(out) }
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
			return nil, err
		}
		p, err := proxy.New(pc, proxy.Options{ServerName: name, Logger: log, ReadFile: readFile})
		if err != nil {
			closeAll()
			return nil, err
		}
		svc := L7Service{VIP: s.VIP, Proxy: p}
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
	return out, nil
}

// closeL7 releases the L7 services' proxies.
func closeL7(services []L7Service) {
	for _, s := range services {
		if s.Proxy != nil {
			_ = s.Proxy.Close()
		}
	}
}
