package packet_test

import (
	"net"
	"testing"

	"github.com/vsgate/vsgate/packet"
)

// TestNoAllocs proves the hot path allocates nothing: Parse, every rewrite,
// ICMP error handling and checksums.
func TestNoAllocs(t *testing.T) {
	v4 := tcpSpec(false, 24).serialize()
	v6 := udpSpec(true, 472).serialize()
	echo := (&spec{proto: 1, ttl: 64, src: testClient4, dst: testVIP4, icmpType: 8, icmpID: 7}).serialize()
	icmpErr := (&spec{v6: true, proto: 58, ttl: 64, src: testVIP6, dst: testClient6, icmpType: 2,
		quote: tcpSpec(true, 100), quoteLen: 80}).serialize()
	a4, a6 := to16(net.IP{198, 18, 1, 1}), to16(net.ParseIP("2001:db8::2:1"))
	var p, inner packet.Parsed
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"Parse/v4", func() { packet.Parse(v4, &p) }},
		{"Parse/v6", func() { packet.Parse(v6, &p) }},
		{"SetDst/v4", func() { packet.Parse(v4, &p); packet.SetDst(v4, &p, a4, 8080) }},
		{"SetSrc/v6", func() { packet.Parse(v6, &p); packet.SetSrc(v6, &p, a6, 5353) }},
		{"SetICMPID", func() { packet.Parse(echo, &p); packet.SetICMPID(echo, &p, 99) }},
		{"ICMPError", func() {
			packet.Parse(icmpErr, &p)
			packet.ParseICMPError(icmpErr, &p, &inner)
			packet.SetInnerDst(icmpErr, &p, &inner, a6, 80)
			packet.SetSrc(icmpErr, &p, a6, 0)
		}},
		{"Sum", func() { packet.Sum(v6, 0) }},
		{"L4Checksum", func() { packet.Parse(v4, &p); packet.L4Checksum(v4, &p) }},
	} {
		if n := testing.AllocsPerRun(1000, tc.f); n != 0 {
			t.Errorf("%s: %v allocs per run, want 0", tc.name, n)
		}
	}
}
