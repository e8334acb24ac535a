package sched

import (
	"math/rand/v2"
	"testing"
)

// TestOverloadRule walks IPVS's OVERLOAD rule by hand (ip_vs_bind_dest,
// ip_vs_unbind_dest, __ip_vs_update_dest).
func TestOverloadRule(t *testing.T) {
	type step struct {
		active, inactive int64 // Add
		want             bool
	}
	for _, tc := range []struct {
		name         string
		upper, lower uint32
		steps        []step
	}{
		{"upper only: set at u, clear below 3/4 u", 4, 0, []step{
			{0, 1, false}, {0, 1, false}, {0, 1, false}, {0, 1, true}, // 4 = u
			{0, -1, true},  // 3: 3*4 < 4*3 is false
			{1, -1, true},  // 3, one moved to active: no change either way
			{-1, 0, false}, // 2: 8 < 12
			{0, 1, false},  // 3
		}},
		{"u=2 clears at 1", 2, 0, []step{
			{0, 2, true}, {0, -1, false},
		}},
		{"lower: clear strictly below it", 5, 3, []step{
			{0, 5, true}, {0, -1, true}, {0, -1, true}, {0, -1, false}, // 4, 3, then 2 < 3
			{0, 2, false}, {0, 1, true},
		}},
		{"lower equal to upper", 3, 3, []step{
			{0, 3, true}, {0, -1, false},
		}},
		{"no thresholds: never set", 0, 0, []step{
			{0, 1000, false}, {1000, -1000, false},
		}},
	} {
		for _, name := range []string{"rr", "wlc"} { // atomic and locked Add paths
			s := mustNew(t, name, Config{})
			mustUpdate(t, s, []Backend{{Addr: addr(1), Port: 80, Weight: 1, Upper: tc.upper, Lower: tc.lower}})
			d := s.Dests()[0]
			for i, st := range tc.steps {
				d.Add(st.active, st.inactive)
				if got := d.Overloaded(); got != st.want {
					a, in := d.Conns()
					t.Fatalf("%s, %s: step %d (%d active, %d inactive): overloaded %v, want %v", tc.name, name, i, a, in, got, st.want)
				}
			}
		}
	}

	// Update: raising or removing the upper threshold clears the flag;
	// lowering it sets nothing until the next connection.
	s := mustNew(t, "wlc", Config{})
	b := Backend{Addr: addr(1), Port: 80, Weight: 1, Upper: 2}
	mustUpdate(t, s, []Backend{b})
	d := s.Dests()[0]
	d.Add(0, 2)
	if !d.Overloaded() {
		t.Fatal("2 connections under -x 2: not overloaded")
	}
	b.Upper = 2
	mustUpdate(t, s, []Backend{b})
	if !d.Overloaded() {
		t.Fatal("an update with the same threshold cleared the flag")
	}
	if _, ok := s.Pick(Key{}); ok {
		t.Fatal("the only backend is overloaded, yet Pick found one")
	}
	b.Upper = 3
	mustUpdate(t, s, []Backend{b})
	if d.Overloaded() {
		t.Fatal("raising -x kept the flag")
	}
	if _, ok := s.Pick(Key{}); !ok {
		t.Fatal("the flag was cleared by -x 3, yet Pick found no backend")
	}
	b.Upper = 1
	mustUpdate(t, s, []Backend{b})
	if d.Overloaded() {
		t.Fatal("lowering -x below the count set the flag at once (IPVS sets it at the next connection)")
	}
	d.Add(0, 1)
	if !d.Overloaded() {
		t.Fatal("a new connection over the lowered -x did not set the flag")
	}
	if u, l := d.Thresholds(); u != 1 || l != 0 {
		t.Fatalf("Thresholds() = %d, %d; want 1, 0", u, l)
	}
	if err := s.Check([]Backend{{Addr: addr(1), Port: 80, Upper: 0, Lower: 1}}); err == nil {
		t.Fatal("-y 1 without -x accepted (IPVS: ERANGE)")
	}
}

// overModel is the OVERLOAD flag computed from first principles for one
// backend, as the kernel does, to check Dest's.
type overModel struct {
	upper, lower, total int64
	over                bool
}

func (m *overModel) add(delta int64) {
	m.total += delta
	switch {
	case delta > 0 && m.upper != 0 && m.total >= m.upper:
		m.over = true
	case delta < 0 && m.lower != 0:
		m.over = m.over && m.total >= m.lower
	case delta < 0 && m.upper != 0:
		m.over = m.over && m.total*4 >= m.upper*3
	case delta < 0:
		m.over = false
	}
}

// TestThresholdsEveryAlgorithm: whatever the algorithm, an overloaded
// backend is never picked, a backend's flag follows the kernel's rule as
// connections come and go, and a set with a usable backend still yields
// one (for sh and dh: with fallback).
func TestThresholdsEveryAlgorithm(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 21))
	for _, name := range Names() {
		cfg := Config{}
		if name == "sh" || name == "dh" {
			cfg.Fallback = true
		}
		s := mustNew(t, name, cfg)
		overloadedSeen := 0
		for trial := range 40 {
			n := 1 + rng.IntN(12)
			bs := mkBackends(n, func(int) uint32 { return uint32(1 + rng.IntN(4)) })
			models := make([]overModel, n)
			for i := range bs {
				if rng.IntN(4) != 0 {
					bs[i].Upper = uint32(1 + rng.IntN(6))
					bs[i].Lower = uint32(rng.IntN(int(bs[i].Upper) + 1))
				}
			}
			mustUpdate(t, s, bs)
			dests := s.Dests()
			for i, d := range dests { // start from the counts the Dests carry over
				a, in := d.Conns()
				models[i] = overModel{upper: int64(bs[i].Upper), lower: int64(bs[i].Lower), total: a + in, over: d.Overloaded()}
			}
			now := int64(trial) << 30
			for op := range 200 {
				k := randKey(rng)
				k.Now = now + int64(op)
				i := pickIndex(t, s, bs, k)
				usable := 0
				for j, d := range dests {
					if d.Overloaded() != models[j].over {
						t.Fatalf("%s trial %d op %d: backend %d overloaded %v, the kernel's rule says %v (%+v)",
							name, trial, op, j, d.Overloaded(), models[j].over, models[j])
					}
					a, _ := d.Conns()
					if !models[j].over && (name != "ovf" || a <= int64(bs[j].Weight)) {
						usable++
					}
					if models[j].over {
						overloadedSeen++
					}
				}
				switch {
				case i >= 0 && models[i].over:
					t.Fatalf("%s trial %d op %d: picked overloaded backend %d (%+v)", name, trial, op, i, models[i])
				case i < 0 && usable > 0:
					t.Fatalf("%s trial %d op %d: no pick with %d usable backends", name, trial, op, usable)
				case i >= 0:
					dests[i].Add(0, 1)
					models[i].add(1)
				}
				// Some connection ends, or is established.
				j := rng.IntN(n)
				switch a, in := dests[j].Conns(); {
				case in > 0 && rng.IntN(2) == 0:
					dests[j].Add(1, -1)
				case in > 0:
					dests[j].Add(0, -1)
					models[j].add(-1)
				case a > 0:
					dests[j].Add(-1, 0)
					models[j].add(-1)
				}
			}
		}
		if overloadedSeen == 0 {
			t.Fatalf("%s: no backend was ever overloaded: the test tested nothing", name)
		}
	}
}
