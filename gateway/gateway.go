package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vsgate/vsgate/gateway/adm"
	"github.com/vsgate/vsgate/gateway/health"
	"github.com/vsgate/vsgate/gateway/names"
	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
	"github.com/vsgate/vsgate/packet/afpacket"
	"github.com/vsgate/vsgate/packet/pcap"
	"github.com/vsgate/vsgate/packet/tun"
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
	Devices []tun.Device
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
	// terminated in the gateway's netstack and served by Handler (the
	// proxy). NAT must list each as a service with Mode nat.ModeL7 (so the
	// engine hands its packets over); New adds those entries itself if
	// they are missing.
	L7 []L7Service

	Logger *slog.Logger
}

// Owner is a user and group by number.
type Owner struct{ UID, GID int }

// Source is a configuration file the gateway can reload.
type Source struct {
	Path string
	// Read reads the file at Path; Parse turns its contents into options.
	// A gateway that runs as an unprivileged user may be unable to Read
	// a file only root can; `vsgate adm reload` then sends the contents,
	// read with its caller's rights, for Parse.
	Read  func() ([]byte, error)
	Parse func(data []byte) (Options, error)
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
}

// L7Service is one HTTP virtual service served in the gateway.
type L7Service struct {
	VIP     netip.AddrPort
	Handler http.Handler
	// Health checks Members (the proxy's real servers) when set, and
	// SetDown tells the proxy which are down: L4 and L7 share the
	// checker.
	Health  *health.Spec
	Members []netip.AddrPort
	SetDown func(member netip.AddrPort, down bool)
}

