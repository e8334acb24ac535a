package nat

import (
	"encoding/binary"
	"errors"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/vsgate/vsgate/packet"
)

// Tuple is one direction of a flow: protocol, addresses and ports, as the
// packet carries them. For ICMP echo both ports hold the identifier. IPv4
// addresses are IPv4-mapped, as packet.Parsed stores them. It is a plain,
// pointer-free value.
type Tuple struct {
	Src, Dst         [16]byte
	SrcPort, DstPort uint16
	Proto            uint8
}

// tupleWords is a Tuple packed into the five words the table stores and
// compares: source, destination, then ports and protocol.
type tupleWords [5]uint64

func (t *Tuple) words() tupleWords {
	return tupleWords{
		binary.LittleEndian.Uint64(t.Src[0:8]), binary.LittleEndian.Uint64(t.Src[8:16]),
		binary.LittleEndian.Uint64(t.Dst[0:8]), binary.LittleEndian.Uint64(t.Dst[8:16]),
		uint64(t.SrcPort)<<32 | uint64(t.DstPort)<<16 | uint64(t.Proto),
	}
}

// fill packs a parsed packet's flow key straight into w: ports, or for
// ICMP echo the identifier as both ports. (In place: returning the 40-byte
// value made the compiler build it on the stack and copy it.)
func (w *tupleWords) fill(p *packet.Parsed) {
	sp, dp := p.SrcPort, p.DstPort
	if p.IsICMPEcho() {
		sp, dp = p.ICMPID, p.ICMPID
	}
	w[0] = binary.LittleEndian.Uint64(p.Src[0:8])
	w[1] = binary.LittleEndian.Uint64(p.Src[8:16])
	w[2] = binary.LittleEndian.Uint64(p.Dst[0:8])
	w[3] = binary.LittleEndian.Uint64(p.Dst[8:16])
	w[4] = uint64(sp)<<32 | uint64(dp)<<16 | uint64(p.Proto)
}

// addrOfWords rebuilds a 16-byte address from its two key words.
func addrOfWords(a, b uint64) (r [16]byte) {
	binary.LittleEndian.PutUint64(r[0:8], a)
	binary.LittleEndian.PutUint64(r[8:16], b)
	return r
}

func (w *tupleWords) tuple() Tuple {
	var t Tuple
	binary.LittleEndian.PutUint64(t.Src[0:8], w[0])
	binary.LittleEndian.PutUint64(t.Src[8:16], w[1])
	binary.LittleEndian.PutUint64(t.Dst[0:8], w[2])
	binary.LittleEndian.PutUint64(t.Dst[8:16], w[3])
	t.SrcPort, t.DstPort, t.Proto = uint16(w[4]>>32), uint16(w[4]>>16), uint8(w[4])
	return t
}

// hash mixes the five words (a multiply-xorshift per word, as wyhash's
// mum). Its constants must not change and must not be seeded per
// process: besides indexing this process's table, it is the flow's key
// to the scheduler (sched.Key.Hash), and every gateway behind ECMP must
// give mh the same key for a flow (TestMaglevAcrossProcesses).
func (w *tupleWords) hash() uint64 {
	const k = 0x9e3779b97f4a7c15
	h := uint64(0x243f6a8885a308d3)
	for _, x := range w {
		hi, lo := bits.Mul64(h^x, k)
		h = hi ^ lo
	}
	return h
}

// Dir is the direction of a packet within its flow.
type Dir uint8

const (
	DirOriginal Dir = 0 // as the flow was first seen: client to VIP, inside host to outside
	DirReply    Dir = 1 // the answer: real server to client, outside host to masquerade address
)

// flowRef names one direction of one flow: the flow's slab index times two
// plus the direction. 0 is nil (slab index 0 is never used).
type flowRef uint32

func makeRef(idx uint32, d Dir) flowRef { return flowRef(idx<<1 | uint32(d)) }
func (r flowRef) index() uint32         { return uint32(r) >> 1 }
func (r flowRef) dir() Dir              { return Dir(r & 1) }

