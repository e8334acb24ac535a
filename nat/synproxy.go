package nat

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"
	"time"

	"github.com/vsgate/vsgate/packet"
)

// The SYN proxy, as the kernel's SYNPROXY target (nf_synproxy_core.c) and
// DPVS's synproxy do it. While a service's SYN proxy is on, vsgate answers
// a client's SYN itself with a SYN cookie (RFC 4987 §3.6) and keeps
// nothing; only a client's ACK that returns a valid cookie makes a flow.
// Then vsgate sends the real server the SYN the client sent (rebuilt from
// the cookie: MSS, window scale, SACK-permitted, timestamps), answers the
// real server's SYN-ACK with the client's ACK, opens the client's window,
// and from then on moves every segment between the two sequence spaces:
// the real server's sequence numbers (and the client's acknowledgements
// and SACK blocks), the timestamps, and the windows where the two sides
// believe different window scales.
//
// The cookie is Linux's (net/ipv4/syncookies.c, __cookie_v4_init_sequence):
//
//	cookie = H1 + client ISN + period<<24 + ((H2 + MSS index) & 0xffffff)
//
// with H1 and H2 the two halves of SipHash-2-4 over the flow's key and
// the period, keyed by a secret of the period. Periods are cookiePeriod
// long; a new random secret is drawn for every period (Advance) and the
// previous one is kept, so a cookie is good for one to two periods, as
// Linux's MAX_SYNCOOKIE_AGE. The MSS is one of four values per family
// (Linux's msstab). Window scale and SACK-permitted travel, as Linux
// encodes them, in the low six bits of the SYN-ACK's timestamp, which the
// client echoes; a client without timestamps gets neither (Linux clears
// both for a cookie without timestamps).
//
// The SYN-ACK offers a window of one segment (the kernel's SYNPROXY
// offers none): a client sends its first data at once, and vsgate holds
// it until the real server has answered (synhold.go), as a client's
// stack would wait. That first data carries the cookie too (its sequence
// number is the ACK's), so a connection whose ACK was lost opens with it;
// with a zero window the client would send only window probes, whose
// sequence number is one before, and wait. Data that finds no room in the
// hold, and data on the cookie-returning ACK itself, is dropped (counted:
// syn_proxy_early) and sent again by the client. A protocol where the
// server speaks first still depends on the ACK, as with any SYN cookie.
// The SYN-ACK offers window scale proxyWScale (Linux's usual shift); where
// the real server chose another, the real server's windows are rescaled on
// the way out, and the client's where the real server declined scaling.
//
// What it does not do: ECN is not offered (the kernel's SYNPROXY passes
// the ECN bit on; vsgate leaves ECN to connections it does not proxy);
// ICMP errors that quote a proxied flow's segments are translated as any
// flow's (addresses and ports), not moved between sequence spaces, which
// an endpoint that checks the quoted sequence number may ignore.

// SynProxy is a service's SYN proxy mode.
type SynProxy uint8

const (
	// SynProxyAuto proxies a service's new connections while the engine is
	// under pressure: its half-open TCP flows reach
	// Config.SynProxyHalfOpen, or the table's fill reaches
	// Config.SynProxyFill percent.
	SynProxyAuto SynProxy = iota
	SynProxyOff
	SynProxyOn
)

var synProxyNames = [...]string{"auto", "off", "on"}

func (m SynProxy) String() string {
	if int(m) < len(synProxyNames) {
		return synProxyNames[m]
	}
	return "?"
}

// ParseSynProxy reads a mode by its name.
func ParseSynProxy(s string) (SynProxy, bool) {
	for i, n := range synProxyNames {
		if s == n {
			return SynProxy(i), true
		}
	}
	return 0, false
}

