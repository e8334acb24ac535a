package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vsgate/vsgate/bgp"
	"github.com/vsgate/vsgate/gateway/adm"
	"github.com/vsgate/vsgate/gateway/connsync"
	"github.com/vsgate/vsgate/gateway/health"
	"github.com/vsgate/vsgate/gateway/names"
	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
	"github.com/vsgate/vsgate/packet/afpacket"
	"github.com/vsgate/vsgate/packet/device"
	"github.com/vsgate/vsgate/packet/pcap"
	"github.com/vsgate/vsgate/proxy"
	"github.com/vsgate/vsgate/proxy/netstack"
)

// Options configure a Gateway. cmd/vsgate builds them from the YAML
// configuration (gateway/config); tests build them directly.
type Options struct {
	// NAT is the engine's configuration: services, masquerade, FULLNAT
	// pool, timeouts, table size. Health checks mark backends down on top
	// of it; they never change it.
	NAT nat.Config
	// Health maps a service ("tcp VIP:port", as adm.ServiceKey names it)
	// to how its backends are checked. Services without an entry are not
	// checked.
	Health map[string]health.Spec

	// Device is the TUN interface to create (or open) with Queues queues,
	// one worker each. Ignored when Devices is set.
	Device string
	Queues int
	// Offloads opens the TUN with the virtio-net header and TSO/USO
	// (tun.OpenOffload): the kernel hands over 64 KiB super-packets and
	// partial checksums, which the engine translates whole. Falls back to
	// a plain TUN, with a warning, when the kernel refuses.
	Offloads bool
	// Devices, when set, are used instead of opening a TUN (tests use
	// tuntest.ChanDevice); then no network wiring is done either.
	Devices []device.Device
	// AFPacket, when set, runs the gateway on Ethernet interfaces through
	// AF_PACKET (packet/afpacket) instead of a TUN: vsgate answers ARP
	// and neighbour discovery for its addresses and sends frames itself;
	// no routes or rules are added. Device, Queues and Offloads are
	// ignored.
	AFPacket *AFPacketOptions

	// Table and RulePriority place the policy rule that steers the real
	// servers' traffic into the device (DESIGN.md).
	Table, RulePriority int

	// ControlSocket is the path of the control socket; empty for none.
	ControlSocket string
	// Owner, when set, is the user the process runs as after setup
	// (vsgate run drops to it once New returns): the control socket, and
	// the directories New creates for it and for captures, are made
	// theirs.
	Owner *Owner
	// PcapDir is the only directory captures are written to; empty means
	// captures are refused.
	PcapDir string
	// MetricsListen is where Prometheus metrics are served (/metrics);
	// empty for none.
	MetricsListen string
	// MetricsPprof also serves Go's profiles under /debug/pprof/ there.
	MetricsPprof bool
	// Version is the binary's version line, for the status page.
	Version string

	// MasqDefaults are the addresses `ipchains -j MASQ` rules without
	// --to get (masquerade_to, masquerade_inside).
	MasqDefaults adm.Defaults
	// Names resolves host and service names in adm commands, and back
	// for listings without -n; nil means the system's (names.System).
	Names names.Resolver

	// Source is where the configuration comes from, for `vsgate adm
	// reload` and ReloadFromSource; nil means there is none.
	Source *Source

	// L7 are the application-layer services: their VIP's TCP is
	// terminated by the namespace's kernel (or, with L7Netstack, by the
	// gateway's netstack) and served by Proxy. NAT must
	// list each as a service with Mode nat.ModeL7 (so the engine hands
	// its packets over to the netstack, or knows they are not its own);
	// New adds those entries itself if they are missing.
	L7 []L7Service
	// L7Netstack terminates the L7 services' TCP in gVisor's netstack fed
	// from the device, instead of the kernel's TCP through listeners on
	// the VIPs (l7.stack: netstack).
	L7Netstack bool
	// L7MaxConnections caps each L7 service's client connections (idle
	// keep-alive ones included); 0 means proxy.DefaultMaxConnections.
	L7MaxConnections int

	// BGP, when set, runs the embedded BGP speaker (gateway/bgp.go).
	BGP *BGPOptions
	// Sync, when set, runs the connection sync with peer gateways
	// (gateway/connsync, gateway/sync.go).
	Sync *connsync.Config

	Logger *slog.Logger
}

// Owner is a user and group by number.
type Owner struct{ UID, GID int }

