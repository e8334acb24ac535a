package sched

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// setConns sets a Dest's counters to (active, inactive) through Add.
func setConns(d *Dest, active, inactive int64) {
	a, in := d.Conns()
	d.Add(active-a, inactive-in)
}

// TestLeastFormulas: hand-worked cases of each IPVS formula, including the
// tie rules.
func TestLeastFormulas(t *testing.T) {
	type be struct {
		weight           uint32
		active, inactive int64
	}
	for _, tc := range []struct {
		alg  string
		why  string
		set  []be
		want int
	}{
		{"lc", "overhead 1*256+0 < 0*256+300", []be{{1, 1, 0}, {1, 0, 300}}, 0},
		{"lc", "overhead 0*256+300 < 2*256+0", []be{{1, 2, 0}, {1, 0, 300}}, 1},
		{"lc", "tie: first", []be{{1, 0, 5}, {1, 0, 5}}, 0},
		{"lc", "weights ignored (but 0)", []be{{1, 1, 0}, {100, 2, 0}}, 0},
		{"lc", "weight 0 skipped", []be{{0, 0, 0}, {1, 9, 9}}, 1},
		{"wlc", "256*3 > 512*1", []be{{1, 1, 0}, {3, 2, 0}}, 1},
		{"wlc", "256*2 == 512*1: first", []be{{1, 1, 0}, {2, 2, 0}}, 0},
		{"wlc", "inactive counts 1/256", []be{{1, 1, 1}, {1, 1, 0}}, 1},
		{"wlc", "three-way", []be{{2, 3, 0}, {5, 7, 0}, {1, 1, 100}}, 2}, // 768/2=384, 1792/5=358.4, 356/1
		{"sed", "(0+1)*3 == (2+1)*1: first", []be{{1, 0, 0}, {3, 2, 0}}, 0},
		{"sed", "(0+1)*3 > (1+1)*1", []be{{1, 0, 0}, {3, 1, 0}}, 1},
		{"sed", "inactive ignored", []be{{1, 1, 999}, {1, 2, 0}}, 0},
		{"nq", "idle beats a better sed ratio", []be{{5, 3, 0}, {1, 0, 0}}, 1},
		{"nq", "first idle", []be{{1, 4, 0}, {1, 0, 9}, {9, 0, 0}}, 1},
		{"nq", "no idle: sed", []be{{1, 1, 0}, {3, 2, 0}}, 1},
		{"nq", "idle but quiescent skipped", []be{{0, 0, 0}, {1, 1, 0}}, 1},
	} {
		s := mustNew(t, tc.alg, Config{})
		bs := mkBackends(len(tc.set), func(i int) uint32 { return tc.set[i].weight })
		mustUpdate(t, s, bs)
		for i, d := range s.Dests() {
			setConns(d, tc.set[i].active, tc.set[i].inactive)
		}
		if got := pickIndex(t, s, bs, Key{}); got != tc.want {
			t.Errorf("%s %v (%s): picked %d, want %d", tc.alg, tc.set, tc.why, got, tc.want)
		}
		if ref := ipvsRef(tc.alg)(ipvsDests(s, bs)); ref != tc.want {
			t.Errorf("%s %v: the IPVS reference says %d, the case says %d", tc.alg, tc.set, ref, tc.want)
		}
	}
}

