package packet

import (
	"encoding/binary"
	"math/bits"
)

// Sum returns the 16-bit one's-complement sum (RFC 1071) of b, added to
// initial. It is not complemented: a checksum field holds ^Sum(...). An odd
// trailing byte is summed as the high byte of a word padded with zero.
//
// Sum reads eight bytes per step and adds with carry, so its speed is a few
// bytes per cycle. It relies on RFC 1071 §2: the one's-complement sum does
// not depend on byte order, so words are loaded little-endian (a plain load
// on amd64 and arm64) and the folded result is swapped back once at the end.
func Sum(b []byte, initial uint16) uint16 {
	acc := uint64(bits.ReverseBytes16(initial))
	var carry uint64
	for len(b) >= 32 {
		acc, carry = bits.Add64(acc, binary.LittleEndian.Uint64(b[0:8]), carry)
		acc, carry = bits.Add64(acc, binary.LittleEndian.Uint64(b[8:16]), carry)
		acc, carry = bits.Add64(acc, binary.LittleEndian.Uint64(b[16:24]), carry)
		acc, carry = bits.Add64(acc, binary.LittleEndian.Uint64(b[24:32]), carry)
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, carry = bits.Add64(acc, binary.LittleEndian.Uint64(b[0:8]), carry)
		b = b[8:]
	}
	if len(b) >= 4 {
		acc, carry = bits.Add64(acc, uint64(binary.LittleEndian.Uint32(b[0:4])), carry)
		b = b[4:]
	}
	if len(b) >= 2 {
		acc, carry = bits.Add64(acc, uint64(binary.LittleEndian.Uint16(b[0:2])), carry)
		b = b[2:]
	}
	if len(b) == 1 {
		// The lone byte sits at an even offset: the high byte of a
		// big-endian word, which is the low byte of a little-endian one.
		acc, carry = bits.Add64(acc, uint64(b[0]), carry)
	}
	acc += carry // cannot overflow: acc is at most 2^64-2 when carry is 1
	return bits.ReverseBytes16(fold64(acc))
}

// fold64 folds a 64-bit one's-complement accumulator to 16 bits with
// end-around carry.
func fold64(acc uint64) uint16 {
	s, c := bits.Add32(uint32(acc), uint32(acc>>32), 0)
	s += c
	t, c16 := bits.Add32(s&0xffff, s>>16, 0)
	_ = c16 // two 16-bit values never carry out of 32 bits
	t = (t & 0xffff) + (t >> 16)
	return uint16(t)
}

// PseudoHeaderSum returns the one's-complement sum of the TCP/UDP/ICMPv6
// pseudo-header (RFC 793 §3.1, RFC 768, RFC 8200 §8.1): source and
// destination address (4 or 16 bytes each), protocol and upper-layer length.
func PseudoHeaderSum(proto uint8, src, dst []byte, length int) uint16 {
	s := Sum(src, 0)
	s = Sum(dst, s)
	return addSum(addSum(s, uint16(proto)), uint16(length)) // length fits: IP caps it at 65535
}

// addSum adds two one's-complement sums.
func addSum(a, b uint16) uint16 {
	s := uint32(a) + uint32(b)
	return uint16(s + s>>16)
}

// Checksum delta arithmetic (RFC 1624, eqn 3): HC' = ~(~HC + ~m + m').
// A delta is the running sum of ~m + m' over every changed 16-bit word; it
// stays far below 2^32 for the few dozen words one rewrite changes.

// delta16 is the delta for one word changing from old to new.
func delta16(old, new uint16) uint32 { return uint32(^old) + uint32(new) }

// delta32 is the delta for a 4-byte field (two words) changing from old to new.
func delta32(old, new uint32) uint32 {
	return uint32(^uint16(old>>16)) + uint32(^uint16(old)) + new>>16 + new&0xffff
}

// deltaBytes is the delta for an even-length field changing from old to new.
// It uses the identity sum(~m_i) = ~sum(m_i) in one's complement.
func deltaBytes(old, new []byte) uint32 {
	return uint32(^Sum(old, 0)) + uint32(Sum(new, 0))
}

// adjust returns checksum field value xsum updated by delta d.
func adjust(xsum uint16, d uint32) uint16 {
	s := uint32(^xsum) + d // d stays far below 2^32 - 2^16: no overflow
	s = s&0xffff + s>>16   // at most 0x1fffe
	s += s >> 16           // the end-around carry; the low 16 bits are the sum
	return ^uint16(s)
}

// be16 and friends keep the rewrite code short; they compile to single
// loads and stores.
func be16(b []byte) uint16     { return binary.BigEndian.Uint16(b) }
func be32(b []byte) uint32     { return binary.BigEndian.Uint32(b) }
func put16(b []byte, v uint16) { binary.BigEndian.PutUint16(b, v) }
func put32(b []byte, v uint32) { binary.BigEndian.PutUint32(b, v) }