// Source is a configuration file the gateway can reload.
type Source struct {
	Path string
	// Read reads the file at Path; Parse turns its contents into options,
	// reading the files they name (TLS certificates and keys) with
	// readFile. A gateway that runs as an unprivileged user may be unable
	// to read a file only root can; `vsgate adm reload` then sends its
	// contents, read with its caller's rights.
	Read  func() ([]byte, error)
	Parse func(data []byte, readFile func(string) ([]byte, error)) (Options, error)
	// Files keeps the named files as last read (nil: none kept).
	Files *FileCache
}

// AFPacketOptions are the AF_PACKET device's settings (the topology it
// expects is drawn in packet/afpacket's package doc).
type AFPacketOptions struct {
	// Interfaces are the Ethernet interfaces vsgate owns: client side and
	// server side. The kernel keeps its own addresses on them.
	Interfaces []string
	// Queues is the number of sockets, and workers, per interface
	// (PACKET_FANOUT hash).
	Queues int
	// Addrs are addresses vsgate answers for besides those the NAT
	// configuration names (VIPs, masquerade and FULLNAT addresses):
	// typically the real servers' default gateway.
	Addrs []netip.Addr
	// XDP carries the frames through AF_XDP sockets where XDP attaches
	// (afpacket.LinkConfig.XDP; device.type: afxdp).
	XDP bool
}

// L7Service is one HTTP virtual service served in the gateway.
type L7Service struct {
	VIP netip.AddrPort
	// Proxy serves its requests; the gateway closes it once a reload
	// replaced it or the gateway closed (requests still running on it
	// finish).
	Proxy *proxy.Proxy
	// Health checks Members (the proxy's real servers) when set, and
	// the proxy is told which are down: L4 and L7 share the checker.
	Health  *health.Spec
	Members []netip.AddrPort
}

// Gateway is a running virtual server: devices, workers, the engine,
// network wiring, health checks and the control socket. Create it with
// New, run it with Run. Methods are safe for concurrent use.
type Gateway struct {
	log         *slog.Logger
	engine      *nat.Engine
	devices     []device.Device
	link        *afpacket.Link // the AF_PACKET device, when that is the device
	net         *netState
	checker     *health.Checker
	control     *ControlServer
	metrics     *http.Server
	metricsAddr net.Addr
	start       time.Time
	names       names.Resolver
	flows       *flowLog // writes the engine's flow records (nil: a caller's FlowLogger does)

	mu          sync.Mutex // guards opts, desired, down and captureFile; serialises changes
	captureFile *os.File
	opts        Options
	desired     nat.Config      // what the operator asked for (config file, adm)
	down        map[string]bool // backends health checks hold down, by health key
	l7down      map[string]bool // L7 members health checks hold down, by l7HealthKey
	speaker     *bgp.Speaker    // nil without BGP
	sync        *connsync.Daemon
	daemonMu    sync.Mutex // serializes --start-daemon and --stop-daemon (Gateway.daemon)
	withdrawn   bool       // a stop has withdrawn the BGP routes

	capture pcap.Writer                     // what enters and leaves, when started (--pcap, vsgate adm pcap)
	l7      *netstack.Stack                 // the L7 services' stack with L7Netstack; nil for the kernel's
	l7front map[netip.AddrPort]*proxy.Front // each L7 service's front, by VIP; a reload swaps its proxy
	// l7draining are the L7 services a reload removed whose connections
	// are still ending (their fronts shut down): their wiring and engine
	// entries stay until the last one ended (awaitDrain). Guarded by mu.
	l7draining map[*proxy.Front]L7Service
	writeMu    []sync.Mutex // per device: the worker and the netstack both write
	rates      atomic.Pointer[map[string]adm.Rates]
	lastReload atomic.Pointer[ReloadStatus] // the last reload's outcome (status page); nil before one
	counts     []workerCounts
	// mtu says how big a packet may be where it leaves (pmtu.go); nil
	// for devices the gateway did not open (tests).
	mtu  mtuLookup
	pmtu pmtuCounts
}

// workerCounts are one worker's packet counters, for metrics.
type workerCounts struct {
	packets, dropped, toL7 atomic.Uint64
	_                      [40]byte
}