// flow is one tracked connection: both directions' keys (which also say
// how to translate each direction: a packet is rewritten to the other
// direction's tuple, reversed), its state and its TCP window tracking, in
// 128 bytes (two cache lines) with no pointers
// (so the garbage collector never scans the slab). Every field is atomic:
// a lookup reads them without a lock while a writer may be recycling the
// flow, and the generation tells the reader when that happened. A key is
// stored as its four address words, its ports, and the protocol, which
// both directions share. Each direction is a node of the hash index: a
// bucket slot or overflow chain names it by flowRef.
type flow struct {
	// gen is a seqlock: odd while the flow is being (re)initialised or
	// after it is freed; a reader that sees it change or odd retries.
	gen   atomic.Uint32
	state atomic.Uint32 // TCP state (tcpState), or stateUDP / stateICMP
	// deadline is the clock tick at which the flow expires, modulo 2^32
	// (see expired). Workers store it without a lock, even into a flow
	// that was just freed (harmless: publish sets it again).
	deadline atomic.Uint32
	// meta is the flow's owner (the table's caller's number for what the
	// flow counts against; 0 = none, ownerLogged on top for a flow whose
	// end is logged) above the protocol in the low byte.
	// Set before the flow is published, fixed while it lives.
	meta atomic.Uint32
	// ports is, by direction, source port << 16 | destination port.
	// While the flow is free, ports[0] links the free stack: only locked
	// writers store ports, and a lock-free reader of a free flow's key
	// fails its generation check. (Not deadline, which workers store
	// without a lock, nor chain, which lock-free readers follow.)
	ports [2]atomic.Uint32
	chain [2]atomic.Uint32    // by direction: flowRef of the next node in a bucket's overflow chain
	addrs [2][4]atomic.Uint64 // by direction: source and destination, as key words 0-3
	// tcp is a TCP flow's window tracking (tcptrack.go), by direction.
	tcp tcpTrack
}

// proxyShifts are a SYN-proxied flow's shifts (synproxy.go): what is
// added to the client's acknowledgements and to its timestamp echoes;
// until the real server's SYN-ACK, vsgate's ISN and timestamp towards the
// client. Kept beside the flows (table.proxy), not in them, so that a
// flow stays two cache lines and only proxied flows touch a third.
type proxyShifts [2]atomic.Uint32

// owner is the number the flow's creator gave it (see flow.meta).
func (f *flow) owner() uint32 { return f.meta.Load() >> 8 &^ ownerLogged }

// key loads direction d's key.
func (f *flow) key(d Dir) tupleWords {
	a := &f.addrs[d]
	return tupleWords{a[0].Load(), a[1].Load(), a[2].Load(), a[3].Load(), f.word4(d)}
}

// word4 is key word 4 of direction d: its ports and the protocol.
func (f *flow) word4(d Dir) uint64 {
	return uint64(f.ports[d].Load())<<16 | uint64(uint8(f.meta.Load()))
}

// hasKey reports whether direction d's key is w.
func (f *flow) hasKey(d Dir, w *tupleWords) bool {
	a := &f.addrs[d]
	return a[0].Load() == w[0] && a[1].Load() == w[1] && a[2].Load() == w[2] && a[3].Load() == w[3] &&
		f.word4(d) == w[4]
}

// setKey stores direction d's key, but not its protocol (see publish).
func (f *flow) setKey(d Dir, w *tupleWords) {
	for i := range f.addrs[d] {
		f.addrs[d][i].Store(w[i])
	}
	f.ports[d].Store(uint32(w[4] >> 16))
}

// expired reports whether deadline dl has come at tick now. Deadlines are
// kept in 32 bits and compared by their signed distance, so they wrap
// safely as long as no timeout reaches 2^31 ticks (Update refuses one).
// Expire must therefore run at least once every 2^31 ticks, which it does
// every tick.
func expired(dl uint32, now int64) bool { return int32(dl-uint32(now)) <= 0 }

// ticksLeft is how many ticks remain until deadline dl (negative: past).
func ticksLeft(dl uint32, now int64) int64 { return int64(int32(dl - uint32(now))) }

// ErrTableFull is returned by insert when no slot is free and nothing may
// be evicted.
var ErrTableFull = errors.New("flow table full")

// ErrFlowExists is returned by insert when one of the tuples is in use.
var ErrFlowExists = errors.New("tuple already tracked")

// table is the sharded flow table. Lookups are lock-free; insert and
// delete take the locks of the (one or two) shards the flow's two tuples
// hash to, in index order. Capacity is fixed at creation and every flow
// comes from a preallocated slab: nothing is allocated per flow.
type table struct {
	flows []flow        // slab; flows[0] unused so that ref 0 is nil
	proxy []proxyShifts // by flow index
	// livePos is, by flow index, the flow's position in its shard's
	// live list (shard.live). Guarded by that shard's lock.
	livePos   []uint32
	shards    []shard
	shardBits uint
}

