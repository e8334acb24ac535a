package nat

import (
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/vsgate/vsgate/packet"
)

// Connection sync: the job of IPVS's sync daemon, the engine's half. A
// gateway tells its peers about its service flows — the client's tuple,
// the answer's (which holds the real server, a FULLNAT source port, a
// moved client port), and the state — so that a peer that gets the
// flow's packets next (the routers moved it there) continues it exactly,
// where a mapping could not be recomputed: FULLNAT's source port,
// persistence, a real server Maglev would now map elsewhere. The wire, the
// peers and the keys are gateway/connsync's; this file only turns flows
// into SyncFlow records and back.
//
// New flows and state changes are noted by the workers in rings of their
// own (one store, no lock, nothing allocated; a full ring drops the note
// and counts it), which DrainSync empties; SyncAll lists every flow for a
// periodic refresh. ImportFlow makes a peer's flow here as if this
// gateway had made it: counted against its real server, its source and,
// with persistence, its template. Its TCP sides are taken up from their
// first segments, window scale unknown, as a flow adopted mid-stream.

// SyncFlow is one service flow as gateways exchange it.
type SyncFlow struct {
	Proto uint8 // packet.ProtoTCP or packet.ProtoUDP
	// State is the flow's state: SyncUDP for UDP, else a TCP state in
	// IPVS's numbering (1 ESTABLISHED, 2 SYN_SENT, ... 10 SYNACK).
	State uint8
	// OrigSrc and OrigDst are the client and the VIP; ReplySrc and
	// ReplyDst the real server and where it answers (the client, a
	// moved client port, or the FULLNAT address and port).
	OrigSrc, OrigDst, ReplySrc, ReplyDst netip.AddrPort
}

// SyncUDP is SyncFlow.State for a UDP flow.
const SyncUDP = uint8(stateUDP)

// syncRingSize is how many notes a worker's ring holds: at 1 ms between
// drains, a million new flows a second.
const syncRingSize = 1 << 12

// syncRing is one worker's notes of flows to send: index << 32 | gen.
// Single producer (the worker), single consumer (DrainSync, serialised).
type syncRing struct {
	head, tail atomic.Uint64
	_          [48]byte
	notes      [syncRingSize]atomic.Uint64
}

// push notes flow idx of generation gen, or counts it lost when full.
func (r *syncRing) push(e *Engine, idx, gen uint32) {
	h := r.head.Load()
	if h-r.tail.Load() >= syncRingSize {
		e.counts.syncLost.Add(1)
		return
	}
	r.notes[h%syncRingSize].Store(uint64(idx)<<32 | uint64(gen))
	r.head.Store(h + 1)
}

// syncState is the engine's sync switch and the workers' rings.
type syncState struct {
	on    atomic.Bool
	mu    sync.Mutex // guards rings and serialises DrainSync
	rings []*syncRing
}

// SetSync turns the noting of flows for DrainSync on or off.
func (e *Engine) SetSync(on bool) { e.sync.on.Store(on) }

// syncNote notes flow idx (generation gen) for the sync, if it is on.
func (w *Worker) syncNote(idx, gen uint32) {
	if w.sync != nil && w.e.sync.on.Load() {
		w.sync.push(w.e, idx, gen)
	}
}

// SyncPending reports whether w noted flows that DrainSync has not taken
// yet: the gateway then has them sent before it sends w's batch.
func (w *Worker) SyncPending() bool {
	return w.sync != nil && w.sync.head.Load() != w.sync.tail.Load()
}

// DrainSync calls fn for every flow noted since the last call (new
// service flows and state changes), as it is now; a flow gone or
// recycled meanwhile is skipped. Calls are serialised.
func (e *Engine) DrainSync(fn func(SyncFlow)) {
	e.sync.mu.Lock()
	defer e.sync.mu.Unlock()
	for _, r := range e.sync.rings {
		t, h := r.tail.Load(), r.head.Load()
		for ; t != h; t++ {
			n := r.notes[t%syncRingSize].Load()
			if sf, ok := e.syncFlow(uint32(n>>32), uint32(n)); ok {
				fn(sf)
			}
		}
		r.tail.Store(t)
	}
}