// New builds the gateway: the engine, the devices, the network wiring, the
// health checks and the control socket. Nothing moves packets until Run.
// On error everything it set up is undone.
func New(opts Options) (g *Gateway, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.NAT, err = withL7Services(opts.NAT, opts.L7); err != nil {
		return nil, err
	}
	g = &Gateway{log: opts.Logger, opts: opts, desired: opts.NAT, down: map[string]bool{}, l7down: map[string]bool{}, start: time.Now(), names: opts.Names}
	if g.names == nil {
		g.names = &names.System{}
	}
	defer func() {
		if err != nil {
			g.Close()
			g = nil
		}
	}()
	if err := checkAddrs(opts.NAT); err != nil {
		return g, err
	}
	for _, s := range opts.NAT.Services {
		if s.Mode == nat.ModeDR && opts.AFPacket == nil {
			return g, fmt.Errorf("service %s is direct routing: that needs the AF_PACKET device (device.type: afpacket), which writes the real server's MAC into the frame; a TUN carries no frames", adm.ServiceKey(s))
		}
	}
	if opts.NAT.FlowLogger == nil {
		g.flows = newFlowLog(g.log)
		opts.NAT.FlowLogger = g.flows
	}
	if g.engine, err = nat.New(opts.NAT); err != nil {
		return g, err
	}
	g.devices = opts.Devices
	if len(g.devices) == 0 && opts.AFPacket != nil {
		if err := g.openLink(); err != nil {
			return g, err
		}
	} else if len(g.devices) == 0 {
		if g.devices, err = openDevices(opts, g.log); err != nil {
			return g, fmt.Errorf("TUN device %s: %w", opts.Device, err)
		}
		h, err := netlink.NewHandle()
		if err != nil {
			return g, err
		}
		defer h.Close()
		removed, err := removeLeftovers(h, g.netPlan())
		if len(removed) > 0 {
			g.log.Warn("removed the wiring a vsgate that did not stop cleanly left behind", "removed", removed)
		}
		if err != nil {
			return g, fmt.Errorf("network setup: %w", err)
		}
		if g.net, err = setupNetwork(h, g.netPlan()); err != nil {
			return g, fmt.Errorf("network setup: %w", err)
		}
		g.mtu = newKernelMTU(opts.Device)
	}
	g.counts = make([]workerCounts, len(g.devices))
	g.writeMu = make([]sync.Mutex, len(g.devices))
	// A netstack is made even without L7 services, so that a reload can
	// add one: the workers hand it packets from the start.
	if len(opts.L7) > 0 || opts.L7Netstack {
		if err := g.startL7(opts.L7); err != nil {
			return g, err
		}
	}
	g.checker = health.New(g.healthChanged)
	g.checker.Set(g.healthTargets())
	if opts.PcapDir != "" {
		if err := makeOwnedDir(opts.PcapDir, opts.Owner); err != nil {
			return g, fmt.Errorf("capture directory: %w", err)
		}
	}
	if opts.ControlSocket != "" {
		if g.control, err = ListenControl(opts.ControlSocket, opts.Owner, g.handle); err != nil {
			return g, err
		}
	}
	if opts.MetricsListen != "" {
		if g.metrics, err = g.serveMetrics(opts.MetricsListen, opts.MetricsPprof); err != nil {
			return g, err
		}
	}
	if opts.Sync != nil {
		if g.sync, err = connsync.Start(*opts.Sync, g.engine, g.log); err != nil {
			return g, err
		}
	}
	if opts.BGP != nil {
		if err := g.startBGP(); err != nil {
			return g, err
		}
	}
	return g, nil
}

// openLink opens the AF_PACKET device, makes sure the kernel does not
// forward copies of the frames vsgate handles, and announces the owned
// addresses.
func (g *Gateway) openLink() (err error) {
	o := g.opts.AFPacket
	g.link, err = afpacket.OpenLink(afpacket.LinkConfig{Interfaces: o.Interfaces, Queues: o.Queues, Owned: g.ownedAddrs(), Logger: g.log, XDP: o.XDP})
	if err != nil {
		return fmt.Errorf("AF_PACKET device: %w", err)
	}
	g.devices = g.link.Ports()
	g.mtu = g.link
	g.link.SetCapture(&g.capture)
	// The kernel sees every frame vsgate sees. Frames to vsgate's
	// addresses are not for it, and with forwarding on it would route
	// them a second time.
	h, err := netlink.NewHandle()
	if err != nil {
		return err
	}
	g.net = &netState{h: h}
	for _, ifc := range o.Interfaces {
		if err := g.net.sysctl("net/ipv4/conf/"+ifc+"/forwarding", "0"); err != nil {
			return err
		}
	}
	if v, err := os.ReadFile("/proc/sys/net/ipv6/conf/all/forwarding"); err == nil && strings.TrimSpace(string(v)) != "0" {
		g.log.Warn("turning IPv6 forwarding off in this namespace while vsgate runs: the kernel would forward copies of vsgate's packets")
		if err := g.net.sysctl("net/ipv6/conf/all/forwarding", "0"); err != nil {
			return err
		}
	}
	// The L7 services' clients are the kernel's (TUN mode wires this in
	// its plan).
	plan := g.netPlan()
	if removed, err := removeLeftovers(h, plan); err != nil {
		return err
	} else if len(removed) > 0 {
		g.log.Warn("removed the wiring a vsgate that did not stop cleanly left behind", "removed", removed)
	}
	steps, err := l7Steps(h, plan)
	if err != nil {
		return err
	}
	if err := g.net.apply(steps); err != nil {
		return fmt.Errorf("L7 wiring: %w", err)
	}
	if !g.opts.L7Netstack {
		// With AF_XDP, the frames of L7 services must be left to the
		// kernel in the first place.
		if err := g.link.SetL7(plan.L7); err != nil {
			return err
		}
	}
	g.link.Announce()
	g.log.Info("AF_PACKET device", "interfaces", o.Interfaces, "queues", max(o.Queues, 1), "owned", g.link.Owned())
	return nil
}