// shard is one lock domain: its hash buckets, the live flows whose
// original key hashes to it, and free slots. The free slots and the flow
// count are kept per shard, not per table, so that inserts into different
// shards share no cache line: with one table-wide stack and count, every
// new flow on every worker wrote the same line.
type shard struct {
	mu      sync.Mutex
	id      int           // position in table.shards: locks are taken in id order
	seq     atomic.Uint32 // odd while a node is being unlinked; readers re-check on a miss
	buckets []bucket
	// free is a lock-free stack of free slots, which flows whose original
	// key is in this shard take first (other shards' when it is empty):
	// the low 32 bits are the top slot (0 = empty), the high 32 bits a
	// counter bumped on every change so that a pop racing with a pop and
	// push of the same slot (ABA) fails its compare-and-swap. A removed
	// flow's slot goes back to its original key's shard.
	free atomic.Uint64
	// count is the live flows whose original key is in this shard:
	// len(live), readable without the lock.
	count atomic.Int64
	// live lists the indices of the live flows whose original key is in
	// this shard, in no order (removal moves the last one into the
	// hole), so that walking every flow (Expire, listings) costs what is
	// live, not the table's capacity. Guarded by mu.
	live []uint32
	// Padding to a whole number of cache lines (TestShardSize): a
	// shard's lock and counts never share a line with its neighbour's.
	_ [40]byte
}

// bucketSlots is how many nodes a bucket holds in its own cache line.
const bucketSlots = 7

// nodesPerBucket is the table's average bucket fill at capacity. At 4 of
// 7 slots a bucket overflows with probability about 5% (Poisson), and the
// index costs 32 bytes per flow (a cache line per two flows).
const nodesPerBucket = 4

// bucket is one cache line of the hash index. Each slot names a node and
// carries 32 more bits of its key's hash (the tag), so a lookup reads the
// line, compares tags, and touches only the flow that matches: at a
// million flows every flow touched is a cache miss, and a chain through
// the flows (the layout before this one) cost a second, dependent miss for
// a quarter of all packets. Nodes that find every slot taken go on the
// overflow chain (through flow.chain); with the table's sizing, four nodes
// per bucket on average, that is rare. A node never moves between slots
// or to or from the chain while it is in the table, so a reader can miss
// a flow only if it was unlinked meanwhile (see shard.seq).
type bucket struct {
	slot     [bucketSlots]atomic.Uint64 // tag<<32 | flowRef; 0 = empty
	overflow atomic.Uint32              // flowRef of the first overflowed node
	_        uint32
}

// entry is what a bucket slot holds for node ref with hash h.
func entry(ref flowRef, h uint64) uint64 { return uint64(tagOf(h))<<32 | uint64(ref) }

// tagOf is the part of a key's hash that a slot keeps: bits the shard and
// bucket index (the low ones) do not use.
// It is never 0, so an empty slot never matches.
func tagOf(h uint64) uint32 { return uint32(h>>32) | 1 }

// newTable makes a table for capacity flows in 2^shardBits shards.
func newTable(capacity int, shardBits uint) *table {
	nShards := 1 << shardBits
	perShard := (capacity + nShards - 1) / nShards
	// Two nodes per flow, nodesPerBucket of them per bucket on average.
	nBuckets := max(1, (2*perShard+nodesPerBucket-1)/nodesPerBucket)
	t := &table{
		flows:     make([]flow, capacity+1),
		proxy:     make([]proxyShifts, capacity+1),
		livePos:   make([]uint32, capacity+1),
		shards:    make([]shard, nShards),
		shardBits: shardBits,
	}
	// Each shard starts with its share of the slots, in one run: the
	// shards fill evenly (the hash spreads keys over them).
	for i := len(t.flows) - 1; i >= 1; i-- {
		t.flows[i].gen.Store(1) // free
		t.push(&t.shards[(i-1)/perShard], uint32(i))
	}
	// A shard's share of the flows varies around perShard (the hash is
	// uniform); room for a quarter more, and for all of a small table,
	// keeps appends from allocating but in a very skewed table.
	liveRoom := min(capacity, perShard+perShard/4+64)
	for s := range t.shards {
		t.shards[s].id = s
		t.shards[s].buckets = make([]bucket, nBuckets)
		t.shards[s].live = make([]uint32, 0, liveRoom)
	}
	return t
}

func (t *table) capacity() int { return len(t.flows) - 1 }

