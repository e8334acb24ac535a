package sched

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// refLocal is a literal translation of ip_vs_lblc_schedule and
// ip_vs_lblcr_schedule over an unbounded map, with one change that vsgate
// makes on purpose: a remembered lblc server over its connection
// thresholds is not used (IPVS checks only its own is_overloaded there).
type refLocal struct {
	lblcr bool
	tbl   map[[16]byte]*refLocalEntry
}

type refLocalEntry struct {
	set              []int // indexes into the backend list, newest first
	lastUse, lastMod int64
}

// refLocalDest is a backend as the reference sees it: weight 0 when it is
// not available (quiescent, down or removed).
type refLocalDest struct {
	weight, active, inactive int64
	over                     bool
}

func refOverhead(d refLocalDest) int64 { return d.active<<8 + d.inactive }

// wlc is __ip_vs_lblc_schedule.
func (r *refLocal) wlc(ds []refLocalDest) int {
	least := -1
	for i, d := range ds {
		if d.over || d.weight == 0 {
			continue
		}
		if least < 0 || refOverhead(ds[least])*d.weight > refOverhead(d)*ds[least].weight {
			least = i
		}
	}
	return least
}

// isOverloaded is the schedulers' is_overloaded.
func (r *refLocal) isOverloaded(ds []refLocalDest, i int) bool {
	if ds[i].active <= ds[i].weight {
		return false
	}
	for _, d := range ds {
		if d.active*2 < d.weight {
			return true
		}
	}
	return false
}

func (r *refLocal) pick(ds []refLocalDest, addr [16]byte, now int64) int {
	en := r.tbl[addr]
	if en != nil && now-en.lastUse > localityExpire {
		delete(r.tbl, addr)
		en = nil
	}
	if !r.lblcr {
		if en != nil {
			en.lastUse = now
			if i := en.set[0]; ds[i].weight > 0 && !ds[i].over && !r.isOverloaded(ds, i) {
				return i
			}
		}
		i := r.wlc(ds)
		if i < 0 {
			return -1
		}
		if en == nil {
			en = &refLocalEntry{lastUse: now}
			r.tbl[addr] = en
		}
		en.set = []int{i}
		return i
	}
	if en == nil {
		i := r.wlc(ds)
		if i >= 0 {
			r.tbl[addr] = &refLocalEntry{set: []int{i}, lastUse: now, lastMod: now}
		}
		return i
	}
	en.lastUse = now
	least := -1 // ip_vs_dest_set_min
	for _, i := range en.set {
		if ds[i].over || ds[i].weight == 0 {
			continue
		}
		if least < 0 || refOverhead(ds[least])*ds[i].weight > refOverhead(ds[i])*ds[least].weight {
			least = i
		}
	}
	if len(en.set) > 1 && now-en.lastMod > localityExpire {
		most := -1 // ip_vs_dest_set_max
		for _, i := range en.set {
			if ds[i].weight == 0 {
				continue
			}
			if most < 0 || refOverhead(ds[most])*ds[i].weight < refOverhead(ds[i])*ds[most].weight {
				most = i
			}
		}
		if most >= 0 {
			en.set = slices.DeleteFunc(en.set, func(i int) bool { return i == most })
		}
	}
	if least >= 0 && !r.isOverloaded(ds, least) {
		return least
	}
	i := r.wlc(ds)
	if i < 0 {
		return -1
	}
	if !slices.Contains(en.set, i) {
		en.set = append([]int{i}, en.set...)
		en.lastMod = now
	}
	return i
}

