package nat

import (
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
// (maxend), the largest window it advertised (maxwin) and the highest
// acknowledgement it sent (maxack). A segment is in the window when
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
// RST whose sequence number is below what the receiver has already
// acknowledged is dropped (tcp_invalid_rst); one exactly at it (or at the
// end of what the sender sent) ends the flow; one further inside the
// window is forwarded without changing the flow's state, so the endpoint
// answers it with its challenge ACK and a blind RST closes nothing.
//
// A side not seen yet (a flow adopted mid-stream, see Service.Sloppy, or
// the reply side before the real server's SYN-ACK) is taken from its first
// segment; checks that need it are skipped until then.
//
// Workers update a flow's sides without a lock, as they update its state:
// every store is a compare-and-swap that only moves a value forward in
// sequence space, so two workers racing on one flow lose no advance. A
// worker on a flow recycled since it found it may store into the new
// flow's sides (as it may into its deadline): the generation checks
// around it make that a rare window, and its worst case is one flow
// treated liberally for a moment.

// tcpSide is one direction's sequence state (conntrack's ip_ct_tcp_state).
type tcpSide struct {
	end    atomic.Uint32
	maxend atomic.Uint32
	maxwin atomic.Uint32
	maxack atomic.Uint32
	// flags are sideSeen, sideMaxAck, sideWScale, and the window scale
	// shift in bits 8-11.
	flags atomic.Uint32
}

// tcpTrack is a flow's two sides, by direction.
type tcpTrack [2]tcpSide

const (
	sideSeen   = 1 << iota // a segment of this side has been seen
	sideMaxAck             // maxack is set
	sideWScale             // the side's SYN offered window scaling

	// maxAckWindow is conntrack's MAXACKWINCONST: how far behind the
	// receiver's end an acknowledgement may be.
	maxAckWindow = 66000
)

func seqBefore(a, b uint32) bool { return int32(a-b) < 0 }
func seqAfter(a, b uint32) bool  { return int32(b-a) < 0 }

// storeAfter moves v forward to x if x is after it in sequence space.
func storeAfter(v *atomic.Uint32, x uint32) {
	for {
		old := v.Load()
		if !seqAfter(x, old) || v.CompareAndSwap(old, x) {
			return
		}
	}
}

// storeMax moves v up to x if x is larger.
func storeMax(v *atomic.Uint32, x uint32) {
	for {
		old := v.Load()
		if x <= old || v.CompareAndSwap(old, x) {
			return
		}
	}
}

// segment is what window tracking reads of a TCP segment.
type segment struct {
	seq, ack, end, win uint32
	flags              uint8
	scale              uint8 // the window scale option's shift, if wscale
	wscale             bool
}

// tcpSegment reads the parsed TCP packet b.
func tcpSegment(b []byte, p *packet.Parsed) segment {
	th := packet.TCP(b[p.L4Off:p.End])
	s := segment{seq: th.Seq(), ack: th.Ack(), win: uint32(th.Window()), flags: p.TCPFlags}
	s.end = s.seq + uint32(p.End-p.PayloadOff)
	if s.flags&packet.TCPFlagSYN != 0 {
		s.end++
		s.scale, s.wscale = th.WindowScale()
	}
	if s.flags&packet.TCPFlagFIN != 0 {
		s.end++
	}
	return s
}

// startSide (re)starts direction d's side from its SYN or SYN-ACK, and, for
// a SYN-ACK, settles window scaling for both sides: it is on only if both
// SYNs offered it (RFC 7323 §2.2).
func (tr *tcpTrack) startSide(d Dir, s *segment) {
	snd, rcv := &tr[d], &tr[1-d]
	snd.end.Store(s.end)
	snd.maxend.Store(s.end)
	snd.maxwin.Store(max(s.win, 1))
	snd.maxack.Store(0)
	f := uint32(sideSeen)
	if s.wscale {
		f |= sideWScale | uint32(s.scale)<<8
	}
	if s.flags&packet.TCPFlagACK != 0 {
		rf := rcv.flags.Load()
		if rf&sideWScale == 0 || !s.wscale {
			f &^= 0xf00
			rcv.flags.Store(rf &^ 0xf00)
		}
		if s.ack != 0 {
			storeAfter(&rcv.maxend, s.ack+max(s.win, 1))
		}
	}
	snd.flags.Store(f)
}

// reset clears both sides: a new flow in the slot.
func (tr *tcpTrack) reset() {
	for d := range tr {
		tr[d].flags.Store(0)
		tr[d].maxack.Store(0)
	}
}

// windowVerdict is what the window check says of a segment.
type windowVerdict uint8

const (
	windowOK        windowVerdict = iota // in the window: the state machine takes it
	windowHold                           // in the window, but a RST that is not exact: forward it, keep the state
	windowOut                            // out of the window: drop
	windowBadRST                         // a RST below what the receiver acknowledged: drop
	windowBadSynAck                      // a SYN-ACK that does not acknowledge the SYN: drop
)

// inWindow checks segment s of direction d against the flow's sides and,
// if it passes (or liberal), records it.
func (tr *tcpTrack) inWindow(d Dir, s *segment, liberal bool) windowVerdict {
	snd, rcv := &tr[d], &tr[1-d]
	if s.flags&packet.TCPFlagSYN != 0 {
		if s.flags&packet.TCPFlagACK != 0 && rcv.flags.Load()&sideSeen != 0 && s.ack != rcv.end.Load() && !liberal {
			return windowBadSynAck // not an answer to the SYN this flow saw
		}
		tr.startSide(d, s)
		return windowOK
	}
	sf := snd.flags.Load()
	if sf&sideSeen == 0 {
		// First segment of a side adopted mid-stream: take it as given.
		snd.end.Store(s.end)
		snd.maxend.Store(s.end + max(s.win, 1))
		snd.maxwin.Store(max(s.win, 1))
		snd.flags.Store(sideSeen)
		return windowOK
	}
	rf := rcv.flags.Load()
	ack := s.ack
	if s.flags&packet.TCPFlagACK == 0 {
		ack = rcv.end.Load() // no acknowledgement to check (conntrack does the same)
	}
	win := s.win << (sf >> 8 & 0xf)
	sndEnd, sndMaxend := snd.end.Load(), snd.maxend.Load()
	ok := seqBefore(s.seq, sndMaxend+1)
	if rf&sideSeen != 0 {
		rcvEnd := rcv.end.Load()
		ok = ok && seqAfter(s.end, sndEnd-rcv.maxwin.Load()-1) &&
			seqBefore(ack, rcvEnd+1) && seqAfter(ack, rcvEnd-max(snd.maxwin.Load(), maxAckWindow)-1)
	}
	if !ok && !liberal {
		return windowOut
	}
	v := windowOK
	if s.flags&packet.TCPFlagRST != 0 && rf&sideMaxAck != 0 && !liberal {
		switch expect := rcv.maxack.Load(); {
		case seqBefore(s.seq, expect):
			return windowBadRST
		case s.seq != expect && s.seq != sndEnd:
			v = windowHold
		}
	}
	storeMax(&snd.maxwin, max(win, 1))
	storeAfter(&snd.end, s.end)
	if s.flags&packet.TCPFlagACK != 0 {
		if sf&sideMaxAck == 0 {
			snd.maxack.Store(ack)
			snd.flags.Store(sf | sideMaxAck)
		} else {
			storeAfter(&snd.maxack, ack)
		}
	}
	storeAfter(&rcv.maxend, ack+max(win, 1))
	return v
}