const (
	// cookiePeriod is how long one secret makes cookies (Linux: 60 s).
	cookiePeriod = 64 * time.Second
	// proxyWScale is the window scale the SYN-ACK offers.
	proxyWScale = 7
	// Defaults of Config.SynProxyHalfOpen and SynProxyFill.
	defaultSynProxyHalfOpen = 1024
	defaultSynProxyFill     = 75
	// tsOptMask is the timestamp bits that carry window scale (low 4,
	// 0xf for none) and SACK-permitted (bit 4), as Linux's TSBITS.
	tsOptMask = 0x3f
	tsOptSACK = 0x10
	tsNoScale = 0xf
)

// Flags of a proxied flow's original side (tcpSide), beside sideSeen,
// sideWScale and sideAdopted; the client's own window scale is in bits
// 12-15 of that side, the one the client believes the real server uses
// in bits 12-15 of the reply side.
const (
	sideProxied  = 1 << 3 // the flow's handshake was vsgate's SYN cookie
	sideProxyTS  = 1 << 4 // the client uses timestamps with vsgate
	sideProxyWS  = 1 << 5 // the client was offered window scaling
	proxyScaleAt = 12
	proxyMSSAt   = 16 // bits 16-17: the cookie's MSS index, for a SYN sent again
)

// cookieMSS is the MSS of index i for IPv4 or IPv6 (Linux's msstab and
// msstab for IPv6).
func cookieMSS(v6 bool, i uint32) uint16 {
	if v6 {
		return [4]uint16{1220, 1420, 1440, 8940}[i]
	}
	return [4]uint16{536, 1300, 1440, 1460}[i]
}

// cookieMSSIndex is the index of the largest cookie MSS not above mss.
func cookieMSSIndex(v6 bool, mss uint16) uint32 {
	for i := uint32(3); i > 0; i-- {
		if cookieMSS(v6, i) <= mss {
			return i
		}
	}
	return 0
}

// cookieKeys are the cookie secrets: keys[p&1] is period p's, for the
// current period and the one before. Replaced whole (Advance).
type cookieKeys struct {
	period uint32
	keys   [2][2]uint64
}

func randomKey() [2]uint64 {
	var b [16]byte
	rand.Read(b[:])
	return [2]uint64{binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])}
}

// rotateCookies draws the secret of the period the clock is in, if it has
// not been drawn, keeping the previous period's.
func (e *Engine) rotateCookies() {
	p := uint32(time.Duration(e.clock.Load()) * e.tick / cookiePeriod)
	old := e.cookies.Load()
	if old != nil && old.period == p {
		return
	}
	k := &cookieKeys{period: p}
	if old != nil && old.period+1 == p {
		k.keys[(p-1)&1] = old.keys[(p-1)&1]
	} else {
		k.keys[(p-1)&1] = randomKey()
	}
	k.keys[p&1] = randomKey()
	e.cookies.Store(k)
}

// hash is SipHash-2-4 of the flow key and period p under p's secret, as
// H1 (low half) and H2.
func (k *cookieKeys) hash(kw *tupleWords, p uint32) (uint32, uint32) {
	key := &k.keys[p&1]
	h := sipHash(key[0], key[1], kw[0], kw[1], kw[2], kw[3], kw[4], uint64(p))
	return uint32(h), uint32(h >> 32)
}

// cookie is the ISN for the SYN-ACK that answers a SYN of key kw with
// sequence number isn, carrying MSS index mss.
func (k *cookieKeys) cookie(kw *tupleWords, isn, mss uint32) uint32 {
	h1, h2 := k.hash(kw, k.period)
	return h1 + isn + k.period<<24 + (h2+mss)&0xffffff
}

// check reports whether cookie answers the SYN of key kw with sequence
// number isn in this period or the one before, and the MSS index it holds.
func (k *cookieKeys) check(kw *tupleWords, isn, cookie uint32) (uint32, bool) {
	for age := range uint32(2) {
		p := k.period - age
		h1, h2 := k.hash(kw, p)
		v := cookie - h1 - isn
		if v>>24 != p&0xff {
			continue
		}
		if mss := (v - h2) & 0xffffff; mss < 4 {
			return mss, true
		}
	}
	return 0, false
}

