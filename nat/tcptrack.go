package nat

import (
	"encoding/binary"
	"sync/atomic"

	"github.com/vsgate/vsgate/packet"
)

// TCP window tracking, as the kernel's conntrack does it (nf_conntrack_
// proto_tcp.c, tcp_in_window, after Guido van Rooij's "Real Stateful TCP
// Packet Filtering in IP Filter"), so that a segment a real endpoint would
// not accept does not move a flow's state: a blind RST or FIN, an ACK that
// acknowledges what was never sent (a spoofed handshake), a segment far
// outside the window. Each direction keeps the highest sequence number it
// sent (end), the highest one the other side's window lets it send
// (maxend) and the largest window it advertised (maxwin), in the flow's
// slot (16 bytes a direction, so a flow is 128 bytes: two cache lines).
// A segment is in the window when
//
//	seq <= sender.maxend                                (I)
//	end >= sender.end - receiver.maxwin                 (II)
//	ack <= receiver.end                                 (III)
//	ack >= receiver.end - max(sender.maxwin, 66000)     (IV)
//
// A segment out of the window is dropped and counted (tcp_out_of_window)
// unless the flow's service (or the engine) is liberal
// (Service.TCPLiberal, Config.TCPLiberal: conntrack's be_liberal, for
// deployments where vsgate sees one direction only).
//
// RST, as conntrack handles it (RFC 5961 §3.2 is the endpoints' job): a
// RST must be in the window like any segment; one exactly at the next
// sequence number its sender would send (the end of what it sent, which
// is what the receiver expects) ends the flow; one elsewhere in the
// window is forwarded without changing the flow's state, so the endpoint
// answers it with its challenge ACK and a blind RST closes nothing.
// (Conntrack also keeps the highest acknowledgement each side sent and
// drops a RST below it as invalid; vsgate leaves that out to keep a flow
// in two cache lines: such a RST is held like any inexact one, and the
// receiver, below its window, ignores it.)
//
// A side not seen yet (a flow adopted mid-stream, see Service.Sloppy, or
// the reply side before the real server's SYN-ACK) is taken from its first
// segment; checks that need it are skipped until then. A flow adopted
// mid-stream has no known window scale, so its windows are not checked
// (conntrack is as loose), but its RSTs still must be exact. A sloppy
// service's flow of which this gateway sees one direction only (ECMP in
// front and behind: Worker.oneSided) is not checked at all; one whose
// segment is ahead of its window only — it went through other gateways
// for a while and came back: Worker.cameBack — is taken up again as if
// adopted mid-stream.
//
// Workers update a flow's sides without a lock, as they update its state:
// every store is a compare-and-swap that only moves a value forward in
// sequence space, so two workers racing on one flow lose no advance. A
// worker on a flow recycled since it found it may store into the new
// flow's sides (as it may into its deadline): the generation checks
// around it make that a rare window, and its worst case is one flow
// treated liberally for a moment.

// tcpSide is one direction's sequence state (conntrack's ip_ct_tcp_state)
// in two words, so that starting a flow's sides takes three atomic stores,
// not eight.
type tcpSide struct {
	pos atomic.Uint64 // end << 32 | maxend
	win atomic.Uint64 // maxwin << 32 | flags: sideSeen, sideWScale, the scale shift in bits 8-11
}

func (t *tcpSide) end() uint32    { return uint32(t.pos.Load() >> 32) }
func (t *tcpSide) maxend() uint32 { return uint32(t.pos.Load()) }
func (t *tcpSide) maxwin() uint32 { return uint32(t.win.Load() >> 32) }
func (t *tcpSide) flags() uint32  { return uint32(t.win.Load()) }

// set stores a side whole.
func (t *tcpSide) set(end, maxend, maxwin, flags uint32) {
	t.pos.Store(uint64(end)<<32 | uint64(maxend))
	t.win.Store(uint64(maxwin)<<32 | uint64(flags))
}

// advanceEnd moves end forward to x if x is after it in sequence space.
func (t *tcpSide) advanceEnd(x uint32) {
	for {
		old := t.pos.Load()
		if !seqAfter(x, uint32(old>>32)) || t.pos.CompareAndSwap(old, uint64(x)<<32|old&0xffffffff) {
			return
		}
	}
}

