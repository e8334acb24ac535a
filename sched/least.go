package sched

import "sync/atomic"

// loadTree answers lc, wlc, sed and nq in O(1): a tournament tree over the
// available backends in list order whose root is the backend the IPVS
// formula picks. IPVS scans the list on every new connection (O(n)); here the
// work moves to Dest.Add, which replays the O(log n) path from the changed
// leaf to the root, and stops early where the winner does not change.
//
// Every algorithm compares load_i/weight_i by cross-multiplication, as IPVS
// does (h1*w2 > h2*w1), with
//
//	lc   load = active<<8 + inactive, weight 1     (ip_vs_lc, ip_vs_dest_conn_overhead)
//	wlc  load = active<<8 + inactive               (ip_vs_wlc)
//	sed  load = active + 1                         (ip_vs_sed)
//	nq   load = 0 if active == 0, else active + 1  (ip_vs_nq: first idle server wins)
//
// and ties go to the lower list position, which is what IPVS's "replace only
// if strictly better" scan yields. The order is a total preorder broken by
// position, so the tournament's winner is the scan's. Loads fit 41 bits and
// weights 16, so the products cannot overflow.
//
// Concurrency: node, key and w are guarded by the owning scheduler's mutex
// (Add and Update hold it). root is the only field Pick reads, with one
// atomic load; it always holds the winner for the counters as of the last
// completed Add, so picks are exact, not approximate, even while counters
// change.
type loadTree struct {
	root atomic.Int32 // winning leaf, -1 if the tree is empty
	kind kind
	size int32    // leaf capacity, a power of two
	node []int32  // 1-based heap: node[size+i] = leaf i (or -1), node[i] = winner below i
	key  []uint64 // load of each leaf
	w    []uint64 // weight of each leaf (1 for lc)
	off  []bool   // the leaf's backend is overloaded: it takes no part
}

// newLoadTree builds the tree for the given available backends (list order)
// and points each Dest at its leaf. It must run under the scheduler's mutex.
func newLoadTree(k kind, dests []*Dest, weights []uint32) *loadTree {
	n := int32(len(dests))
	size := int32(1)
	for size < n {
		size <<= 1
	}
	t := &loadTree{
		kind: k,
		size: size,
		node: make([]int32, 2*size),
		key:  make([]uint64, n),
		w:    make([]uint64, n),
		off:  make([]bool, n),
	}
	for i := range size {
		leaf := int32(-1)
		if i < n {
			leaf = i
			d := dests[i]
			d.leaf = i
			t.key[i] = loadKey(k, d.active.Load(), d.inactive.Load())
			t.off[i] = d.over.Load()
			t.w[i] = 1
			if k != kLC {
				t.w[i] = uint64(weights[i])
			}
		}
		t.node[size+i] = leaf
	}
	for i := size - 1; i >= 1; i-- {
		t.node[i] = t.better(t.node[2*i], t.node[2*i+1])
	}
	t.root.Store(t.top())
	return t
}

// top is the tree's winner: node[1], unless that is an empty leaf or (in a
// tree of one leaf, where node[1] is the leaf itself) an overloaded one.
func (t *loadTree) top() int32 {
	return t.better(t.node[1], -1)
}

// loadKey is the per-algorithm load of a backend (see loadTree).
func loadKey(k kind, active, inactive int64) uint64 {
	a := clampCount(active)
	switch k {
	case kSED:
		return a + 1
	case kNQ:
		if a == 0 {
			return 0
		}
		return a + 1
	}
	return a<<8 + clampCount(inactive)
}

// better returns the leaf IPVS would pick of a and b (-1 is an empty leaf,
// and an overloaded one counts as empty: IPVS skips it).
func (t *loadTree) better(a, b int32) int32 {
	if a >= 0 && t.off[a] {
		a = -1
	}
	if b >= 0 && t.off[b] {
		b = -1
	}
	if a < 0 {
		return b
	}
	if b < 0 {
		return a
	}
	x, y := t.key[a]*t.w[b], t.key[b]*t.w[a]
	if x < y || x == y && a < b {
		return a
	}
	return b
}

// set changes the load and the overload of leaf and replays its path to
// the root. Above a node whose winner neither changed nor is leaf, nothing
// depends on leaf's load, so the walk stops there. It must run under the
// scheduler's mutex.
func (t *loadTree) set(leaf int32, key uint64, off bool) {
	t.key[leaf], t.off[leaf] = key, off
	for i := (t.size + leaf) >> 1; i >= 1; i >>= 1 {
		w := t.better(t.node[2*i], t.node[2*i+1])
		if w == t.node[i] && w != leaf {
			return
		}
		t.node[i] = w
	}
	if r := t.top(); t.root.Load() != r {
		t.root.Store(r)
	}
}
