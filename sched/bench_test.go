package sched

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchScheduler returns a scheduler of n backends with weights 1..4 and
// some connections counted, and 1024 random keys.
func benchScheduler(b *testing.B, name string, n int) (Scheduler, []Key) {
	b.Helper()
	cfg := Config{}
	if name == "sh" {
		cfg.Fallback = true
	}
	s := mustNew(b, name, cfg)
	mustUpdate(b, s, mkBackends(n, func(i int) uint32 { return uint32(i%4 + 1) }))
	rng := rand.New(rand.NewPCG(1, 1))
	for _, d := range s.Dests() {
		d.Add(int64(rng.IntN(100)), int64(rng.IntN(1000)))
	}
	keys := make([]Key, 1024)
	for i := range keys {
		keys[i] = randKey(rng)
	}
	return s, keys
}

// BenchmarkPick: one Pick through the Scheduler interface, as the engine
// calls it, with the set and counters fixed.
func BenchmarkPick(b *testing.B) {
	for _, name := range Names() {
		for _, n := range []int{3, 100, 1000} {
			b.Run(fmt.Sprintf("%s/n=%d", name, n), func(b *testing.B) {
				s, keys := benchScheduler(b, name, n)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					s.Pick(keys[i&1023])
					i++
				}
			})
		}
	}
}

// BenchmarkPickScan is the baseline for lc, wlc, sed and nq: IPVS's linear
// scan over the live counters (what Pick would cost without the load tree).
func BenchmarkPickScan(b *testing.B) {
	for _, name := range []string{"lc", "wlc", "sed", "nq"} {
		for _, n := range []int{3, 100, 1000} {
			b.Run(fmt.Sprintf("%s/n=%d", name, n), func(b *testing.B) {
				s, _ := benchScheduler(b, name, n)
				p := s.(*scheduler).cur.Load()
				b.ReportAllocs()
				for b.Loop() {
					scanLeast(p)
				}
			})
		}
	}
}

// scanLeast is the O(n) scan, with the same formula and tie rule as the tree.
func scanLeast(p *snapshot) *Dest {
	t := p.tree
	best, bestKey, bestW := -1, uint64(0), uint64(0)
	for i, d := range p.dests {
		k := loadKey(t.kind, d.active.Load(), d.inactive.Load())
		if best < 0 || k*bestW < bestKey*t.w[i] {
			best, bestKey, bestW = i, k, t.w[i]
		}
	}
	if best < 0 {
		return nil
	}
	return p.dests[best]
}

// BenchmarkAdd: one counter update (what lc, wlc, sed and nq pay per
// connection event instead of scanning on every pick; rr for comparison).
func BenchmarkAdd(b *testing.B) {
	for _, name := range []string{"rr", "lc", "wlc", "sed", "nq"} {
		for _, n := range []int{3, 100, 1000} {
			b.Run(fmt.Sprintf("%s/n=%d", name, n), func(b *testing.B) {
				s, _ := benchScheduler(b, name, n)
				dests := s.Dests()
				rng := rand.New(rand.NewPCG(2, 2))
				order := make([]*Dest, 1024)
				for i := range order {
					order[i] = dests[rng.IntN(len(dests))]
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					d := order[i&1023]
					if i&1024 == 0 {
						d.Add(1, 0)
					} else {
						d.Add(-1, 0)
					}
					i++
				}
			})
		}
	}
}

// BenchmarkAddParallel: counter updates from all CPUs at once (lc, wlc, sed
// and nq serialize them on the scheduler's mutex).
func BenchmarkAddParallel(b *testing.B) {
	for _, name := range []string{"rr", "wlc"} {
		b.Run(fmt.Sprintf("%s/n=100", name), func(b *testing.B) {
			s, _ := benchScheduler(b, name, 100)
			dests := s.Dests()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					d := dests[i%len(dests)]
					d.Add(1, 0)
					d.Add(-1, 0)
					i += 7
				}
			})
		})
	}
}

// BenchmarkPickParallel: picks from all CPUs at once (rr and wrr share one
// atomic cursor).
func BenchmarkPickParallel(b *testing.B) {
	for _, name := range []string{"rr", "wrr", "wlc", "mh", "p2c"} {
		b.Run(fmt.Sprintf("%s/n=100", name), func(b *testing.B) {
			s, keys := benchScheduler(b, name, 100)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					s.Pick(keys[i&1023])
					i++
				}
			})
		})
	}
}

// BenchmarkMaglevBuild: a full mh Update (sort, permutations, fill) with
// equal weights and M = 65537.
func BenchmarkMaglevBuild(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			benchUpdate(b, "mh", mkBackends(n, equalWeights(1)))
		})
	}
}

// BenchmarkMaglevBuildWeighted: as BenchmarkMaglevBuild with weights 1..4
// (the heap-ordered turns).
func BenchmarkMaglevBuildWeighted(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			benchUpdate(b, "mh", mkBackends(n, func(i int) uint32 { return uint32(i%4 + 1) }))
		})
	}
}

// BenchmarkUpdate: the cost of publishing a new set of 1000 backends,
// weights 1..4, for every algorithm.
func BenchmarkUpdate(b *testing.B) {
	for _, name := range Names() {
		b.Run(fmt.Sprintf("%s/n=1000", name), func(b *testing.B) {
			benchUpdate(b, name, mkBackends(1000, func(i int) uint32 { return uint32(i%4 + 1) }))
		})
	}
}

func benchUpdate(b *testing.B, name string, bs []Backend) {
	s := mustNew(b, name, Config{})
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Update(bs); err != nil {
			b.Fatal(err)
		}
	}
}