// bytes is the memory of the slab and the index.
func (t *table) bytes() int {
	n := len(t.flows)*int(unsafe.Sizeof(flow{})) + len(t.proxy)*int(unsafe.Sizeof(proxyShifts{})) +
		len(t.livePos)*4 + len(t.shards)*int(unsafe.Sizeof(shard{}))
	for i := range t.shards {
		n += len(t.shards[i].buckets)*int(unsafe.Sizeof(bucket{})) + cap(t.shards[i].live)*4
	}
	return n
}

// locate returns the shard and bucket of a key hash: the shard from the
// lowest bits, the bucket from the low 32 bits scaled to the bucket count
// (a multiply and shift, so the count need not be a power of two and the
// index can be sized exactly), the tag from the high 32 bits.
func (t *table) locate(h uint64) (*shard, *bucket) {
	s := &t.shards[h&(uint64(len(t.shards))-1)]
	return s, &s.buckets[uint64(uint32(h))*uint64(len(s.buckets))>>32]
}

// lookup finds the flow direction whose key is w. It takes no lock and does
// not allocate. A hit is consistent: the flow's generation was stable and
// even while its key matched.
func (t *table) lookup(w *tupleWords) (flowRef, uint32, bool) {
	return t.lookupHashed(w, w.hash())
}

// lookupHashed is lookup with the key's hash already computed.
func (t *table) lookupHashed(w *tupleWords, h uint64) (flowRef, uint32, bool) {
	s, b := t.locate(h)
	for {
		seq := s.seq.Load()
		if seq&1 == 0 {
			ref, gen, ok := t.find(b, w, h)
			if ok {
				return ref, gen, true
			}
			if s.seq.Load() == seq {
				return 0, 0, false // no unlink ran during the walk: a true miss
			}
		}
	}
}

// find looks for key w (whose hash is h) in bucket b: the slots whose tag
// matches, then the overflow chain. It returns the first matching stable
// node.
func (t *table) find(b *bucket, w *tupleWords, h uint64) (flowRef, uint32, bool) {
	tag := tagOf(h)
	for i := range b.slot {
		if e := b.slot[i].Load(); uint32(e>>32) == tag {
			if gen, ok := t.matches(flowRef(e), w); ok {
				return flowRef(e), gen, true
			}
		}
	}
	for ref := flowRef(b.overflow.Load()); ref != 0; ref = t.chainNext(ref) {
		if gen, ok := t.matches(ref, w); ok {
			return ref, gen, true
		}
	}
	return 0, 0, false
}

// candidate is the node of bucket b that key hash h most likely names:
// the first slot with h's tag, else the overflow chain's head, else 0. The
// batch pipeline loads its flow early and checks it; find decides when
// that fails.
func (b *bucket) candidate(h uint64) flowRef {
	tag := uint64(tagOf(h))
	for i := range b.slot {
		if e := b.slot[i].Load(); e>>32 == tag {
			return flowRef(e)
		}
	}
	return flowRef(b.overflow.Load())
}

// matches reports whether node ref holds key w, and the flow's generation
// while it did.
func (t *table) matches(ref flowRef, w *tupleWords) (uint32, bool) {
	f := &t.flows[ref.index()]
	gen := f.gen.Load()
	ok := gen&1 == 0 && f.hasKey(ref.dir(), w) && f.gen.Load() == gen
	return gen, ok
}

// evictor decides which flows may make room for a new one, and accounts
// for those that do.
type evictor interface {
	// evictable says whether f may be evicted and how stale it is
	// (the stalest evictable flow goes first).
	evictable(f *flow) (ok bool, staleness int64)
	// evicted is called, under the table's locks, just before f's slot
	// is reused. It checks again that f may go (evictable ran without a
	// lock: the flow may have moved on since) and reports whether it
	// did; false keeps the flow.
	evicted(idx uint32, f *flow) bool
}

// insert tracks a new flow with the given tuples (ho is orig's hash; both
// of the same protocol), owner (see flow.meta; below 2^23, plus
// ownerLogged for a logged flow), state (the
// low byte of its state word) and deadline. When the shard has no free slot, the oldest
// evictable flow among a bounded sample of the shard's buckets is evicted
// (its index is returned in evicted, so the caller can account for it).
func (t *table) insert(orig *tupleWords, ho uint64, reply *tupleWords, owner, state, deadline uint32, ev evictor) (idx uint32, evicted bool, err error) {
	hr := reply.hash()
	so, bo := t.locate(ho)
	sr, br := t.locate(hr)
	for {
		first, second := lockPair(so, sr)
		if t.has(bo, orig, ho) || t.has(br, reply, hr) {
			unlockPair(first, second)
			return 0, evicted, ErrFlowExists
		}
		if idx = t.pop(so); idx != 0 {
			t.publish(idx, orig, reply, owner, state, deadline, ho, hr, so, bo, br)
			unlockPair(first, second)
			return idx, evicted, nil
		}
		unlockPair(first, second)
		// Full. Evict one flow (it may live in any shard, so this runs
		// without our locks), then try once more.
		if evicted {
			return 0, true, ErrTableFull
		}
		victim, gen := t.pickVictim(so, ev)
		if victim == 0 || !t.remove(victim, gen, ev.evicted) {
			return 0, false, ErrTableFull
		}
		evicted = true
	}
}

