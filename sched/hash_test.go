package sched

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// hashKeys returns n random keys.
func hashKeys(n int, seed uint64) []Key {
	rng := rand.New(rand.NewPCG(seed, 29))
	keys := make([]Key, n)
	for i := range keys {
		keys[i] = randKey(rng)
	}
	return keys
}

// pickAddrs picks for every key and returns the picked backend's address
// (the zero address when none).
func pickAddrs(s Scheduler, keys []Key) [][16]byte {
	out := make([][16]byte, len(keys))
	for i, k := range keys {
		if d, ok := s.Pick(k); ok {
			out[i] = d.Addr()
		}
	}
	return out
}

// TestHashWhatIPVSHashes: sh depends only on the source address (and port
// with Port), dh only on the destination address.
func TestHashWhatIPVSHashes(t *testing.T) {
	bs := mkBackends(8, equalWeights(1))
	rng := rand.New(rand.NewPCG(30, 31))
	for _, tc := range []struct {
		name string
		cfg  Config
		same func(k *Key) // changes what must not matter
		diff func(k *Key) // changes what must matter
	}{
		{"sh", Config{}, func(k *Key) { k.Hash, k.DstAddr, k.SrcPort = rng.Uint64(), addr(rng.IntN(1000)), uint16(rng.Uint32()) },
			func(k *Key) { k.SrcAddr = addr(rng.IntN(1 << 16)) }},
		{"sh", Config{Port: true}, func(k *Key) { k.Hash, k.DstAddr = rng.Uint64(), addr(rng.IntN(1000)) },
			func(k *Key) { k.SrcPort = uint16(rng.Uint32()) }},
		{"dh", Config{}, func(k *Key) { k.Hash, k.SrcAddr, k.SrcPort = rng.Uint64(), addr(rng.IntN(1000)), uint16(rng.Uint32()) },
			func(k *Key) { k.DstAddr = addr(rng.IntN(1 << 16)) }},
	} {
		s := mustNew(t, tc.name, tc.cfg)
		mustUpdate(t, s, bs)
		distinct := map[int]bool{}
		for range 2000 {
			k := randKey(rng)
			want := pickIndex(t, s, bs, k)
			tc.same(&k)
			if got := pickIndex(t, s, bs, k); got != want {
				t.Fatalf("%s %+v: pick changed from %d to %d with an unhashed field", tc.name, tc.cfg, want, got)
			}
			tc.diff(&k)
			distinct[pickIndex(t, s, bs, k)] = true
		}
		if len(distinct) != len(bs) {
			t.Errorf("%s %+v: varying the hashed field reached %d of %d backends", tc.name, tc.cfg, len(distinct), len(bs))
		}
	}
}

// TestHashStable: the same key gets the same backend, whatever the order of
// the list and however the scheduler got to the set.
func TestHashStable(t *testing.T) {
	keys := hashKeys(20000, 1)
	for _, name := range []string{"sh", "dh", "mh"} {
		bs := mkBackends(20, func(i int) uint32 { return uint32(1 + i%4) })
		a := mustNew(t, name, Config{})
		mustUpdate(t, a, bs)
		first := pickAddrs(a, keys)
		if again := pickAddrs(a, keys); !slices.Equal(first, again) {
			t.Fatalf("%s: picks changed between two runs", name)
		}
		b := mustNew(t, name, Config{})
		mustUpdate(t, b, bs[5:])
		slices.Reverse(bs)
		mustUpdate(t, b, bs)
		if other := pickAddrs(b, keys); !slices.Equal(first, other) {
			t.Fatalf("%s: picks depend on list order", name)
		}
	}
}

