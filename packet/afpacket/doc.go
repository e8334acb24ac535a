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
// Status (issue 10): this package receives and sends frames and is tested
// in a namespace over a veth pair; the gateway does not use it yet (the
// ARP/ND responder, next-hop resolution and the `device: afpacket` config
// are the next steps, see the issue notes).
package afpacket
