package sched

import (
	"cmp"
	"slices"
)

// emptySlot marks an unfilled table slot; member indexes are below
// MaxBackends, so they never reach it.
const emptySlot = 0xffff

// buildMaglev fills table (its length M prime, M >= len(ids)) with member
// indexes, following "Maglev: A Fast and Reliable Software Network Load
// Balancer" (Eisenbud et al., NSDI 2016), section 3.4:
//
//   - member i prefers the slots offset_i, offset_i+skip_i, offset_i+2*skip_i,
//     ... (mod M), with offset_i = h1(i) mod M and skip_i = h2(i) mod (M-1) + 1;
//     M prime makes every skip coprime with M, so the preference list is a
//     permutation of the slots;
//   - members take turns; in its turn a member claims its most preferred
//     slot that is still empty, until the table is full.
//
// h1 and h2 are mix64 of the member's identity under two seeds, so the table
// depends on the set of identities, not on list order, provided ids comes
// sorted (the caller sorts by identity). The preference lists are walked in
// place (one position per member) rather than materialized, so building
// costs O(M log M) slot probes and O(n) memory beyond the table.
//
// Weights (the paper's "adjust the relative frequency of the backends'
// turns"): member i's k-th turn (k = 0, 1, ...) falls at time (k+1/2)/w_i,
// and turns are taken in time order, ties to the lower index (Webster /
// Sainte-Lague apportionment). Each turn fills one slot, so after M turns
// every member holds within about one slot of M*w_i/sum(w). A member's turn
// times depend only on its own weight, so removing a member deletes its turns
// and leaves the others' order intact, which is what keeps disruption
// small. Equal weights reduce to the paper's plain round robin, which is run
// directly (same result, no heap).
func buildMaglev(table []uint16, ids []uint64, weights []uint32) {
	m := uint64(len(table))
	for i := range table {
		table[i] = emptySlot
	}
	n := len(ids)
	if n == 0 {
		return
	}
	mg := maglevState{table: table, m: m, pos: make([]uint64, n), skip: make([]uint64, n)}
	for i, id := range ids {
		mg.pos[i] = mix64(id^seedOffset) % m
		mg.skip[i] = mix64(id^seedSkip)%(m-1) + 1
	}
	equal := true
	for _, w := range weights {
		equal = equal && w == weights[0]
	}
	if equal {
		mg.fillRoundRobin()
	} else {
		mg.fillWeighted(weights)
	}
}

type maglevState struct {
	table []uint16
	m     uint64
	pos   []uint64 // member's next preferred slot
	skip  []uint64
}

// claim gives member i its most preferred empty slot.
func (mg *maglevState) claim(i int) {
	table, m := mg.table, mg.m
	p, skip := mg.pos[i], mg.skip[i]
	for table[p] != emptySlot {
		if p += skip; p >= m {
			p -= m
		}
	}
	table[p] = uint16(i)
	if p += skip; p >= m {
		p -= m
	}
	mg.pos[i] = p
}

func (mg *maglevState) fillRoundRobin() {
	n := len(mg.pos)
	for filled := uint64(0); ; {
		for i := range n {
			mg.claim(i)
			if filled++; filled == mg.m {
				return
			}
		}
	}
}

// fillWeighted takes turns in order of (2k_i+1)/w_i, ties to the lower
// index. Members of equal weight take their turns at the same times, so the
// order is computed per weight class: a min-heap of classes gives the next
// time, and the members of every class due at that time take their turns in
// index order. A set has few distinct weights, so this costs O(M) plus a
// little per time, not O(M log n).
func (mg *maglevState) fillWeighted(weights []uint32) {
	order := make([]int32, len(weights))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int {
		return cmp.Or(cmp.Compare(weights[a], weights[b]), cmp.Compare(a, b))
	})
	var members [][]int32 // per class, ascending index
	var heap []turn       // per class; member is the class number
	for lo := 0; lo < len(order); {
		hi := lo + 1
		for hi < len(order) && weights[order[hi]] == weights[order[lo]] {
			hi++
		}
		heap = append(heap, turn{next: 1, weight: uint64(weights[order[lo]]), member: int32(len(members))})
		members = append(members, order[lo:hi])
		lo = hi
	}
	for i := len(heap)/2 - 1; i >= 0; i-- {
		siftDown(heap, i)
	}
	var due []turn // classes due at the current time
	heads := make([]int, len(members))
	filled := uint64(0)
	for {
		due = append(due[:0], heap[0])
		heap[0] = heap[len(heap)-1]
		heap = heap[:len(heap)-1]
		siftDown(heap, 0)
		for len(heap) > 0 && heap[0].next*due[0].weight == due[0].next*heap[0].weight {
			due = append(due, heap[0])
			heap[0] = heap[len(heap)-1]
			heap = heap[:len(heap)-1]
			siftDown(heap, 0)
		}
		// Merge the due classes' members by index.
		for _, c := range due {
			heads[c.member] = 0
		}
		for {
			best := -1
			for j, c := range due {
				if h := heads[c.member]; h < len(members[c.member]) &&
					(best < 0 || members[c.member][h] < members[due[best].member][heads[due[best].member]]) {
					best = j
				}
			}
			if best < 0 {
				break
			}
			c := due[best].member
			mg.claim(int(members[c][heads[c]]))
			heads[c]++
			if filled++; filled == mg.m {
				return
			}
		}
		for _, c := range due {
			c.next += 2
			heap = append(heap, c)
			siftUp(heap, len(heap)-1)
		}
	}
}

// turn is a member's next turn, at time next/(2*weight).
type turn struct {
	next   uint64 // 2k+1 for the member's k-th turn
	weight uint64
	member int32
}

// before reports whether turn a comes before turn b.
func (a *turn) before(b *turn) bool {
	x, y := a.next*b.weight, b.next*a.weight
	return x < y || x == y && a.member < b.member
}

func siftUp(h []turn, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h[i].before(&h[p]) {
			return
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func siftDown(h []turn, i int) {
	n := len(h)
	for {
		c := 2*i + 1
		if c >= n {
			return
		}
		if c+1 < n && h[c+1].before(&h[c]) {
			c++
		}
		if !h[c].before(&h[i]) {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}
