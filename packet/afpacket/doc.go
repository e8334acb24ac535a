// Package afpacket is vsgate's second device: an AF_PACKET socket on an
// Ethernet interface that receives raw frames through a memory-mapped
// TPACKET_V3 ring, spreads them over workers with PACKET_FANOUT (hash, so
// both directions of a flow meet the same worker), and lets only the
// frames vsgate wants — ARP, neighbour discovery, and IP packets addressed
// to its VIPs and masquerade addresses — past a classic BPF filter, so the
// host's own traffic on the interface costs vsgate nothing.
//
// The ring is github.com/gopacket/gopacket/afpacket: pure Go, TPACKET_V3,
// fanout and BPF attachment, maintained, and its zero-copy read is what a
// hand-written ring would do. The filter is assembled with
// golang.org/x/net/bpf from the address list (Filter).
//
// ParseControl parses a received ARP or neighbour discovery frame once,
// for both of the pieces below to read.
//
// Responder answers ARP requests and neighbour solicitations for the
// addresses vsgate owns, which are deliberately not configured on the
// interface (the kernel would otherwise answer, and route, for them), and
// writes the gratuitous ARP and unsolicited advertisements sent on start.
//
// Neighbors resolves next hops the other way: it starts from the kernel's
// neighbour table (netlink), learns from every ARP and ND frame it sees,
// asks with Request where it knows nothing, and is read lock-free on the
// transmit path.
//
// Status (issue 10): sockets, the responder and the neighbour table are
// tested in namespaces against a real Linux neighbour (it resolves the
// VIPs to the socket's MAC and answers the socket's requests); the gateway
// does not use this device yet — the egress choice per packet and the
// `device: afpacket` config are the next steps (see the issue notes).
package afpacket
