package nat

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/vsgate/vsgate/packet"
)

// TestSvcIndex: every service is found by its VIP, port and protocol, and
// nothing else is: neighbouring ports, the other protocol, another
// address, IPv4 and IPv6 alike, at sizes where probes run over each other.
func TestSvcIndex(t *testing.T) {
	for _, n := range []int{0, 1, 3, 4, 5, 100} {
		services := map[svcKey]*service{}
		for i := range n {
			vip := netip.MustParseAddr("198.18.0.10")
			if i%2 == 1 {
				vip = netip.MustParseAddr("2001:db8::10")
			}
			k := svcKey{addr: vip.As16(), port: uint16(80 + i), proto: packet.ProtoTCP}
			services[k] = &service{key: k}
		}
		x := newSvcIndex(services)
		look := func(k svcKey) *service {
			return x.lookup(binary.LittleEndian.Uint64(k.addr[0:8]), binary.LittleEndian.Uint64(k.addr[8:16]), k.port, k.proto)
		}
		if got := look(svcKey{addr: netip.MustParseAddr("198.18.0.99").As16(), port: 80, proto: packet.ProtoTCP}); got != nil {
			t.Fatalf("%d services: an unknown VIP found %v", n, got.key)
		}
		for k, svc := range services {
			if got := look(k); got != svc {
				t.Fatalf("%d services: %v port %d gives %p, want %p", n, netip.AddrFrom16(k.addr), k.port, got, svc)
			}
			for _, miss := range []svcKey{
				{addr: k.addr, port: k.port, proto: packet.ProtoUDP},
				{addr: k.addr, port: k.port + uint16(n), proto: k.proto},
				{addr: netip.MustParseAddr("198.18.0.11").As16(), port: k.port, proto: k.proto},
			} {
				if got := look(miss); got != nil {
					t.Fatalf("%d services: %v port %d proto %d found %v, want none", n, netip.AddrFrom16(miss.addr), miss.port, miss.proto, got.key)
				}
			}
		}
	}
}
