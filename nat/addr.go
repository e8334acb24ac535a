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

// notRoutable reports whether a packet from src to dst is one no router
// passes on (RFC 1812 5.3.7, RFC 4291 2.5.6): to a multicast, broadcast,
// link-local or loopback address, or from an unspecified, multicast,
// link-local or loopback one.
func notRoutable(src, dst netip.Addr) bool {
	return dst.IsMulticast() || isLimitedBroadcast(dst) || dst.IsLinkLocalUnicast() || dst.IsLoopback() || dst.IsUnspecified() ||
		src.IsMulticast() || isLimitedBroadcast(src) || src.IsLinkLocalUnicast() || src.IsLoopback() || src.IsUnspecified()
}

// isLimitedBroadcast reports whether a is 255.255.255.255, IPv4's
// broadcast on the link.
func isLimitedBroadcast(a netip.Addr) bool { return a.Is4() && a.As4() == [4]byte{255, 255, 255, 255} }
