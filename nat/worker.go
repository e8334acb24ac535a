package nat

import (
	"net/netip"
	"sync/atomic"

	"github.com/vsgate/vsgate/packet"
	"github.com/vsgate/vsgate/sched"
)

// Worker processes batches of packets for one device queue. It owns its
// scratch state; one Worker must not be used by two goroutines at once,
// but any number of Workers share one Engine.
type Worker struct {
	e      *Engine
	p      *packet.Parsed // the packet being handled: &slots[i].p
	h      uint64         // its flow key's hash
	segs   int            // how many packets it stands for (a GSO super-packet's segments)
	csumOK bool           // the device vouched for its transport checksum
	seg    segment        // its TCP header, for window tracking
	// Fragments (fragstore.go): datagrams completed in this batch, the
	// packets released for the caller (Released: valid until the next
	// Process call), and the datagrams whose chunks those packets are.
	done      []heldDatagram
	released  [][]byte
	releasedV []Verdict
	toFree    []heldDatagram
	releasing bool          // a completed datagram's first fragment is going through packet
	fp        packet.Parsed // its parse
	pp        packet.Parsed // the parse of a segment the SYN proxy wrote
	// The SYN proxy (synproxy.go): what a cookie-returning ACK tells the
	// flow being made for it, and the worker's buffers for segments it
	// writes besides the packets it was given (synthUsed of them in use).
	proxy     proxyStart
	synth     [][]byte
	synthUsed int
	heldOut   [][]byte // segments taken from the engine's hold for a flow just settled
	hslot     slot     // the scratch of one of them going through translate
	fslot     slot
	inner     packet.Parsed
	slots     [batchSize]slot
	snap      *snapshot
	now       int64
	// wall is the wall clock in unix nanoseconds for this Process call's
	// logged new flows, read at the first one (0: not yet): one clock
	// read a batch, not one a flow.
	wall         int64
	portRotation uint32
	touched      uint32 // sink for stage 2's loads, so they are not optimised away
	// counts are this worker's counters, by statID. Replaced (grown) by
	// the worker itself between batches; the engine reads them to sum.
	counts atomic.Pointer[[]counterSet]
	// epoch is Engine.epoch as this worker's current Process call began,
	// 0 between calls (see owner.drainStale).
	epoch atomic.Uint64
	// sync is this worker's notes of flows for the connection sync.
	sync *syncRing
	// vias are, by packet of the current Process call, the real server
	// a Route verdict's packet goes to (Via); cur is the packet's index.
	vias []netip.Addr
	base int
	cur  int
}

// Via returns the real server packet i of the last Process call goes to,
// for a Route verdict.
func (w *Worker) Via(i int) netip.Addr { return w.vias[i] }

// quiescent is the oldest Engine.epoch a worker inside a Process call
// began with (or the current one, if none is inside): every Dest replaced
// before that can no longer be counted on by a worker. Caller holds e.mu.
func (e *Engine) quiescent() uint64 {
	q := e.epoch.Load()
	for _, w := range e.workers {
		if ep := w.epoch.Load(); ep != 0 && ep < q {
			q = ep
		}
	}
	return q
}

// NewWorker returns a worker for e, registered so that its counters are
// included in the engine's statistics.
func (e *Engine) NewWorker() *Worker {
	w := &Worker{e: e, sync: &syncRing{}}
	c := make([]counterSet, e.nextStat.Load()+16)
	w.counts.Store(&c)
	e.mu.Lock()
	e.workers = append(e.workers, w)
	e.mu.Unlock()
	e.sync.mu.Lock()
	e.sync.rings = append(e.sync.rings, w.sync)
	e.sync.mu.Unlock()
	return w
}

// growCounts makes room for statIDs handed out since the last batch
// (after an Update added services or backends). It allocates, but only
// then, never per packet.
func (w *Worker) growCounts(n int) {
	old := *w.counts.Load()
	c := make([]counterSet, n+16)
	for i := range old {
		for j := range old[i] {
			c[i][j].Store(old[i][j].Load())
		}
	}
	w.counts.Store(&c)
}

// Process translates each packet of the batch in place and sets its
// verdict. len(verdicts) must be at least len(pkts). It loads the
// configuration and the clock once per batch; it does not allocate, and
// for packets of established flows it takes no lock.
func (w *Worker) Process(pkts [][]byte, verdicts []Verdict) {
	w.ProcessMeta(pkts, nil, verdicts)
}

// Meta is what a device knows of a packet it read.
type Meta struct {
	// Segs is how many packets it stands for: a GSO super-packet's
	// segments; 0 or 1 for a plain packet.
	Segs int
	// ChecksumOK says the device vouches for the transport checksum: the
	// kernel checked it (virtio-net DATA_VALID) or will complete it
	// (NEEDS_CSUM: the packet never crossed a wire). Otherwise the
	// engine checks the checksum of every TCP segment that opens a flow
	// or changes its state.
	ChecksumOK bool
}

// ProcessMeta is Process for a device that says more about each packet
// (meta[i] for pkts[i]; nil means plain packets, checksums unchecked).
// A super-packet's segments are counted as packets in the services' and
// backends' statistics, as the packets they become on the wire; bytes are
// counted as read (a super-packet's headers once, as IPVS counts a GRO'd
// skb), and a dropped super-packet is one drop. A super-packet is
// translated once, whole: its segments share the headers being rewritten.
func (w *Worker) ProcessMeta(pkts [][]byte, meta []Meta, verdicts []Verdict) {
	w.freeReleased()
	w.epoch.Store(w.e.epoch.Load())
	w.snap = w.e.conf.Load()
	w.now = w.e.clock.Load()
	w.wall = 0
	if n := int(w.e.nextStat.Load()); n > len(*w.counts.Load()) {
		w.growCounts(n)
	}
	if len(w.vias) < len(pkts) {
		w.vias = make([]netip.Addr, len(pkts)) // once per larger batch, not per packet
	}
	w.base = 0
	for len(pkts) > 0 {
		n := min(len(pkts), batchSize)
		var bm []Meta
		if meta != nil {
			bm, meta = meta[:n], meta[n:]
		}
		w.batch(pkts[:n], bm, verdicts[:n])
		pkts, verdicts = pkts[n:], verdicts[n:]
		w.base += n
	}
	w.releaseDone()
	w.epoch.Store(0)
}

// Released returns the packets the last Process call released besides
// the ones it was given: the fragments of datagrams that it completed,
// translated, in order (the first fragment first), with their verdicts
// (Forward, Pass, ToL7 or Reply). They live in the engine's fragment
// pool: send or copy them before the next Process call on this worker.
func (w *Worker) Released() ([][]byte, []Verdict) { return w.released, w.releasedV }