// advanceMaxend moves maxend forward to x if x is after it.
func (t *tcpSide) advanceMaxend(x uint32) {
	for {
		old := t.pos.Load()
		if !seqAfter(x, uint32(old)) || t.pos.CompareAndSwap(old, old&^0xffffffff|uint64(x)) {
			return
		}
	}
}

// raiseMaxwin moves maxwin up to x if x is larger.
func (t *tcpSide) raiseMaxwin(x uint32) {
	for {
		old := t.win.Load()
		if x <= uint32(old>>32) || t.win.CompareAndSwap(old, uint64(x)<<32|old&0xffffffff) {
			return
		}
	}
}

// setFlags replaces the side's flags, keeping maxwin.
func (t *tcpSide) setFlags(f uint32) {
	for {
		old := t.win.Load()
		if t.win.CompareAndSwap(old, old&^0xffffffff|uint64(f)) {
			return
		}
	}
}

// tcpTrack is a flow's two sides, by direction.
type tcpTrack [2]tcpSide

const (
	sideSeen    = 1 << iota // a segment of this side has been seen
	sideWScale              // the side's SYN offered window scaling
	sideAdopted             // the side was taken up mid-stream: its window scale is unknown

	// maxAckWindow is conntrack's MAXACKWINCONST: how far behind the
	// receiver's end an acknowledgement may be.
	maxAckWindow = 66000
	// maxSynData is how much data a SYN may carry that its SYN-ACK need
	// not acknowledge (TCP Fast Open's cookie data).
	maxSynData = 65535
)

func seqBefore(a, b uint32) bool { return int32(a-b) < 0 }
func seqAfter(a, b uint32) bool  { return int32(b-a) < 0 }

// segment is what window tracking reads of a TCP segment.
type segment struct {
	seq, ack, end, win uint32
	flags              uint8
	scale              uint8 // the window scale option's shift, if wscale
	wscale             bool
}

// readSegment fills s from the parsed TCP packet b (Parse guarantees its
// header is whole).
func (s *segment) read(b []byte, p *packet.Parsed) {
	h := b[p.L4Off : p.L4Off+packet.TCPMinimumSize]
	s.seq = binary.BigEndian.Uint32(h[4:8])
	s.ack = binary.BigEndian.Uint32(h[8:12])
	s.win = uint32(binary.BigEndian.Uint16(h[14:16]))
	s.flags = p.TCPFlags
	s.end = s.seq + uint32(p.End-p.PayloadOff)
	s.wscale = false
	if s.flags&(packet.TCPFlagSYN|packet.TCPFlagFIN) != 0 {
		if s.flags&packet.TCPFlagSYN != 0 {
			s.end++
			s.scale, s.wscale = packet.TCP(b[p.L4Off:p.End]).WindowScale()
		}
		if s.flags&packet.TCPFlagFIN != 0 {
			s.end++
		}
	}
}

// startSide (re)starts direction d's side from its SYN or SYN-ACK, and, for
// a SYN-ACK, settles window scaling for both sides: it is on only if both
// SYNs offered it (RFC 7323 §2.2).
func (tr *tcpTrack) startSide(d Dir, s *segment) {
	snd, rcv := &tr[d], &tr[1-d]
	f := uint32(sideSeen)
	if rcv.flags()&sideAdopted != 0 {
		// The other side was taken up without its SYN (mid-stream, or
		// from a peer gateway's record): what it scales its window by is
		// not known, so neither side's window can be checked against the
		// other's.
		f |= sideAdopted
	}
	if s.wscale {
		f |= sideWScale | uint32(s.scale)<<8
	}
	if s.flags&packet.TCPFlagACK != 0 {
		if rf := rcv.flags(); rf&sideWScale == 0 || !s.wscale {
			f &^= 0xf00
			rcv.setFlags(rf &^ 0xf00)
		}
		if s.ack != 0 {
			rcv.advanceMaxend(s.ack + max(s.win, 1))
		}
	}
	snd.set(s.end, s.end, max(s.win, 1), f)
}

// start starts a new flow's sides from its first segment (a SYN, or a
// segment adopted mid-stream), of the original direction.
func (tr *tcpTrack) start(s *segment) {
	tr[DirReply].win.Store(0)
	if s.flags&packet.TCPFlagSYN != 0 {
		tr.startSide(DirOriginal, s)
		return
	}
	tr[DirOriginal].set(s.end, s.end+max(s.win, 1), max(s.win, 1), sideSeen|sideAdopted)
}