// sipHash is SipHash-2-4 of the 8-byte little-endian words m (a message of
// 8*len(m) bytes) under key k0, k1.
func sipHash(k0, k1 uint64, m ...uint64) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13) ^ v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16) ^ v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21) ^ v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17) ^ v2
		v2 = bits.RotateLeft64(v2, 32)
	}
	for _, x := range m {
		v3 ^= x
		round()
		round()
		v0 ^= x
	}
	last := uint64(len(m)*8) << 56
	v3 ^= last
	round()
	round()
	v0 ^= last
	v2 ^= 0xff
	round()
	round()
	round()
	round()
	return v0 ^ v1 ^ v2 ^ v3
}

// synProxyOn reports whether new connections to svc are proxied now.
func (w *Worker) synProxyOn(svc *service) bool {
	switch svc.cfg.SynProxy {
	case SynProxyOn:
		return true
	case SynProxyOff:
		return false
	}
	if svc.cfg.Sloppy || svc.cfg.Mode == ModeDR {
		// Behind ECMP the real server's SYN-ACK may come back through
		// another gateway, which cannot finish a proxied handshake:
		// auto leaves sloppy services alone (on still proxies).
		return false
	}
	// The fill is the new flow's shard's, scaled: one cache line the
	// insert writes anyway, not a sum over every shard per SYN.
	return int64(w.e.counts.halfOpen.Load()) >= w.snap.synProxyHalfOpen || w.e.tab.shardLen(w.h) >= w.snap.synProxyFill
}

// cookieTimestamp is the SYN-ACK's timestamp: the clock in milliseconds
// with the low bits carrying window scale and SACK-permitted (Linux's
// cookie_init_timestamp).
func (w *Worker) cookieTimestamp(o *packet.TCPOptions) uint32 {
	now := uint32(time.Duration(w.now) * w.e.tick / time.Millisecond)
	opts := uint32(tsNoScale)
	if o.HasWScale {
		opts = uint32(o.WScale)
	}
	if o.SACKPermit {
		opts |= tsOptSACK
	}
	ts := now&^tsOptMask | opts
	if ts > now {
		ts -= tsOptMask + 1
	}
	return ts
}

// answerSyn turns the client's SYN in b into the SYN-ACK that answers it
// with a cookie, in place (Reply), keeping nothing.
func (w *Worker) answerSyn(b []byte, svc *service, s *slot) Verdict {
	p, kw := w.p, &s.kw
	if len(svc.up) == 0 {
		return w.drop(DropNoBackend)
	}
	t := packet.TCP(b[p.L4Off:p.End])
	o := t.Options()
	v6 := p.Version == 6
	if !o.HasMSS {
		o.MSS = cookieMSS(v6, 0)
	}
	keys := w.e.cookies.Load()
	r := packet.TCPSegment{
		Src: p.Dst, Dst: p.Src, SrcPort: p.DstPort, DstPort: p.SrcPort,
		Seq: keys.cookie(kw, t.Seq(), cookieMSSIndex(v6, o.MSS)), Ack: t.Seq() + 1,
		Flags: packet.TCPFlagSYN | packet.TCPFlagACK, V4: !v6,
	}
	r.Options.HasMSS, r.Options.MSS = true, 1460
	if v6 {
		r.Options.MSS = 1440
	}
	r.Window = r.Options.MSS // one segment: what synhold.go holds
	if o.HasTimestamp {
		r.Options.HasTimestamp = true
		r.Options.TSval, r.Options.TSecr = w.cookieTimestamp(&o), o.TSval
		r.Options.SACKPermit = o.SACKPermit
		r.Options.HasWScale, r.Options.WScale = o.HasWScale, proxyWScale
	}
	n, ok := r.Write(b[:cap(b)])
	if !ok {
		return w.drop(DropSynProxyCookie) // no room to answer in: cannot happen with device buffers
	}
	w.e.counts.cookiesSent.Add(1)
	s.n = n
	return Reply
}

