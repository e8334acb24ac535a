package nat

import (
	"sync"

	"github.com/vsgate/vsgate/packet"
)

// Fragments. Only the first fragment of a datagram carries the ports, so
// only it can be matched to a flow; it is translated like any packet, and
// the translation of its addresses is remembered here under the datagram's
// identity (source, destination, identification, protocol) as it arrived.
// Later fragments look it up and get the same addresses, or the same
// verdict when the first was passed unchanged or handed to L7. A later fragment
// that arrives before its first, or after its entry was displaced or timed
// out, is dropped and counted (DropFragmentNoFirst): never mis-translated,
// since the whole identity is compared.

// fragKey is a datagram's identity as it arrived at the gateway.
type fragKey struct {
	src, dst [16]byte
	id       uint32
	proto    uint8
}

// fragEntry remembers one datagram's translated addresses and verdict.
type fragEntry struct {
	key      fragKey
	src, dst [16]byte
	verdict  Verdict // Forward (translated to src, dst), Pass or ToL7
	deadline int64
	used     bool
}

const (
	fragSlots   = 4096 // direct-mapped; a colliding datagram displaces the older one
	fragStripes = 64
)

// fragCache is a fixed-size table of fragEntry, striped locks. Its zero
// value is ready to use. Safe for concurrent use.
type fragCache struct {
	mu [fragStripes]struct {
		sync.Mutex
		_ [56]byte // one lock per cache line
	}
	entries [fragSlots]fragEntry
}

func (k *fragKey) slot() int {
	w := tupleWords{}
	t := Tuple{Src: k.src, Dst: k.dst, SrcPort: uint16(k.id), DstPort: uint16(k.id >> 16), Proto: k.proto}
	w = t.words()
	return int(w.hash() & (fragSlots - 1))
}

func fragKeyOf(p *packet.Parsed) fragKey {
	return fragKey{src: p.Src, dst: p.Dst, id: p.FragID, proto: p.Proto}
}

// put records that datagram k got verdict v, with (for Forward) the
// addresses src and dst.
func (c *fragCache) put(k fragKey, v Verdict, src, dst [16]byte, deadline int64) {
	i := k.slot()
	m := &c.mu[i%fragStripes]
	m.Lock()
	c.entries[i] = fragEntry{key: k, src: src, dst: dst, verdict: v, deadline: deadline, used: true}
	m.Unlock()
}

// get returns what datagram k's first fragment got, if remembered and not
// expired.
func (c *fragCache) get(k fragKey, now int64) (v Verdict, src, dst [16]byte, ok bool) {
	i := k.slot()
	m := &c.mu[i%fragStripes]
	m.Lock()
	e := &c.entries[i]
	if e.used && e.key == k && e.deadline > now {
		v, src, dst, ok = e.verdict, e.src, e.dst, true
	}
	m.Unlock()
	return v, src, dst, ok
}