// releaseDone sends the datagrams completed in this call through the
// engine: the first fragment as any packet (flow lookup or creation,
// translation), the others with its translation.
func (w *Worker) releaseDone() {
	st := w.e.held
	for i := range w.done {
		d := &w.done[i]
		w.toFree = append(w.toFree, *d)
		first := d.pieces[0]
		b := st.chunk(first.chunk, first.n)
		if packet.Parse(b, &w.fp) != packet.ReasonNone {
			continue // it parsed when it was held: cannot happen
		}
		s := &w.fslot
		s.kw.fill(&w.fp)
		s.h, s.hit = s.kw.hash(), false
		w.p, w.h, w.segs, w.csumOK = &w.fp, s.h, 1, false
		v := w.translate(b, s)
		switch v {
		case Drop:
			continue
		case Reply: // (a proxied SYN cookie's ACK is never a fragment: no other verdict changes the length)
			w.released, w.releasedV = append(w.released, b[:s.n]), append(w.releasedV, v)
			continue
		}
		w.released, w.releasedV = append(w.released, b), append(w.releasedV, v)
		packet.Parse(b, &w.fp) // its addresses as translated
		src, dst := w.fp.Src, w.fp.Dst
		for _, h := range d.pieces[1:d.n] {
			pb := st.chunk(h.chunk, h.n)
			if packet.Parse(pb, &w.fp) != packet.ReasonNone {
				continue
			}
			if v == Forward {
				if w.fp.Src != src {
					packet.SetSrc(pb, &w.fp, src, 0)
				}
				if w.fp.Dst != dst {
					packet.SetDst(pb, &w.fp, dst, 0)
				}
			}
			w.released, w.releasedV = append(w.released, pb), append(w.releasedV, v)
		}
	}
	w.done = w.done[:0]
}

// freeReleased gives the chunks of the last call's released packets back.
func (w *Worker) freeReleased() {
	for i := range w.toFree {
		w.e.held.release(&w.toFree[i])
	}
	w.toFree = w.toFree[:0]
	w.synthUsed = 0
	w.released, w.releasedV = w.released[:0], w.releasedV[:0]
}

// batchSize is how many packets a worker pipelines at once.
const batchSize = 64

// slot is one packet's scratch state while its batch is processed.
type slot struct {
	p      packet.Parsed
	kw     tupleWords
	h      uint64  // kw.hash()
	bucket *bucket // where kw is indexed
	head   flowRef // the bucket's candidate node for kw, loaded early
	ref    flowRef // the node found for kw in stage 2, if hit
	gen    uint32  // ref's flow generation when it was found
	hit    bool    // stage 2 found kw (stage 3 looks again if not)
	done   bool    // verdict already decided in the first stage
	v      Verdict
	n      int // the packet's new length, if not 0: a Reply, or a segment the SYN proxy rebuilt
}

// batch processes up to batchSize packets in stages, so that the cache
// misses of different packets overlap instead of queueing: at a million
// flows each packet's bucket and flow are almost surely not in cache, and
// a dependent DRAM access costs ~170 ns here while independent ones
// overlap to ~9 ns each. Stage 1 parses and hashes. Stage 2 is a row of
// loops, each over the whole batch and each with as little else in it as
// possible, so the CPU keeps many loads in flight: load every bucket line;
// pick each packet's candidate node by tag; load the candidate flows (both
// cache lines); check each candidate's key. Stage 3 does the real work on
// what is now cached, looking up again only what stage 2 did not find (a
// new flow, an overflowed node, or a flow an earlier packet of this batch
// created). Splitting stage 2 this finely is measured, not aesthetic: the
// candidate scan folded into the bucket loop, or the key check left to
// stage 3, each cost 10-15 ns per packet at a million flows.
func (w *Worker) batch(pkts [][]byte, meta []Meta, verdicts []Verdict) {
	t := w.e.tab
	for i, b := range pkts {
		s := &w.slots[i]
		s.done, s.n = false, 0
		if r := packet.Parse(b, &s.p); r != packet.ReasonNone {
			s.done, s.v = true, w.drop(DropReason(r))
			continue
		}
		s.kw.fill(&s.p)
		s.h = s.kw.hash()
	}
	var touched uint32
	for i := range pkts {
		if s := &w.slots[i]; !s.done {
			_, s.bucket = t.locate(s.h)
			touched += s.bucket.overflow.Load() // the bucket's line
		}
	}
	for i := range pkts {
		if s := &w.slots[i]; !s.done {
			s.head = s.bucket.candidate(s.h)
		}
	}
	for i := range pkts {
		if s := &w.slots[i]; !s.done && s.head != 0 {
			f := &t.flows[s.head.index()]
			touched += f.gen.Load() + uint32(f.addrs[DirReply][3].Load()) // both cache lines of the flow
		}
	}
	w.touched = touched
	for i := range pkts {
		s := &w.slots[i]
		s.hit = false
		if !s.done && s.head != 0 {
			if s.gen, s.hit = t.matches(s.head, &s.kw); s.hit {
				s.ref = s.head
			}
		}
	}
	if counts := w.e.flowCounts.Load(); counts != nil {
		// A logged flow's counts are a third line (flowlog.go).
		for i := range pkts {
			if s := &w.slots[i]; s.hit && t.flows[s.ref.index()].meta.Load()&metaLogged != 0 {
				touched += uint32((*counts)[s.ref.index()].start.Load())
			}
		}
		w.touched = touched
	}
	for i, b := range pkts {
		s := &w.slots[i]
		if s.done {
			verdicts[i] = s.v
			continue
		}
		w.p, w.h, w.segs, w.csumOK = &s.p, s.h, 1, false
		w.cur = w.base + i
		if meta != nil {
			w.segs, w.csumOK = max(meta[i].Segs, 1), meta[i].ChecksumOK
		}
		verdicts[i] = w.packet(b, s)
		if s.n != 0 {
			pkts[i] = b[:s.n]
		}
	}
}

func (w *Worker) drop(r DropReason) Verdict {
	w.e.counts.drops[r].Add(1)
	return Drop
}

// tupleOf is the flow key of a parsed packet: ports, or for ICMP echo the
// identifier as both ports.
func tupleOf(p *packet.Parsed) Tuple {
	t := Tuple{Src: p.Src, Dst: p.Dst, SrcPort: p.SrcPort, DstPort: p.DstPort, Proto: p.Proto}
	if p.IsICMPEcho() {
		t.SrcPort, t.DstPort = p.ICMPID, p.ICMPID
	}
	return t
}

// packet handles one parsed packet (w.p, with its key in s).
func (w *Worker) packet(b []byte, s *slot) Verdict {
	p := w.p
	if p.SourceRouted {
		return w.drop(DropSourceRouted)
	}
	if p.IsFragment() && len(b) <= fragChunk {
		switch r, why, d := w.e.held.hold(w.e, b, p, w.now); r {
		case holdComplete:
			w.done = append(w.done, d)
			return Held
		case holdKept:
			return Held
		default:
			return w.drop(why)
		}
	}
	if !p.MoreFrags || !p.HasL4Header() {
		return w.translate(b, s)
	}
	// The first fragment of a datagram too long to hold: remember its
	// translation for the fragments after it (frag.go). Only a
	// translated, passed or L7 one: a reset or dropped one must not lend
	// its untranslated addresses to them.
	fk := fragKeyOf(p)
	v := w.translate(b, s)
	if v == Forward || v == Pass || v == ToL7 {
		w.e.frags.put(fk, v, p.Src, p.Dst, w.now+w.e.fragTimeout)
	}
	return v
}

