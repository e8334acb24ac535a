package sched

// Test helpers and slow, obviously-correct references: literal translations
// of the IPVS schedulers (net/netfilter/ipvs/ip_vs_{lc,wlc,sed,nq,fo}.c),
// nginx's smooth weighted round robin and the Maglev paper's pseudo-code.
// The fast paths are diffed against them on seeded random input.

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// addr returns the n-th test address in 198.18.0.0/15 (RFC 2544), v4-mapped.
func addr(n int) [16]byte {
	return netip.AddrFrom4([4]byte{198, 18 + byte(n>>16&1), byte(n >> 8), byte(n)}).As16()
}

// mkBackends returns n backends 198.18.x.y:80 with weight(i).
func mkBackends(n int, weight func(i int) uint32) []Backend {
	bs := make([]Backend, n)
	for i := range bs {
		bs[i] = Backend{Addr: addr(i + 1), Port: 80, Weight: weight(i)}
	}
	return bs
}

func equalWeights(w uint32) func(int) uint32 { return func(int) uint32 { return w } }

func mustNew(tb testing.TB, name string, cfg Config) *scheduler {
	tb.Helper()
	s, err := New(name, cfg)
	if err != nil {
		tb.Fatalf("New(%q, %+v): %v", name, cfg, err)
	}
	return s.(*scheduler)
}

func mustUpdate(tb testing.TB, s Scheduler, bs []Backend) {
	tb.Helper()
	if err := s.Update(bs); err != nil {
		tb.Fatalf("%s: Update: %v", s.Name(), err)
	}
}

// indexOf returns the position of d in bs, or -1.
func indexOf(bs []Backend, d *Dest) int {
	if d == nil {
		return -1
	}
	for i := range bs {
		if bs[i].Addr == d.Addr() && bs[i].Port == d.Port() {
			return i
		}
	}
	return -1
}

// pickIndex picks and returns the position in bs, -1 if none.
func pickIndex(tb testing.TB, s Scheduler, bs []Backend, k Key) int {
	tb.Helper()
	d, ok := s.Pick(k)
	if ok != (d != nil) {
		tb.Fatalf("%s: Pick returned (%v, %v)", s.Name(), d, ok)
	}
	if !ok {
		return -1
	}
	i := indexOf(bs, d)
	if i < 0 {
		tb.Fatalf("%s: Pick returned %v, not in the set", s.Name(), d)
	}
	return i
}

// randKey returns a key with random hash, addresses and port.
func randKey(rng *rand.Rand) Key {
	k := Key{Hash: rng.Uint64(), SrcPort: uint16(rng.Uint32())}
	k.SrcAddr = netip.AddrFrom4([4]byte{198, 19, byte(rng.Uint32()), byte(rng.Uint32())}).As16()
	k.DstAddr = netip.AddrFrom4([4]byte{198, 18, byte(rng.Uint32()), byte(rng.Uint32())}).As16()
	if rng.IntN(4) == 0 {
		var a [16]byte
		a[0], a[1] = 0x20, 0x01
		a[2], a[3] = 0x0d, 0xb8
		for i := 8; i < 16; i++ {
			a[i] = byte(rng.Uint32())
		}
		k.SrcAddr = a
	}
	return k
}

// ipvsDest is a destination as the IPVS references see it.
type ipvsDest struct {
	weight           int64
	overloaded       bool // our Down: IPVS skips IP_VS_DEST_F_OVERLOAD
	active, inactive int64
}

func ipvsDests(s Scheduler, bs []Backend) []ipvsDest {
	out := make([]ipvsDest, len(bs))
	dests := s.Dests()
	for i, b := range bs {
		a, in := dests[i].Conns()
		out[i] = ipvsDest{weight: int64(b.Weight), overloaded: b.Down || dests[i].Overloaded(), active: a, inactive: in}
	}
	return out
}

// ipvsConnOverhead is ip_vs_dest_conn_overhead.
func ipvsConnOverhead(d ipvsDest) int64 { return d.active<<8 + d.inactive }

// ipvsLC is ip_vs_lc_schedule.
func ipvsLC(ds []ipvsDest) int {
	least, loh := -1, int64(0)
	for i, d := range ds {
		if d.overloaded || d.weight == 0 {
			continue
		}
		doh := ipvsConnOverhead(d)
		if least < 0 || doh < loh {
			least, loh = i, doh
		}
	}
	return least
}

