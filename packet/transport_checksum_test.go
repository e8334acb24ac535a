package packet_test

import (
	"math/rand/v2"
	"testing"

	"github.com/vsgate/vsgate/packet"
)

// TestTransportChecksumValid: right TCP, UDP and ICMPv6 checksums are
// recognised and a flipped bit is not, in both families; UDP over IPv4
// without a checksum (0) counts as right; fragments are not judged.
func TestTransportChecksumValid(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 5000 {
		b := gen(r).serialize()
		var p packet.Parsed
		if packet.Parse(b, &p) != packet.ReasonNone || p.IsFragment() || p.SourceRouted || (p.Proto != packet.ProtoTCP && p.Proto != packet.ProtoUDP && p.Proto != packet.ProtoICMPv6) {
			continue
		}
		if !packet.TransportChecksumValid(b, &p) {
			t.Fatalf("a right checksum judged wrong: %x", b)
		}
		bad := append([]byte(nil), b...)
		bad[p.End-1] ^= 0x01
		if p.End-1 < p.L4Off+8 { // no payload: spoil the checksum field itself
			bad = append([]byte(nil), b...)
			bad[p.L4Off+7] ^= 0x01
		}
		if p.Proto == packet.ProtoUDP && p.Version == 4 && packet.UDP(b[p.L4Off:]).Checksum() == 0 {
			continue
		}
		if packet.TransportChecksumValid(bad, &p) {
			t.Fatalf("a spoilt checksum judged right: %x", bad)
		}
	}
}

// TestWindowScale: the window scale option is found among other options,
// capped at 14, and a malformed option list ends the walk.
func TestWindowScale(t *testing.T) {
	hdr := func(opts ...byte) packet.TCP {
		h := make([]byte, 20, 20+len(opts))
		h = append(h, opts...)
		for len(h)%4 != 0 {
			h = append(h, 0)
		}
		h[12] = byte(len(h)/4) << 4
		return h
	}
	for _, tc := range []struct {
		h     packet.TCP
		shift uint8
		ok    bool
	}{
		{hdr(), 0, false},
		{hdr(3, 3, 7), 7, true},
		{hdr(2, 4, 0x05, 0xb4, 1, 3, 3, 9), 9, true}, // MSS, NOP, wscale
		{hdr(3, 3, 20), 14, true},
		{hdr(2, 0, 3, 3, 7), 0, false}, // a zero length ends the walk
		{hdr(8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 3, 3, 2), 2, true},
		{hdr(0, 3, 3, 7), 0, false}, // end of options first
	} {
		if shift, ok := tc.h.WindowScale(); shift != tc.shift || ok != tc.ok {
			t.Errorf("options %x: %d %v, want %d %v", []byte(tc.h[20:]), shift, ok, tc.shift, tc.ok)
		}
	}
}