// translate handles a packet that is not held: a later fragment of an
// unheld datagram, an ICMP error, or a packet of a flow, known or new.
func (w *Worker) translate(b []byte, s *slot) Verdict {
	p := w.p
	if !p.HasL4Header() {
		return w.laterFragment(b)
	}
	if p.IsICMPError() {
		return w.icmpError(b)
	}
	ref, gen, ok := s.ref, s.gen, s.hit
	for {
		if !ok {
			ref, gen, ok = w.e.tab.lookupHashed(&s.kw, s.h)
		}
		if !ok {
			return w.newFlow(b, s)
		}
		if v, ok := w.established(b, ref, gen, s); ok {
			return v
		}
		// The flow was recycled under us: look again.
		ok = false
	}
}

// established translates a packet of a known flow. It reports false if the
// flow changed generation while being read (the caller retries).
func (w *Worker) established(b []byte, ref flowRef, gen uint32, s *slot) (Verdict, bool) {
	p, kw := w.p, &s.kw
	f := &w.e.tab.flows[ref.index()]
	d := ref.dir()
	other := f.key(1 - d)
	own := w.e.ownerOf(f)
	if f.gen.Load() != gen {
		return 0, false
	}
	if own != nil && own.gone.Load() && w.snap.resetRemoved {
		return w.resetRemoved(b, ref, gen, d, s), true
	}
	if p.IsICMPEcho() && p.IsICMPEchoRequest() != (d == DirOriginal) {
		// An echo flow is a request out and its reply back: an echo
		// request from outside matching it is not let in.
		return w.drop(DropMasqUnsolicited), true
	}
	ev := -1
	if p.Proto == packet.ProtoTCP {
		of := f.tcp[DirOriginal].flags()
		proxied := of&sideProxied != 0
		var sh *proxyShifts
		if proxied {
			sh = &w.e.tab.proxy[ref.index()]
		}
		if d == DirOriginal && p.TCPFlags&packet.TCPFlagSYN != 0 && closed(f.state.Load()) && w.checksumOK(b) {
			// A new connection on a closed flow's ports (a client that
			// reuses its port while the flow is in TIME_WAIT): the old
			// flow goes and the SYN is a new flow — scheduled afresh,
			// or met by the proxy — as conntrack kills a TIME_WAIT entry
			// for a SYN and IPVS (conn_reuse_mode 1) reschedules it.
			w.e.tab.remove(ref.index(), gen, func(idx uint32, f *flow) bool { return w.e.retire(idx, f, EndReplaced) })
			return 0, false
		}
		if !proxied && p.TCPFlags&packet.TCPFlagSYN != 0 && w.staleForSyn(b, kw, f, d, own) && w.checksumOK(b) {
			// Behind ECMP a gateway that sees one direction of a flow
			// never sees it end, and one the routers send a flow to
			// anew may hold an old one's state for its ports: a SYN or
			// SYN-ACK of a new connection replaces it (see staleForSyn).
			w.e.tab.remove(ref.index(), gen, func(idx uint32, f *flow) bool { return w.e.retire(idx, f, EndReplaced) })
			return 0, false
		}
		if proxied && d == DirOriginal {
			if v, ok := w.proxyFromClient(b, f, sh, of, ref.index(), gen, s); !ok {
				return v, true
			}
		}
		var pass bool
		if ev, pass = w.tcpGate(b, f, d, own); !pass {
			return Drop, true
		}
		if proxied && d == DirReply {
			if p.TCPFlags&packet.TCPFlagSYN != 0 {
				return w.serverSynAck(b, f, ref.index(), sh, own, gen, s), true
			}
			if !w.proxyFromServer(b, f, sh) {
				return Drop, true
			}
		}
	}
	// The packet leaves as the other direction's tuple reversed. Compare
	// and build addresses as words: no Tuple round trip on this path.
	sport, dport := uint16(other[4]>>16), uint16(other[4]>>32)
	sameDst := true // a client's packet keeps its destination: direct routing's (or a masquerade's)
	if p.IsICMPEcho() {
		rewrite(b, p, addrOfWords(other[2], other[3]), sport, addrOfWords(other[0], other[1]), dport)
	} else {
		if kw[0] != other[2] || kw[1] != other[3] || p.SrcPort != sport {
			packet.SetSrc(b, p, addrOfWords(other[2], other[3]), sport)
		}
		if kw[2] != other[0] || kw[3] != other[1] || p.DstPort != dport {
			packet.SetDst(b, p, addrOfWords(other[0], other[1]), dport)
			sameDst = false
		}
	}
	if own != nil {
		w.countPacket(own, d, len(b))
		if f.meta.Load()&metaLogged != 0 {
			w.countLogged(ref.index(), d, len(b))
		}
	}
	if w.touch(f, d, own, gen, ev) && own != nil {
		w.syncNote(ref.index(), gen)
	}
	if sameDst && own != nil && d == DirOriginal {
		if svc := own.svc.Load(); svc != nil && svc.cfg.Mode == ModeDR {
			if dst := own.dest.Load(); dst != nil {
				w.vias[w.cur] = addrOf(dst.Addr())
				return Route, true
			}
		}
	}
	return Forward, true
}

// tcpGate runs what a TCP segment of a known flow must pass before it is
// forwarded: the window check (tcptrack.go), and the checksum when the
// segment would change the flow's state or the flow is not established
// (the handshake, the close: few segments, and the ones a spoofer needs).
// It returns the event the state machine takes from the segment (-1:
// none), or false, with the drop counted, if the segment must not go on.
func (w *Worker) tcpGate(b []byte, f *flow, d Dir, own *owner) (ev int, pass bool) {
	p := w.p
	ev = tcpEvent(p.TCPFlags)
	st := f.state.Load() & stateMask
	changes := ev >= 0 && st < uint32(numTCPStates) && tcpTransitions[d][ev][st] != tcpState(st)
	if (changes || st != uint32(tcpEstablished)) && !w.checksumOK(b) {
		w.drop(DropBadChecksum)
		return -1, false
	}
	if p.IsFragment() {
		// The first fragment of a released datagram: its data runs on
		// in fragments this header does not count, so its end is not
		// known here. Its flags still move the state.
		return ev, true
	}
	w.seg.read(b, p)
	switch f.tcp.inWindow(d, &w.seg, tcpState(st)) {
	case windowOK:
		return ev, true
	case windowHold:
		if !w.liberal(own) {
			return -1, true
		}
	case windowAhead:
		if w.cameBack(tcpState(st), own) {
			if !w.checksumOK(b) {
				w.drop(DropBadChecksum)
				return -1, false
			}
			f.tcp.readopt(d, &w.seg)
			return ev, true
		}
		fallthrough
	default: // out of the window
		if !w.liberal(own) && !w.oneSided(f, d, own) {
			w.drop(DropTCPOutOfWindow)
			return -1, false
		}
		f.tcp.accept(d, &w.seg)
	}
	return ev, true
}

// cameBack reports whether a segment ahead of its flow's window (it sends
// or acknowledges beyond what this gateway saw) is a connection that the
// routers sent through other gateways for a while and now send here
// again: for a sloppy service's flow past its handshake. Behind ECMP that
// is every connection whose path moved away and back (a gateway left and
// rejoined, or hung and went on), and its windows here are stale by all
// it sent meanwhile. Such a flow is taken up again as if adopted
// mid-stream, as a gateway that never saw it would (tcpTrack.readopt);
// dropping it would stall the connection until a segment of the other
// direction in the stale window came this way, and break it once both
// directions moved on by more than a window. A RST is never taken so.
func (w *Worker) cameBack(st tcpState, own *owner) bool {
	switch st {
	case tcpEstablished, tcpFinWait, tcpCloseWait, tcpLastAck:
	default:
		return false
	}
	if own == nil {
		return false
	}
	svc := own.svc.Load()
	return svc != nil && svc.cfg.Sloppy
}

