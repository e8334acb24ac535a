// Package afpacket is vsgate's second device: AF_PACKET sockets on the
// Ethernet interfaces of the gateway, so that vsgate receives raw frames
// and sends frames itself — one pass, no kernel forwarding, no routes or
// policy rules into a TUN.
//
// # The topology it expects
//
//	 clients                     the gateway host                      real servers
//	+----------+   +----------------------------------------------+   +-------------+
//	| 198.18.  |   | eth "out"                        eth "in"    |   | 198.18.2.11 |
//	| 0.2      +---+ kernel: 198.18.0.3  (host's own) kernel: .2.3 +---+ .12 .13     |
//	| VIP is   |   | vsgate: VIP .0.10, masquerade    vsgate: .2.1|   | default via |
//	| on-link, |   |   .0.20, FULLNAT .0.30, gw .0.1   (servers'  |   | 198.18.2.1  |
//	| or via   |   |   (ARP/ND answered by vsgate)     gateway)   |   +-------------+
//	| a router |   | forwarding off on both: the kernel never     |
//	+----------+   | routes the frames vsgate handles             |
//	               +----------------------------------------------+
//
// vsgate's addresses (VIPs, masquerade and FULLNAT addresses, and the
// gateway address the real servers route through) are on no interface:
// the Responder answers ARP and neighbour solicitations for them with the
// interface's MAC, and Link.Announce sends a gratuitous ARP or an
// unsolicited advertisement for each on start and when one is added. The
// kernel keeps addresses of its own on the interfaces for the host's
// traffic (health checks, the L7 proxy's connections to real servers,
// ssh): frames to those reach the kernel alone. Packets vsgate sends go
// out of the interface the namespace's main routing table names for their
// destination (routes through the owned interfaces only), to the next
// hop's MAC from Neighbors.
//
// As a router, a Port decrements the TTL (hop limit) of every packet it
// reads and drops those that arrive with 1 left, answering with an ICMP
// time exceeded (rate-limited), as the kernel's forwarding does for a TUN.
//
// # What reaches userspace
//
// AF_PACKET gets a copy of every frame; the kernel still gets the
// original. A classic BPF filter (Filter) keeps the copies vsgate has no
// use for in the kernel: it passes ARP and neighbour discovery, and IP
// packets sent to the interface's MAC whose destination is not one of the
// kernel's addresses — the packets for vsgate's addresses and the packets
// routed through it (the real servers' replies). With forwarding off on
// the interfaces (the gateway turns it off), the kernel drops its copy of
// those. The filter also drops frames from the interface's own MAC, which
// AF_PACKET delivers too (vsgate's own transmissions).
//
// # Rings, fanout, offloads, batches
//
// Socket is written here, on golang.org/x/sys/unix: a TPACKET_V2 receive
// ring read without a system call per frame, sendmmsg(2) for batches, and
// waits in the Go runtime's poller. It replaced
// github.com/gopacket/gopacket/afpacket, which was measured first and
// reads one frame per call, cannot wait in the poller (its blocking poll
// wakes every 100 ms to let Close in) and does not hand out its
// descriptor, so no batches could be sent; github.com/mdlayher/packet has
// no ring. `vsgate-lab bench`, vsgate-afpacket, gopacket's ring →
// this one (two runs, each against its own kernel-DNAT baseline): HTTP
// keep-alive 0.74x → 0.80x of kernel DNAT, new connections
// 0.68x → 0.79x. Sending the batch with one sendmmsg instead of one
// write(2) per frame (same binary otherwise): keep-alive +11%, small UDP
// +13%, bulk +5%. A PACKET_TX_RING was not built: the kernel copies a
// frame out of it as it copies one out of sendmmsg's buffers, so it would
// save what sendmmsg already saves, the system call per frame.
//
// The ring is TPACKET_V2, which wakes the reader per frame: V3 delivers a
// block at a time, at the earliest after its 1 ms timer, and that
// millisecond showed in every request-response round trip (keep-alive
// 0.37x with V3). With Queues > 1 the sockets of an interface join a
// PACKET_FANOUT hash group, so both directions of a flow meet the same
// worker.
//
// Sockets use PACKET_VNET_HDR: a veth (and a NIC with GRO) hands over TCP
// super-packets of up to 64 KiB with a partial checksum, which a plain
// socket would read as one oversized frame with a wrong checksum. With the
// virtio-net header the engine translates a super-packet whole and Write
// sends it on whole with its header; the kernel (or the next veth)
// segments it and finishes the checksum. Partial checksums are refreshed
// for the rewritten addresses on the way out. Port.Segments splits and
// finishes them for the L7 netstack, which takes only plain packets.
//
// The other way round, Write merges a run of one flow's UDP datagrams in a
// batch into one UDP GSO super-packet (packet.CoalesceUDP, as wireguard's tun
// does on a TUN): the kernel carries it through the veth and the bridge
// as one packet and splits it into the same datagrams at the receiver.
// Small UDP through vsgate-afpacket went from 0.55x to 0.90x of kernel
// DNAT with it (the datagrams from a veth carry partial checksums, which
// the first version refused to merge: 0.55x).
//
// # Pieces
//
// Link owns the interfaces, routes, neighbours and the queue of packets
// waiting for a neighbour's answer; its Ports are device.Devices, one per
// socket, which the gateway's workers read and write like TUN queues.
// Socket is one AF_PACKET socket (xdp.go sets up the AF_XDP ones);
// ParseControl parses an ARP or neighbour
// discovery frame once, for the Responder (answers for owned addresses)
// and Neighbors (learns senders; loads the kernel's neighbour table;
// lock-free lookups on the transmit path).
//
// # Frames through AF_XDP
//
// With LinkConfig.XDP (device.type: afxdp) a Link carries the engine's
// frames through AF_XDP sockets instead (packet/afxdp): an XDP program on
// each interface redirects the frames this package's socket filter would
// pass (IP to the interface's MAC, not to a kernel address) to the socket
// of their receive queue, so the kernel never sees them at all (no
// forwarding to turn off for them) and reading takes no system call per
// frame. ARP and neighbour discovery stay the kernel's (a redirected frame
// is gone from it, and the kernel resolves its own neighbours): one
// AF_PACKET socket per interface, its filter ControlOnly, reads copies of
// them for the Responder and Neighbors on a goroutine of its own, and
// sends vsgate's answers, requests and the packets that waited for them.
// Ports read and write the AF_XDP sockets with the same virtio-net header
// in front of each frame (an empty one on read: through XDP nothing is a
// super-packet, so writes are not merged either). An interface where the
// program cannot attach (XDP missing, an MTU too large for XDP on a veth,
// fewer receive queues than Queues) falls back to AF_PACKET sockets, with
// a log line. On a veth, a sender on the same host hands over partial
// checksums that XDP does not mark: the lab turns checksum offload off on
// the peers.
//
// VLAN tags are not handled: AF_PACKET strips them into metadata on
// receive and vsgate sends untagged frames. Use a VLAN interface (eth0.100)
// as the owned interface instead.
package afpacket