// TestHashDown: marking a backend down (or quiescent, where the placement
// weight does not change) moves no other backend's keys. Its own keys get no
// backend, or with Fallback another available one, deterministically.
func TestHashDown(t *testing.T) {
	keys := hashKeys(20000, 2)
	for _, tc := range []struct {
		name string
		mark func(*Backend)
	}{
		{"sh", func(b *Backend) { b.Down = true }},
		{"sh", func(b *Backend) { b.Weight = 0 }}, // weight 1 -> 0 keeps its placement weight 1
		{"dh", func(b *Backend) { b.Down = true }},
		{"dh", func(b *Backend) { b.Weight = 0 }}, // dh ignores weights
	} {
		for _, fallback := range []bool{false, true} {
			bs := mkBackends(10, equalWeights(1))
			if tc.name == "dh" {
				bs[3].Weight = 5
			}
			s := mustNew(t, tc.name, Config{Fallback: fallback})
			mustUpdate(t, s, bs)
			before := pickAddrs(s, keys)
			const r = 3
			tc.mark(&bs[r])
			mustUpdate(t, s, bs)
			after := pickAddrs(s, keys)
			again := pickAddrs(s, keys)
			own := 0
			for i := range keys {
				if before[i] != bs[r].Addr {
					if after[i] != before[i] {
						t.Fatalf("%s fallback=%v: a key of %v moved to %v", tc.name, fallback, before[i], after[i])
					}
					continue
				}
				own++
				switch {
				case !fallback && after[i] != [16]byte{}:
					t.Fatalf("%s: key of the down backend got %v without Fallback", tc.name, after[i])
				case fallback && (after[i] == [16]byte{} || after[i] == bs[r].Addr):
					t.Fatalf("%s: key of the down backend got %v with Fallback", tc.name, after[i])
				case after[i] != again[i]:
					t.Fatalf("%s: fallback is not deterministic", tc.name)
				}
			}
			if own == 0 {
				t.Fatalf("%s: no key hashed to backend %d", tc.name, r)
			}
		}
	}
}

// TestHashRemoval: removing a backend moves its keys and at most 1% of the
// other backends' keys (the Maglev fill behind sh and dh).
func TestHashRemoval(t *testing.T) {
	keys := hashKeys(100000, 3)
	for _, name := range []string{"sh", "dh", "mh"} {
		bs := mkBackends(10, func(i int) uint32 { return uint32(1 + i%3) })
		s := mustNew(t, name, Config{Fallback: name != "mh"})
		mustUpdate(t, s, bs)
		before := pickAddrs(s, keys)
		for _, r := range []int{0, 4, 9} {
			mustUpdate(t, s, slices.Delete(slices.Clone(bs), r, r+1))
			after := pickAddrs(s, keys)
			moved, others := 0, 0
			for i := range keys {
				if before[i] == bs[r].Addr {
					if after[i] == bs[r].Addr {
						t.Fatalf("%s: removed backend still picked", name)
					}
					continue
				}
				others++
				if after[i] != before[i] {
					moved++
				}
			}
			if frac := float64(moved) / float64(others); frac > 0.01 {
				t.Errorf("%s, remove %d: %.2f%% of other backends' keys moved (limit 1%%)", name, r, 100*frac)
			}
		}
	}
}

// TestHashPlacementWeights: sh places backends by weight (0 counts as 1, as
// in IPVS), dh ignores weights; table shares are within 2% of that.
func TestHashPlacementWeights(t *testing.T) {
	bs := mkBackends(6, func(i int) uint32 { return []uint32{1, 2, 3, 4, 0, 5}[i] })
	bs[5].Down = true // down keeps its buckets
	for _, name := range []string{"sh", "dh"} {
		s := mustNew(t, name, Config{})
		mustUpdate(t, s, bs)
		count := make([]float64, len(bs))
		for _, o := range owners(t, s, bs) {
			count[o]++
		}
		place := make([]float64, len(bs))
		var total float64
		for i, b := range bs {
			place[i] = 1
			if name == "sh" {
				place[i] = float64(max(b.Weight, 1))
			}
			total += place[i]
		}
		for i := range bs {
			want := place[i] / total
			if got := count[i] / DefaultTableSize; abs(got-want)/want > 0.02 {
				t.Errorf("%s: backend %d (weight %d) holds %.4f of the table, want %.4f", name, i, bs[i].Weight, got, want)
			}
		}
	}
}