// publish initialises free slot idx with both keys (hashes ho, hr; so is
// the original key's shard, bo and br the buckets) and makes it visible.
// The caller holds both shards' locks.
func (t *table) publish(idx uint32, orig, reply *tupleWords, owner, state, deadline uint32, ho, hr uint64, so *shard, bo, br *bucket) {
	f := &t.flows[idx]
	// gen is odd (free): readers holding a stale ref to idx will retry.
	f.setKey(DirOriginal, orig)
	f.setKey(DirReply, reply)
	f.meta.Store(owner<<8 | uint32(uint8(orig[4])))
	f.state.Store(stateWord(state, f.gen.Load()+1))
	f.deadline.Store(deadline)
	f.gen.Add(1) // even: valid
	t.link(bo, makeRef(idx, DirOriginal), ho)
	t.link(br, makeRef(idx, DirReply), hr)
	t.livePos[idx] = uint32(len(so.live))
	so.live = append(so.live, idx)
	so.count.Add(1)
}

// link puts node ref (key hash h) into bucket b: a free slot, else the
// overflow chain. The caller holds the bucket's shard lock.
func (t *table) link(b *bucket, ref flowRef, h uint64) {
	for i := range b.slot {
		if b.slot[i].Load() == 0 {
			b.slot[i].Store(entry(ref, h))
			return
		}
	}
	t.flows[ref.index()].chain[ref.dir()].Store(b.overflow.Load())
	b.overflow.Store(uint32(ref))
}

// len is the count of tracked flows: a sum over the shards, for readers
// off the hot path (shardLen estimates it there).
func (t *table) len() int {
	n := int64(0)
	for i := range t.shards {
		n += t.shards[i].count.Load()
	}
	return int(n)
}

// shardLen estimates the count of tracked flows from the shard of key hash
// h alone (the hash spreads keys evenly over the shards): one load of a
// line the new flow's insert writes anyway, where len would read every
// shard's.
func (t *table) shardLen(h uint64) int {
	return int(t.shards[h&(uint64(len(t.shards))-1)].count.Load()) << t.shardBits
}

// has reports whether bucket b holds key w (hash h). Caller holds the lock.
func (t *table) has(b *bucket, w *tupleWords, h uint64) bool {
	_, _, ok := t.find(b, w, h)
	return ok
}

// victimSample is how many buckets insert inspects for an evictable flow,
// as conntrack's early drop bounds its scan.
const victimSample = 64

// pickVictim returns the stalest evictable flow (and its generation) from
// a bounded scan of victimSample buckets, starting at a rotating bucket of
// shard s and moving on to the next shards if s has fewer buckets. It takes
// no lock: remove re-checks the generation.
func (t *table) pickVictim(s *shard, ev evictor) (uint32, uint32) {
	var best, bestGen uint32
	bestAge := int64(math.MinInt64)
	start := int(s.seq.Load()) + int(s.count.Load()) // cheap rotation
	scanned := 0
	for si := s.id; scanned < victimSample && si < s.id+len(t.shards); si++ {
		sh := &t.shards[si&(len(t.shards)-1)]
		n := min(victimSample-scanned, len(sh.buckets))
		for i := range n {
			// The bucket count need not be a power of two (see
			// newTable): a mask would sample only some of them.
			b := &sh.buckets[uint(start+i*7919)%uint(len(sh.buckets))]
			consider := func(ref flowRef) {
				f := &t.flows[ref.index()]
				if gen := f.gen.Load(); gen&1 == 0 {
					if ok, age := ev.evictable(f); ok && age > bestAge {
						best, bestGen, bestAge = ref.index(), gen, age
					}
				}
			}
			for j := range b.slot {
				if ref := flowRef(b.slot[j].Load()); ref != 0 {
					consider(ref)
				}
			}
			for ref := flowRef(b.overflow.Load()); ref != 0; ref = t.chainNext(ref) {
				consider(ref)
			}
		}
		scanned += n
	}
	return best, bestGen
}

