package nat

import (
	"slices"
	"sync"

	"github.com/vsgate/vsgate/packet"
)

// Held fragments. A fragmented datagram is held whole before any of it is
// forwarded, as the kernel's NAT reassembles (nf_defrag) before it
// translates: its fragments are copied into a fixed pool as they come, in
// any order; when the last hole closes, the first fragment goes through
// the engine like any packet and the others follow it with the same
// translation, in order of offset (Worker.Released). So fragments that
// arrive before their first are answered, and a datagram that never
// completes is never forwarded: a storm of incomplete fragments does not
// reach the real servers' reassembly.
//
// Bounds, as the kernel's ipfrag_high_thresh and ipfrag_time: the pool
// (allocated at the first fragment) holds fragBudget bytes in
// fragChunk-byte chunks and fragDatagrams
// datagrams; when either is full, the datagram that started longest ago
// is given up (counted: fragment_incomplete), so a storm of random
// identifiers cannot keep a legitimate datagram, whose fragments arrive
// together, from completing. One source prefix (/24, /64) may hold at
// most fragPerSource chunks; its further fragments are refused
// (fragment_budget). A datagram not complete within fragHoldTime is given
// up. Overlapping fragments, a datagram of more than fragPieces, or one
// longer than an IP datagram can be end it (fragment_malformed; RFC 5722
// makes overlaps fatal for IPv6, and for IPv4 they are an attack).
//
// A fragment longer than fragChunk (a link with an MTU over 9216) is not
// held: it goes the way of the first-fragment cache (frag.go), which
// forwards a datagram's fragments as they come once its first has been
// translated.
//
// The store takes a mutex: fragments are not the established-flow path.

const (
	fragChunk     = 9216                   // the longest fragment held, IP header included: a jumbo frame's
	fragBudget    = 16 << 20               // bytes of fragments held, all datagrams together
	fragChunks    = fragBudget / fragChunk // 1820
	fragDatagrams = 1024                   // datagrams held at once
	fragPieces    = 64                     // fragments of one datagram (64 of 1480 bytes pass 65535)
	fragPerSource = fragChunks / 16        // chunks one source prefix may hold
	fragSources   = 1024                   // slots of the per-source counts
)

// heldFrag is one held fragment: its chunk, length, and data offset and
// length within the datagram.
type heldFrag struct {
	chunk    int32
	n        int32
	off, len int32
}

// heldDatagram is one datagram being held.
type heldDatagram struct {
	key      fragKey
	used     bool
	started  uint64 // order of arrival, for giving up the oldest
	deadline int64
	source   uint16 // perSource slot
	total    int32  // the datagram's data length, once its last fragment came; -1 before
	have     int32  // data bytes held
	maxEnd   int32  // the furthest data byte held
	n        int
	pieces   [fragPieces]heldFrag
}

// fragStore is the held fragments. Create with newFragStore; safe for
// concurrent use.
type fragStore struct {
	mu        sync.Mutex
	pool      []byte
	free      []int32
	dgs       []heldDatagram
	index     map[fragKey]int32
	perSource [fragSources]int32
	seq       uint64
}

func newFragStore() *fragStore { return &fragStore{} }

// allocate makes the pool, at the first fragment: an engine that never
// sees one does not pay its 17 MB. Caller holds s.mu.
func (s *fragStore) allocate() {
	s.pool, s.dgs = make([]byte, fragChunks*fragChunk), make([]heldDatagram, fragDatagrams)
	s.index, s.free = make(map[fragKey]int32, fragDatagrams), make([]int32, 0, fragChunks)
	for i := fragChunks - 1; i >= 0; i-- {
		s.free = append(s.free, int32(i))
	}
}

// chunk returns chunk c's bytes, n long.
func (s *fragStore) chunk(c, n int32) []byte {
	return s.pool[int(c)*fragChunk : int(c)*fragChunk+int(n)]
}

// sourceSlot is the per-source slot of addr's /24 (IPv4) or /64 (IPv6).
func sourceSlot(addr [16]byte) uint16 {
	return uint16(prefixHash(addr, 24, 64) % fragSources)
}

// holdResult is what hold did with a fragment.
type holdResult uint8

const (
	holdKept     holdResult = iota // held; its datagram is not complete yet
	holdComplete                   // held, and its datagram is complete: take it
	holdRefused                    // not held (counted under the returned reason)
)