// SyncAll calls fn for every service flow in the table.
func (e *Engine) SyncAll(fn func(SyncFlow)) {
	for _, i := range e.tab.liveFlows(nil) {
		if sf, ok := e.syncFlow(i, e.tab.flows[i].gen.Load()); ok {
			fn(sf)
		}
	}
}

// syncFlow reads flow idx as a record if it is still of generation gen,
// live, and a service's TCP or UDP flow.
func (e *Engine) syncFlow(idx, gen uint32) (SyncFlow, bool) {
	if idx == 0 || int(idx) >= len(e.tab.flows) || gen&1 == 1 {
		return SyncFlow{}, false
	}
	f := &e.tab.flows[idx]
	o, r := f.key(DirOriginal), f.key(DirReply)
	st := f.state.Load()
	own := e.ownerOf(f)
	if f.gen.Load() != gen || st&stateDead != 0 || own == nil || own.svc.Load() == nil {
		return SyncFlow{}, false
	}
	ot, rt := o.tuple(), r.tuple()
	if ot.Proto != packet.ProtoTCP && ot.Proto != packet.ProtoUDP {
		return SyncFlow{}, false
	}
	ap := func(a [16]byte, p uint16) netip.AddrPort { return netip.AddrPortFrom(addrOf(a), p) }
	return SyncFlow{Proto: ot.Proto, State: uint8(st & stateMask),
		OrigSrc: ap(ot.Src, ot.SrcPort), OrigDst: ap(ot.Dst, ot.DstPort),
		ReplySrc: ap(rt.Src, rt.SrcPort), ReplyDst: ap(rt.Dst, rt.DstPort)}, true
}

// Why ImportFlow refuses a record.
var (
	ErrSyncNoService = errors.New("nat: sync: no such service here")
	ErrSyncNoBackend = errors.New("nat: sync: the service has no such real server here")
	ErrSyncBadFlow   = errors.New("nat: sync: a flow that cannot be")
)

