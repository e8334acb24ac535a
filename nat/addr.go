package nat

import "net/netip"

// addrOf converts a 16-byte flow address to netip (unmapping IPv4), off
// the per-packet path of established flows.
func addrOf(a [16]byte) netip.Addr { return netip.AddrFrom16(a).Unmap() }