// staleForSyn reports whether the SYN (client) or SYN-ACK (real server)
// being handled begins a new connection on the ports of flow f, whose
// state is then an older connection's: for sloppy services only, whose
// gateways may see a connection's directions apart (ECMP in front and
// behind) or its middle only. A flow is stale for
//   - a client SYN that is not its SYN again (another sequence number, or
//     a flow whose client side this gateway never saw), unless the flow
//     is established and has both sides seen here (a live connection
//     this gateway tracks whole: a SYN there is ignored, as conntrack
//     ignores it);
//   - a real server's SYN-ACK on a flow past its handshake that does not
//     acknowledge the client SYN this gateway saw (or that saw none),
//     when the answer can be taken up again (Worker.adoptReply: a NAT
//     service's backend of its own).
//
// The SYN is then a new flow, scheduled again (mh, as every gateway, or
// the persistence template), and the SYN-ACK is taken up anew.
func (w *Worker) staleForSyn(b []byte, kw *tupleWords, f *flow, d Dir, own *owner) bool {
	if own == nil {
		return false
	}
	svc := own.svc.Load()
	if svc == nil || !svc.cfg.Sloppy {
		return false
	}
	p := w.p
	st := tcpState(f.state.Load() & stateMask)
	origSeen := f.tcp[DirOriginal].flags()&sideSeen != 0
	replySeen := f.tcp[DirReply].flags()&sideSeen != 0
	var sg segment
	sg.read(b, p)
	if d == DirOriginal {
		if p.TCPFlags&packet.TCPFlagACK != 0 {
			return false
		}
		if origSeen && sg.end == f.tcp[DirOriginal].end() {
			return false // the SYN again
		}
		return st != tcpEstablished || !origSeen || !replySeen
	}
	if p.TCPFlags&packet.TCPFlagACK == 0 {
		return false
	}
	switch st {
	case tcpNone, tcpSynSent, tcpSynRecv, tcpSynAck:
		return false // the handshake's own path
	}
	if origSeen && sg.ack == f.tcp[DirOriginal].end() {
		return false
	}
	return w.snap.soleNAT.lookup(kw[0], kw[1], p.SrcPort, p.Proto) != nil
}

// oneSided reports whether a segment of direction d belongs to a sloppy
// service's flow whose other direction this gateway has not seen: behind
// ECMP on both sides, the routers may send a connection's two directions
// through different gateways for its whole life. How far a side may send
// (its maxend) comes from the other side's acknowledgements and windows,
// so such a flow's window is not checked, as a liberal one's is not.
func (w *Worker) oneSided(f *flow, d Dir, own *owner) bool {
	if f.tcp[1-d].flags()&sideSeen != 0 || own == nil {
		return false
	}
	svc := own.svc.Load()
	return svc != nil && svc.cfg.Sloppy
}

// checksumOK reports whether the packet being handled has a right
// transport checksum: the device vouched for it, it is a super-packet
// (whose checksum the kernel left partial), or it sums right.
func (w *Worker) checksumOK(b []byte) bool {
	return w.csumOK || w.segs > 1 || packet.TransportChecksumValid(b, w.p)
}

// transition moves flow f from state word s to state ns, with the
// accounting every change of state has (the real server's active and
// inactive counts, the source's and the engine's half-open counts). It
// fails, changing nothing, if the flow's state word is no longer s.
func (w *Worker) transition(f *flow, own *owner, s, ns uint32) bool {
	st := s & stateMask
	var sl *srcSlot // read before the swap: after it the slot may be recycled
	halfOpenMoved := halfOpen(st) != halfOpen(ns)
	if w.e.src != nil && halfOpenMoved {
		sl = w.e.sourceOf(f)
	}
	if !f.state.CompareAndSwap(s, s&^stateMask|ns) {
		return false
	}
	accountTransition(own, tcpState(st), tcpState(ns))
	sl.moved(st, ns)
	if halfOpenMoved {
		w.e.countHalfOpen(ns, 1)
		w.e.countHalfOpen(st, -1)
	}
	return true
}

// inputOnly reports whether own's flows are seen in the client's
// direction only (direct routing).
func (own *owner) inputOnly() bool {
	svc := own.svc.Load()
	return svc != nil && svc.cfg.Mode == ModeDR
}

// liberal reports whether the flow of owner own skips the window check
// (Config.TCPLiberal, Service.TCPLiberal).
func (w *Worker) liberal(own *owner) bool {
	if w.snap.tcpLiberal {
		return true
	}
	if own != nil {
		if svc := own.svc.Load(); svc != nil {
			// Direct routing sees the client's direction only.
			return svc.cfg.TCPLiberal || svc.cfg.Mode == ModeDR
		}
	}
	return false
}

// countPacket counts the packet being handled (w.segs packets on the
// wire, n bytes) against its owner and the owner's service.
func (w *Worker) countPacket(own *owner, d Dir, n int) {
	w.counters(own.stat).count(d, w.segs, n)
	if svc := own.svc.Load(); svc != nil {
		w.counters(svc.stat).count(d, w.segs, n)
	}
}

// counters returns this worker's counter set id. The worker grows its
// counters at the start of every batch, but a flow another worker created
// since can count against an owner (or service) an Update made after
// that: then it grows them here.
func (w *Worker) counters(id statID) *counterSet {
	c := *w.counts.Load()
	if int(id) >= len(c) {
		w.growCounts(int(w.e.nextStat.Load()))
		c = *w.counts.Load()
	}
	return &c[id]
}

// rewrite gives the packet source src:sport and destination dst:dport,
// touching only what differs.
func rewrite(b []byte, p *packet.Parsed, src [16]byte, sport uint16, dst [16]byte, dport uint16) {
	if p.IsICMPEcho() {
		if p.Src != src {
			packet.SetSrc(b, p, src, 0)
		}
		if p.Dst != dst {
			packet.SetDst(b, p, dst, 0)
		}
		if p.ICMPID != sport {
			packet.SetICMPID(b, p, sport)
		}
		return
	}
	if p.Src != src || p.SrcPort != sport {
		packet.SetSrc(b, p, src, sport)
	}
	if p.Dst != dst || p.DstPort != dport {
		packet.SetDst(b, p, dst, dport)
	}
}

