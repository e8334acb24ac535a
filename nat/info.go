package nat

import (
	"iter"
	"net/netip"
	"slices"
	"time"

	"github.com/vsgate/vsgate/packet"
)

// BackendInfo describes one real server of a service for listings
// (ipvsadm -L): its configuration, connection counts and counters.
type BackendInfo struct {
	Backend
	ActiveConns, InactiveConns int64
	// PersistConns are the persistence templates that send clients to
	// it (IPVS's persistconns; 0 for a service without -p).
	PersistConns int64
	// Overloaded: over its connection thresholds, it takes no new flows
	// (Backend.Upper).
	Overloaded bool
	Stats      Stats
}

// ServiceInfo describes one virtual service for listings.
type ServiceInfo struct {
	Service
	Stats    Stats
	Backends []BackendInfo
}

// Config returns the configuration in force (as last given to New or
// Update). Slices are copies.
func (e *Engine) Config() Config {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.cur
	c.Services = slices.Clone(c.Services)
	for i := range c.Services {
		c.Services[i].Backends = slices.Clone(c.Services[i].Backends)
	}
	c.Masquerade = slices.Clone(c.Masquerade)
	c.FullNATPool = slices.Clone(c.FullNATPool)
	return c
}

// Services lists the virtual services in configuration order with their
// backends, connection counts and counters (since the last ZeroStats).
func (e *Engine) Services() []ServiceInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []ServiceInfo
	for _, sc := range e.cur.Services {
		svc := e.scheds[keyOf(sc)]
		if svc == nil {
			continue
		}
		si := ServiceInfo{Service: sc, Stats: e.statsSinceZero(svc.stat)}
		si.Backends = make([]BackendInfo, 0, len(sc.Backends))
		var templates map[uint64]int64
		if svc.persist > 0 {
			templates = e.persist.byDest(svc.key, e.clock.Load())
		}
		for _, b := range sc.Backends {
			bi := BackendInfo{Backend: b}
			for _, own := range svc.backends {
				if d := own.dest.Load(); d.Addr() == addr16(b.Addr) && d.Port() == b.Port {
					bi.ActiveConns, bi.InactiveConns = d.Conns()
					bi.PersistConns = templates[d.ID()]
					bi.Overloaded = d.Overloaded()
					bi.Stats = e.statsSinceZero(own.stat)
				}
			}
			si.Backends = append(si.Backends, bi)
		}
		out = append(out, si)
	}
	return out
}

// statsSinceZero is sum minus the baseline ZeroStats recorded. Caller
// holds e.mu.
func (e *Engine) statsSinceZero(id statID) Stats {
	s := e.sum(id)
	z := e.zero[id]
	return Stats{Conns: s.Conns - z.Conns, PacketsIn: s.PacketsIn - z.PacketsIn, PacketsOut: s.PacketsOut - z.PacketsOut,
		BytesIn: s.BytesIn - z.BytesIn, BytesOut: s.BytesOut - z.BytesOut}
}

// ZeroStats resets every service's and backend's counters (ipvsadm -Z).
// Workers keep counting undisturbed: the engine remembers the counts at
// this moment and reports the difference.
func (e *Engine) ZeroStats() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.zero == nil {
		e.zero = map[statID]Stats{}
	}
	for id := range statID(e.nextStat.Load()) {
		e.zero[id] = e.sum(id)
	}
}

// ZeroService resets one service's counters and its backends' (ipvsadm
// -Z -t VIP:PORT); false when there is no such service.
func (e *Engine) ZeroService(proto uint8, vip netip.Addr, port uint16) bool {
	return e.zeroService(svcKey{addr: addr16(vip), port: port, proto: proto})
}

// ZeroFwmark is ZeroService for the firewall-mark service of mark and
// family (ipvsadm -Z -f MARK [-6]).
func (e *Engine) ZeroFwmark(mark uint32, ipv6 bool) bool {
	fam := netip.IPv4Unspecified()
	if ipv6 {
		fam = netip.IPv6Unspecified()
	}
	return e.zeroService(svcKey{addr: addr16(fam), mark: mark})
}

func (e *Engine) zeroService(k svcKey) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	svc := e.scheds[k]
	if svc == nil {
		return false
	}
	if e.zero == nil {
		e.zero = map[statID]Stats{}
	}
	e.zero[svc.stat] = e.sum(svc.stat)
	for _, b := range svc.backends {
		e.zero[b.stat] = e.sum(b.stat)
	}
	return true
}

// FlowInfo is one tracked flow, for connection listings (ipvsadm -L -c).
type FlowInfo struct {
	Proto   uint8
	State   string        // IPVS's name: ESTABLISHED, SYN_RECV, ..., or UDP, ICMP
	Expires time.Duration // time left
	// Orig is the flow as first seen (client -> VIP, or inside host ->
	// outside host); Reply is the answer's tuple (real server -> client,
	// FULLNAT address or masquerade address).
	OrigSrc, OrigDst, ReplySrc, ReplyDst netip.AddrPort
	// Proxied says the flow's handshake was the SYN proxy's (synproxy.go).
	Proxied bool
}

// AllFlows iterates over every tracked flow. It reads the table without
// locking; a flow created or removed meanwhile may or may not be reported.
func (e *Engine) AllFlows() iter.Seq[FlowInfo] {
	return e.allFlows
}

func (e *Engine) allFlows(yield func(FlowInfo) bool) {
	now := e.clock.Load()
	t := e.tab
	for _, i := range t.liveFlows(nil) {
		f := &t.flows[i]
		gen := f.gen.Load()
		if gen&1 == 1 {
			continue
		}
		o, r := f.key(DirOriginal), f.key(DirReply)
		st := f.state.Load() & stateMask
		dl := f.deadline.Load()
		proxied := f.tcp[DirOriginal].flags()&sideProxied != 0
		if f.gen.Load() != gen {
			continue
		}
		ot, rt := o.tuple(), r.tuple()
		ap := func(a [16]byte, p uint16) netip.AddrPort { return netip.AddrPortFrom(addrOf(a), p) }
		fi := FlowInfo{Proto: ot.Proto, State: tcpState(st).String(), Expires: time.Duration(max(ticksLeft(dl, now), 0)) * e.tick,
			OrigSrc: ap(ot.Src, ot.SrcPort), OrigDst: ap(ot.Dst, ot.DstPort),
			ReplySrc: ap(rt.Src, rt.SrcPort), ReplyDst: ap(rt.Dst, rt.DstPort), Proxied: proxied && ot.Proto == packet.ProtoTCP}
		if !yield(fi) {
			return
		}
	}
}
