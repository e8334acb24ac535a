package nat

import (
	"fmt"
	"net/netip"
)

// addrOf converts a 16-byte flow address to netip (unmapping IPv4), off
// the per-packet path of established flows.
func addrOf(a [16]byte) netip.Addr { return netip.AddrFrom16(a).Unmap() }

// CheckServiceAddr refuses an address no client can reach through a
// gateway, as a VIP, masquerade or FULLNAT address: unspecified, loopback,
// link-local, multicast. (Whether the namespace holds it already is for
// the wiring to say.)
func CheckServiceAddr(a netip.Addr) error {
	switch {
	case !a.IsValid() || a.IsUnspecified():
		return fmt.Errorf("%v is the unspecified address: no client can reach it", a)
	case a.IsLoopback():
		return fmt.Errorf("%v is a loopback address: no client outside this host can reach it", a)
	case a.IsLinkLocalUnicast():
		return fmt.Errorf("%v is a link-local address: it cannot be routed to, through a gateway or otherwise", a)
	case a.IsMulticast() || a.IsInterfaceLocalMulticast() || a.IsLinkLocalMulticast():
		return fmt.Errorf("%v is a multicast address: a virtual service is one address", a)
	}
	return nil
}
