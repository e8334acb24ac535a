package nat

import (
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"unsafe"

	"github.com/vsgate/vsgate/packet"
)

// noEviction refuses every flow: insert fails when the table is full.
type noEviction struct{}

func (noEviction) evictable(*flow) (bool, int64) { return false, 0 }
func (noEviction) evicted(uint32, *flow) bool    { return true }

// TestTableOverflowChains squeezes every node into one bucket, so that
// most live on its overflow chain, and checks lookups and the table's
// invariants through inserts, removals from slots and from the chain in
// random order, and reuse of the freed slots.
func TestTableOverflowChains(t *testing.T) {
	const n = 40
	tab := newTable(n, 0)
	tab.shards[0].buckets = make([]bucket, 1)
	e := &Engine{tab: tab}
	key := func(i int, d Dir) tupleWords {
		return tupleWords{uint64(i), 0xffff00000000, uint64(d), 7, uint64(i)<<32 | 6}
	}
	insert := func(i int) uint32 {
		o, r := key(i, DirOriginal), key(i, DirReply)
		idx, _, err := tab.insert(&o, o.hash(), &r, 0, 0, 0, noEviction{})
		if err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
		return idx
	}
	lookupAll := func(live map[int]uint32) {
		t.Helper()
		for i := range 2 * n {
			for d := range Dir(2) {
				w := key(i, d)
				ref, _, ok := tab.lookup(&w)
				idx, want := live[i]
				if ok != want || (ok && (ref.index() != idx || ref.dir() != d)) {
					t.Fatalf("lookup flow %d dir %d = %v, %v; want live %v (slot %d)", i, d, ref, ok, want, idx)
				}
			}
		}
		if err := e.checkInvariants(); err != nil {
			t.Fatal(err)
		}
	}
	live := map[int]uint32{}
	for i := range n {
		live[i] = insert(i)
	}
	lookupAll(live)
	if tab.shards[0].buckets[0].overflow.Load() == 0 {
		t.Fatal("no node on the overflow chain: the test is not testing it")
	}
	o, r := key(0, DirOriginal), key(1, DirReply)
	if _, _, err := tab.insert(&o, o.hash(), &r, 0, 0, 0, noEviction{}); err != ErrFlowExists {
		t.Fatalf("insert of a tracked tuple: %v, want ErrFlowExists", err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	next := n
	for round := range 200 {
		if round%3 == 2 || len(live) == 0 {
			if len(live) < n {
				live[next] = insert(next)
				next = (next + 1) % (2 * n)
				for live[next] != 0 {
					next = (next + 1) % (2 * n)
				}
			}
		} else {
			var victim int
			k := rng.IntN(len(live))
			for i := range live {
				if k == 0 {
					victim = i
					break
				}
				k--
			}
			idx := live[victim]
			if !tab.remove(idx, tab.flows[idx].gen.Load(), func(uint32, *flow) bool { return true }) {
				t.Fatalf("remove flow %d (slot %d) failed", victim, idx)
			}
			delete(live, victim)
		}
		lookupAll(live)
	}
}

// onlyFlow makes one flow, by slot, evictable.
type onlyFlow struct {
	tab  *table
	slot uint32
}

func (o onlyFlow) evictable(f *flow) (bool, int64) { return f == &o.tab.flows[o.slot], 0 }
func (onlyFlow) evicted(uint32, *flow) bool        { return true }

// TestVictimSampleReachesEveryBucket: with a bucket count that is not a
// power of two (newTable sizes the index exactly), the eviction scan still
// finds an evictable flow in any bucket, here the middle one of three.
func TestVictimSampleReachesEveryBucket(t *testing.T) {
	tab := newTable(64, 0)
	tab.shards[0].buckets = make([]bucket, 3)
	for i := 0; ; i++ {
		if i > 10000 {
			t.Fatal("no key pair hashes into bucket 1 twice")
		}
		o := tupleWords{uint64(i), 1, 2, 3, 6}
		r := tupleWords{uint64(i), 4, 5, 6, 6}
		_, bo := tab.locate(o.hash())
		_, br := tab.locate(r.hash())
		if bo != &tab.shards[0].buckets[1] || br != bo {
			continue
		}
		idx, _, err := tab.insert(&o, o.hash(), &r, 0, 0, 0, noEviction{})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := tab.pickVictim(&tab.shards[0], onlyFlow{tab, idx}); got != idx {
			t.Fatalf("pickVictim = %d, want the only evictable flow %d (in bucket 1 of 3)", got, idx)
		}
		return
	}
}

// TestStoreIntoFreeFlow: a worker's touch stores a flow's state and
// deadline without a lock, so it can store into a flow freed under it
// (between its check that the flow is live and its store). That must not
// corrupt the table: the free stack's links live where only locked
// writers store. Every slot is freed, scribbled on as touch would, and
// then every one must come back from the free stack exactly once.
func TestStoreIntoFreeFlow(t *testing.T) {
	const n = 64
	tab := newTable(n, 1)
	e := &Engine{tab: tab}
	var idx []uint32
	for i := range n {
		o := tupleWords{uint64(i), 1, 2, 3, 17}
		r := tupleWords{uint64(i), 4, 5, 6, 17}
		id, _, err := tab.insert(&o, o.hash(), &r, 0, 0, 0, noEviction{})
		if err != nil {
			t.Fatal(err)
		}
		idx = append(idx, id)
	}
	for _, id := range idx {
		f := &tab.flows[id]
		if !tab.remove(id, f.gen.Load(), func(uint32, *flow) bool { return true }) {
			t.Fatalf("remove %d failed", id)
		}
		f.deadline.Store(0xdead0000 + id) // as touch would, too late
		f.state.Store(uint32(stateUDP))
	}
	if err := e.checkInvariants(); err != nil {
		t.Fatal(err)
	}
	seen := map[uint32]bool{}
	for range n {
		id := tab.pop(&tab.shards[0])
		if id == 0 || int(id) >= len(tab.flows) || seen[id] {
			t.Fatalf("pop gave slot %d (capacity %d, seen before: %v)", id, n, seen[id])
		}
		seen[id] = true
	}
	if id := tab.pop(&tab.shards[0]); id != 0 {
		t.Fatalf("pop gave slot %d from an empty stack", id)
	}
}

// TestShardTakesOthersSlots: free slots are kept per shard, but a table
// whose keys all fall in one shard still holds its whole capacity: that
// shard takes the other shards' slots when its own run out, and a removed
// flow's slot goes back to its own shard.
func TestShardTakesOthersSlots(t *testing.T) {
	const n = 64
	tab := newTable(n, 2)
	e := &Engine{tab: tab}
	var idx []uint32
	for i := uint64(0); len(idx) < n; i++ {
		o := tupleWords{i, 1, 2, 3, 17}
		if o.hash()&3 != 0 {
			continue // only keys of shard 0
		}
		r := tupleWords{i, 4, 5, 6, 17}
		id, _, err := tab.insert(&o, o.hash(), &r, 0, 0, 0, noEviction{})
		if err != nil {
			t.Fatalf("flow %d of %d, all in shard 0: %v", len(idx)+1, n, err)
		}
		idx = append(idx, id)
	}
	if c := tab.shards[0].count.Load(); c != n || tab.len() != n {
		t.Fatalf("shard 0 counts %d flows, the table %d; want %d", c, tab.len(), n)
	}
	o := tupleWords{1 << 40, 1, 2, 3, 17}
	r := tupleWords{1 << 40, 4, 5, 6, 17}
	if _, _, err := tab.insert(&o, o.hash(), &r, 0, 0, 0, noEviction{}); err != ErrTableFull {
		t.Fatalf("insert into a full table: %v, want ErrTableFull", err)
	}
	for _, id := range idx {
		if !tab.remove(id, tab.flows[id].gen.Load(), func(uint32, *flow) bool { return true }) {
			t.Fatalf("remove %d failed", id)
		}
	}
	if err := e.checkInvariants(); err != nil {
		t.Fatal(err)
	}
	for si := 1; si < len(tab.shards); si++ {
		if h := tab.shards[si].free.Load(); uint32(h) != 0 {
			t.Fatalf("shard %d has free slot %d; every slot should be back with shard 0", si, uint32(h))
		}
	}
}

// TestShardSize: a shard is whole cache lines, so that in the shards'
// array no two shards' locks, free stacks or counts share one.
func TestShardSize(t *testing.T) {
	if n := unsafe.Sizeof(shard{}); n%64 != 0 {
		t.Fatalf("a shard is %d bytes: pad it to a multiple of 64", n)
	}
}

// TestFlowHasNoPointers: the slab is a flow per slot, allocated whole at
// start; with no pointer in a flow the garbage collector never scans it
// (a 96 MB slab at a million flows). An owner is named by id for this.
func TestFlowHasNoPointers(t *testing.T) {
	var walk func(ty reflect.Type, path string)
	walk = func(ty reflect.Type, path string) {
		switch ty.Kind() {
		case reflect.Struct:
			for i := range ty.NumField() {
				walk(ty.Field(i).Type, path+"."+ty.Field(i).Name)
			}
		case reflect.Array:
			walk(ty.Elem(), path+"[]")
		case reflect.Pointer, reflect.UnsafePointer, reflect.Slice, reflect.Map, reflect.Chan,
			reflect.Func, reflect.Interface, reflect.String:
			t.Errorf("flow%s is a %v: the slab would hold pointers", path, ty.Kind())
		}
	}
	walk(reflect.TypeFor[flow](), "")
}

// TestTouchRecycledFlow: a worker checks a flow's generation, translates
// the packet, then touches the flow's state and deadline. If the flow was
// freed and its slot given to a new flow in between, the touch must leave
// the new flow alone: an ACK of the old flow must not make a half-open
// new one ESTABLISHED (never evicted, 15 minutes), nor move its deadline.
func TestTouchRecycledFlow(t *testing.T) {
	e, err := New(Config{Capacity: 4})
	if err != nil {
		t.Fatal(err)
	}
	w := e.NewWorker()
	w.snap, w.now = e.conf.Load(), e.clock.Load()
	w.p = &packet.Parsed{TCPFlags: packet.TCPFlagACK}
	o, r := tupleWords{1, 2, 3, 4, 6}, tupleWords{5, 6, 7, 8, 6}
	idx, _, err := e.tab.insert(&o, o.hash(), &r, 0, uint32(tcpSynAck), 100, noEviction{})
	if err != nil {
		t.Fatal(err)
	}
	f := &e.tab.flows[idx]
	old := f.gen.Load()
	if !e.tab.remove(idx, old, func(uint32, *flow) bool { return true }) {
		t.Fatal("remove failed")
	}
	// A new flow whose original key is in the same shard takes the slot
	// back from that shard's free stack.
	o2, r2 := tupleWords{9, 2, 3, 4, 6}, tupleWords{9, 6, 7, 8, 6}
	for mask := uint64(len(e.tab.shards) - 1); o2.hash()&mask != o.hash()&mask; {
		o2[0]++
		r2[0]++
	}
	if idx2, _, err := e.tab.insert(&o2, o2.hash(), &r2, 0, uint32(tcpSynAck), 200, noEviction{}); err != nil || idx2 != idx {
		t.Fatalf("the new flow got slot %d (%v), the test needs the freed one, %d", idx2, err, idx)
	}
	ack := tcpEvent(packet.TCPFlagACK)
	w.touch(f, DirOriginal, nil, old, ack)
	if st, dl := tcpState(f.state.Load()&stateMask), f.deadline.Load(); st != tcpSynAck || dl != 200 {
		t.Fatalf("a stale touch left the new flow %v, deadline %d; want SYNACK, 200", st, dl)
	}
	w.touch(f, DirOriginal, nil, f.gen.Load(), ack)
	if st := tcpState(f.state.Load() & stateMask); st != tcpEstablished {
		t.Fatalf("the flow's own ACK left it %v, want ESTABLISHED", st)
	}
}

// TestEvictionRechecks: the victim scan runs without locks; a flow it
// picked that became ESTABLISHED before the removal took the locks is
// kept (an established flow never makes room for a new one).
func TestEvictionRechecks(t *testing.T) {
	e, err := New(Config{Capacity: 4, ShardBits: 1})
	if err != nil {
		t.Fatal(err)
	}
	o, r := tupleWords{1, 2, 3, 4, 6}, tupleWords{5, 6, 7, 8, 6}
	idx, _, err := e.tab.insert(&o, o.hash(), &r, 0, uint32(tcpSynAck), 100, noEviction{})
	if err != nil {
		t.Fatal(err)
	}
	so, _ := e.tab.locate(o.hash())
	victim, gen := e.tab.pickVictim(so, e)
	if victim != idx {
		t.Fatalf("pickVictim = %d, want the half-open flow %d", victim, idx)
	}
	f := &e.tab.flows[idx]
	s := f.state.Load()
	f.state.CompareAndSwap(s, s&^stateMask|uint32(tcpEstablished)) // its ACK, as touch does
	if e.tab.remove(victim, gen, e.evicted) {
		t.Fatal("an ESTABLISHED flow was evicted")
	}
	if e.tab.len() != 1 {
		t.Fatalf("%d flows, want the established one kept", e.tab.len())
	}
}

// TestPersistBindKeepsConnections: binding a template to another backend
// (its own went down, or two first connections raced) keeps the count of
// the connections already through it, so it lives until they end.
func TestPersistBindKeepsConnections(t *testing.T) {
	pt := persistTable{max: 16}
	k := persistKey{client: [16]byte{15: 1}}
	pt.bind(k, 1)
	pt.bind(k, 2)
	pt.release(k, 0, 10)
	pt.expire(100)
	if pt.len() != 1 {
		t.Fatal("the template expired with a connection still through it")
	}
	pt.release(k, 0, 10)
	pt.expire(100)
	if pt.len() != 0 {
		t.Fatal("the template outlived its connections and its timeout")
	}
}

// TestFirstPortSpread: the port a FULLNAT or masqueraded flow is first
// offered (Worker.firstPort: the hash's top 16 bits) spreads one client's
// ports over the range as chance would. The hash's low 16 bits, used
// before, put the 28,232 ports of Linux's ephemeral range on about 7,250
// values: new connections met each other's ports three times as often.
func TestFirstPortSpread(t *testing.T) {
	distinct := func(pick func(uint64) uint16) int {
		seen := map[uint16]bool{}
		for port := uint16(32768); port < 61000; port++ {
			tu := Tuple{Src: addr16(netip.MustParseAddr("198.18.0.2")), SrcPort: port,
				Dst: addr16(netip.MustParseAddr("198.18.0.10")), DstPort: 80, Proto: 6}
			kw := tu.words()
			seen[pick(kw.hash())] = true
		}
		return len(seen)
	}
	// 28,232 draws from 65,536 values: about 22,800 distinct by chance.
	top := distinct(func(h uint64) uint16 { return uint16(h >> 48) })
	low := distinct(func(h uint64) uint16 { return uint16(h) })
	if top < 21000 {
		t.Fatalf("top 16 bits: %d distinct first ports of 28,232, want about 22,800 (the low bits give %d)", top, low)
	}
	t.Logf("distinct first ports of 28,232 client ports: top bits %d, low bits %d", top, low)
}

// TestPersistTableBound: the templates are bounded as IPVS's are (entries
// of the connection table): past max a new client gets none, a known one
// still binds.
func TestPersistTableBound(t *testing.T) {
	pt := persistTable{max: 2}
	a, b, c := persistKey{client: [16]byte{15: 1}}, persistKey{client: [16]byte{15: 2}}, persistKey{client: [16]byte{15: 3}}
	if !pt.bind(a, 1) || !pt.bind(b, 1) {
		t.Fatal("binding below the bound refused")
	}
	if pt.bind(c, 1) {
		t.Fatal("a third template past a bound of 2")
	}
	if !pt.bind(a, 2) {
		t.Fatal("a known template refused at the bound")
	}
	if pt.len() != 2 {
		t.Fatalf("%d templates", pt.len())
	}
}