// proxyStart is what the cookie-returning ACK tells the flow it makes,
// kept by the worker while the flow is created.
type proxyStart struct {
	on          bool
	cookie      uint32 // vsgate's ISN towards the client
	ts          uint32 // vsgate's timestamp in the SYN-ACK (with timestamps)
	clientScale uint8  // the client's window scale (with wscale)
	mssIndex    uint32 // the cookie's MSS index (cookieMSS)
	timestamps  bool
	wscale      bool
	idx, gen    uint32 // the flow made (markProxied)
}

// acceptCookie handles a client's ACK for no flow to a proxied service:
// if it returns a valid cookie, it is turned in place into the SYN the
// client sent, and the flow is made for it as for any SYN. ok is false if
// the cookie is not valid (nothing counted).
func (w *Worker) acceptCookie(b []byte, svc *service, s *slot) (v Verdict, ok bool) {
	p, kw := w.p, &s.kw
	if p.IsFragment() || w.segs > 1 {
		return 0, false
	}
	t := packet.TCP(b[p.L4Off:p.End])
	seq, ack := t.Seq(), t.Ack()
	mss, ok := w.e.cookies.Load().check(kw, seq-1, ack-1)
	if !ok {
		return 0, false
	}
	o := t.Options()
	v6 := p.Version == 6
	syn := packet.TCPSegment{
		Src: p.Src, Dst: p.Dst, SrcPort: p.SrcPort, DstPort: p.DstPort,
		Seq: seq - 1, Flags: packet.TCPFlagSYN, V4: !v6,
	}
	syn.Options.HasMSS, syn.Options.MSS = true, cookieMSS(v6, mss)
	w.proxy = proxyStart{on: true, cookie: ack - 1, mssIndex: mss}
	win := uint32(t.Window())
	if o.HasTimestamp {
		w.proxy.timestamps, w.proxy.ts = true, o.TSecr
		syn.Options.HasTimestamp, syn.Options.TSval = true, o.TSval
		syn.Options.SACKPermit = o.TSecr&tsOptSACK != 0
		if sc := o.TSecr & 0xf; sc <= packet.TCPMaxWindowScale {
			syn.Options.HasWScale, syn.Options.WScale = true, uint8(sc)
			w.proxy.wscale, w.proxy.clientScale = true, uint8(sc)
			win <<= sc
		}
	}
	syn.Window = uint16(min(win, 0xffff))
	// Data on the segment (the first data of a client whose ACK was
	// lost): kept aside to be held for the flow once it is made.
	var data []byte
	if p.End > p.PayloadOff && len(b) <= heldSlotSize {
		data = w.synthBuf(len(b))
		copy(data, b)
	}
	n, ok := syn.Write(b[:cap(b)])
	if !ok {
		w.proxy.on = false
		return w.drop(DropSynProxyCookie), true
	}
	w.e.counts.cookiesValid.Add(1)
	packet.Parse(b[:n], p) // a segment it wrote: parses
	s.n = n
	w.csumOK = true
	v = w.newServiceFlow(b[:n], svc, s)
	w.proxy.on = false
	if v == Forward {
		v = Reply // a packet vsgate wrote, with complete checksums
		if data != nil && packet.Parse(data, &w.pp) == packet.ReasonNone {
			w.e.early.hold(w.e, w.proxy.idx, w.proxy.gen, data, &w.pp)
		}
	}
	return v, true
}

