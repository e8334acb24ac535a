package sched

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// countPicks picks n times and counts picks per position in bs.
func countPicks(tb testing.TB, s Scheduler, bs []Backend, n int) []int {
	tb.Helper()
	counts := make([]int, len(bs))
	for range n {
		i := pickIndex(tb, s, bs, Key{})
		if i < 0 {
			tb.Fatalf("%s: no backend", s.Name())
		}
		counts[i]++
	}
	return counts
}

// wantShares returns rounds*weight for available backends, 0 for the rest
// (rr: weight counts as 1).
func wantShares(bs []Backend, rounds int, weighted bool) (want []int, picks int) {
	want = make([]int, len(bs))
	for i, b := range bs {
		if b.available() {
			w := 1
			if weighted {
				w = int(b.Weight)
			}
			want[i] = rounds * w
			picks += rounds * w
		}
	}
	return want, picks
}

// TestRoundRobin: rr visits the available backends in list order, so every
// n consecutive picks give each exactly one, and the set can change live.
func TestRoundRobin(t *testing.T) {
	s := mustNew(t, "rr", Config{})
	bs := mkBackends(7, func(i int) uint32 { return uint32(i % 3) }) // 0 is quiescent
	bs[4].Down = true
	mustUpdate(t, s, bs)
	var avail []int
	for i, b := range bs {
		if b.available() {
			avail = append(avail, i)
		}
	}
	first := pickIndex(t, s, bs, Key{})
	at := slices.Index(avail, first)
	for range 5 * len(avail) {
		at = (at + 1) % len(avail)
		if got := pickIndex(t, s, bs, Key{}); got != avail[at] {
			t.Fatalf("rr picked %d, want %d (list order of %v)", got, avail[at], avail)
		}
	}
	for _, change := range []func([]Backend){
		func(bs []Backend) { bs[4].Down = false },
		func(bs []Backend) { bs[0].Weight, bs[1].Weight = 9, 0 },
		func(bs []Backend) { slices.Reverse(bs) },
	} {
		change(bs)
		mustUpdate(t, s, bs)
		want, n := wantShares(bs, 5, false)
		if got := countPicks(t, s, bs, n); !slices.Equal(got, want) {
			t.Errorf("rr after a live change: %d picks gave %v, want %v", n, got, want)
		}
	}
}

// wrrCases returns weight sets that exercise the smooth schedule, gcd
// reduction and the stride schedule (period above maxSmoothPeriod, and work
// above maxSmoothWork).
func wrrCases() map[string][]uint32 {
	rng := rand.New(rand.NewPCG(13, 14))
	random := func(n, max int) []uint32 {
		w := make([]uint32, n)
		for i := range w {
			w[i] = uint32(1 + rng.IntN(max))
		}
		return w
	}
	return map[string][]uint32{
		"one":                {7},
		"equal":              {3, 3, 3},
		"5,1,1":              {5, 1, 1},
		"gcd 10":             {10, 20, 30, 40},
		"random 30":          random(30, 20),
		"stride long period": {65535, 65521, 7, 1},
		"stride much work":   random(1000, 10),
		"stride max weights": {65535, 65534, 65533},
	}
}

// TestWRRExactShares: over rounds*sum(weights) picks every backend gets
// exactly rounds*weight, on both schedules, with weights changed live.
func TestWRRExactShares(t *testing.T) {
	s := mustNew(t, "wrr", Config{})
	var prev []Backend
	for name, w := range wrrCases() {
		bs := mkBackends(len(w), func(i int) uint32 { return w[i] })
		if len(bs) > 2 {
			bs[1].Weight = 0 // quiescent: no share
		}
		mustUpdate(t, s, bs) // a live change from the previous case
		p := s.cur.Load()
		kind := "smooth"
		if p.seq == nil {
			kind = "stride"
		}
		want, n := wantShares(bs, 3, true)
		if got := countPicks(t, s, bs, n); !slices.Equal(got, want) {
			t.Errorf("wrr %s (%s, after %d backends): %d picks gave %v, want %v",
				name, kind, len(prev), n, got, want)
		}
		prev = bs
	}
}