// touch advances the state of flow f (of generation gen, as the caller
// found it) by TCP event ev (-1: none) in direction d and pushes its
// deadline out; it reports whether the state moved. The flow may have been freed and made anew since the
// caller's check: then touch changes nothing (the state word carries the
// generation).
func (w *Worker) touch(f *flow, d Dir, own *owner, gen uint32, ev int) (moved bool) {
	s := f.state.Load()
	if s&stateDead != 0 || !sameGen(s, gen) {
		return false
	}
	st := s & stateMask
	ns := st
	if st < uint32(numTCPStates) {
		if ev >= 0 {
			ns = uint32(tcpTransitions[d][ev][st])
			if ev == 2 && d == DirOriginal && tcpState(st) == tcpSynRecv && own != nil && own.inputOnly() {
				// IPVS's input-only table (direct routing): the
				// client's ACK establishes the flow, as no SYN-ACK
				// comes this way.
				ns = uint32(tcpEstablished)
			}
			if ev == 2 && d == DirReply && (tcpState(st) == tcpSynAck || tcpState(st) == tcpSynRecv) &&
				f.tcp[DirOriginal].flags()&sideSeen != 0 {
				// The real server's pure ACK before the client's: a
				// real server sends one to a half-open connection's
				// out-of-window segment, so it proves no handshake;
				// conntrack calls it invalid in SYN_RECV. Only the
				// client's ACK establishes a flow whose client side
				// came this way. (A gateway that never saw the client
				// side — behind ECMP — has only the server's word.)
				ns = st
			}
		}
		if ns != st {
			if !w.transition(f, own, s, ns) {
				return false // removed, recycled or moved on concurrently; that path accounts
			}
			moved = true
		}
	}
	// Load the deadline, then check the flow is still ours, then swap: a
	// flow made anew in the slot before the check fails the check, one
	// made after it has a new deadline, which the swap does not overwrite.
	if dl, old := uint32(w.now+w.snap.timeout[ns]), f.deadline.Load(); old != dl && sameGen(f.state.Load(), gen) {
		f.deadline.CompareAndSwap(old, dl)
	}
	return moved
}

// accountTransition keeps the backend's active/inactive counts as IPVS
// does: a flow is active while ESTABLISHED, inactive otherwise.
func accountTransition(own *owner, from, to tcpState) {
	if own == nil {
		return
	}
	d := own.dest.Load()
	if d == nil {
		return
	}
	switch {
	case from != tcpEstablished && to == tcpEstablished:
		d.Add(1, -1)
	case from == tcpEstablished && to != tcpEstablished:
		d.Add(-1, 1)
	}
}

// newFlow handles the first packet of a flow: a service's new connection,
// a masqueraded outbound flow, or nothing.
func (w *Worker) newFlow(b []byte, s *slot) Verdict {
	p, kw := w.p, &s.kw
	if p.HasPorts() {
		if len(w.snap.marks) > 0 {
			if svc := w.snap.markedService(p.Dst, p.DstPort, p.Proto); svc != nil {
				return w.newServiceFlow(b, svc, s)
			}
		}
		if svc := w.snap.svcIndex.lookup(kw[2], kw[3], p.DstPort, p.Proto); svc != nil {
			return w.newServiceFlow(b, svc, s)
		}
		if w.snap.portZero {
			if svc := w.snap.svcIndex.lookup(kw[2], kw[3], 0, p.Proto); svc != nil {
				return w.newServiceFlow(b, svc, s)
			}
		}
		// A real server's packet that no flow knows: the answer of a
		// flow that expired, was evicted, or lives on another gateway.
		// Masquerading it (real servers usually sit in a masqueraded
		// subnet) would hand the client a packet from the wrong
		// address and hold the flow's reply tuple. IPVS drops these
		// too (ip_vs_has_real_service).
		if w.snap.realServers.lookup(kw[0], kw[1], p.SrcPort, p.Proto) != nil {
			if svc := w.snap.onePacket.lookup(kw[0], kw[1], p.SrcPort, p.Proto); svc != nil {
				return w.onePacketReply(b, svc)
			}
			if svc := w.snap.soleNAT.lookup(kw[0], kw[1], p.SrcPort, p.Proto); svc != nil {
				return w.adoptReply(b, svc, s)
			}
			return w.drop(DropRealServerNoFlow)
		}
	}
	src, dst := addrOf(p.Src), addrOf(p.Dst)
	if notRoutable(src, dst) {
		// The link's own traffic (a TUN's MLD reports from ::, duplicate
		// address detection) or a martian: no router passes it on.
		return w.drop(DropNotRoutable)
	}
	if w.snap.masqAddr[p.Dst] {
		return w.drop(DropMasqUnsolicited)
	}
	if w.snap.owned[p.Dst] {
		// To a VIP or FULLNAT address but no service or flow: passing
		// or masquerading it would send it back into the device (its
		// address routes there).
		return w.drop(DropUnmatched)
	}
	if w.snap.inside(p.Dst) && !w.snap.inside(p.Src) {
		// From the outside to an inside host, and no service or flow
		// of its own: the inside is reached through services only,
		// whatever the default (a router's forwarding would let it in).
		return w.drop(DropInboundUnsolicited)
	}
	if p.HasPorts() || p.IsICMPEcho() {
		for _, m := range w.snap.masq {
			if m.net.Contains(src) && !m.net.Contains(dst) {
				return w.newMasqFlow(b, m, kw)
			}
		}
	}
	if !w.snap.inside(p.Src) {
		// To be routed on, yet no service, flow or masquerade rule is
		// its, and its source is no inside address: from the inside,
		// a forged source, which a router does not pass on (BCP 38);
		// from the outside, traffic for somewhere else. Only the
		// inside's own addresses are routed on, whatever the default.
		return w.drop(DropSourceNotInside)
	}
	if w.snap.dropUnmatched {
		return w.drop(DropUnmatched)
	}
	return Pass
}

