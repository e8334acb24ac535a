package gateway

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/time/rate"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// Path MTU, as a router must do it (RFC 1191, RFC 8201, RFC 1812 §5.2.6):
// no packet leaves vsgate larger than the link it leaves on. A packet
// that is too big is fragmented if it is IPv4 without DF; otherwise its
// sender gets ICMP fragmentation needed (IPv4) or packet too big (IPv6)
// with the link's MTU, rate-limited, and the packet is dropped. A
// super-packet is too big when its segments are.
//
// The check runs on what the engine translated, so the error vsgate makes
// quotes the translated packet, as a router behind vsgate would; it goes
// through the engine like that router's error, which puts the quote back
// as the sender sent it (to the VIP, from its own address) — what the
// sender's stack must see to match it to its connection. (In TUN mode
// the kernel checked the MTU after vsgate and quoted the translated
// packet to the client, which no client stack matches: path MTU
// discovery through vsgate failed.)
//
// Every packet up to the smallest MTU of the links passes without a
// lookup; only bigger ones (or super-packets with bigger segments) ask
// which link they leave on.

// mtuLookup says how big a packet to dst may be where it leaves, and the
// gateway's address there (the source of the error it sends).
type mtuLookup interface {
	EgressMTU(dst netip.Addr) (mtu int, src netip.Addr, ok bool)
	MinMTU() int
}

// kernelMTU is the mtuLookup of a TUN gateway: the kernel routes what
// vsgate writes, so its route to dst names the link and the preferred
// source. Lookups are cached for mtuCacheTime; the smallest MTU is read
// again by Refresh.
type kernelMTU struct {
	tun   string // vsgate's own device, not a link packets leave on
	min   atomic.Int64
	mu    sync.Mutex
	cache map[netip.Addr]mtuEntry
}

type mtuEntry struct {
	mtu int
	src netip.Addr
	at  time.Time
}

// mtuCacheTime is how long a route's MTU is kept; mtuCacheMax bounds the
// destinations kept (only packets too big for the smallest link ask).
const (
	mtuCacheTime = 10 * time.Second
	mtuCacheMax  = 4096
)

func newKernelMTU(tun string) *kernelMTU {
	k := &kernelMTU{tun: tun, cache: map[netip.Addr]mtuEntry{}}
	k.Refresh()
	return k
}

// Refresh reads the smallest MTU of the namespace's links (not loopback,
// not vsgate's device) and forgets cached routes.
func (k *kernelMTU) Refresh() {
	links, err := netlink.LinkList()
	if err != nil {
		return
	}
	m := 0
	for _, l := range links {
		a := l.Attrs()
		if a.Name == k.tun || a.Flags&net.FlagLoopback != 0 || a.MTU <= 0 {
			continue
		}
		if m == 0 || a.MTU < m {
			m = a.MTU
		}
	}
	if m > 0 {
		k.min.Store(int64(m))
	}
	k.mu.Lock()
	clear(k.cache)
	k.mu.Unlock()
}

func (k *kernelMTU) MinMTU() int { return int(k.min.Load()) }

func (k *kernelMTU) EgressMTU(dst netip.Addr) (int, netip.Addr, bool) {
	now := time.Now()
	k.mu.Lock()
	e, ok := k.cache[dst]
	k.mu.Unlock()
	if ok && now.Sub(e.at) < mtuCacheTime {
		return e.mtu, e.src, e.mtu > 0
	}
	e = mtuEntry{at: now}
	if routes, err := netlink.RouteGet(dst.AsSlice()); err == nil && len(routes) > 0 {
		r := routes[0]
		if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil && l.Attrs().Name != k.tun {
			e.mtu = l.Attrs().MTU
			if r.MTU > 0 && r.MTU < e.mtu {
				e.mtu = r.MTU // a route's own mtu lock
			}
		}
		if a, ok := netip.AddrFromSlice(r.Src); ok {
			e.src = a.Unmap()
		}
	}
	k.mu.Lock()
	if len(k.cache) >= mtuCacheMax {
		clear(k.cache) // destinations an attacker picks must not grow it: start over
	}
	k.cache[dst] = e
	k.mu.Unlock()
	return e.mtu, e.src, e.mtu > 0
}

// pmtuCounts count what the path MTU check did, for /metrics.
type pmtuCounts struct {
	fragmented  atomic.Uint64 // IPv4 packets cut into fragments
	tooBig      atomic.Uint64 // ICMP errors sent to senders of packets too big
	rateLimited atomic.Uint64 // packets too big dropped without an error (rate limit)
	dropped     atomic.Uint64 // packets too big that could not be answered or cut (no buffer, a malformed one)
}

// Rate of the errors, as Linux's icmp_msgs_per_sec and burst.
const (
	tooBigPerSecond = 1000
	tooBigBurst     = 50
)

// mtuFit is one worker's path MTU check: its buffers and rate limit.
type mtuFit struct {
	look   mtuLookup
	counts *pmtuCounts
	h      int // the device's headroom
	vnet   int // where in a buffer the virtio-net header is; -1: none
	frags  [][]byte
	used   int // frags in use in this batch
	errs   [][]byte
	nerrs  int
	limit  *rate.Limiter // the errors' rate
	errOut [][]byte      // the errors as errors returns them
	p      packet.Parsed
	cut    [][]byte // scratch for FragmentIPv4
}

// maxFragBufs bounds the buffers one worker keeps for fragments.
const maxFragBufs = 512

