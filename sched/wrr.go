package sched

import "math/bits"

// Limits of the precomputed smooth schedule: its length (the period), and
// the work to build it (period * backends steps). Past either, wrr uses the
// stride schedule, which needs O(n) memory and O(log n) per pick.
const (
	maxSmoothPeriod = 1 << 16
	maxSmoothWork   = 1 << 22
)

// buildWRR prepares the wrr schedule for the available backends' weights
// (all > 0). One period is P = sum(w)/gcd(w) picks, in which backend i is
// picked exactly w_i/gcd(w) times.
//
// Smooth schedule (nginx's smooth weighted round robin,
// ngx_http_upstream_get_peer): every step, each backend's current weight
// grows by its weight; the largest (first on a tie) is picked and loses the
// total. After P steps every current weight is back to 0, so the sequence
// is periodic; it is stored as indexes and Pick reads seq[n mod P].
//
// Stride schedule, for long periods: backend i owns the interval
// [bound[i-1], bound[i]) of [0, P), of length w_i/g; pick n takes the
// backend whose interval holds (n mod P) * C mod P. C is coprime with P, so
// one period visits every point once (exact shares), and C is near P/phi,
// so consecutive picks land far apart (Kronecker sequence), which spreads
// each backend's picks over the period.
func (p *snapshot) buildWRR(w []uint32) {
	n := len(w)
	if n == 0 {
		return
	}
	var g uint64
	for _, x := range w {
		g = gcd(uint64(x), g)
	}
	var period uint64
	for _, x := range w {
		period += uint64(x) / g
	}
	p.period = period
	if period <= maxSmoothPeriod && period*uint64(n) <= maxSmoothWork {
		p.seq = make([]uint16, period)
		cw := make([]int64, n)
		total := int64(period)
		for step := range p.seq {
			best := 0
			for i, x := range w {
				cw[i] += int64(uint64(x) / g)
				if cw[i] > cw[best] {
					best = i
				}
			}
			cw[best] -= total
			p.seq[step] = uint16(best)
		}
		return
	}
	p.bound = make([]uint64, n)
	var sum uint64
	for i, x := range w {
		sum += uint64(x) / g
		p.bound[i] = sum
	}
	// C = round-down(P/phi), then the next value coprime with P. P-1 is
	// coprime with P, so the search ends below P.
	c, _ := bits.Mul64(period, mulA)
	if c == 0 {
		c = 1
	}
	for gcd(c, period) != 1 {
		c++
	}
	p.stride = c
}

// wrrIndex returns the index into dests of the pick at position pos of the
// period (pos < period).
func (p *snapshot) wrrIndex(pos uint64) uint64 {
	if p.seq != nil {
		return uint64(p.seq[pos])
	}
	// pos and stride are below period <= MaxBackends*MaxWeight < 2^32, so
	// the product fits 64 bits.
	q := pos * p.stride % p.period
	lo, hi := 0, len(p.bound)-1
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if p.bound[mid] > q {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return uint64(lo)
}