// TestWRRConcurrentShares: picks from many goroutines share one cursor, so
// the total over rounds*sum(weights) picks is still exact.
func TestWRRConcurrentShares(t *testing.T) {
	for _, name := range []string{"rr", "wrr"} {
		s := mustNew(t, name, Config{})
		bs := mkBackends(5, func(i int) uint32 { return uint32(i + 1) })
		mustUpdate(t, s, bs)
		const workers, rounds = 4, 200
		want, n := wantShares(bs, workers*rounds, name == "wrr")
		counts := make([][]int, workers)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				counts[w] = make([]int, len(bs))
				for range n / workers {
					d, _ := s.Pick(Key{})
					counts[w][indexOf(bs, d)]++
				}
			}()
		}
		wg.Wait()
		total := make([]int, len(bs))
		for _, c := range counts {
			for i := range c {
				total[i] += c[i]
			}
		}
		if !slices.Equal(total, want) {
			t.Errorf("%s: %d concurrent picks gave %v, want %v", name, n, total, want)
		}
	}
}

// TestWRRMatchesNginx: on the smooth schedule, wrr's sequence is nginx's
// smooth weighted round robin (run live on the raw weights), from the start
// of a fresh scheduler.
func TestWRRMatchesNginx(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for trial := range 200 {
		n := 1 + rng.IntN(12)
		bs := mkBackends(n, func(int) uint32 { return uint32(1 + rng.IntN(50)) })
		if trial%3 == 0 {
			for i := range bs {
				bs[i].Weight *= 6 // a common factor must not change the sequence
			}
		}
		s := mustNew(t, "wrr", Config{})
		mustUpdate(t, s, bs)
		if s.cur.Load().seq == nil {
			t.Fatalf("weights %v: expected the smooth schedule", bs)
		}
		ref := &nginxSWRR{weight: make([]int64, n), current: make([]int64, n)}
		var sum int
		for i, b := range bs {
			ref.weight[i] = int64(b.Weight)
			sum += int(b.Weight)
		}
		for step := range 2 * sum {
			if got, want := pickIndex(t, s, bs, Key{}), ref.next(); got != want {
				t.Fatalf("weights %v step %d: wrr picked %d, nginx %d", bs, step, got, want)
			}
		}
	}
}

// TestWRRSpread bounds how unevenly each schedule spreads a backend's picks
// over a period: after any prefix of t picks, backend i has been picked
// within maxDev of t*w_i/sum(w) times. IPVS's gcd interleave has no such
// bound: weights 10,1,1,1,1,1,1,1,1,1,1 start with ten picks of the first
// backend, five more than its share.
func TestWRRSpread(t *testing.T) {
	for name, w := range wrrCases() {
		bs := mkBackends(len(w), func(i int) uint32 { return w[i] })
		s := mustNew(t, "wrr", Config{})
		mustUpdate(t, s, bs)
		p := s.cur.Load()
		var sum float64
		for _, x := range w {
			sum += float64(x)
		}
		// Smooth WRR stays within one pick of the ideal; the stride
		// sequence's discrepancy grows like log(period).
		maxDev := 1.0
		if p.seq == nil {
			maxDev = 8
		}
		counts := make([]float64, len(w))
		worst := 0.0
		for step := range min(p.period, 1<<18) {
			counts[pickIndex(t, s, bs, Key{})]++
			for i, x := range w {
				worst = max(worst, abs(counts[i]-float64(step+1)*float64(x)/sum))
			}
		}
		if worst >= maxDev {
			t.Errorf("wrr %s: a backend strays %.2f picks from its ideal share (limit %v)", name, worst, maxDev)
		}
		t.Logf("wrr %s (period %d): worst deviation %.2f picks", name, p.period, worst)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
