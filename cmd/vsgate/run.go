package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vsgate/vsgate/gateway"
	"github.com/vsgate/vsgate/gateway/adm"
	"github.com/vsgate/vsgate/gateway/config"
	"github.com/vsgate/vsgate/gateway/health"
	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/proxy"
)

const runUsage = `usage: vsgate run -c FILE [--pcap FILE]
  Run the gateway in this network namespace: create the TUN device, route
  the configured VIPs, masquerade and FULLNAT addresses into it, steer the
  real servers' traffic through it, and translate. SIGHUP reloads FILE (a
  bad file leaves the running configuration in place); SIGINT and SIGTERM
  stop it and remove every route, rule and setting it added.
`

// runRun is `vsgate run`.
func runRun(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, runUsage) }
	file := fs.String("c", "", "configuration file")
	pcapFile := fs.String("pcap", "", "write what enters and leaves the gateway to this pcap file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *file == "" || fs.NArg() != 0 {
		fmt.Fprint(stderr, runUsage)
		return 2
	}
	cfg, err := config.Load(*file)
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	log := newLogger(stderr, cfg.Log)
	opts, err := options(cfg, log)
	if err != nil {
		log.Error("configuration", "err", err)
		return 1
	}
	l7, closeL7, err := l7Services(cfg, log)
	if err != nil {
		log.Error("l7 services", "err", err)
		return 1
	}
	defer closeL7()
	opts.L7 = l7
	opts.Load = func() (gateway.Options, error) {
		c, err := config.Load(*file)
		if err != nil {
			return gateway.Options{}, err
		}
		return options(c, log)
	}
	g, err := gateway.New(opts)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	defer func() {
		if err := g.Close(); err != nil {
			log.Error("stop", "err", err)
		}
	}()
	if *pcapFile != "" {
		if err := g.StartCapture(*pcapFile); err != nil {
			log.Error("pcap", "err", err)
			return 1
		}
	}
	dropCapabilities(log)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if err := g.ReloadFromSource(); err != nil {
				log.Error("reload refused: the running configuration stays", "err", err)
			}
		}
	}()
	device := opts.Device
	if opts.AFPacket != nil {
		device = "afpacket " + strings.Join(opts.AFPacket.Interfaces, ",")
	}
	log.Info("vsgate running", "config", *file, "device", device, "queues", opts.Queues,
		"services", len(opts.NAT.Services), "control", opts.ControlSocket, "metrics", opts.MetricsListen)
	if err := g.Run(ctx); err != nil {
		log.Error("run", "err", err)
		return 1
	}
	log.Info("vsgate stopped")
	return 0
}

// options turns a configuration into gateway options.
func options(cfg *config.Config, log *slog.Logger) (gateway.Options, error) {
	n, err := cfg.NAT()
	if err != nil {
		return gateway.Options{}, err
	}
	o := gateway.Options{
		NAT: n, Device: cfg.Device.Name, Queues: cfg.Device.Queues, Offloads: cfg.Device.Offloads,
		ControlSocket: cfg.Control.Socket, Logger: log,
		MasqDefaults: adm.Defaults{Inside: cfg.MasqueradeInside},
		Health:       map[string]health.Spec{},
	}
	if cfg.MasqueradeTo.IsValid() {
		o.MasqDefaults.MasqTo = []netip.Addr{cfg.MasqueradeTo}
	}
	if cfg.Device.Type == config.DeviceAFPacket {
		o.AFPacket = &gateway.AFPacketOptions{Interfaces: cfg.Device.Interfaces, Queues: cfg.Device.Queues, Addrs: cfg.Device.Addresses}
	}
	if cfg.Metrics.Listen.IsValid() {
		o.MetricsListen = cfg.Metrics.Listen.String()
		o.MetricsPprof = cfg.Metrics.Pprof
	}
	for i, s := range cfg.Services {
		if s.Health == nil {
			continue
		}
		h := s.Health
		o.Health[adm.ServiceKey(n.Services[i])] = health.Spec{Type: h.Type, Interval: h.Interval, Timeout: h.Timeout,
			Rise: h.Rise, Fall: h.Fall, Path: h.Path, Expect: h.Expect, Port: h.Port}
	}
	return o, nil
}

// newLogger builds the slog logger the configuration asks for.
func newLogger(w io.Writer, c config.Log) *slog.Logger {
	ho := &slog.HandlerOptions{Level: c.Level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

// printConfigError prints a configuration error one problem per line.
func printConfigError(w io.Writer, err error) {
	var problems config.Errors
	if errors.As(err, &problems) {
		for _, p := range problems {
			fmt.Fprintln(w, p)
		}
		return
	}
	fmt.Fprintf(w, "vsgate: %v\n", err)
}

// dropCapabilities keeps only CAP_NET_ADMIN once the device and routes are
// set up: reloads and the teardown at exit still change routes, nothing
// else needs privilege. Capabilities are per thread in Linux, so the
// change must reach every thread of the Go runtime at once
// (syscall.AllThreadsSyscall), which Go allows only in binaries built
// without cgo: `make build` builds so; otherwise the drop is skipped with
// a warning.
func dropCapabilities(log *slog.Logger) {
	keep := uint32(1) << unix.CAP_NET_ADMIN
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{{Effective: keep, Permitted: keep}}
	// The conversions stay in the call expression (unsafe.Pointer rule 4).
	_, _, errno := syscall.AllThreadsSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	if errno != 0 {
		log.Warn("capabilities not dropped", "err", errno.Error(), "hint", "build with CGO_ENABLED=0 (make build)")
		return
	}
	log.Info("capabilities dropped", "kept", "CAP_NET_ADMIN")
}

// l7Services builds a proxy for every HTTP service. They are fixed for the
// life of the process: a reload changes L4 services only.
func l7Services(cfg *config.Config, log *slog.Logger) ([]gateway.L7Service, func(), error) {
	var out []gateway.L7Service
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
		source := s.L7.File
		if source == "" {
			source = fmt.Sprintf("l7 directives of %v", s.VIP)
		}
		pc, err := proxy.ParseDirectives(s.L7.Text, source)
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
		svc := gateway.L7Service{VIP: s.VIP, Handler: p, SetDown: p.SetMemberDown}
		for _, m := range p.Members() {
			if ap, err := netip.ParseAddrPort(m.Addr); err == nil {
				svc.Members = append(svc.Members, ap)
			}
		}
		if h := s.Health; h != nil {
			svc.Health = &health.Spec{Type: h.Type, Interval: h.Interval, Timeout: h.Timeout, Rise: h.Rise, Fall: h.Fall,
				Path: h.Path, Expect: h.Expect, Port: h.Port}
		}
		out = append(out, svc)
	}
	return out, closeAll, nil
}
