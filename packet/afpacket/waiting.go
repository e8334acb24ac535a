package afpacket

import (
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vsgate/vsgate/packet"
)

// Bounds of the queue of packets waiting for a next hop, in the spirit of
// the kernel's unresolved-neighbour queue (unres_qlen): the first packets
// of a flow to a neighbour nobody has asked for yet — a SYN, a DNS query —
// are sent as soon as the answer comes instead of being lost to a
// retransmission a second later.
const (
	waitPerHop  = 16              // packets held per next hop
	waitTotal   = 256             // packets held in all
	waitTimeout = 3 * time.Second // then they are dropped (as the kernel's 3 probes)
	askEvery    = time.Second     // a request is repeated this often while packets wait
)

// waiting holds copies of packets whose next hop's MAC is not known yet.
// The packet path touches it only on a miss; release, on every received
// ARP/ND frame, skips the lock while nothing waits.
type waiting struct {
	hopsWaiting atomic.Int32

	mu     sync.Mutex
	hops   map[netip.Addr]*waiter // guarded by mu
	frames int                    // guarded by mu
}

// waiter is one unresolved next hop.
type waiter struct {
	iface        int
	frames       [][]byte // virtio-net header and frame, Ethernet header to be written
	since, asked time.Time
}

// add keeps a copy of b (virtio-net header, frame) until hop answers, asking for hop when it has
// not asked in the last askEvery.
func (w *waiting) add(l *Link, st *linkState, iface int, hop netip.Addr, b []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.hops == nil {
		w.hops = map[netip.Addr]*waiter{}
	}
	now := time.Now()
	e := w.hops[hop]
	if e == nil {
		e = &waiter{iface: iface, since: now}
		w.hops[hop] = e
		w.hopsWaiting.Add(1)
	}
	if len(e.frames) >= waitPerHop || w.frames >= waitTotal {
		l.stats.Unresolved.Add(1)
	} else {
		e.frames = append(e.frames, slices.Clone(b))
		w.frames++
	}
	if now.Sub(e.asked) >= askEvery {
		e.asked = now
		l.request(st, iface, hop)
	}
}

// release sends what waited for the hops that are resolved now.
func (w *waiting) release(l *Link) {
	if w.hopsWaiting.Load() == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for hop, e := range w.hops {
		mac, ok := l.neigh.Lookup(hop)
		if !ok {
			continue
		}
		ifc := l.ifs[e.iface]
		for _, b := range e.frames {
			etherType := uint16(packet.EtherTypeIPv4)
			if b[portHeadroom]>>4 == 6 {
				etherType = packet.EtherTypeIPv6
			}
			packet.PutEthernet(b[packet.VNetHdrSize:], mac, ifc.mac, etherType)
			l.captured(b[packet.VNetHdrSize:])
			if err := ifc.socks[0].Write(b); err != nil {
				l.log.Debug("sending a packet that waited for its next hop", "hop", hop, "err", err)
			}
		}
		w.remove(hop, e)
	}
}

// expire drops what waited longer than waitTimeout and asks again for the
// hops still waited for.
func (w *waiting) expire(l *Link) {
	if w.hopsWaiting.Load() == 0 {
		return
	}
	st := l.state.Load()
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	for hop, e := range w.hops {
		switch {
		case now.Sub(e.since) >= waitTimeout:
			l.stats.Unresolved.Add(uint64(len(e.frames)))
			w.remove(hop, e)
		case now.Sub(e.asked) >= askEvery:
			e.asked = now
			l.request(st, e.iface, hop)
		}
	}
}

// remove forgets hop. Caller holds w.mu.
func (w *waiting) remove(hop netip.Addr, e *waiter) {
	delete(w.hops, hop)
	w.frames -= len(e.frames)
	w.hopsWaiting.Add(-1)
}
