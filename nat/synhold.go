package nat

import (
	"sync"

	"github.com/vsgate/vsgate/packet"
)

// Client segments of proxied flows held until the real server answers
// (synproxy.go). The SYN-ACK vsgate sends offers a window of one segment,
// so a client may send its first data right after its ACK, before the
// real server has been asked; that segment is held here, whole, and goes
// on, translated, once the real server's SYN-ACK settles the flow. Its
// first data also proves the cookie when the ACK before it was lost.
//
// Bounds: heldSlots segments of at most heldSlotSize bytes (2 MiB,
// allocated at first use), at most maxHeldPerFlow per flow. A slot whose
// flow moved on or went is free again. What finds no room is dropped
// (counted: syn_proxy_early) and sent again by the client.
//
// The store takes a mutex: only segments of flows still opening come
// here, never an established flow's.

const (
	heldSlots      = 1024
	heldSlotSize   = 2048
	maxHeldPerFlow = 4
)

type heldSegment struct {
	idx, gen uint32 // the flow (its slab index and generation); idx 0: free
	order    uint32 // arrival order among the flow's segments
	seq      uint32 // the segment's sequence number
	tsval    uint32 // its timestamp value, valid iff hasTS
	hasTS    bool
	n        int
}

type segmentHold struct {
	mu    sync.Mutex
	buf   []byte
	slots [heldSlots]heldSegment
}

// pending reports whether a flow in state word s, of generation gen, is
// still waiting for its real server's SYN-ACK.
func pending(s, gen uint32) bool {
	st := s & stateMask
	return s&stateDead == 0 && sameGen(s, gen) && (st == uint32(tcpSynRecv) || st == uint32(tcpSynAck))
}

// hold keeps a copy of segment b of flow idx (generation gen), with a
// complete checksum, and reports whether it did: not when there is no
// room, nor when the flow holds a segment with its sequence number
// already (the client sent it again).
func (h *segmentHold) hold(e *Engine, idx, gen uint32, b []byte, p *packet.Parsed) bool {
	if len(b) > heldSlotSize {
		return false
	}
	t := packet.TCP(b[p.L4Off:p.End])
	seq, o := t.Seq(), t.Options()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.buf == nil {
		h.buf = make([]byte, heldSlots*heldSlotSize)
	}
	free, mine, order := -1, 0, uint32(0)
	for i := range h.slots {
		s := &h.slots[i]
		if s.idx != 0 && !pending(e.tab.flows[s.idx].state.Load(), s.gen) {
			s.idx = 0 // its flow settled, closed or went without taking it
		}
		switch {
		case s.idx == 0:
			if free < 0 {
				free = i
			}
		case s.idx == idx && s.gen == gen:
			if s.seq == seq {
				return false
			}
			mine++
			order = max(order, s.order+1)
		}
	}
	if free < 0 || mine >= maxHeldPerFlow {
		return false
	}
	dst := h.buf[free*heldSlotSize : free*heldSlotSize+len(b)]
	copy(dst, b)
	// The device's word on the checksum (a partial one, finished on
	// transmit) does not travel with the copy: make it whole.
	if c, ok := packet.L4Checksum(dst, p); ok {
		dst[p.L4Off+16], dst[p.L4Off+17] = byte(c>>8), byte(c)
	}
	h.slots[free] = heldSegment{idx: idx, gen: gen, order: order, seq: seq, tsval: o.TSval, hasTS: o.HasTimestamp, n: len(b)}
	return true
}

// earliestTSval returns the earliest timestamp value (RFC 7323 TSval)
// among the segments held for flow idx (generation gen), and false if
// none of them carries one.
func (h *segmentHold) earliestTSval(idx, gen uint32) (uint32, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ts uint32
	found := false
	for i := range h.slots {
		s := &h.slots[i]
		if s.idx == idx && s.gen == gen && s.hasTS && (!found || seqBefore(s.tsval, ts)) {
			ts, found = s.tsval, true
		}
	}
	return ts, found
}

// take appends the segments held for flow idx (generation gen), in the
// order they came, to out (each copied into a buffer get returns) and
// frees their slots.
func (h *segmentHold) take(idx, gen uint32, get func(n int) []byte, out [][]byte) [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	for next := uint32(0); ; next++ {
		found := false
		for i := range h.slots {
			s := &h.slots[i]
			if s.idx == idx && s.gen == gen && s.order == next {
				b := get(s.n)
				copy(b, h.buf[i*heldSlotSize:i*heldSlotSize+s.n])
				out = append(out, b)
				s.idx, found = 0, true
				break
			}
		}
		if !found {
			return out
		}
	}
}