// hold copies fragment b (parsed as p) into the store. When that completes
// its datagram, it returns holdComplete and the datagram, removed from the
// index: the caller owns its chunks until it frees them (release).
func (s *fragStore) hold(e *Engine, b []byte, p *packet.Parsed, now int64) (holdResult, DropReason, heldDatagram) {
	k := fragKeyOf(p)
	off, dlen := int32(p.FragOff), int32(p.End-p.L4Off)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pool == nil {
		s.allocate()
	}
	i, ok := s.index[k]
	if !ok {
		src := sourceSlot(p.Src)
		if s.perSource[src] >= fragPerSource {
			return holdRefused, DropFragmentBudget, heldDatagram{}
		}
		if i, ok = s.freeDatagram(e); !ok {
			return holdRefused, DropFragmentBudget, heldDatagram{}
		}
		s.seq++
		s.dgs[i] = heldDatagram{key: k, used: true, started: s.seq, deadline: now + e.fragTimeout, source: src, total: -1}
		s.index[k] = i
	}
	d := &s.dgs[i]
	for _, h := range d.pieces[:d.n] {
		if h.off == off && h.len == dlen {
			return holdRefused, DropFragmentDuplicate, heldDatagram{} // a copy of one held
		}
		if off < h.off+h.len && h.off < off+dlen {
			s.giveUp(e, i, DropFragmentMalformed)
			return holdRefused, DropFragmentMalformed, heldDatagram{}
		}
	}
	end := off + dlen
	if d.n == fragPieces || end > 65535 || d.total >= 0 && (end > d.total || !p.MoreFrags) || !p.MoreFrags && end < d.maxEnd {
		s.giveUp(e, i, DropFragmentMalformed)
		return holdRefused, DropFragmentMalformed, heldDatagram{}
	}
	if s.perSource[d.source] >= fragPerSource {
		return holdRefused, DropFragmentBudget, heldDatagram{}
	}
	c, ok := s.takeChunk(e, i)
	if !ok {
		return holdRefused, DropFragmentBudget, heldDatagram{}
	}
	copy(s.chunk(c, int32(len(b))), b)
	d.pieces[d.n] = heldFrag{chunk: c, n: int32(len(b)), off: off, len: dlen}
	d.n++
	d.have += dlen
	d.maxEnd = max(d.maxEnd, end)
	s.perSource[d.source]++
	if !p.MoreFrags {
		d.total = end
	}
	if d.total < 0 || d.have != d.total {
		return holdKept, 0, heldDatagram{}
	}
	done := *d
	slices.SortFunc(done.pieces[:done.n], func(a, b heldFrag) int { return int(a.off - b.off) })
	s.perSource[d.source] -= int32(d.n)
	delete(s.index, k)
	d.used = false
	return holdComplete, 0, done
}

// freeDatagram finds a free datagram entry, giving up the oldest held
// datagram if there is none. Caller holds s.mu.
func (s *fragStore) freeDatagram(e *Engine) (int32, bool) {
	if len(s.index) < len(s.dgs) {
		for i := range s.dgs {
			if !s.dgs[i].used {
				return int32(i), true
			}
		}
	}
	oldest := s.oldest(-1)
	if oldest < 0 {
		return 0, false
	}
	s.giveUp(e, oldest, DropFragmentIncomplete)
	return oldest, true
}

// takeChunk takes a free chunk, giving up the oldest datagrams other than
// keep while there is none. Caller holds s.mu.
func (s *fragStore) takeChunk(e *Engine, keep int32) (int32, bool) {
	for len(s.free) == 0 {
		oldest := s.oldest(keep)
		if oldest < 0 {
			return 0, false
		}
		s.giveUp(e, oldest, DropFragmentIncomplete)
	}
	c := s.free[len(s.free)-1]
	s.free = s.free[:len(s.free)-1]
	return c, true
}

// oldest is the held datagram that started first, other than skip, or -1.
func (s *fragStore) oldest(skip int32) int32 {
	best := int32(-1)
	for i := range s.dgs {
		if d := &s.dgs[i]; d.used && int32(i) != skip && (best < 0 || d.started < s.dgs[best].started) {
			best = int32(i)
		}
	}
	return best
}

// giveUp drops held datagram i, counting its fragments under why. Caller
// holds s.mu.
func (s *fragStore) giveUp(e *Engine, i int32, why DropReason) {
	d := &s.dgs[i]
	for _, h := range d.pieces[:d.n] {
		s.free = append(s.free, h.chunk)
	}
	e.counts.drops[why].Add(uint64(d.n))
	s.perSource[d.source] -= int32(d.n)
	delete(s.index, d.key)
	d.used = false
}

// release gives back the chunks of a datagram hold returned.
func (s *fragStore) release(d *heldDatagram) {
	s.mu.Lock()
	for _, h := range d.pieces[:d.n] {
		s.free = append(s.free, h.chunk)
	}
	s.mu.Unlock()
}

// expire gives up the datagrams not complete by now.
func (s *fragStore) expire(e *Engine, now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.dgs {
		if d := &s.dgs[i]; d.used && d.deadline <= now {
			s.giveUp(e, int32(i), DropFragmentIncomplete)
		}
	}
}