// TestLocalityMatchesIPVS diffs lblc and lblcr against the reference on
// seeded random traffic to a few dozen destination addresses, with
// connections opening, establishing and ending, thresholds, weight and
// health changes, and a clock that runs over days so that entries expire
// and lblcr sets shrink.
func TestLocalityMatchesIPVS(t *testing.T) {
	for _, name := range []string{"lblc", "lblcr"} {
		rng := rand.New(rand.NewPCG(7, uint64(len(name))))
		s := mustNew(t, name, Config{})
		ref := &refLocal{lblcr: name == "lblcr", tbl: map[[16]byte]*refLocalEntry{}}
		n := 6 // below localitySet: the reference's sets are unbounded
		bs := mkBackends(n, func(int) uint32 { return uint32(1 + rng.IntN(3)) })
		for i := range bs {
			if rng.IntN(2) == 0 {
				bs[i].Upper = uint32(4 + rng.IntN(8))
			}
		}
		mustUpdate(t, s, bs)
		dests := s.Dests()
		view := func() []refLocalDest {
			ds := make([]refLocalDest, n)
			for i, d := range dests {
				a, in := d.Conns()
				ds[i] = refLocalDest{active: a, inactive: in, over: d.Overloaded()}
				if bs[i].available() {
					ds[i].weight = int64(bs[i].Weight)
				}
			}
			return ds
		}
		addrs := make([][16]byte, 40)
		for i := range addrs {
			addrs[i] = netip.AddrFrom4([4]byte{198, 19, 0, byte(i)}).As16()
		}
		var now int64
		moved, kept, grown := 0, 0, 0
		for op := range 20000 {
			now += rng.Int64N(localityExpire / 200)
			if op%2000 == 1999 {
				now += localityExpire / 3 * int64(1+rng.IntN(3)) // hours to a day of quiet
			}
			addr := addrs[rng.IntN(len(addrs))]
			var before []int
			if e := ref.tbl[addr]; e != nil {
				before = slices.Clone(e.set)
			}
			want := ref.pick(view(), addr, now)
			got := pickIndex(t, s, bs, Key{DstAddr: addr, Now: now})
			if got != want {
				t.Fatalf("%s op %d: Pick = %d, IPVS = %d\nconns %+v", name, op, got, want, view())
			}
			if got >= 0 {
				dests[got].Add(0, 1)
				switch {
				case before == nil:
				case !slices.Contains(before, got):
					moved++
				default:
					kept++
				}
				if e := ref.tbl[addr]; e != nil && len(e.set) > 1 {
					grown++
				}
			}
			for range 2 { // connections establish and end
				d := dests[rng.IntN(n)]
				a, in := d.Conns()
				switch r := rng.IntN(3); {
				case r == 0 && in > 0:
					d.Add(1, -1)
				case r == 1 && a > 0:
					d.Add(-1, 0)
				case in > 0:
					d.Add(0, -1)
				}
			}
			if op%500 == 0 { // reweight, take one down or back
				i := rng.IntN(n)
				bs[i].Weight = uint32(rng.IntN(4))
				bs[rng.IntN(n)].Down = rng.IntN(3) == 0
				mustUpdate(t, s, bs)
			}
		}
		t.Logf("%s: %d picks kept their destination's server, %d moved, %d with a set of more than one", name, kept, moved, grown)
		if kept == 0 || moved == 0 || (name == "lblcr") != (grown > 0) {
			t.Fatalf("%s: the traffic did not exercise locality (kept %d, moved %d, grown %d)", name, kept, moved, grown)
		}
	}
}

// TestLocalityTableBounds: more destination addresses than the table holds
// still get a server each, and an lblcr set never grows past localitySet.
func TestLocalityTableBounds(t *testing.T) {
	for _, name := range []string{"lblc", "lblcr"} {
		s := mustNew(t, name, Config{})
		bs := mkBackends(20, equalWeights(1))
		mustUpdate(t, s, bs)
		for i := range 3 * localityBuckets * localityWays {
			k := Key{DstAddr: netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}).As16(), Now: int64(i)}
			if pickIndex(t, s, bs, k) < 0 {
				t.Fatalf("%s: address %d got no server", name, i)
			}
		}
		// One address whose every server is overloaded in turn: lblcr adds
		// one server per pick, up to the bound.
		k := Key{DstAddr: addr(999)}
		for range 40 {
			i := pickIndex(t, s, bs, k)
			s.Dests()[i].Add(50, 0) // far past weight 1, while others are idle
		}
		l := s.loc
		e := l.find(&k.DstAddr, 0)
		if e == nil {
			t.Fatalf("%s: the address's entry is gone", name)
		}
		if want := map[string]int{"lblc": 1, "lblcr": localitySet}[name]; e.n != want {
			t.Fatalf("%s: set of %d servers, want %d", name, e.n, want)
		}
	}
}