// markProxied makes flow f, just started from the SYN acceptCookie
// rebuilt, a proxied one.
func (w *Worker) markProxied(idx uint32) {
	ps, f, sh := &w.proxy, &w.e.tab.flows[idx], &w.e.tab.proxy[idx]
	ps.idx, ps.gen = idx, f.gen.Load()
	sh[0].Store(ps.cookie)
	sh[1].Store(ps.ts)
	fl := f.tcp[DirOriginal].flags() | sideProxied | uint32(ps.clientScale)<<proxyScaleAt | ps.mssIndex<<proxyMSSAt
	if ps.timestamps {
		fl |= sideProxyTS
	}
	if ps.wscale {
		fl |= sideProxyWS
	}
	f.tcp[DirOriginal].setFlags(fl)
}

// proxyFromClient moves a client's segment of proxied flow f (slab
// index idx, generation gen) into the real server's sequence space,
// before the window check. Before the real server has answered, a
// segment with data or FIN is held (Held; synhold.go); one sent again (its
// sequence number is held already) or with no room to be held becomes the
// SYN to the real server again, in case that was lost; anything else is
// dropped. Then it reports false with the verdict.
func (w *Worker) proxyFromClient(b []byte, f *flow, sh *proxyShifts, of, idx, gen uint32, s *slot) (Verdict, bool) {
	if pending(f.state.Load(), gen) {
		p := w.p
		if p.End == p.PayloadOff && p.TCPFlags&packet.TCPFlagFIN == 0 || p.TCPFlags&packet.TCPFlagRST != 0 || p.IsFragment() || w.segs > 1 {
			return w.drop(DropSynProxyEarly), false
		}
		if w.e.early.hold(w.e, idx, gen, b, p) {
			return Held, false
		}
		return w.resendServerSyn(b, idx, gen, s), false
	}
	ts := packet.TCPShift{
		Ack: sh[0].Load(), TSecr: sh[1].Load(),
		WindowFrom: uint8(of >> proxyScaleAt & 0xf), WindowTo: uint8(of >> 8 & 0xf),
	}
	packet.ShiftTCP(b, w.p, &ts)
	return 0, true
}

// resendServerSyn turns client segment b of proxied flow idx (generation
// gen), whose real server has not answered, into the SYN to the real
// server again (Reply): the first may have been lost, and nothing else
// would send it again — the client's segments are held or dropped until
// the real server answers, so the client's retransmissions drive the
// SYN's. The SYN is the one acceptCookie made (the client's sequence
// number, the cookie's MSS, the window scale and SACK it offered) with the
// client's current window, already translated to the real server. Its
// timestamp is b's, or the earliest of the segments held for the flow if
// that is older: the real server's SYN-ACK echoes the SYN's, the ACK that
// answers it (serverSynAck) carries the echo, and a real server drops
// (PAWS, RFC 7323 §5) a segment whose timestamp is older than that — b, a
// retransmission, is later than the segments held before it.
func (w *Worker) resendServerSyn(b []byte, idx, gen uint32, s *slot) Verdict {
	p := w.p
	f, sh := &w.e.tab.flows[idx], &w.e.tab.proxy[idx]
	of := f.tcp[DirOriginal].flags()
	t := packet.TCP(b[p.L4Off:p.End])
	o := t.Options()
	v6 := p.Version == 6
	reply := f.key(DirReply) // the real server to the client (or the FULLNAT address)
	syn := packet.TCPSegment{
		Src: addrOfWords(reply[2], reply[3]), SrcPort: uint16(reply[4] >> 16),
		Dst: addrOfWords(reply[0], reply[1]), DstPort: uint16(reply[4] >> 32),
		Seq: f.tcp[DirOriginal].end() - 1, Flags: packet.TCPFlagSYN, V4: !v6,
	}
	syn.Options.HasMSS, syn.Options.MSS = true, cookieMSS(v6, of>>proxyMSSAt&3)
	win := uint32(t.Window())
	if of&sideProxyTS != 0 && o.HasTimestamp {
		ts := o.TSval
		if held, ok := w.e.early.earliestTSval(idx, gen); ok && seqBefore(held, ts) {
			ts = held
		}
		syn.Options.HasTimestamp, syn.Options.TSval = true, ts
		syn.Options.SACKPermit = sh[1].Load()&tsOptSACK != 0
	}
	if of&sideProxyWS != 0 {
		sc := uint8(of >> proxyScaleAt & 0xf)
		syn.Options.HasWScale, syn.Options.WScale = true, sc
		win <<= sc
	}
	syn.Window = uint16(min(win, 0xffff))
	n, ok := syn.Write(b[:cap(b)])
	if !ok {
		return w.drop(DropSynProxyEarly)
	}
	packet.Parse(b[:n], p) // a segment it wrote: parses
	s.n = n
	w.e.counts.serverSynResent.Add(1)
	return Reply
}