// TestLeastMatchesIPVS diffs lc, wlc, sed, nq, fo and ovf against literal
// translations of the kernel's loops, on seeded random sets, counters and
// connection thresholds, after every counter change and across updates that
// reorder, reweight, mark down and remove backends.
func TestLeastMatchesIPVS(t *testing.T) {
	for _, name := range []string{"lc", "wlc", "sed", "nq", "fo", "ovf"} {
		ref := ipvsRef(name)
		rng := rand.New(rand.NewPCG(42, uint64(len(name))))
		s := mustNew(t, name, Config{})
		checks := 0
		for trial := range 300 {
			n := 1 + rng.IntN(40)
			if trial%50 == 0 {
				n = 300 + rng.IntN(700)
			}
			bs := mkBackends(n, func(int) uint32 { return uint32(rng.IntN(5)) })
			for i := range bs {
				bs[i].Down = rng.IntN(6) == 0
				if rng.IntN(3) == 0 { // thresholds the random counts cross
					bs[i].Upper = uint32(1 + rng.IntN(300))
					bs[i].Lower = uint32(rng.IntN(int(bs[i].Upper) + 1))
				}
			}
			mustUpdate(t, s, bs)
			// Small counter ranges force ties; inactive up to 600 crosses
			// the 256 inactive = 1 active line.
			for _, d := range s.Dests() {
				setConns(d, int64(rng.IntN(4)), int64(rng.IntN(600)))
			}
			for op := range 60 {
				if got, want := pickIndex(t, s, bs, Key{}), ref(ipvsDests(s, bs)); got != want {
					t.Fatalf("%s trial %d op %d: Pick = %d, IPVS = %d\nset %+v\nconns %+v",
						name, trial, op, got, want, bs, ipvsDests(s, bs))
				}
				checks++
				d := s.Dests()[rng.IntN(n)]
				a, in := d.Conns()
				switch rng.IntN(5) {
				case 0:
					d.Add(0, 1) // new flow
				case 1:
					if in > 0 {
						d.Add(1, -1) // established
					}
				case 2:
					if a > 0 {
						d.Add(-1, 1) // closing
					}
				case 3:
					if in > 0 {
						d.Add(0, -1) // expired
					}
				case 4:
					if a > 0 {
						d.Add(-1, 0)
					}
				}
				if op == 30 { // reorder and reweight, keeping counters
					rng.Shuffle(len(bs), func(i, j int) { bs[i], bs[j] = bs[j], bs[i] })
					bs[rng.IntN(n)].Weight = uint32(rng.IntN(5))
					bs[rng.IntN(n)].Down = rng.IntN(2) == 0
					mustUpdate(t, s, bs)
				}
			}
		}
		t.Logf("%s: %d picks agreed with IPVS", name, checks)
	}
}

// TestLeastPicksUnderLoad: lc with a flow opened on every pick spreads new
// flows exactly evenly, as the formula implies (each pick raises the
// winner's load by one unit).
func TestLeastPicksUnderLoad(t *testing.T) {
	s := mustNew(t, "wlc", Config{})
	bs := mkBackends(4, func(i int) uint32 { return []uint32{1, 2, 3, 4}[i] })
	mustUpdate(t, s, bs)
	counts := make([]int, len(bs))
	for range 10 * 10 {
		d, _ := s.Pick(Key{})
		d.Add(1, 0)
		counts[indexOf(bs, d)]++
	}
	// wlc equalizes active/weight: after 100 = 10*sum(w) picks each has 10*w.
	if want := []int{10, 20, 30, 40}; !slices.Equal(counts, want) {
		t.Errorf("wlc shares after 100 picks = %v, want %v", counts, want)
	}
}

// TestLoadTreeSetOrder: setting loads one leaf at a time in any order gives
// the same tree as building it from scratch.
func TestLoadTreeSetOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for range 200 {
		n := 1 + rng.IntN(70)
		s := mustNew(t, "wlc", Config{})
		bs := mkBackends(n, func(int) uint32 { return uint32(1 + rng.IntN(3)) })
		mustUpdate(t, s, bs)
		for _, i := range rng.Perm(n) {
			s.Dests()[i].Add(int64(rng.IntN(3)), int64(rng.IntN(300)))
		}
		got := s.cur.Load().tree
		s.mu.Lock()
		fresh := newLoadTree(kWLC, s.cur.Load().dests, func() []uint32 {
			w := make([]uint32, n)
			for i := range bs {
				w[i] = bs[i].Weight
			}
			return w
		}())
		s.mu.Unlock()
		if !slices.Equal(got.node, fresh.node) || got.root.Load() != fresh.root.Load() {
			t.Fatalf("incremental tree %v differs from rebuilt %v", got.node, fresh.node)
		}
	}
}