// startReply starts tracking a flow taken up from its reply side
// mid-stream (Worker.adoptReply): the reply side from s, window scale
// unknown; the original side is taken up by its first segment.
func (tr *tcpTrack) startReply(s *segment) {
	tr[DirOriginal].win.Store(0)
	tr[DirReply].set(s.end, s.end+max(s.win, 1), max(s.win, 1), sideSeen|sideAdopted)
}

// startReplySyn starts tracking a flow taken up from the real server's
// SYN-ACK (Worker.adoptReply): the reply side from it, as a SYN starts its
// side (the SYN-ACK's window scale option says the client offered one
// too). The client's SYN was not seen here, so the original side, taken
// up by its first segment, has no known window scale: it is marked
// adopted already.
func (tr *tcpTrack) startReplySyn(s *segment) {
	tr[DirOriginal].win.Store(sideAdopted)
	f := uint32(sideSeen)
	if s.wscale {
		f |= sideWScale | uint32(s.scale)<<8
	}
	tr[DirReply].set(s.end, s.end, max(s.win, 1), f)
}

// windowVerdict is what the window check says of a segment.
type windowVerdict uint8

const (
	windowOK        windowVerdict = iota // in the window: the state machine takes it
	windowHold                           // in the window, but a RST that is not exact: forward it, keep the state
	windowOut                            // out of the window: drop
	windowAhead                          // out of the window, ahead of it only: it acknowledges or sends beyond what this gateway saw (Worker.cameBack)
	windowBadRST                         // a RST below what the receiver acknowledged: drop
	windowBadSynAck                      // a SYN-ACK that does not acknowledge the SYN: drop
)

// inWindow checks segment s of direction d against the flow's sides and
// records it if it passes. A flow exempt from the check (liberal) records
// a segment that did not pass with accept.
//
// A SYN restarts its side only while the flow is opening (st: NONE,
// SYN_SENT, SYN_RECV, SYNACK) or closed (TIME_WAIT, CLOSE: a new
// connection on the same ports, which restarts both sides); on a live
// flow it is forwarded without being recorded (windowHold), as
// conntrack ignores it, so a blind or late SYN cannot move the window.
func (tr *tcpTrack) inWindow(d Dir, s *segment, st tcpState) windowVerdict {
	snd, rcv := &tr[d], &tr[1-d]
	if s.flags&packet.TCPFlagSYN != 0 {
		switch st {
		case tcpNone, tcpSynSent, tcpSynRecv, tcpSynAck:
			if d == DirOriginal && s.flags&packet.TCPFlagACK == 0 && snd.flags()&sideSeen != 0 && s.end != snd.end() {
				// A client SYN with another sequence number: not its SYN
				// again but a new connection on the ports (before the
				// old one's handshake was seen to end, as a gateway
				// that sees one direction of a flow never does). What
				// the reply side holds is the old connection's.
				rcv.win.Store(0)
			}
		case tcpTimeWait, tcpClose:
			if (snd.flags()|rcv.flags())&sideProxied != 0 {
				// A SYN proxy's flow is over: its sides keep the
				// proxy's state and are not started again (a client's
				// SYN makes a new flow before it gets here).
				return windowOut
			}
			rcv.win.Store(0)
		default:
			return windowHold
		}
		// A SYN-ACK acknowledges the SYN: its sequence number plus one,
		// or up to the end of data the SYN carried (TCP Fast Open, which
		// a server may ignore).
		if rcvEnd := rcv.end(); s.flags&packet.TCPFlagACK != 0 && rcv.flags()&sideSeen != 0 &&
			(seqAfter(s.ack, rcvEnd) || seqBefore(s.ack, rcvEnd-maxSynData)) {
			return windowBadSynAck // not an answer to the SYN this flow saw
		}
		tr.startSide(d, s)
		return windowOK
	}
	sw := snd.win.Load()
	sf := uint32(sw)
	if sf&sideSeen == 0 {
		tr.accept(d, s)
		return windowOK
	}
	rw := rcv.win.Load()
	if (sf|uint32(rw))&sideAdopted != 0 {
		// A side taken up mid-stream has no known window scale: its
		// windows cannot be checked (conntrack is as loose with such
		// flows). Record what can be. A RST must still be exact: its
		// sender's end is known from the segments seen, and a blind
		// one must not close a flow that was taken up.
		if s.flags&packet.TCPFlagRST == 0 {
			tr.accept(d, s)
			return windowOK
		}
		if s.seq != snd.end() {
			return windowHold
		}
		return windowOK
	}
	rp := rcv.pos.Load()
	rcvEnd := uint32(rp >> 32)
	ack := s.ack
	if s.flags&packet.TCPFlagACK == 0 {
		ack = rcvEnd // no acknowledgement to check (conntrack does the same)
	}
	sp := snd.pos.Load()
	sndEnd := uint32(sp >> 32)
	// Out of the window ahead (sending beyond the receiver's window, or
	// acknowledging what the other side was not seen to send) or behind
	// (older than a window, or acknowledging that far back).
	ahead := seqAfter(s.seq, uint32(sp))
	behind := false
	if uint32(rw)&sideSeen != 0 {
		behind = !seqAfter(s.end, sndEnd-uint32(rw>>32)-1) || !seqAfter(ack, rcvEnd-max(uint32(sw>>32), maxAckWindow)-1)
		ahead = ahead || seqAfter(ack, rcvEnd)
		// The ACK that would complete the handshake acknowledges the
		// SYN-ACK exactly (RFC 9293 3.10.7.4: all the other side has
		// sent): conntrack's window of ~64 KiB would let one blind guess
		// in about 65,000 establish a spoofed flow.
		if st == tcpSynAck && d == DirOriginal && s.flags&packet.TCPFlagACK != 0 && ack != rcvEnd {
			behind = true
		}
	}
	switch {
	case behind:
		return windowOut
	case ahead:
		if s.flags&packet.TCPFlagRST != 0 {
			return windowOut
		}
		return windowAhead
	case s.flags&packet.TCPFlagRST != 0:
		// A RST carries nothing to record; only an exact one moves the
		// state.
		if s.seq != sndEnd {
			return windowHold
		}
		return windowOK
	}
	tr.record(d, s, sw, sndEnd, uint32(rp), ack)
	return windowOK
}