// proxyFromServer moves a real server's segment of proxied flow f into the
// client's sequence space, after the window check. Before the flow is
// settled only a RST goes on (at the sequence number the client expects).
func (w *Worker) proxyFromServer(b []byte, f *flow, sh *proxyShifts) bool {
	if st := f.state.Load() & stateMask; st == uint32(tcpSynRecv) || st == uint32(tcpSynAck) {
		if w.p.TCPFlags&packet.TCPFlagRST == 0 {
			w.drop(DropSynProxyEarly)
			return false
		}
		t := packet.TCP(b[w.p.L4Off:w.p.End])
		// The real server refuses the connection vsgate opened: as in
		// RFC 793's SYN-SENT, only a reset that acknowledges the SYN
		// (vsgate's carried the client's sequence number, one before the
		// client side's end) is taken; any other is a blind guess.
		if w.p.TCPFlags&packet.TCPFlagACK == 0 || t.Ack() != f.tcp[DirOriginal].end() {
			w.drop(DropTCPOutOfWindow)
			return false
		}
		ts := packet.TCPShift{Seq: sh[0].Load() + 1 - t.Seq()}
		packet.ShiftTCP(b, w.p, &ts)
		return true
	}
	rf := f.tcp[DirReply].flags()
	ts := packet.TCPShift{
		Seq: -sh[0].Load(), TSval: -sh[1].Load(),
		WindowFrom: uint8(rf >> 8 & 0xf), WindowTo: uint8(rf >> proxyScaleAt & 0xf),
	}
	packet.ShiftTCP(b, w.p, &ts)
	return true
}