func (w *Worker) newServiceFlow(b []byte, svc *service, s *slot) Verdict {
	p, kw := w.p, &s.kw
	if svc.cfg.Mode == ModeL7 {
		return ToL7
	}
	state := uint32(stateUDP)
	if p.Proto == packet.ProtoTCP {
		if !w.checksumOK(b) {
			return w.drop(DropBadChecksum)
		}
		if svc.cfg.SynProxy != SynProxyOff && !w.proxy.on {
			switch {
			case opensFlow(p):
				if w.synProxyOn(svc) {
					return w.answerSyn(b, svc, s)
				}
			case p.TCPFlags&(packet.TCPFlagSYN|packet.TCPFlagACK|packet.TCPFlagRST) == packet.TCPFlagACK:
				if v, ok := w.acceptCookie(b, svc, s); ok {
					return v
				}
				if !svc.cfg.Sloppy && w.synProxyOn(svc) {
					return w.drop(DropSynProxyCookie)
				}
			}
		}
		switch {
		case opensFlow(p):
			state = uint32(tcpTransitions[DirOriginal][tcpEvent(p.TCPFlags)][tcpNone])
		case svc.cfg.Sloppy && p.TCPFlags&(packet.TCPFlagSYN|packet.TCPFlagACK|packet.TCPFlagRST) == packet.TCPFlagACK:
			// Sloppy adoption (see Service.Sloppy) of a segment from
			// mid-stream, which always carries ACK: not a reset, nor a
			// flagless probe.
			state = uint32(tcpEstablished)
		default:
			return w.drop(DropNoFlow)
		}
	}
	var own *owner
	var pk persistKey
	if svc.persist > 0 {
		pk = persistKeyOf(svc, p.Src)
		if id, ok := w.e.persist.lookup(pk, w.now, svc.up); ok {
			if own = svc.backends[id]; own == nil {
				w.e.persist.release(pk, w.now, svc.persist) // see below
			}
		}
	}
	if own == nil {
		d, ok := svc.sched.Pick(sched.Key{Hash: w.h, SrcAddr: p.Src, DstAddr: p.Dst, SrcPort: p.SrcPort, Now: w.now * int64(w.e.tick)})
		if !ok {
			return w.drop(DropNoBackend)
		}
		// An Update that keeps the scheduler updates it before it stores
		// the snapshot with the new backends' owners, so a worker still
		// on the old snapshot may pick a backend it has no owner for.
		// That lasts until the worker's next batch: drop (counted), and
		// the client's retransmission meets the new snapshot.
		if own = svc.backends[d.ID()]; own == nil {
			return w.drop(DropNoBackend)
		}
		if svc.persist > 0 && !w.e.persist.bind(pk, d.ID()) {
			return w.drop(DropTableFull)
		}
	}
	d := own.dest.Load()
	if svc.cfg.OnePacket && (svc.cfg.Mode == ModeDR || w.snap.masqueradeInto(d.Addr()) == nil) {
		return w.onePacket(b, svc, pk, own, d)
	}
	if svc.cfg.Mode == ModeDR {
		// The packet goes on unchanged: the flow's answer would be the
		// VIP's own (the real server sends it to the client itself).
		reply := Tuple{Src: kw.tuple().Dst, SrcPort: p.DstPort, Dst: p.Src, DstPort: p.SrcPort, Proto: p.Proto}
		v := w.insertWithPort(b, kw, &reply, [2]uint16{}, p.SrcPort, own, state, false)
		if v == Forward {
			w.vias[w.cur], v = addrOf(d.Addr()), Route
		}
		return w.persistOutcome(svc, pk, v)
	}
	rport := d.Port()
	if rport == 0 {
		rport = p.DstPort // a port-0 backend: the port the client asked for
	}
	reply := Tuple{Src: d.Addr(), SrcPort: rport, Dst: p.Src, DstPort: p.SrcPort, Proto: p.Proto}
	if svc.cfg.Mode == ModeFullNAT {
		fam := 0
		if p.Version == 6 {
			fam = 1
		}
		reply.Dst = w.snap.fullnat[fam]
		return w.persistOutcome(svc, pk, w.insertWithPort(b, kw, &reply, w.snap.fnPorts, w.firstPort(), own, state, true))
	}
	if m := w.snap.masqueradeInto(d.Addr()); m != nil {
		reply.Dst = m.to
		return w.persistOutcome(svc, pk, w.insertWithPort(b, kw, &reply, m.ports, w.firstPort(), own, state, true))
	}
	// NAT mode keeps the client's address and port; only when another
	// flow holds that reply tuple (the client's same port through another
	// VIP to the same real server, which the real server could not tell
	// apart) does the client's port change, as the kernel's NAT remaps a
	// clashing source port. A closed holder counts too: the real server
	// may still hold that connection in TIME_WAIT, where the new SYN
	// would meet PAWS (timestamps are random per connection) and get a
	// bare ACK instead of a SYN-ACK.
	return w.persistOutcome(svc, pk, w.insertWithPort(b, kw, &reply, [2]uint16{clashPortMin, clashPortMax}, p.SrcPort, own, state, false))
}

// onePacket sends a datagram of a one-packet service (Service.OnePacket)
// to the real server d chosen for it alone, keeping no flow: it counts as
// a connection of its own, as IPVS counts each, and a persistence template
// it used runs from now.
func (w *Worker) onePacket(b []byte, svc *service, pk persistKey, own *owner, d *sched.Dest) Verdict {
	w.counters(own.stat).add(cConns, 1)
	w.counters(svc.stat).add(cConns, 1)
	w.countPacket(own, DirOriginal, len(b))
	if svc.persist > 0 {
		w.e.persist.release(pk, w.now, svc.persist)
	}
	if svc.cfg.Mode == ModeDR {
		w.vias[w.cur] = addrOf(d.Addr())
		return Route
	}
	p := w.p
	port := d.Port()
	if port == 0 {
		port = p.DstPort
	}
	packet.SetDst(b, p, d.Addr(), port)
	return Forward
}

// onePacketReply translates a real server's answer for a one-packet
// service (Service.OnePacket) that no flow knows, by its source alone:
// the backend serves only svc, so the answer is svc's VIP's.
func (w *Worker) onePacketReply(b []byte, svc *service) Verdict {
	p := w.p
	for _, o := range svc.backends {
		if d := o.dest.Load(); d != nil && d.Addr() == p.Src && d.Port() == p.SrcPort {
			w.countPacket(o, DirReply, len(b))
			packet.SetSrc(b, p, addr16(svc.cfg.VIP), svc.cfg.Port)
			return Forward
		}
	}
	return w.drop(DropRealServerNoFlow) // a backend Update is adding: the next answer meets it
}

// clashPortMin and clashPortMax bound the ports NAT mode moves a client's
// port to when its own clashes (see newServiceFlow).
const clashPortMin, clashPortMax = 1024, 65535

// adoptReply takes up a flow from its real server's side: an answer of a
// sloppy NAT service's backend that serves only that service, for no flow
// this gateway knows (its client's packets went through another gateway
// behind ECMP, or this one restarted). The answer names the VIP on its
// own, so it is translated statelessly and the flow is tracked from here
// on: established for a TCP segment from mid-stream (ACK, no SYN or RST),
// as sloppy adopts one from the client's side; SYNACK for the real
// server's SYN-ACK, which comes here when the routers in front and
// behind the gateways hash the two directions of a new connection to
// different gateways (the client's SYN went through another one). A
// RST makes no flow and is dropped. The client's port is the one the
// answer goes to: a port another gateway moved for a clash (see
// newServiceFlow) cannot be known here.
func (w *Worker) adoptReply(b []byte, svc *service, s *slot) Verdict {
	p, e := w.p, w.e
	state := uint32(stateUDP)
	if p.Proto == packet.ProtoTCP {
		switch p.TCPFlags & (packet.TCPFlagSYN | packet.TCPFlagACK | packet.TCPFlagRST) {
		case packet.TCPFlagACK:
			state = uint32(tcpEstablished)
		case packet.TCPFlagSYN | packet.TCPFlagACK:
			// Where a flow that saw the SYN is after its SYN-ACK: the
			// client's ACK (or the server's next segment) establishes it.
			state = uint32(tcpSynAck)
		default:
			return w.drop(DropRealServerNoFlow)
		}
		if !w.checksumOK(b) {
			return w.drop(DropBadChecksum)
		}
	}
	var own *owner
	for _, o := range svc.backends {
		if d := o.dest.Load(); d != nil && d.Addr() == p.Src && d.Port() == p.SrcPort {
			own = o
			break
		}
	}
	if own == nil {
		return w.drop(DropRealServerNoFlow) // a backend Update is adding: the next answer meets it
	}
	sl := e.src.slotOf(p.Dst) // the client's
	if why, ok := w.snap.admit(sl, state); !ok {
		return w.drop(why)
	}
	vip := addr16(svc.cfg.VIP)
	t := Tuple{Src: p.Dst, SrcPort: p.DstPort, Dst: vip, DstPort: svc.cfg.Port, Proto: p.Proto}
	orig := t.words()
	ho := orig.hash()
	idx, evicted, err := e.tab.insert(&orig, ho, &s.kw, own.id|e.logBit(own, ho), state, uint32(w.now+w.snap.timeout[state]), e)
	if evicted {
		e.counts.evictions.Add(1)
	}
	switch {
	case err == ErrFlowExists:
		// Another worker took it up meanwhile, or the client's port
		// holds a flow to the VIP on another real server: drop, and
		// the retransmission finds what is there.
		return w.drop(DropRealServerNoFlow)
	case err != nil:
		return w.drop(DropTableFull)
	}
	w.countNewFlow(own, state, DirReply, len(b))
	w.startLog(idx, DirReply, len(b))
	w.syncNote(idx, e.tab.flows[idx].gen.Load())
	sl.count(state, 1)
	e.countHalfOpen(state, 1)
	if p.Proto == packet.ProtoTCP {
		w.seg.read(b, p)
		if p.TCPFlags&packet.TCPFlagSYN != 0 {
			e.tab.flows[idx].tcp.startReplySyn(&w.seg)
		} else {
			e.tab.flows[idx].tcp.startReply(&w.seg)
		}
	}
	packet.SetSrc(b, p, vip, svc.cfg.Port)
	return Forward
}

