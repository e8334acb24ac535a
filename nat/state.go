package nat

import (
	"time"

	"github.com/vsgate/vsgate/packet"
)

// tcpState is IPVS's TCP connection state (include/uapi/linux/ip_vs.h), in
// IPVS's order, which the transition table below indexes.
type tcpState uint32

const (
	tcpNone tcpState = iota
	tcpEstablished
	tcpSynSent
	tcpSynRecv
	tcpFinWait
	tcpTimeWait
	tcpClose
	tcpCloseWait
	tcpLastAck
	tcpListen
	tcpSynAck
	numTCPStates

	// stateUDP and stateICMP mark flows of protocols without a state machine.
	stateUDP  = numTCPStates
	stateICMP = numTCPStates + 1

	// stateDead is set, with the state kept below it, when a flow is being
	// removed: a worker's state transition (a compare-and-swap from a live
	// state) then fails, so connection counts are adjusted exactly once.
	stateDead = 1 << 31
)

// A flow's state word (flow.state) holds the state (a tcpState, stateUDP
// or stateICMP) in its low byte, the low 16 bits of the flow's generation
// above it, and stateDead on top. The generation makes a worker's
// compare-and-swap fail on a flow recycled since the worker found it
// (see touch): otherwise a packet of the old flow could move the new
// flow's state.
const stateMask = 0xff

// stateWord is the state word of state st for a flow of generation gen.
func stateWord(st, gen uint32) uint32 { return st | (gen&0xffff)<<8 }

// sameGen reports whether state word s belongs to generation gen.
func sameGen(s, gen uint32) bool { return s>>8&0xffff == gen&0xffff }