func newMTUFit(look mtuLookup, counts *pmtuCounts, h, vnet int) *mtuFit {
	return &mtuFit{look: look, counts: counts, h: h, vnet: vnet, cut: make([][]byte, 64), limit: rate.NewLimiter(tooBigPerSecond, tooBigBurst)}
}

// buf returns a buffer of the worker's for a fragment or an error, with
// the device's headroom in front (cleared), or nil if none is left.
func (m *mtuFit) buf(pool *[][]byte, n *int, size int) []byte {
	if *n == len(*pool) {
		if len(*pool) == maxFragBufs {
			return nil
		}
		*pool = append(*pool, make([]byte, m.h+max(size, 1500)))
	}
	b := (*pool)[*n]
	if len(b) < m.h+size {
		b = make([]byte, m.h+size)
		(*pool)[*n] = b
	}
	*n++
	clear(b[:m.h])
	return b[:m.h+size]
}

// fit checks the packets of out (each buffer[:h+len], the packet at h)
// against the MTU of where they leave. It returns, in out's storage, the
// packets that fit, and the fragments of the IPv4 packets without DF that
// did not; the errors for the senders of the others wait in the worker
// (errors sends them through the engine after the batch is written). seg
// splits super-packets.
func (m *mtuFit) fit(out [][]byte, seg segmenter) (keep, frags [][]byte) {
	m.used, m.nerrs = 0, 0
	least := m.look.MinMTU()
	if least <= 0 {
		return out, nil
	}
	k := 0
	for _, b := range out {
		ip := b[m.h:]
		var vh packet.VNetHdr
		if m.vnet >= 0 {
			vh = packet.VNetHdr(b[m.vnet : m.vnet+packet.VNetHdrSize])
		}
		gso := vh != nil && vh.GSOType() != packet.GSONone
		size := len(ip)
		fits := size <= least && !gso
		if !fits {
			fits = packet.Parse(ip, &m.p) != packet.ReasonNone // the engine's business, not ours
		}
		if !fits && gso {
			size = m.p.PayloadOff + vh.GSOSize()
			fits = size <= least
		}
		var mtu int
		var src netip.Addr
		if !fits {
			var ok bool
			mtu, src, ok = m.look.EgressMTU(netip.AddrFrom16(m.p.Dst).Unmap())
			fits = !ok || size <= mtu
		}
		if fits {
			out[k] = b
			k++
			continue
		}
		switch {
		case m.p.Version == 6 || packet.IPv4(ip).DontFragment():
			m.tooBig(ip, src, mtu)
		case gso:
			// Datagrams merged (UDP GSO) without DF: each is cut.
			if seg == nil || !seg.Segments(b, m.h, len(ip), func(s []byte) { m.cutInto(s, mtu) }) {
				m.counts.dropped.Add(1)
			}
		default:
			if vh != nil {
				// A checksum the kernel was to finish cannot be
				// finished once the datagram is in pieces.
				vh.CompletePartial(ip, m.h-m.vnet-packet.VNetHdrSize)
			}
			m.cutInto(ip, mtu)
		}
	}
	return out[:k], m.frags[:m.used]
}

// cutInto fragments IPv4 packet ip to mtu into the worker's buffers.
func (m *mtuFit) cutInto(ip []byte, mtu int) {
	start := m.used
	need := len(ip)/(mtu-60) + 2 // enough, whatever the options
	cut := m.cut[:0]
	for range need {
		b := m.buf(&m.frags, &m.used, mtu)
		if b == nil {
			m.used = start
			m.counts.dropped.Add(1)
			return
		}
		cut = append(cut, b[m.h:])
	}
	m.cut = cut
	n, ok := packet.FragmentIPv4(ip, mtu, cut)
	if !ok {
		m.used = start
		m.counts.dropped.Add(1)
		return
	}
	for i := range n {
		m.frags[start+i] = m.frags[start+i][:m.h+len(cut[i])]
	}
	m.used = start + n
	m.counts.fragmented.Add(1)
}

// tooBig makes the error for the sender of ip (too big for mtu), from
// src, if the rate allows.
func (m *mtuFit) tooBig(ip []byte, src netip.Addr, mtu int) {
	if !m.limit.Allow() {
		m.counts.rateLimited.Add(1)
		return
	}
	b := m.buf(&m.errs, &m.nerrs, 1280+packet.IPv6HeaderSize)
	if b == nil {
		m.counts.dropped.Add(1)
		return
	}
	var s [16]byte
	if src.IsValid() {
		s = src.As16()
	}
	n, ok := packet.MakeTooBig(b[m.h:], ip, &m.p, s, mtu)
	if !ok {
		m.nerrs--
		m.counts.dropped.Add(1)
		return
	}
	m.errs[m.nerrs-1] = b[:m.h+n]
}

// errors runs the batch's errors through the engine (which puts their
// quotes back as their senders sent them) and returns what to write.
func (m *mtuFit) errors(w *nat.Worker, pkts [][]byte, verdicts []nat.Verdict) [][]byte {
	if m.nerrs == 0 {
		return nil
	}
	in := pkts[:0]
	for _, b := range m.errs[:m.nerrs] {
		in = append(in, b[m.h:])
	}
	w.Process(in, verdicts[:len(in)])
	out := m.errOut[:0]
	for i, b := range m.errs[:m.nerrs] {
		switch verdicts[i] {
		case nat.Forward, nat.Pass, nat.Reply:
			out = append(out, b[:m.h+len(in[i])])
			m.counts.tooBig.Add(1)
		default:
			m.counts.dropped.Add(1)
		}
	}
	m.errOut = out
	return out
}