// Engine returns the gateway's engine (for metrics and tests).
func (g *Gateway) Engine() *nat.Engine { return g.engine }

// Run moves packets until ctx is done: one worker per device queue, the
// engine's clock and expiry, and the rate estimator. It returns when every
// worker has stopped; call Close afterwards. With BGP, a stop (ctx done)
// first withdraws every route and keeps forwarding for BGPOptions.Drain,
// so that what the routers sent before they moved the flows elsewhere
// still gets through.
func (g *Gateway) Run(parent context.Context) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(g.devices))
	for i, d := range g.devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.work(i, d); err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("worker %d: %w", i, err)
				cancel()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		g.housekeeping(ctx)
	}()
	<-ctx.Done()
	if parent.Err() != nil && g.opts.BGP != nil {
		g.withdrawRoutes()
		g.log.Info("bgp: routes withdrawn, draining", "for", g.opts.BGP.Drain, "flows", g.engine.Flows())
		select {
		case <-time.After(g.opts.BGP.Drain):
		case err := <-errs:
			errs <- err
		}
	}
	for _, d := range g.devices {
		d.Close() // unblocks the workers' reads
	}
	wg.Wait()
	// The flows still open end here, as far as their logs go.
	g.engine.LogLiveFlows()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// offloader is a device that takes packets with a partial checksum or
// to be segmented (tun.OffloadTUN, afpacket.Port): SetOffload says which,
// in the packet's headroom.
type offloader interface {
	SetOffload(buf []byte, offset int, o packet.Offload)
}

// segmenter is a device whose packets may be GSO super-packets or carry
// partial checksums (tun.OffloadTUN, afpacket.Port): Segments hands out
// plain ones, SegmentCount says how many, ChecksumTrusted whether the
// kernel vouched for the checksum.
type segmenter interface {
	Segments(buf []byte, offset, n int, fn func([]byte)) bool
	SegmentCount(buf []byte, offset, n int) int
	ChecksumTrusted(buf []byte, offset int) bool
}

// Close stops everything New started and undoes the network wiring.
func (g *Gateway) Close() error {
	var errs []error
	if g.speaker != nil {
		errs = append(errs, g.speaker.Close())
	}
	if g.sync != nil {
		errs = append(errs, g.sync.Close())
	}
	if g.control != nil {
		errs = append(errs, g.control.Close())
	}
	for _, f := range g.l7front {
		errs = append(errs, f.Close())
	}
	g.mu.Lock()
	for f, s := range g.l7draining {
		errs = append(errs, f.Close())
		s.Proxy.Close()
		delete(g.l7draining, f)
	}
	g.mu.Unlock()
	if g.l7 != nil {
		g.l7.Close()
	}
	closeL7(g.opts.L7)
	if g.metrics != nil {
		errs = append(errs, g.metrics.Close())
	}
	if g.checker != nil {
		g.checker.Close()
	}
	if g.flows != nil {
		g.flows.Close()
	}
	for _, d := range g.devices {
		_ = d.Close()
	}
	if g.link != nil {
		errs = append(errs, g.link.Close())
	}
	if g.capture.Enabled() {
		_, err := g.StopCapture()
		errs = append(errs, err)
	}
	if g.net != nil {
		errs = append(errs, g.net.teardown())
	}
	return errors.Join(errs...)
}

// errClosed is what a closed device's Read and Write wrap.
var errClosed = os.ErrClosed
