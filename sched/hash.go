package sched

import (
	"encoding/binary"
	"math/bits"
)

// Hash seeds. They MUST NOT change: every gateway that serves a VIP (ECMP
// peers, or the same gateway before and after an upgrade) must build the same
// Maglev table and send the same source to the same backend, and the tables
// are a function of these constants. The golden tests fail if one changes.
// The values are arbitrary odd 64-bit constants: digits of pi (Blowfish's
// P-array), of e and of the golden ratio.
const (
	seedID     = 0x243f6a8885a308d3 // Backend.ID
	seedOffset = 0x13198a2e03707345 // Maglev offset, from the ID
	seedSkip   = 0xa4093822299f31d1 // Maglev skip, from the ID
	seedSH     = 0x082efa98ec4e6c89 // sh: source address (and port)
	seedDH     = 0x452821e638d01377 // dh: destination address
	seedMH     = 0xbe5466cf34e90c6d // mh: flow hash
	seedP2C    = 0xc0ac29b7c97c50dd // p2c: flow hash
	seedLocal  = 0x3f84d5b5b5470917 // lblc, lblcr: destination address to table set
	mulA       = 0x9e3779b97f4a7c15 // golden ratio, 2^64/phi
	mulB       = 0xb7e151628aed2a6b // e
)

// mix64 is the SplitMix64 finalizer (Stafford's variant 13): a bijection
// on 64 bits with full avalanche. It MUST NOT change (see the seeds).
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// mum is the wyhash "multiply and fold" step: the two halves of the 128-bit
// product, xored. One MULX; good enough mixing for the high bits that
// reduce uses. It MUST NOT change.
func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// identity returns the stable identity of addr:port (see Backend.ID). It is
// computed once per backend per Update, so it uses the stronger mix64. It
// MUST NOT change: Maglev permutations and sh/dh tables derive from it.
func identity(addr *[16]byte, port uint16) uint64 {
	h := mix64(binary.BigEndian.Uint64(addr[0:8]) ^ seedID)
	h = mix64(h ^ binary.BigEndian.Uint64(addr[8:16]))
	return mix64(h ^ uint64(port))
}

// hashAddr hashes a flow's address (and port, or 0) for sh and dh, on the
// hot path: two dependent multiplies. It MUST NOT change.
func hashAddr(seed uint64, addr *[16]byte, port uint16) uint64 {
	a := binary.BigEndian.Uint64(addr[0:8]) ^ seed
	b := binary.BigEndian.Uint64(addr[8:16]) ^ mulA
	return mum(mum(a, b)^uint64(port), mulB^seed)
}

// hashFlow remixes the caller's flow hash so that weak hashes (sequential
// values, a few changing bits) still spread over the table. It MUST NOT
// change.
func hashFlow(seed, h uint64) uint64 {
	return mum(h^seed, mulA)
}

// reduce maps h uniformly onto [0, n) with a multiply instead of a division
// (Lemire, "A fast alternative to the modulo reduction"); it uses the high
// bits of h.
func reduce(h, n uint64) uint64 {
	hi, _ := bits.Mul64(h, n)
	return hi
}

// isPrime reports whether n is prime, by trial division (n <= MaxTableSize).
func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	if n%2 == 0 {
		return n == 2
	}
	for d := uint64(3); d*d <= n; d += 2 {
		if n%d == 0 {
			return false
		}
	}
	return true
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