// ipvsWLCLike is ip_vs_wlc_schedule with the given overhead function
// (ip_vs_sed_schedule with active+1). Note that its second loop does not skip
// weight 0: such a server can never win the comparison.
func ipvsWLCLike(ds []ipvsDest, overhead func(ipvsDest) int64) int {
	least := -1
	i := 0
	for ; i < len(ds); i++ {
		if !ds[i].overloaded && ds[i].weight > 0 {
			least = i
			break
		}
	}
	if least < 0 {
		return -1
	}
	loh := overhead(ds[least])
	for i++; i < len(ds); i++ {
		d := ds[i]
		if d.overloaded {
			continue
		}
		doh := overhead(d)
		if loh*d.weight > doh*ds[least].weight {
			least, loh = i, doh
		}
	}
	return least
}

func ipvsWLC(ds []ipvsDest) int { return ipvsWLCLike(ds, ipvsConnOverhead) }

func ipvsSED(ds []ipvsDest) int {
	return ipvsWLCLike(ds, func(d ipvsDest) int64 { return d.active + 1 })
}

// ipvsNQ is ip_vs_nq_schedule.
func ipvsNQ(ds []ipvsDest) int {
	least, loh := -1, int64(0)
	for i, d := range ds {
		if d.overloaded || d.weight == 0 {
			continue
		}
		doh := d.active + 1
		if d.active == 0 {
			return i
		}
		if least < 0 || loh*d.weight > doh*ds[least].weight {
			least, loh = i, doh
		}
	}
	return least
}

// ipvsFO is ip_vs_fo_schedule.
func ipvsFO(ds []ipvsDest) int {
	best, hw := -1, int64(0)
	for i, d := range ds {
		if !d.overloaded && d.weight > hw {
			best, hw = i, d.weight
		}
	}
	return best
}

// ipvsOVF is ip_vs_ovf_schedule.
func ipvsOVF(ds []ipvsDest) int {
	h := -1
	for i, d := range ds {
		if d.overloaded || d.active > d.weight || d.weight == 0 {
			continue
		}
		if h < 0 || d.weight > ds[h].weight {
			h = i
		}
	}
	return h
}

// ipvsRef returns the IPVS reference for a load-based algorithm.
func ipvsRef(name string) func([]ipvsDest) int {
	switch name {
	case "lc":
		return ipvsLC
	case "wlc":
		return ipvsWLC
	case "sed":
		return ipvsSED
	case "nq":
		return ipvsNQ
	case "fo":
		return ipvsFO
	case "ovf":
		return ipvsOVF
	}
	panic("no IPVS reference for " + name)
}

// nginxSWRR is nginx's smooth weighted round robin
// (ngx_http_upstream_get_peer), run live with the raw weights.
type nginxSWRR struct {
	weight, current []int64
}

func (r *nginxSWRR) next() int {
	var total int64
	best := -1
	for i, w := range r.weight {
		r.current[i] += w
		total += w
		if best < 0 || r.current[i] > r.current[best] {
			best = i
		}
	}
	r.current[best] -= total
	return best
}

// refMaglev is the NSDI 2016 pseudo-code with materialized permutations and
// the weighted turn order computed by a linear scan.
func refMaglev(m uint64, ids []uint64, weights []uint32) []int {
	n := len(ids)
	perm := make([][]uint64, n)
	for i, id := range ids {
		offset := mix64(id^seedOffset) % m
		skip := mix64(id^seedSkip)%(m-1) + 1
		perm[i] = make([]uint64, m)
		for j := range m {
			perm[i][j] = (offset + j*skip) % m
		}
	}
	next := make([]uint64, n)
	turns := make([]uint64, n)
	entry := make([]int, m)
	for j := range entry {
		entry[j] = -1
	}
	for filled := uint64(0); filled < m; filled++ {
		// The member whose next turn time (2k+1)/(2w) is smallest, first on a tie.
		i := 0
		for c := 1; c < n; c++ {
			if (2*turns[c]+1)*uint64(weights[i]) < (2*turns[i]+1)*uint64(weights[c]) {
				i = c
			}
		}
		turns[i]++
		c := perm[i][next[i]]
		for entry[c] >= 0 {
			next[i]++
			c = perm[i][next[i]]
		}
		entry[c] = i
		next[i]++
	}
	return entry
}
