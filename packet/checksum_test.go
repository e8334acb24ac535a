package packet_test

import (
	"math/rand/v2"
	"testing"

	"github.com/gopacket/gopacket"

	"github.com/vsgate/vsgate/packet"
)

// sumSlow is the obviously correct RFC 1071 sum: one big-endian word at a
// time, folded at the end.
func sumSlow(b []byte, initial uint16) uint16 {
	s := uint64(initial)
	for i := 0; i+1 < len(b); i += 2 {
		s += uint64(b[i])<<8 | uint64(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint64(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// TestSumAgainstReferences diffs Sum against the slow reference and against
// gopacket on 100,000 seeded random buffers of every length up to 2000 and
// every alignment.
func TestSumAgainstReferences(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 5))
	buf := make([]byte, 2100)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	for i := range oracleCount(t) {
		off, n := r.IntN(64), r.IntN(2001)
		b := buf[off : off+n]
		if i%97 == 0 { // runs of 0xff push every carry path
			for j := range b {
				b[j] = 0xff
			}
		}
		initial := uint16(r.Uint32())
		got, want := packet.Sum(b, initial), sumSlow(b, initial)
		if got != want {
			t.Fatalf("Sum(len %d, off %d, initial %#x) = %#04x, reference %#04x", n, off, initial, got, want)
		}
		gp := ^gopacket.FoldChecksum(gopacket.ComputeChecksum(b, uint32(initial)))
		if got != gp && !(got == 0xffff && gp == 0) {
			t.Fatalf("Sum(len %d) = %#04x, gopacket %#04x", n, got, gp)
		}
		if i%97 == 0 {
			for j := range b {
				b[j] = byte(r.Uint32())
			}
		}
	}
}

// TestPseudoHeaderSum checks the pseudo-header against a hand-laid one.
func TestPseudoHeaderSum(t *testing.T) {
	src, dst := []byte{198, 18, 0, 1}, []byte{198, 18, 0, 10}
	hdr := append(append(append([]byte{}, src...), dst...), 0, 6, 0x05, 0xdc)
	if got, want := packet.PseudoHeaderSum(6, src, dst, 1500), sumSlow(hdr, 0); got != want {
		t.Errorf("PseudoHeaderSum = %#04x, want %#04x", got, want)
	}
}