var tcpStateNames = [...]string{"NONE", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT",
	"TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "SYNACK", "UDP", "ICMP"}

func (s tcpState) String() string {
	if int(s) < len(tcpStateNames) {
		return tcpStateNames[s]
	}
	return "?"
}

// tcpEvent is what a segment's flags mean to the state machine, in IPVS's
// priority order (tcp_state_idx: RST over SYN over FIN over ACK).
func tcpEvent(flags uint8) int {
	switch {
	case flags&packet.TCPFlagRST != 0:
		return 3
	case flags&packet.TCPFlagSYN != 0:
		return 0
	case flags&packet.TCPFlagFIN != 0:
		return 1
	case flags&packet.TCPFlagACK != 0:
		return 2
	}
	return -1
}

// tcpTransitions is IPVS's tcp_states table (net/netfilter/ipvs/
// ip_vs_proto_tcp.c) for NAT, which sees both directions: [direction]
// [event: syn, fin, ack, rst][current state] -> next state. DirOriginal is
// IPVS's INPUT (client to server), DirReply its OUTPUT.
//
// Changed from IPVS's so that a flow becomes ESTABLISHED as conntrack's
// does, only after SYN, the real server's SYN-ACK and the client's ACK:
// the reply's SYN-ACK moves SYN_RECV to SYNACK (IPVS: stays SYN_RECV, and
// a retransmitted one in SYNACK goes back to SYN_RECV), and the client's
// ACK in SYN_RECV leaves it there (IPVS: ESTABLISHED, so a spoofed SYN and
// ACK made an established flow no real server had answered). What moves
// the state at all has passed the window check and, for a change, the
// checksum (tcptrack.go, Worker.tcpGate).
var tcpTransitions = [2][4][numTCPStates]tcpState{
	{ // INPUT
		//  sNO          sES           sSS         sSR          sFW         sTW          sCL       sCW           sLA         sLI        sSA
		{tcpSynRecv, tcpEstablished, tcpEstablished, tcpSynRecv, tcpSynRecv, tcpSynRecv, tcpSynRecv, tcpSynRecv, tcpSynRecv, tcpSynRecv, tcpSynRecv}, // syn
		{tcpClose, tcpCloseWait, tcpSynSent, tcpTimeWait, tcpTimeWait, tcpTimeWait, tcpClose, tcpCloseWait, tcpLastAck, tcpListen, tcpTimeWait},      // fin
		{tcpClose, tcpEstablished, tcpSynSent, tcpSynRecv, tcpFinWait, tcpTimeWait, tcpClose, tcpCloseWait, tcpClose, tcpListen, tcpEstablished},     // ack
		{tcpClose, tcpClose, tcpClose, tcpSynRecv, tcpClose, tcpClose, tcpClose, tcpClose, tcpLastAck, tcpListen, tcpSynRecv},                        // rst
	},
	{ // OUTPUT
		{tcpSynSent, tcpEstablished, tcpSynSent, tcpSynAck, tcpSynSent, tcpSynSent, tcpSynSent, tcpSynSent, tcpSynSent, tcpListen, tcpSynAck},                     // syn
		{tcpTimeWait, tcpFinWait, tcpSynSent, tcpTimeWait, tcpFinWait, tcpTimeWait, tcpClose, tcpTimeWait, tcpLastAck, tcpListen, tcpTimeWait},                    // fin
		{tcpEstablished, tcpEstablished, tcpSynSent, tcpEstablished, tcpFinWait, tcpTimeWait, tcpClose, tcpCloseWait, tcpLastAck, tcpEstablished, tcpEstablished}, // ack
		{tcpClose, tcpClose, tcpSynSent, tcpClose, tcpClose, tcpTimeWait, tcpClose, tcpClose, tcpClose, tcpClose, tcpClose},                                       // rst
	},
}

// Timeouts are how long a flow lives without packets, per state. The zero
// value of a field means IPVS's default (DefaultTimeouts).
type Timeouts struct {
	TCPEstablished time.Duration // 15 min
	TCPSynSent     time.Duration // 2 min
	TCPSynRecv     time.Duration // 1 min
	TCPFinWait     time.Duration // 2 min
	TCPTimeWait    time.Duration // 2 min
	TCPClose       time.Duration // 10 s
	TCPCloseWait   time.Duration // 1 min
	TCPLastAck     time.Duration // 30 s
	UDP            time.Duration // 5 min
	ICMP           time.Duration // 10 s
}

// DefaultTimeouts returns IPVS's timeouts (ip_vs_proto_tcp.c
// tcp_timeouts, ip_vs_proto_udp.c, and the ICMP timeout of conntrack).
func DefaultTimeouts() Timeouts {
	return Timeouts{
		TCPEstablished: 15 * time.Minute,
		TCPSynSent:     2 * time.Minute,
		TCPSynRecv:     time.Minute,
		TCPFinWait:     2 * time.Minute,
		TCPTimeWait:    2 * time.Minute,
		TCPClose:       10 * time.Second,
		TCPCloseWait:   time.Minute,
		TCPLastAck:     30 * time.Second,
		UDP:            5 * time.Minute,
		ICMP:           10 * time.Second,
	}
}

// Effective is t with zero fields filled from DefaultTimeouts.
func (t Timeouts) Effective() Timeouts {
	d := DefaultTimeouts()
	for _, p := range []struct{ v, def *time.Duration }{
		{&t.TCPEstablished, &d.TCPEstablished}, {&t.TCPSynSent, &d.TCPSynSent}, {&t.TCPSynRecv, &d.TCPSynRecv},
		{&t.TCPFinWait, &d.TCPFinWait}, {&t.TCPTimeWait, &d.TCPTimeWait}, {&t.TCPClose, &d.TCPClose},
		{&t.TCPCloseWait, &d.TCPCloseWait}, {&t.TCPLastAck, &d.TCPLastAck}, {&t.UDP, &d.UDP}, {&t.ICMP, &d.ICMP},
	} {
		if *p.v == 0 {
			*p.v = *p.def
		}
	}
	return t
}

// ticks returns the timeout of every state in clock ticks, indexed by state.
func (t Timeouts) ticks(tick time.Duration) [numTCPStates + 2]int64 {
	t = t.Effective()
	c := func(d time.Duration) int64 { return int64((d + tick - 1) / tick) }
	return [numTCPStates + 2]int64{
		tcpNone: c(2 * time.Second), tcpEstablished: c(t.TCPEstablished), tcpSynSent: c(t.TCPSynSent),
		tcpSynRecv: c(t.TCPSynRecv), tcpFinWait: c(t.TCPFinWait), tcpTimeWait: c(t.TCPTimeWait),
		tcpClose: c(t.TCPClose), tcpCloseWait: c(t.TCPCloseWait), tcpLastAck: c(t.TCPLastAck),
		tcpListen: c(2 * time.Minute), tcpSynAck: c(2 * time.Minute),
		stateUDP: c(t.UDP), stateICMP: c(t.ICMP),
	}
}

// closed reports whether state word s is TIME_WAIT or CLOSE.
func closed(s uint32) bool {
	st := tcpState(s & stateMask)
	return st == tcpTimeWait || st == tcpClose
}
