package sched

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestP2C checks the guarantees of the power of two choices: the two
// candidates are distinct (so of two backends the less loaded always wins),
// the unique most loaded backend is never picked, the pick is the less
// loaded candidate by (active+1)/weight, and it is a function of the key.
func TestP2C(t *testing.T) {
	s := mustNew(t, "p2c", Config{})
	rng := rand.New(rand.NewPCG(32, 33))

	two := mkBackends(2, equalWeights(1))
	mustUpdate(t, s, two)
	setConns(s.Dests()[0], 5, 0)
	for range 1000 {
		if got := pickIndex(t, s, two, randKey(rng)); got != 1 {
			t.Fatalf("loads 5 and 0: picked %d", got)
		}
	}
	// Weighted: (1+1)/1 = 2 > (3+1)/4 = 1.
	two[1].Weight = 4
	mustUpdate(t, s, two)
	setConns(s.Dests()[0], 1, 0)
	setConns(s.Dests()[1], 3, 0)
	for range 1000 {
		if got := pickIndex(t, s, two, randKey(rng)); got != 1 {
			t.Fatalf("(1+1)/1 vs (3+1)/4: picked %d", got)
		}
	}

	bs := mkBackends(9, equalWeights(2))
	bs[2].Down, bs[5].Weight = true, 0
	mustUpdate(t, s, bs)
	for i, d := range s.Dests() {
		setConns(d, int64(i), 0) // backend 8 is the unique most loaded
	}
	count := make([]int, len(bs))
	for range 20000 {
		k := randKey(rng)
		i := pickIndex(t, s, bs, k)
		count[i]++
		if again := pickIndex(t, s, bs, k); again != i {
			t.Fatalf("same key picked %d then %d", i, again)
		}
		// The pick is the less loaded of two distinct candidates.
		p := s.cur.Load()
		a, b := p2cCandidates(k.Hash, uint64(len(p.dests)))
		if a == b {
			t.Fatalf("candidates %d and %d are the same", a, b)
		}
		want := min(indexOf(bs, p.dests[a]), indexOf(bs, p.dests[b])) // load grows with the index
		if i != want {
			t.Fatalf("candidates %d and %d: picked %d", indexOf(bs, p.dests[a]), indexOf(bs, p.dests[b]), i)
		}
	}
	if count[8] != 0 || count[2] != 0 || count[5] != 0 {
		t.Errorf("picked the most loaded, down or quiescent backend: %v", count)
	}
	// With 7 available backends each ranked r-th of 7 in load (r = 0..6) is
	// picked with probability (6-r)*2/42: the least loaded most often.
	if !slices.IsSortedFunc([]int{count[0], count[1], count[3], count[4], count[6], count[7]},
		func(a, b int) int { return b - a }) {
		t.Errorf("picks do not fall with load: %v", count)
	}
}

// TestFailover: fo picks the available backend with the highest weight,
// the first of equals, and follows live changes.
func TestFailover(t *testing.T) {
	s := mustNew(t, "fo", Config{})
	bs := mkBackends(5, func(i int) uint32 { return []uint32{2, 5, 1, 5, 3}[i] })
	for _, step := range []struct {
		change func()
		want   int
	}{
		{func() {}, 1},
		{func() { bs[1].Down = true }, 3},
		{func() { bs[3].Weight = 0 }, 4},
		{func() { bs[0].Weight = 9 }, 0},
		{func() { bs[1].Down = false; bs[1].Weight = 9 }, 0},
		{func() { slices.Reverse(bs) }, 3}, // bs[3] is now the old bs[1]
	} {
		step.change()
		mustUpdate(t, s, bs)
		for range 10 {
			if got := pickIndex(t, s, bs, Key{Hash: uint64(step.want)}); got != step.want {
				t.Fatalf("weights %+v: picked %d, want %d", bs, got, step.want)
			}
		}
	}
}