// readopt takes the flow up again from segment s of direction d, as a
// flow adopted mid-stream: s's side from it, window scale unknown, the
// other side from its next segment (Worker.cameBack).
func (tr *tcpTrack) readopt(d Dir, s *segment) {
	tr[1-d].win.Store(sideAdopted)
	tr[d].set(s.end, s.end+max(s.win, 1), max(s.win, 1), sideSeen|sideAdopted)
}

// accept records segment s of direction d whatever the window says: the
// first segment of a side adopted mid-stream, or one of an exempt flow.
func (tr *tcpTrack) accept(d Dir, s *segment) {
	snd := &tr[d]
	sw := snd.win.Load()
	switch {
	case s.flags&packet.TCPFlagSYN != 0:
		tr.startSide(d, s)
	case uint32(sw)&sideSeen == 0:
		// The other side of a flow taken up mid-stream is taken up too,
		// as is one marked so before it was seen (startReplySyn); a
		// side of a flow that began with a SYN is not (its SYN-ACK
		// restarts it).
		f := uint32(sideSeen) | (tr[1-d].flags()|uint32(sw))&sideAdopted
		snd.set(s.end, s.end+max(s.win, 1), max(s.win, 1), f)
	case s.flags&packet.TCPFlagRST == 0:
		ack := s.ack
		if s.flags&packet.TCPFlagACK == 0 {
			ack = tr[1-d].end()
		}
		tr.record(d, s, sw, snd.end(), tr[1-d].maxend(), ack)
	}
}

// record moves direction d's side (and the other side's maxend) forward
// by segment s, whose acknowledgement is ack. sw, sndEnd and rcvMaxend are
// the values the caller loaded: stores happen only where they change.
func (tr *tcpTrack) record(d Dir, s *segment, sw uint64, sndEnd, rcvMaxend, ack uint32) {
	snd, rcv := &tr[d], &tr[1-d]
	win := s.win << (uint32(sw) >> 8 & 0xf)
	if win > uint32(sw>>32) {
		snd.raiseMaxwin(win)
	}
	if seqAfter(s.end, sndEnd) {
		snd.advanceEnd(s.end)
	}
	if m := ack + max(win, 1); seqAfter(m, rcvMaxend) {
		rcv.advanceMaxend(m)
	}
}