// Gateway is a running virtual server: devices, workers, the engine,
// network wiring, health checks and the control socket. Create it with
// New, run it with Run. Methods are safe for concurrent use.
type Gateway struct {
	log         *slog.Logger
	engine      *nat.Engine
	devices     []tun.Device
	link        *afpacket.Link // the AF_PACKET device, when that is the device
	net         *netState
	checker     *health.Checker
	control     *ControlServer
	metrics     *http.Server
	metricsAddr net.Addr
	start       time.Time
	names       names.Resolver

	mu          sync.Mutex // guards opts, desired, down and captureFile; serialises changes
	captureFile *os.File
	opts        Options
	desired     nat.Config      // what the operator asked for (config file, adm)
	down        map[string]bool // backends health checks hold down, by health key

	capture pcap.Writer // what enters and leaves, when started (--pcap, vsgate adm pcap)
	l7      *netstack.Stack
	l7srv   []*http.Server
	writeMu []sync.Mutex // per device: the worker and the netstack both write
	rates   atomic.Pointer[map[string]adm.Rates]
	counts  []workerCounts
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
	opts.NAT = withL7Services(opts.NAT, opts.L7)
	g = &Gateway{log: opts.Logger, opts: opts, desired: opts.NAT, down: map[string]bool{}, start: time.Now(), names: opts.Names}
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
		if g.net, err = setupNetwork(h, g.netPlan()); err != nil {
			return g, fmt.Errorf("network setup: %w", err)
		}
		g.mtu = newKernelMTU(opts.Device)
	}
	g.counts = make([]workerCounts, len(g.devices))
	g.writeMu = make([]sync.Mutex, len(g.devices))
	if len(opts.L7) > 0 {
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
	return g, nil
}

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
	for _, s := range c.Services {
		addAddr(s.VIP)
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

// openLink opens the AF_PACKET device, makes sure the kernel does not
// forward copies of the frames vsgate handles, and announces the owned
// addresses.
func (g *Gateway) openLink() (err error) {
	o := g.opts.AFPacket
	g.link, err = afpacket.OpenLink(afpacket.LinkConfig{Interfaces: o.Interfaces, Queues: o.Queues, Owned: g.ownedAddrs(), Logger: g.log})
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
	g.link.Announce()
	g.log.Info("AF_PACKET device", "interfaces", o.Interfaces, "queues", max(o.Queues, 1), "owned", g.link.Owned())
	return nil
}

// Engine returns the gateway's engine (for metrics and tests).
func (g *Gateway) Engine() *nat.Engine { return g.engine }

// Run moves packets until ctx is done: one worker per device queue, the
// engine's clock and expiry, and the rate estimator. It returns when every
// worker has stopped; call Close afterwards.
func (g *Gateway) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
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
	for _, d := range g.devices {
		d.Close() // unblocks the workers' reads
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// openDevices opens the TUN queues, with offloads if asked and the kernel
// has them.
func openDevices(opts Options, log *slog.Logger) ([]tun.Device, error) {
	queues := max(opts.Queues, 1)
	if opts.Offloads {
		devs, err := tun.OpenOffload(opts.Device, queues)
		if !errors.Is(err, tun.ErrNoOffload) {
			return devs, err
		}
		log.Warn("TUN offloads unavailable, using a plain TUN", "device", opts.Device, "err", err)
	}
	return tun.Open(opts.Device, queues)
}

// bufferSize is the size of a worker's packet buffers for d: its MTU, or
// headroom and a whole super-packet for a device with headroom (it
// coalesces into the buffers on Write).
func bufferSize(d tun.Device) int {
	if h := d.Headroom(); h > 0 {
		return h + tun.MaxPacket
	}
	mtu, err := d.MTU()
	if err != nil || mtu < 1280 {
		mtu = 65535
	}
	return mtu
}

// work is one worker's loop: read a batch, translate it, write back what
// goes on. It allocates only its buffers, once. Packets sit at
// bufs[j][h:], h the device's headroom; out holds bufs[j][:h+len], with
// the buffer's whole capacity, as the device's Write wants them.
func (g *Gateway) work(i int, d tun.Device) error {
	w := g.engine.NewWorker()
	h, size := d.Headroom(), bufferSize(d)
	n := d.BatchSize()
	bufs := make([][]byte, n)
	for j := range bufs {
		bufs[j] = make([]byte, size)
	}
	sizes := make([]int, n)
	// extra holds released fragments for writing: up to two batches of
	// them (a batch completes at most n datagrams; most have two or three
	// fragments).
	extra := make([][]byte, 2*n)
	for j := range extra {
		extra[j] = make([]byte, size)
	}
	pkts := make([][]byte, n)
	verdicts := make([]nat.Verdict, n)
	out := make([][]byte, 0, n)
	c := &g.counts[i]
	var warn rateLimited
	// The netstack takes only plain packets; a device that may read
	// super-packets or partial checksums splits and finishes them for it.
	seg, _ := d.(segmenter)
	// Statistics count a super-packet as the packets it stands for; the
	// engine skips checking checksums the kernel vouched for.
	var meta []nat.Meta
	if seg != nil {
		meta = make([]nat.Meta, n)
	}
	var fit *mtuFit
	if g.mtu != nil {
		// The virtio-net header: at the buffer's start on AF_PACKET (the
		// Ethernet header follows it), just before the packet on a TUN
		// with offloads.
		vnet := -1
		switch {
		case g.link != nil:
			vnet = 0
		case h >= packet.VNetHdrSize:
			vnet = h - packet.VNetHdrSize
		}
		fit = newMTUFit(g.mtu, &g.pmtu, h, vnet)
	}
	var inject func([]byte)
	if g.l7 != nil {
		inject = g.l7.Inject // copies: the buffer is reused
	}
	for {
		got, rerr := d.Read(bufs, sizes, h)
		for j := range got {
			pkts[j] = bufs[j][h : h+sizes[j]]
		}
		capturing := g.capture.Enabled()
		if capturing {
			g.captureIn(bufs[:got], pkts[:got], h)
		}
		if seg != nil {
			for j := range got {
				meta[j] = nat.Meta{Segs: seg.SegmentCount(bufs[j], h, sizes[j]), ChecksumOK: seg.ChecksumTrusted(bufs[j], h)}
			}
			w.ProcessMeta(pkts[:got], meta[:got], verdicts)
		} else {
			w.Process(pkts[:got], verdicts)
		}
		out = out[:0]
		var dropped, l7 uint64
		for j := range got {
			switch verdicts[j] {
			case nat.Reply:
				// The engine wrote a new packet (a reset, an ICMP error)
				// with complete checksums: what the device left in the
				// headroom about the packet read no longer holds.
				clear(bufs[j][:h])
				out = append(out, bufs[j][:h+len(pkts[j])])
			case nat.Forward, nat.Pass:
				out = append(out, bufs[j][:h+len(pkts[j])])
			case nat.ToL7:
				switch {
				case g.l7 == nil:
				case seg != nil:
					if !seg.Segments(bufs[j], h, len(pkts[j]), inject) {
						dropped++ // a super-packet it cannot split
						continue
					}
				default:
					inject(pkts[j])
				}
				l7++
			case nat.Held:
				// A fragment kept until its datagram is whole; it
				// leaves with Released.
			default:
				dropped++
			}
		}

		c.packets.Add(uint64(got))
		c.dropped.Add(dropped)
		c.toL7.Add(l7)
		var frags [][]byte
		if fit != nil {
			out, frags = fit.fit(out, seg)
		}
		for _, o := range [][][]byte{out, frags} {
			if capturing && g.link == nil { // the Link records what it sends itself (SetCapture)
				g.captureOut(o, h)
			}
			g.write(i, d, o, h, &warn)
		}
		// Then the fragments of the datagrams this batch completed,
		// copied into buffers of the device's kind (headroom cleared:
		// the engine made them with complete checksums), in rounds of
		// len(extra).
		rel, relV := w.Released()
		for len(rel) > 0 {
			out = out[:0]
			k := 0
			for ; k < len(rel) && k < len(extra); k++ {
				if relV[k] == nat.ToL7 {
					if inject != nil {
						inject(rel[k])
					}
					continue
				}
				clear(extra[k][:h])
				out = append(out, extra[k][:h+copy(extra[k][h:], rel[k])])
			}
			if capturing && g.link == nil {
				g.captureOut(out, h)
			}
			g.write(i, d, out, h, &warn)
			rel, relV = rel[k:], relV[k:]
		}
		// Last, the errors for the senders of packets too big, through
		// the engine (pmtu.go).
		if fit != nil {
			if errs := fit.errors(w, pkts, verdicts); len(errs) > 0 {
				if capturing && g.link == nil {
					g.captureOut(errs, h)
				}
				g.write(i, d, errs, h, &warn)
			}
		}
		if rerr != nil {
			if errors.Is(rerr, errClosed) {
				return nil
			}
			return rerr
		}
	}
}

// captureIn records what the worker read: IP packets, or on AF_PACKET
// the whole frames (the Ethernet header is in front of each packet, in
// the headroom).
func (g *Gateway) captureIn(bufs, pkts [][]byte, h int) {
	now := time.Now()
	for j, p := range pkts {
		if g.link != nil {
			g.capture.WriteFrame(now, bufs[j][h-packet.EthernetMinimumSize:h+len(p)])
		} else {
			g.capture.WritePacket(now, p, pcap.In)
		}
	}
}

// captureOut records the IP packets the worker writes to a TUN (out as
// Write takes it).
func (g *Gateway) captureOut(out [][]byte, h int) {
	now := time.Now()
	for _, p := range out {
		g.capture.WritePacket(now, p[h:], pcap.Out)
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

// housekeeping drives the engine's clock, expires flows and estimates
// rates every second.
func (g *Gateway) housekeeping(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var prev map[string]nat.Stats
	prevAt := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			g.engine.Advance(now.Sub(g.start))
			g.engine.Expire()
			if k, ok := g.mtu.(*kernelMTU); ok {
				k.Refresh()
			}
			if g.link != nil {
				if err := g.link.Refresh(); err != nil {
					g.log.Warn("AF_PACKET device: rereading routes, addresses and neighbours", "err", err)
				}
			}
			prev, prevAt = g.estimate(prev, prevAt, now)
		}
	}
}

// estimate turns counter differences into per-second rates for
// ipvsadm --rate.
func (g *Gateway) estimate(prev map[string]nat.Stats, at, now time.Time) (map[string]nat.Stats, time.Time) {
	cur := map[string]nat.Stats{}
	rates := map[string]adm.Rates{}
	secs := now.Sub(at).Seconds()
	rate := func(key string, s nat.Stats) {
		cur[key] = s
		p, ok := prev[key]
		if !ok || secs <= 0 {
			return
		}
		per := func(a, b uint64) uint64 {
			if a < b {
				return 0 // zeroed meanwhile
			}
			return uint64(float64(a-b) / secs)
		}
		rates[key] = adm.Rates{CPS: per(s.Conns, p.Conns), InPPS: per(s.PacketsIn, p.PacketsIn), OutPPS: per(s.PacketsOut, p.PacketsOut),
			InBPS: per(s.BytesIn, p.BytesIn), OutBPS: per(s.BytesOut, p.BytesOut)}
	}
	for _, s := range g.engine.Services() {
		rate(adm.ServiceKey(s.Service), s.Stats)
		for _, b := range s.Backends {
			rate(adm.BackendKey(s.Service, b.Backend), b.Stats)
		}
	}
	g.rates.Store(&rates)
	return cur, now
}

// Close stops everything New started and undoes the network wiring.
func (g *Gateway) Close() error {
	var errs []error
	if g.control != nil {
		errs = append(errs, g.control.Close())
	}
	for _, s := range g.l7srv {
		errs = append(errs, s.Close())
	}
	if g.l7 != nil {
		g.l7.Close()
	}
	if g.metrics != nil {
		errs = append(errs, g.metrics.Close())
	}
	if g.checker != nil {
		g.checker.Close()
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

// Reload replaces the configuration: the engine's services and rules
// (established flows to backends that stay are untouched; flows to removed
// backends drain), health checks, and the routes for addresses that came
// or went. On error the running configuration stays.
func (g *Gateway) Reload(opts Options) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	// Only these fields change (L7 services stay as they started, and
	// healthChanged reads them without the lock): a refused reload puts
	// back these, not the whole struct.
	oldNAT, oldHealth, oldMasq := g.opts.NAT, g.opts.Health, g.opts.MasqDefaults
	g.opts.NAT, g.opts.Health, g.opts.MasqDefaults = opts.NAT, opts.Health, opts.MasqDefaults
	if err := g.installLocked(opts.NAT); err != nil {
		g.opts.NAT, g.opts.Health, g.opts.MasqDefaults = oldNAT, oldHealth, oldMasq
		return err
	}
	g.checker.Set(g.healthTargets())
	g.log.Info("configuration reloaded", "services", len(opts.NAT.Services))
	return nil
}

// ReloadFromSource rereads the configuration from Options.Source and
// applies it with Reload (SIGHUP and `vsgate adm reload`).
func (g *Gateway) ReloadFromSource() error { return g.reloadSource(nil) }

// reloadSource applies data, the configuration file's contents, or with
// nil what Source.Read reads.
func (g *Gateway) reloadSource(data []byte) error {
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
	opts, err := src.Parse(data)
	if err != nil {
		return err
	}
	return g.Reload(opts)
}

// unreadableSourceError is a configuration file the gateway's user may
// not read.
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
	desired = withL7Services(desired, g.opts.L7) // L7 services are fixed at New
	if err := checkAddrs(desired); err != nil {
		return err
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
	return nil
}

// checkAddrs refuses a configuration with an address no client can reach
// through a gateway (nat.CheckServiceAddr), whatever the device.
func checkAddrs(c nat.Config) error {
	for _, s := range c.Services {
		if err := nat.CheckServiceAddr(s.VIP); err != nil {
			return fmt.Errorf("service %s: %w", adm.ServiceKey(s), err)
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

// handle runs one control request: ipvsadm's language, portfw and
// ipchains, as `vsgate adm` sends them.
func (g *Gateway) handle(ctx context.Context, req Request) Response {
	if len(req.Args) > 0 && req.Args[0] == "pcap" {
		return g.handlePcap(req.Args[1:])
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
		if err := g.reloadSource(data); err != nil {
			r := Response{Error: "reload refused, the running configuration stays: " + err.Error(), Status: 1}
			if u := (*unreadableSourceError)(nil); errors.As(err, &u) {
				r.ReadFile = u.path
			}
			return r
		}
		return Response{Output: "configuration reloaded\n"}
	}
	ctx, cancel := context.WithTimeout(ctx, names.DefaultTimeout)
	defer cancel()
	c, err := adm.Parse(ctx, req.Args, g.names)
	if err != nil {
		return Response{Error: err.Error(), Status: 2}
	}
	var out bytes.Buffer
	switch c.Op {
	case adm.OpHelp:
		out.WriteString(c.Help())
	case adm.OpList:
		adm.WriteList(&out, c, g.view(ctx, c))
	case adm.OpSave:
		g.mu.Lock()
		adm.WriteSave(&out, g.desired)
		g.mu.Unlock()
	case adm.OpPortfwList:
		adm.WritePortfw(&out, g.view(ctx, c))
	case adm.OpMasqList:
		g.mu.Lock()
		cfg := g.desired
		g.mu.Unlock()
		adm.WriteMasq(&out, cfg, g.masqNames(ctx, c, cfg))
	case adm.OpZero:
		g.engine.ZeroStats()
	default:
		g.mu.Lock()
		defer g.mu.Unlock()
		var next nat.Config
		if c.Op == adm.OpRestore {
			next, err = adm.Restore(ctx, g.desired, req.Stdin, g.opts.MasqDefaults, g.names)
		} else {
			next, err = adm.Apply(g.desired, c, g.opts.MasqDefaults)
		}
		if err == nil {
			err = g.installLocked(next)
		}
		if err != nil {
			return Response{Error: err.Error(), Status: 1}
		}
		g.checker.Set(g.healthTargets())
		g.log.Info("configuration changed", "command", req.Args)
	}
	return Response{Output: out.String()}
}

// view gathers what a listing shows; without -n, with the names of its
// addresses and ports.
func (g *Gateway) view(ctx context.Context, c *adm.Command) *adm.View {
	v := &adm.View{Services: g.engine.Services(), Size: g.engine.Capacity(), Timeouts: g.engine.Config().Timeouts.Effective()}
	if r := g.rates.Load(); r != nil {
		v.Rates = *r
	}
	if c.Conns {
		for f := range g.engine.AllFlows() {
			if g.isServiceFlow(f) {
				v.Flows = append(v.Flows, f)
			}
		}
	}
	if !c.Numeric {
		var addrs []netip.Addr
		for _, s := range v.Services {
			addrs = append(addrs, s.VIP)
			for _, b := range s.Backends {
				addrs = append(addrs, b.Addr)
			}
		}
		v.Names = adm.LookupNames(ctx, g.names, addrs)
	}
	return v
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
func (g *Gateway) isServiceFlow(f nat.FlowInfo) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.ContainsFunc(g.desired.Services, func(s nat.Service) bool {
		return s.Proto == f.Proto && netip.AddrPortFrom(s.VIP, s.Port) == f.OrigDst
	})
}

// errClosed is what a closed device's Read and Write wrap.
var errClosed = os.ErrClosed

// MetricsAddr is the address metrics are served on ("" if none): useful
// with port 0.
func (g *Gateway) MetricsAddr() string {
	if g.metricsAddr == nil {
		return ""
	}
	return g.metricsAddr.String()
}

// StartCapture writes what enters and leaves the gateway as pcap
// (readable by tcpdump; direction shows with tcpdump -e) to name, a new
// file in Options.PcapDir: a plain file name, or an absolute path whose
// directory is PcapDir. It returns the file's path.
func (g *Gateway) StartCapture(name string) (string, error) {
	dir := g.opts.PcapDir
	if dir == "" {
		return "", errors.New("captures are off: no capture directory (pcap.dir)")
	}
	if filepath.IsAbs(name) && filepath.Dir(name) == dir {
		name = filepath.Base(name)
	}
	if name == "" || name != filepath.Base(name) || name == "." || name == ".." {
		return "", fmt.Errorf("%q: a capture is a new file in %s; give a file name", name, dir)
	}
	// A new file only, never through a symlink, and never outside the
	// directory: the capture holds what every client sent (bodies
	// included). A file that is there already, or a link, is refused
	// rather than truncated or followed.
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", err
	}
	defer root.Close()
	path := filepath.Join(dir, name)
	f, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return "", fmt.Errorf("%s: %w (a capture goes to a new file only)", path, errors.Unwrap(err))
	}
	start := g.capture.Start
	if g.link != nil {
		start = g.capture.StartEthernet // frames, with their Ethernet headers
	}
	if err := start(f, pcap.DefaultSnapLen); err != nil {
		f.Close()
		return "", err
	}
	g.mu.Lock()
	g.captureFile = f
	g.mu.Unlock()
	g.log.Info("capture started", "file", path)
	return path, nil
}

// StopCapture ends the capture and closes its file.
func (g *Gateway) StopCapture() (uint64, error) {
	n, err := g.capture.Stop()
	g.mu.Lock()
	f := g.captureFile
	g.captureFile = nil
	g.mu.Unlock()
	if f != nil {
		err = errors.Join(err, f.Close())
	}
	return n, err
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

// write sends out on device d (worker i's), logging failures.
func (g *Gateway) write(i int, d tun.Device, out [][]byte, h int, warn *rateLimited) {
	if len(out) == 0 {
		return
	}
	g.writeMu[i].Lock()
	_, err := d.Write(out, h)
	g.writeMu[i].Unlock()
	if err != nil && !errors.Is(err, errClosed) {
		warn.log(g.log, "write", "device", d.Name(), "err", err)
	}
}

// rateLimited logs a per-packet warning at most once a second, saying how
// many it held back. One per worker: not safe for concurrent use.
type rateLimited struct {
	last       time.Time
	suppressed int
}

func (r *rateLimited) log(l *slog.Logger, msg string, args ...any) {
	if now := time.Now(); now.Sub(r.last) >= time.Second {
		if r.suppressed > 0 {
			args = append(args, "suppressed", r.suppressed)
		}
		l.Warn(msg, args...)
		r.last, r.suppressed = now, 0
		return
	}
	r.suppressed++
}

// withL7Services adds an engine service (Mode L7) for every L7 VIP that
// the NAT configuration does not list, so its packets reach the netstack.
func withL7Services(c nat.Config, l7 []L7Service) nat.Config {
	for _, s := range l7 {
		if slices.ContainsFunc(c.Services, func(x nat.Service) bool {
			return x.Proto == packet.ProtoTCP && x.VIP == s.VIP.Addr() && x.Port == s.VIP.Port()
		}) {
			continue
		}
		c.Services = append(slices.Clone(c.Services), nat.Service{Proto: packet.ProtoTCP, VIP: s.VIP.Addr(), Port: s.VIP.Port(), Mode: nat.ModeL7, Scheduler: "rr"})
	}
	return c
}

// startL7 starts the netstack, its listeners and their HTTP servers. What
// the stack sends goes out of the first device (any queue will do: the
// kernel routes it to the client).
func (g *Gateway) startL7(services []L7Service) error {
	mtu, err := g.devices[0].MTU()
	if err != nil || mtu < 1280 {
		mtu = 1500
	}
	dev := g.devices[0]
	h := dev.Headroom()
	buf := make([]byte, h+tun.MaxPacket) // guarded by writeMu[0]
	out := [][]byte{nil}
	write := func(pkt []byte, o packet.Offload, off offloader) {
		g.writeMu[0].Lock()
		out[0] = buf[:h+copy(buf[h:], pkt)]
		if off != nil {
			off.SetOffload(buf, h, o)
		}
		if g.link == nil && g.capture.Enabled() { // the Link records what it sends itself (SetCapture)
			g.captureOut(out, h)
		}
		_, err := dev.Write(out, h)
		g.writeMu[0].Unlock()
		if err != nil && !errors.Is(err, errClosed) {
			g.log.Warn("l7 write", "err", err)
		}
	}
	opts := netstack.Options{MTU: mtu, Output: func(pkt []byte) { write(pkt, packet.Offload{}, nil) }}
	if off, ok := dev.(offloader); ok {
		// The device segments and finishes checksums (virtio-net header):
		// the stack hands it TCP in super-packets (host GSO).
		opts.Output, opts.OutputGSO = nil, func(pkt []byte, o packet.Offload) { write(pkt, o, off) }
	}
	g.l7, err = netstack.New(opts)
	if err != nil {
		return err
	}
	for _, s := range services {
		ln, err := g.l7.Listen(s.VIP)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: s.Handler, ReadHeaderTimeout: 30 * time.Second, ErrorLog: slog.NewLogLogger(g.log.Handler(), slog.LevelWarn)}
		g.l7srv = append(g.l7srv, srv)
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				g.log.Error("l7 service", "vip", s.VIP, "err", err)
			}
		}()
		g.log.Info("l7 service", "vip", s.VIP)
	}
	return nil
}