// remove deletes flow idx if its generation is still gen (so a flow that
// was already recycled is left alone) and done, called under the locks
// just before the slot is freed, agrees (it may check again why the flow
// was to go). It reports whether it removed the flow.
func (t *table) remove(idx, gen uint32, done func(idx uint32, f *flow) bool) bool {
	f := &t.flows[idx]
	// The keys are read before the locks: they are this flow's if its
	// generation is still gen under them (a recycled flow's is not).
	var shards [2]*shard
	var buckets [2]*bucket
	for d := range Dir(2) {
		w := f.key(d)
		shards[d], buckets[d] = t.locate(w.hash())
	}
	first, second := lockPair(shards[0], shards[1])
	ok := f.gen.Load() == gen && done(idx, f)
	if ok {
		for d := range 2 {
			s := shards[d]
			s.seq.Add(1) // odd: lock-free readers will re-check a miss
			t.unlink(buckets[d], makeRef(idx, Dir(d)))
			s.seq.Add(1)
		}
		// Out of its original key's shard's live list: the last entry
		// takes its place.
		so := shards[DirOriginal]
		pos, last := t.livePos[idx], so.live[len(so.live)-1]
		so.live[pos], t.livePos[last] = last, pos
		so.live = so.live[:len(so.live)-1]
		f.gen.Add(1) // odd: freed
		t.push(so, idx)
		so.count.Add(-1)
	}
	unlockPair(first, second)
	return ok
}

// liveFlows appends the index of every live flow to buf and returns it:
// each shard's list is copied under its lock, one shard at a time, so a
// flow made or removed meanwhile may or may not be in it (and an index
// may be a flow recycled since: callers check the generation, as for any
// lock-free read). It costs the live flows, not the capacity.
func (t *table) liveFlows(buf []uint32) []uint32 {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		buf = append(buf, s.live...)
		s.mu.Unlock()
	}
	return buf
}

// push puts a free slot on shard s's free stack.
func (t *table) push(s *shard, idx uint32) {
	for {
		h := s.free.Load()
		t.flows[idx].ports[0].Store(uint32(h)) // a free flow's ports link the stack
		if s.free.CompareAndSwap(h, (h>>32+1)<<32|uint64(idx)) {
			return
		}
	}
}

// pop takes a free slot from shard s, else from the next shard that has
// one (a shard runs out first only when the table is nearly full), or
// returns 0 if there is none.
func (t *table) pop(s *shard) uint32 {
	for i := range len(t.shards) {
		if idx := t.popFrom(&t.shards[(s.id+i)&(len(t.shards)-1)]); idx != 0 {
			return idx
		}
	}
	return 0
}

// popFrom takes a free slot from shard s's stack, or returns 0.
func (t *table) popFrom(s *shard) uint32 {
	for {
		h := s.free.Load()
		idx := uint32(h)
		if idx == 0 {
			return 0
		}
		next := t.flows[idx].ports[0].Load()
		if s.free.CompareAndSwap(h, (h>>32+1)<<32|uint64(next)) {
			return idx
		}
	}
}

// unlink removes node ref from bucket b: its slot, or the overflow chain.
func (t *table) unlink(b *bucket, ref flowRef) {
	for i := range b.slot {
		if flowRef(b.slot[i].Load()) == ref {
			b.slot[i].Store(0)
			return
		}
	}
	next := uint32(t.chainNext(ref))
	if flowRef(b.overflow.Load()) == ref {
		b.overflow.Store(next)
		return
	}
	for cur := flowRef(b.overflow.Load()); cur != 0; {
		nx := t.chainNext(cur)
		if nx == ref {
			t.flows[cur.index()].chain[cur.dir()].Store(next)
			return
		}
		cur = nx
	}
}

// chainNext is the node after ref on its bucket's overflow chain.
func (t *table) chainNext(ref flowRef) flowRef {
	return flowRef(t.flows[ref.index()].chain[ref.dir()].Load())
}

// lockPair locks the shards of a flow's two tuples (once if they are the
// same), in shard order so that two writers never deadlock.
func lockPair(a, b *shard) (first, second *shard) {
	first, second = a, b
	if b.id < a.id {
		first, second = b, a
	}
	first.mu.Lock()
	if second != first {
		second.mu.Lock()
	}
	return first, second
}

func unlockPair(first, second *shard) {
	if second != first {
		second.mu.Unlock()
	}
	first.mu.Unlock()
}