// countNewFlow counts a flow of owner own just made in state state from
// an n-byte packet of direction d: a connection for the backend and its
// service, the packet, and the backend's active or inactive count.
func (w *Worker) countNewFlow(own *owner, state uint32, d Dir, n int) {
	w.counters(own.stat).add(cConns, 1)
	if svc := own.svc.Load(); svc != nil {
		w.counters(svc.stat).add(cConns, 1)
	}
	w.countPacket(own, d, n)
	if dst := own.dest.Load(); dst != nil {
		if state == uint32(tcpEstablished) {
			dst.Add(1, 0)
		} else {
			dst.Add(0, 1)
		}
	}
}

// persistOutcome gives back the template's connection if the flow was not
// created after all.
func (w *Worker) persistOutcome(svc *service, pk persistKey, v Verdict) Verdict {
	if svc.persist > 0 && v != Forward {
		w.e.persist.release(pk, w.now, svc.persist)
	}
	return v
}

func (w *Worker) newMasqFlow(b []byte, m *masqRule, kw *tupleWords) Verdict {
	p := w.p
	// The key's ports: an echo's identifier for ICMP (see tupleWords.fill).
	sport, dport := uint16(kw[4]>>32), uint16(kw[4]>>16)
	reply := Tuple{Src: p.Dst, SrcPort: dport, Dst: m.to, DstPort: sport, Proto: p.Proto}
	state := uint32(stateUDP)
	switch {
	case p.IsICMPEcho():
		if !p.IsICMPEchoRequest() {
			return w.drop(DropNoFlow) // only a request opens an echo flow
		}
		state = uint32(stateICMP)
	case p.Proto == packet.ProtoTCP:
		// Only a SYN opens a flow, as for services: a stray segment
		// would otherwise open a hole in the masquerade.
		if !opensFlow(p) {
			return w.drop(DropNoFlow)
		}
		if !w.checksumOK(b) {
			return w.drop(DropBadChecksum)
		}
		state = uint32(tcpTransitions[DirOriginal][tcpEvent(p.TCPFlags)][tcpNone])
	}
	// Keep the source port if it is free; otherwise probe the range.
	return w.insertWithPort(b, kw, &reply, m.ports, sport, m.own, state, false)
}

// opensFlow reports whether a TCP segment may open a flow: a SYN, without
// ACK or RST.
func opensFlow(p *packet.Parsed) bool {
	return p.TCPFlags&(packet.TCPFlagSYN|packet.TCPFlagACK|packet.TCPFlagRST) == packet.TCPFlagSYN
}

// portProbes bounds the search for a free port, as conntrack's NAT does.
const portProbes = 128

// insertWithPort inserts the flow kw <-> reply. With a port range, it picks
// the reply's destination port (the gateway-side port: FULLNAT's local
// port, masquerade's source port), starting at first, so that no two flows
// share a reply tuple; mustMove makes it skip first's own value when it is
// outside the range.
func (w *Worker) insertWithPort(b []byte, kw *tupleWords, reply *Tuple, ports [2]uint16, first uint16, own *owner, state uint32, mustMove bool) Verdict {
	e := w.e
	p := w.p
	probes := 1
	span := uint32(ports[1]) - uint32(ports[0]) + 1
	start := uint32(first) % span // where probing in the range begins
	if ports != [2]uint16{} {
		probes = portProbes
		if mustMove && (first < ports[0] || first > ports[1]) {
			first = ports[0] + uint16(start)
		}
	}
	sl := e.src.slotOf(p.Src)
	if why, ok := w.snap.admit(sl, state); !ok {
		return w.drop(why)
	}
	deadline := uint32(w.now + w.snap.timeout[state])
	var ownID uint32
	if own != nil {
		ownID = own.id | e.logBit(own, w.h)
	}
	for i := range probes {
		if ports != [2]uint16{} {
			// First the port (or echo identifier) the flow has, if free,
			// even outside the range, as masquerading keeps it; then
			// ports of the range.
			reply.DstPort = ports[0] + uint16((start+uint32(i)*uint32(w.portStep()))%span)
			if i == 0 {
				reply.DstPort = first
			}
			if p.IsICMPEcho() {
				reply.SrcPort = reply.DstPort // an echo's identifier is both "ports"
			}
		}
		rw := reply.words()
		idx, evicted, err := e.tab.insert(kw, w.h, &rw, ownID, state, deadline, e)
		if evicted {
			e.counts.evictions.Add(1) // even if the insert failed after all
		}
		if err == ErrFlowExists {
			continue
		}
		if err != nil {
			return w.drop(DropTableFull)
		}
		if own != nil {
			w.countNewFlow(own, state, DirOriginal, len(b))
			w.startLog(idx, DirOriginal, len(b))
			w.syncNote(idx, e.tab.flows[idx].gen.Load())
		}
		sl.count(state, 1)
		e.countHalfOpen(state, 1)
		if p.Proto == packet.ProtoTCP {
			w.seg.read(b, p)
			e.tab.flows[idx].tcp.start(&w.seg)
			if w.proxy.on {
				w.markProxied(idx)
			}
		}
		rewrite(b, p, reply.Dst, reply.DstPort, reply.Src, reply.SrcPort)
		return Forward
	}
	return w.drop(DropPortsExhausted) // every port probed is taken
}

// firstPort is where a port vsgate chooses (FULLNAT's, masquerading's)
// is first looked for: the top 16 bits of the flow's hash. Its low bits
// hardly change with the client's port (the 28,232 ports of one client's
// ephemeral range fell on 7,252 values, against about 23,000 by chance:
// TestFirstPortSpread), which made new connections meet each other's
// ports three times as often.
func (w *Worker) firstPort() uint16 { return uint16(w.h >> 48) }

// portStep is an odd stride so successive probes visit the range widely.
func (w *Worker) portStep() uint32 {
	w.portRotation += 2
	return w.portRotation | 1
}

// evictable: the engine's eviction policy, as DESIGN.md fixes it: only
// flows not established (half-open TCP, UDP and ICMP) are evicted, oldest
// deadline first; an established TCP flow never makes room for a new one.
func (e *Engine) evictable(f *flow) (bool, int64) {
	s := f.state.Load()
	if s&stateDead != 0 || tcpState(s&stateMask) == tcpEstablished {
		return false, 0
	}
	return true, -ticksLeft(f.deadline.Load(), e.clock.Load())
}

