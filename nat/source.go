package nat

import (
	"encoding/binary"
	"math/bits"
	"sync/atomic"
)

// Per-source limits (Config.SourceFlows, Config.SourceHalfOpen): how many
// flows, and how many half-open TCP flows, one client prefix may hold, so
// that one source (or one /24, one /64) cannot take the table, as the
// kernel's connlimit and DPVS's per-client limits keep it from doing.
//
// The engine counts every flow against its source prefix (the original
// direction's source, masked to SourceBits4/SourceBits6) in a fixed array
// of counter pairs indexed by a hash of the prefix, sized from the table's
// capacity. Prefixes that share a slot share its counters: a count is
// never below a prefix's own, so a limit is never exceeded, but a busy
// prefix can bring a quiet one that hashes to its slot to the limit early.
// With a quarter as many slots as flows that needs the busy prefix to
// hold a large part of the table.
//
// Counting costs a new flow a cache miss at a million flows, so it runs
// only in an engine made (New) with a limit; Update may then change the
// limits, to 0 included, and counting goes on, so that a limit set again
// starts from true counts. Turning limits on in an engine made without
// any needs a restart; Update says so.

// srcSlot is one slot's counts.
type srcSlot struct {
	flows, halfOpen atomic.Int32
}

// sources is the engine's per-source counts. Fixed at New.
type sources struct {
	slots        []srcSlot
	mask         uint64
	bits4, bits6 int // prefix lengths that make one source
}

func newSources(capacity, bits4, bits6 int) *sources {
	n := max(1<<12, min(1<<20, 1<<bits.Len(uint(capacity/4))))
	return &sources{slots: make([]srcSlot, n), mask: uint64(n - 1), bits4: bits4, bits6: bits6}
}

// slot is the counts of the source prefix of addr (16 bytes, IPv4
// mapped).
func (s *sources) slot(addr [16]byte) *srcSlot {
	return &s.slots[prefixHash(addr, s.bits4, s.bits6)&s.mask]
}

// prefixHash hashes the prefix of addr (16 bytes, IPv4 mapped) that makes
// one source: its first bits4 bits for IPv4, bits6 for IPv6.
func prefixHash(addr [16]byte, bits4, bits6 int) uint64 {
	hi, lo := binary.BigEndian.Uint64(addr[:8]), binary.BigEndian.Uint64(addr[8:])
	if hi == 0 && lo>>32 == 0xffff {
		lo &= ^uint64(0) << (32 - bits4)
	} else if bits6 <= 64 {
		hi &= ^uint64(0) << (64 - bits6)
		lo = 0
	} else {
		lo &= ^uint64(0) << (128 - bits6)
	}
	h := (hi*0x9e3779b97f4a7c15 ^ lo) * 0xc2b2ae3d27d4eb4f
	return h>>32 ^ h
}

// halfOpen reports whether a flow in state st counts as half-open: a TCP
// handshake not yet complete.
func halfOpen(st uint32) bool {
	return st == uint32(tcpSynRecv) || st == uint32(tcpSynAck) || st == uint32(tcpSynSent)
}

// admit reports whether the source slot sl may take a new flow in state
// st under the snapshot's limits, or the reason it may not.
func (s *snapshot) admit(sl *srcSlot, st uint32) (DropReason, bool) {
	if sl == nil {
		return 0, true
	}
	if s.srcFlows > 0 && sl.flows.Load() >= s.srcFlows {
		return DropSourceFlows, false
	}
	if s.srcHalfOpen > 0 && halfOpen(st) && sl.halfOpen.Load() >= s.srcHalfOpen {
		return DropSourceHalfOpen, false
	}
	return 0, true
}

// count adds n (1 or -1) flows in state st to slot sl.
func (sl *srcSlot) count(st uint32, n int32) {
	if sl == nil {
		return
	}
	sl.flows.Add(n)
	if halfOpen(st) {
		sl.halfOpen.Add(n)
	}
}

// moved accounts a flow's move from state from to state to.
func (sl *srcSlot) moved(from, to uint32) {
	if sl == nil {
		return
	}
	switch was, is := halfOpen(from), halfOpen(to); {
	case was && !is:
		sl.halfOpen.Add(-1)
	case !was && is:
		sl.halfOpen.Add(1)
	}
}

// sourceOf is the slot of flow f's source (its original direction's), or
// nil when the engine counts no sources.
func (e *Engine) sourceOf(f *flow) *srcSlot {
	if e.src == nil {
		return nil
	}
	a := &f.addrs[DirOriginal]
	return e.src.slot(addrOfWords(a[0].Load(), a[1].Load()))
}

// slotOf is the slot of source address a, or nil when the engine counts
// no sources.
func (s *sources) slotOf(a [16]byte) *srcSlot {
	if s == nil {
		return nil
	}
	return s.slot(a)
}
