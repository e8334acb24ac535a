package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/vsgate/vsgate/gateway/adm"
	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
	"github.com/vsgate/vsgate/packet/device"
	"github.com/vsgate/vsgate/packet/tun"
)

// openDevices opens the TUN queues, with offloads if asked and the kernel
// has them.
func openDevices(opts Options, log *slog.Logger) ([]device.Device, error) {
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
func bufferSize(d device.Device) int {
	if h := d.Headroom(); h > 0 {
		return h + device.MaxPacket
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
func (g *Gateway) work(i int, d device.Device) error {
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
	// Direct routing's packets, and the real server each goes to.
	routed, vias := make([][]byte, 0, n), make([]netip.Addr, 0, n)
	viaDev, _ := d.(viaWriter)
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
	k, ok := d.(kernelCopier)
	kernelHasFrames := ok && k.KernelHasFrames()
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
		if g.sync != nil && w.SyncPending() {
			// The peers hear of the batch's new flows and state
			// changes before any of its packets leaves: a gateway lost
			// now leaves no flow they cannot continue.
			g.sync.Flush()
		}
		out, routed, vias = out[:0], routed[:0], vias[:0]
		var dropped, l7 uint64
		for j := range got {
			switch verdicts[j] {
			case nat.Route:
				if viaDev == nil {
					dropped++ // a device without frames (config refuses DR there)
					continue
				}
				routed = append(routed, bufs[j][:h+len(pkts[j])])
				vias = append(vias, w.Via(j))
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
				case g.l7 == nil && !kernelHasFrames:
					// The kernel's TCP terminates L7 services, and their
					// packets reach it first (a rule before the TUN's
					// route; the XDP program's pass): one that came here
					// anyway (on AF_XDP, during a reload before the
					// program knows the service) cannot be handed back.
					dropped++
					continue
				case g.l7 == nil:
					// AF_PACKET: the kernel has the frame too, and
					// terminates it.
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
		if len(routed) > 0 {
			g.writeMu[i].Lock()
			_, err := viaDev.WriteVia(routed, h, vias)
			g.writeMu[i].Unlock()
			if err != nil && !errors.Is(err, errClosed) {
				warn.log(g.log, "write", "device", d.Name(), "err", err)
			}
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

// write sends out on device d (worker i's), logging failures.
func (g *Gateway) write(i int, d device.Device, out [][]byte, h int, warn *rateLimited) {
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

// kernelCopier is a device whose frames may be the kernel's too: an
// AF_PACKET port, whose socket gets copies (a TUN's and an AF_XDP
// socket's frames are vsgate's alone).
type kernelCopier interface {
	KernelHasFrames() bool
}

// viaWriter is a device that sends a packet to a given on-link address's
// MAC instead of its destination's (afpacket.Port): direct routing.
type viaWriter interface {
	WriteVia(bufs [][]byte, offset int, via []netip.Addr) (int, error)
}