// ImportFlow makes a peer gateway's flow here, unless it is here already
// (then a flow this gateway has not seen a packet of takes the record's
// state). The service (by VIP) and the real server (by the answer's
// source) must be this gateway's too: the same configuration. It returns
// whether it made the flow.
func (w *Worker) ImportFlow(sf SyncFlow) (bool, error) {
	e := w.e
	// As a Process call: the snapshot and clock of now, and an epoch
	// that keeps owners alive while their flows are made.
	w.epoch.Store(e.epoch.Load())
	defer w.epoch.Store(0)
	w.snap = e.conf.Load()
	w.now = e.clock.Load()
	switch {
	case sf.Proto == packet.ProtoTCP && (sf.State == uint8(tcpNone) || sf.State >= uint8(numTCPStates)),
		sf.Proto == packet.ProtoUDP && sf.State != SyncUDP,
		sf.Proto != packet.ProtoTCP && sf.Proto != packet.ProtoUDP,
		!sf.OrigSrc.IsValid() || !sf.OrigDst.IsValid() || !sf.ReplySrc.IsValid() || !sf.ReplyDst.IsValid(),
		sf.OrigSrc.Addr().Is4() != sf.OrigDst.Addr().Is4() || sf.ReplySrc.Addr().Is4() != sf.ReplyDst.Addr().Is4():
		return false, ErrSyncBadFlow
	}
	vip := addr16(sf.OrigDst.Addr())
	orig := (&Tuple{Src: addr16(sf.OrigSrc.Addr()), SrcPort: sf.OrigSrc.Port(), Dst: vip, DstPort: sf.OrigDst.Port(), Proto: sf.Proto}).words()
	var svc *service
	if len(w.snap.marks) > 0 {
		svc = w.snap.markedService(vip, sf.OrigDst.Port(), sf.Proto)
	}
	if svc == nil {
		svc = w.snap.svcIndex.lookup(orig[2], orig[3], sf.OrigDst.Port(), sf.Proto)
	}
	if svc == nil && w.snap.portZero {
		svc = w.snap.svcIndex.lookup(orig[2], orig[3], 0, sf.Proto)
	}
	if svc == nil || svc.cfg.Mode == ModeL7 {
		return false, ErrSyncNoService
	}
	var own *owner
	for _, o := range svc.backends {
		if d := o.dest.Load(); d != nil && d.Addr() == addr16(sf.ReplySrc.Addr()) {
			if d.Port() == sf.ReplySrc.Port() {
				own = o
				break
			}
			if d.Port() == 0 {
				own = o // a port-0 backend, unless one of its exact port follows
			}
		}
	}
	if own == nil {
		return false, ErrSyncNoBackend
	}
	reply := (&Tuple{Src: addr16(sf.ReplySrc.Addr()), SrcPort: sf.ReplySrc.Port(), Dst: addr16(sf.ReplyDst.Addr()), DstPort: sf.ReplyDst.Port(), Proto: sf.Proto}).words()
	state := uint32(sf.State)
	h := orig.hash()
	if ref, gen, ok := e.tab.lookupHashed(&orig, h); ok {
		f := &e.tab.flows[ref.index()]
		if f.tcp[DirOriginal].flags()&sideSeen == 0 && f.tcp[DirReply].flags()&sideSeen == 0 {
			w.setState(f, own, gen, state)
		}
		return false, nil
	}
	sl := e.src.slotOf(addr16(sf.OrigSrc.Addr()))
	if why, ok := w.snap.admit(sl, state); !ok {
		// A record, not a packet: the sync counts it (not the drops).
		return false, errors.New("nat: sync: " + why.String())
	}
	idx, evicted, err := e.tab.insert(&orig, h, &reply, own.id|e.logBit(own, h), state, uint32(w.now+w.snap.timeout[state]), e)
	if evicted {
		e.counts.evictions.Add(1)
	}
	switch {
	case err == ErrFlowExists:
		return false, nil // its answer's tuple is another flow's: keep that one
	case err != nil:
		return false, err
	}
	if d := own.dest.Load(); d != nil {
		if state == uint32(tcpEstablished) {
			d.Add(1, 0)
		} else {
			d.Add(0, 1)
		}
	}
	sl.count(state, 1)
	e.countHalfOpen(state, 1)
	if e.tab.flows[idx].meta.Load()&metaLogged != 0 {
		e.startLog(idx, DirOriginal, 0, 0, e.wallClock().UnixNano())
	}
	if svc.persist > 0 {
		// With the template table full the flow goes on without one;
		// its end then releases nothing.
		_ = e.persist.bind(persistKeyOf(svc, addr16(sf.OrigSrc.Addr())), own.dest.Load().ID())
	}
	if sf.Proto == packet.ProtoTCP {
		// Sides unseen, window scale unknown: each is taken up from its
		// first segment here, loosely (tcptrack.go).
		e.tab.flows[idx].tcp[DirOriginal].win.Store(sideAdopted)
		e.tab.flows[idx].tcp[DirReply].win.Store(sideAdopted)
	}
	e.counts.syncImported.Add(1)
	return true, nil
}

// setState moves flow f (generation gen) to state ns with the accounting
// a packet's transition does, and pushes its deadline out.
func (w *Worker) setState(f *flow, own *owner, gen, ns uint32) {
	s := f.state.Load()
	st := s & stateMask
	if s&stateDead != 0 || !sameGen(s, gen) || st >= uint32(numTCPStates) || ns == st {
		return
	}
	if !w.transition(f, own, s, ns) {
		return
	}
	if dl, old := uint32(w.now+w.snap.timeout[ns]), f.deadline.Load(); sameGen(f.state.Load(), gen) {
		f.deadline.CompareAndSwap(old, dl)
	}
}

// SyncStats are the engine's sync counters.
type SyncStats struct {
	Imported uint64 // flows ImportFlow made
	Lost     uint64 // notes dropped because a worker's ring was full
}

// SyncStats returns the sync counters.
func (e *Engine) SyncStats() SyncStats {
	return SyncStats{Imported: e.counts.syncImported.Load(), Lost: e.counts.syncLost.Load()}
}
