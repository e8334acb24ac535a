// Package packet is the wire-format layer every packet passes through:
// typed byte-slice views of IPv4, IPv6 (with the extension headers it
// walks: hop-by-hop, routing, fragment, destination options), TCP, UDP,
// ICMPv4 and ICMPv6 headers; Parse, which turns a raw IP packet into a
// flow tuple, offsets and fragment information in a caller-owned Parsed;
// RFC 1071 checksums and RFC 1624 incremental updates; and the rewrites a
// NAT needs — source or destination address and port, the ICMP echo
// identifier, and the packet quoted inside an ICMP error — each fixing
// every checksum it touches. For AF_PACKET mode it also reads Ethernet II
// frames with up to two VLAN tags (ParseEthernet), validates ARP (ValidARP)
// and IPv6 neighbour solicitations and advertisements (ParseND, with RFC
// 4861's validity rules), and writes the ARP and ND frames a gateway that
// owns its addresses must send (PutARP, PutNeighborSolicit,
// PutNeighborAdvert). For devices with segmentation offloads it reads and
// writes the virtio-net header (VNetHdr): refreshing a partial checksum
// after a rewrite, splitting a GSO super-packet into its segments, and
// merging a run of one flow's UDP datagrams into a UDP GSO super-packet
// (CoalesceUDP).
//
// Everything here is on the per-packet hot path: Parse and the rewrites do
// not allocate, take no locks and never panic on malformed input (they
// return a typed Reason instead; the caller counts it and drops the
// packet).
//
// What this package must not do: any I/O, any notion of flows, state,
// time or configuration, any import beyond the standard library. Devices
// live in subpackages (packet/tun, packet/afpacket, packet/pcap), and the
// contract they share in packet/device; flows live in nat.
package packet