// evicted accounts for a flow removed to make room.
func (e *Engine) evicted(idx uint32, f *flow) bool {
	if ok, _ := e.evictable(f); !ok {
		return false // established since it was picked
	}
	return e.retire(idx, f, EndEvicted)
}

// retire marks flow idx dead, gives its connection back to its backend's
// counters and persistence template, and logs its end (for reason why:
// EndTimeout and EndReplaced become EndFIN or EndRST for a closed TCP
// flow, see endOf) if it is logged. Called under the table's locks, just
// before the slot is freed.
// It always lets the flow go (true: see table.remove).
func (e *Engine) retire(idx uint32, f *flow, why EndReason) bool {
	for {
		s := f.state.Load()
		if f.state.CompareAndSwap(s, s|stateDead) {
			if s&stateDead != 0 {
				return true
			}
			e.sourceOf(f).count(s&stateMask, -1)
			e.countHalfOpen(s&stateMask, -1)
			own := e.ownerOf(f)
			if f.meta.Load()&metaLogged != 0 {
				if why == EndTimeout || why == EndReplaced {
					why = endOf(s&stateMask, why)
				}
				e.logEnd(idx, f, own, s&stateMask, why)
			}
			if own == nil {
				return true
			}
			d := own.dest.Load()
			if d == nil {
				return true
			}
			if tcpState(s&stateMask) == tcpEstablished {
				d.Add(-1, 0)
			} else {
				d.Add(0, -1)
			}
			if svc := own.svc.Load(); svc.persist > 0 {
				orig := f.key(DirOriginal)
				e.persist.release(persistKeyOf(svc, addrOfWords(orig[0], orig[1])), e.clock.Load(), svc.persist)
			}
			return true
		}
	}
}

// Expire removes every flow whose deadline has passed and returns how
// many. The gateway calls it from a ticker after Advance. It costs the
// live flows, not the table's capacity: it walks the shards' live lists
// (each copied under its shard's lock, briefly), and takes locks again
// only for the flows it removes. Calls are serialised.
func (e *Engine) Expire() int {
	e.expireMu.Lock()
	defer e.expireMu.Unlock()
	now := e.clock.Load()
	n := 0
	e.expireBuf = e.tab.liveFlows(e.expireBuf[:0])
	for _, i := range e.expireBuf {
		f := &e.tab.flows[i]
		gen := f.gen.Load()
		if gen&1 == 1 || !expired(f.deadline.Load(), now) {
			continue
		}
		if e.tab.remove(i, gen, func(idx uint32, f *flow) bool {
			// A packet may have pushed the deadline out since the
			// check above, which ran without a lock.
			return expired(f.deadline.Load(), now) && e.retire(idx, f, EndTimeout)
		}) {
			n++
		}
	}
	e.counts.expired.Add(uint64(n))
	e.persist.expire(now)
	e.held.expire(e, now)
	e.mu.Lock()
	q := e.quiescent()
	keep := e.staleOwners[:0]
	for _, own := range e.staleOwners {
		if own.drainStale(q); len(own.stale) > 0 {
			keep = append(keep, own)
		}
	}
	clear(e.staleOwners[len(keep):])
	e.staleOwners = keep
	e.mu.Unlock()
	return n
}

// icmpError translates an ICMP error about a tracked flow: the quoted
// packet went the other way, translated; the error is rewritten as a packet
// of its own direction and the quote restored to what its sender sent
// before translation, so path-MTU discovery works through the gateway.
func (w *Worker) icmpError(b []byte) Verdict {
	p, in := w.p, &w.inner
	if packet.ParseICMPError(b, p, in) != packet.ReasonNone {
		return w.drop(DropICMPNoFlow)
	}
	if in.IsFragment() && !in.HasL4Header() {
		return w.drop(DropICMPNoFlow)
	}
	q := tupleOf(in)
	// The quote travelled opposite to the error: look up its reverse.
	rev := Tuple{Src: q.Dst, Dst: q.Src, SrcPort: q.DstPort, DstPort: q.SrcPort, Proto: q.Proto}
	rw := rev.words()
	ref, gen, ok := w.e.tab.lookup(&rw)
	if !ok {
		return w.drop(DropICMPNoFlow)
	}
	f := &w.e.tab.flows[ref.index()]
	d := ref.dir()
	other := f.key(1 - d)
	if f.gen.Load() != gen {
		return w.drop(DropICMPNoFlow)
	}
	o := other.tuple()
	// The quote is a packet of direction 1-d as the flow's key has it.
	if in.IsICMPEcho() {
		if in.Src != o.Src {
			packet.SetInnerSrc(b, p, in, o.Src, 0)
		}
		if in.Dst != o.Dst {
			packet.SetInnerDst(b, p, in, o.Dst, 0)
		}
		if in.ICMPID != o.SrcPort {
			packet.SetInnerICMPID(b, p, in, o.SrcPort)
		}
	} else {
		if in.Src != o.Src || in.SrcPort != o.SrcPort {
			packet.SetInnerSrc(b, p, in, o.Src, o.SrcPort)
		}
		if in.Dst != o.Dst || in.DstPort != o.DstPort {
			packet.SetInnerDst(b, p, in, o.Dst, o.DstPort)
		}
	}
	// The outer header travels in direction d and gets that direction's
	// address translation, but only where the flow has one, as Linux's
	// NAT does: a masqueraded flow's replies have their destination
	// translated, not their source, so an error from a router on the
	// way keeps the router's address (traceroute from behind the
	// masquerade shows the hops); a NAT flow's replies get the VIP as
	// their source, so an error from behind the gateway does too.
	if rev.Src != o.Dst && p.Src != o.Dst {
		packet.SetSrc(b, p, o.Dst, 0)
	}
	if rev.Dst != o.Src && p.Dst != o.Src {
		packet.SetDst(b, p, o.Src, 0)
	}
	return Forward
}

// laterFragment translates a fragment without L4 header with the addresses
// its first fragment got.
func (w *Worker) laterFragment(b []byte) Verdict {
	p := w.p
	v, src, dst, ok := w.e.frags.get(fragKeyOf(p), w.now)
	if !ok {
		return w.drop(DropFragmentNoFirst)
	}
	if v != Forward {
		return v // as the first fragment: passed unchanged, or to L7
	}
	if p.Src != src {
		packet.SetSrc(b, p, src, 0)
	}
	if p.Dst != dst {
		packet.SetDst(b, p, dst, 0)
	}
	return Forward
}

// resetRemoved ends a flow whose backend is gone (Config.ResetRemoved):
// the flow is removed; a client's TCP segment is answered with a reset.
func (w *Worker) resetRemoved(b []byte, ref flowRef, gen uint32, d Dir, s *slot) Verdict {
	w.e.tab.remove(ref.index(), gen, func(idx uint32, f *flow) bool { return w.e.retire(idx, f, EndRemoved) })
	if d == DirOriginal {
		if n, ok := packet.MakeTCPReset(b, w.p); ok {
			s.n = n
			w.e.counts.resets.Add(1)
			return Reply
		}
	}
	return w.drop(DropBackendRemoved)
}