// serverSynAck handles the real server's SYN-ACK of proxied flow f (past
// the window check): it settles the flow's shifts, turns the SYN-ACK in
// place into the client's ACK to the real server (Reply), and releases the
// ACK that opens the client's window. A SYN-ACK again (the real server
// did not get the ACK) is answered with the ACK again.
func (w *Worker) serverSynAck(b []byte, f *flow, idx uint32, sh *proxyShifts, own *owner, gen uint32, s *slot) Verdict {
	p := w.p
	t := packet.TCP(b[p.L4Off:p.End])
	o := t.Options()
	sseq, sack, swin := t.Seq(), t.Ack(), uint32(t.Window())
	st := f.state.Load() & stateMask
	of := f.tcp[DirOriginal].flags()
	if st == uint32(tcpSynRecv) {
		cookie, ts := sh[0].Load(), sh[1].Load()
		sh[0].Store(sseq - cookie)
		if o.HasTimestamp && of&sideProxyTS != 0 {
			sh[1].Store(o.TSval - ts)
		} else {
			sh[1].Store(0)
		}
		adv := uint32(0)
		if of&sideProxyWS != 0 {
			adv = proxyWScale
		}
		f.tcp[DirReply].setFlags(f.tcp[DirReply].flags() | adv<<proxyScaleAt)
		// The ACK that opens the client's window, from the VIP.
		orig := f.key(DirOriginal)
		open := packet.TCPSegment{
			Src: addrOfWords(orig[2], orig[3]), Dst: addrOfWords(orig[0], orig[1]),
			SrcPort: uint16(orig[4] >> 16), DstPort: uint16(orig[4] >> 32),
			Seq: cookie + 1, Ack: sack, Flags: packet.TCPFlagACK, V4: p.Version == 4,
			Window: uint16(max(swin>>adv, min(swin, 1))),
		}
		if of&sideProxyTS != 0 {
			open.Options.HasTimestamp, open.Options.TSval, open.Options.TSecr = true, ts, o.TSecr
		}
		w.release(&open)
		w.countPacket(own, DirReply, len(b))
		if f.meta.Load()&metaLogged != 0 {
			w.countLogged(idx, DirReply, len(b))
		}
		w.touch(f, DirReply, own, gen, tcpEvent(p.TCPFlags))
	}
	// The client's ACK, as the real server expects it.
	believed := f.tcp[DirOriginal].flags() >> 8 & 0xf
	ack := packet.TCPSegment{
		Src: p.Dst, Dst: p.Src, SrcPort: p.DstPort, DstPort: p.SrcPort,
		Seq: sack, Ack: sseq + 1, Flags: packet.TCPFlagACK, V4: p.Version == 4,
		Window: uint16(min(f.tcp[DirOriginal].maxwin()>>believed, 0xffff)),
	}
	if o.HasTimestamp {
		ack.Options.HasTimestamp, ack.Options.TSval, ack.Options.TSecr = true, o.TSecr, o.TSval
	}
	n, ok := ack.Write(b[:cap(b)])
	if !ok {
		return w.drop(DropSynProxyCookie)
	}
	s.n = n
	if st == uint32(tcpSynRecv) {
		packet.Parse(b[:n], &w.pp)
		w.seg.read(b[:n], &w.pp)
		f.tcp.inWindow(DirOriginal, &w.seg, tcpSynAck)
		w.touch(f, DirOriginal, own, gen, tcpEvent(packet.TCPFlagACK))
		w.releaseHeld(idx, gen)
	}
	return Reply
}

// releaseHeld sends the client segments held for flow idx (generation
// gen), now settled, through the engine as they would have gone, and
// queues them (Released) after the ACK that opens the client's window.
func (w *Worker) releaseHeld(idx, gen uint32) {
	w.heldOut = w.e.early.take(idx, gen, w.synthBuf, w.heldOut[:0])
	if len(w.heldOut) == 0 {
		return
	}
	p, h, segs, csumOK := w.p, w.h, w.segs, w.csumOK
	for _, b := range w.heldOut {
		s := &w.hslot
		if packet.Parse(b, &s.p) != packet.ReasonNone {
			continue // it parsed when it was held: cannot happen
		}
		s.kw.fill(&s.p)
		s.h, s.hit, s.n = s.kw.hash(), false, 0
		w.p, w.h, w.segs, w.csumOK = &s.p, s.h, 1, true
		if v := w.translate(b, s); v == Forward {
			w.released, w.releasedV = append(w.released, b), append(w.releasedV, v)
		}
	}
	w.p, w.h, w.segs, w.csumOK = p, h, segs, csumOK
}

// release queues a segment vsgate writes besides the packets it was given
// (Released), in a buffer of the worker's.
func (w *Worker) release(seg *packet.TCPSegment) {
	buf := w.synthBuf(seg.Len())
	n, ok := seg.Write(buf)
	if !ok {
		return
	}
	w.released, w.releasedV = append(w.released, buf[:n]), append(w.releasedV, Reply)
}

// synthBuf returns a buffer of n bytes (at most heldSlotSize) of the
// worker's, valid until its next Process call. The worker keeps what it
// grew to: as many as one call ever needed.
func (w *Worker) synthBuf(n int) []byte {
	if w.synthUsed == len(w.synth) {
		w.synth = append(w.synth, make([]byte, heldSlotSize))
	}
	w.synthUsed++
	return w.synth[w.synthUsed-1][:n]
}
