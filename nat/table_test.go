package nat

import (
	"math/rand/v2"
	"testing"
)

// noEviction refuses every flow: insert fails when the table is full.
type noEviction struct{}

func (noEviction) evictable(*flow) (bool, int64) { return false, 0 }
func (noEviction) evicted(*flow)                 {}

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
		idx, _, err := tab.insert(&o, o.hash(), &r, 0, noEviction{}, func(*flow) {})
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
	if _, _, err := tab.insert(&o, o.hash(), &r, 0, noEviction{}, func(*flow) {}); err != ErrFlowExists {
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
			if !tab.remove(idx, tab.flows[idx].gen.Load(), func(*flow) {}) {
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
func (onlyFlow) evicted(*flow)                     {}

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
		idx, _, err := tab.insert(&o, o.hash(), &r, 0, noEviction{}, func(*flow) {})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := tab.pickVictim(&tab.shards[0], onlyFlow{tab, idx}); got != idx {
			t.Fatalf("pickVictim = %d, want the only evictable flow %d (in bucket 1 of 3)", got, idx)
		}
		return
	}
}
