// Package tun is the TUN device: raw IP packets (no link header, no packet
// information) in and out of a Linux TUN interface, one Device per queue,
// with a batch-first API shaped like wireguard-go's tun.Device
// (STYLE.md 6):
//
//	devs, err := tun.Open("tun0", queues) // in the gateway's namespace
//	// bring the link up, set MTU, addresses and routes over netlink
//	// (by devs[0].Name(), or devs[0].(*tun.TUN).Index())
//	for _, d := range devs { go worker(d) } // one worker per queue
//
//	func worker(d tun.Device) {
//		bufs := make([][]byte, d.BatchSize()) // each headroom+MTU bytes
//		sizes := make([]int, len(bufs))
//		for {
//			n, err := d.Read(bufs, sizes, headroom)
//			// handle the n packets first: bufs[i][headroom:headroom+sizes[i]]
//			// then write the verdicts in one batch: d.Write(out, headroom)
//			if err != nil { return } // errors.Is(err, os.ErrClosed) after Close
//		}
//	}
//
// It opens queues through github.com/songgao/water (IFF_TUN|IFF_NO_PI, and
// IFF_MULTI_QUEUE when there is more than one queue; water's flags are
// fixed, so there is no IFF_VNET_HDR and no offload). water hands out each
// queue as a non-blocking *os.File registered with the Go runtime poller;
// Read and Write work on its syscall.RawConn: Read reads packets with
// read(2) until the batch is full or the queue is empty (EAGAIN) and parks
// in the poller only when it got nothing, so it never waits for a second
// packet; Write writes each packet with write(2). Neither allocates
// (enforced by TestNoAllocs); Close unblocks a pending Read.
//
// # What a batch costs
//
// A TUN without offloads moves one packet per system call: a batch of n
// packets costs n writes, and n reads plus one read that finds the queue
// empty (EAGAIN) when the batch is not full. Batching saves the Go-side
// work per packet (poller, locks, the worker's per-batch loads and
// counters), not system calls. Measured by BenchmarkTUNReadWrite on this
// 2-core machine (64-byte IPv4 UDP packets written to the TUN, forwarded by
// the kernel straight back into it, read again; six runs of 1 s each,
// on CPUs shared with other work, so the spread is wide):
//
//	                          pkt/s               write ns/pkt   read ns/pkt
//	naive (os.File per pkt)   175,000-220,000     3,600-4,900    790-880
//	batch=1                   155,000-200,000     3,700-4,500    1,230-1,320 (read + EAGAIN)
//	batch=8                   190,000-240,000     3,400-3,650    715-735
//	batch=64                  210,000-238,000     3,300-3,900    680-740
//	2 queues, batch=64        290,000-550,000     (two goroutines, two cores)
//
// The write dominates: a TUN write runs the kernel's receive and
// forwarding path inline (DESIGN.md, "Measured here"). An empty read costs
// about 0.5 µs, so a worker under light load pays it on every Read; under
// load batches fill and it disappears. More throughput needs more queues
// (one worker and one core each) or offloads (IFF_VNET_HDR with GSO/GRO:
// OffloadTUN below), not a faster loop here.
//
// # Offloads: OffloadTUN
//
// OpenOffload opens the queues with the virtio-net header (IFF_VNET_HDR)
// and TUNSETOFFLOAD TSO4/TSO6 (USO4/USO6 on Linux 6.2+), and hands each
// descriptor to golang.zx2c4.com/wireguard/tun (CreateUnmonitoredTUNFromFD:
// no goroutines, no netlink monitor). The kernel then moves TCP (and
// UDP) super-packets of up to 64 KiB through the TUN in one system call
// instead of 45 MTU-sized ones. Read splits each super-packet into
// MTU-sized segments with complete checksums (a normal packet with a
// partial checksum gets it completed), so the engine behind it sees
// ordinary packets and counts segments; Write coalesces runs of one
// flow's segments back into super-packets (GRO) and lets the kernel
// segment them (or hand them on whole to a GSO-capable next hop). Read
// keeps reading while the queue has more and a super-packet's worth of
// buffers is free, so a batch may hold several super-packets.
//
// Why split and coalesce instead of translating super-packets whole: the
// NAT engine's per-packet cost is well under 1% of the time (DESIGN.md,
// "Measured here"); the copies of the split and the coalescing cost about
// what the payload copy of the read already costs, and everything behind
// the device (parse, flow state, counters, pcap, the L7 netstack) keeps
// working on MTU-sized packets unchanged. Measured in the e2e bulk step
// (300 MB, 2 queues, this 2-core machine): 1.1 Gbit/s without offloads,
// 5.7-6.6 Gbit/s with (IPv4 and IPv6).
//
// Callers pass Headroom() as offset (OffloadHeadroom, room for the
// 10-byte header) and give each buffer OffloadHeadroom+MaxPacket bytes:
// Write coalesces into the buffers' spare capacity and may reorder the
// slice it is given. A kernel that refuses the offloads gives an error
// wrapping ErrNoOffload; the gateway then falls back to Open.
//
// # Queues and flows
//
// With several queues the kernel picks the queue for each packet it sends
// into the TUN: the queue that last wrote a packet of the same flow (its
// TUN flow table, by symmetric flow hash, entries expiring after a few
// seconds idle), else by flow hash. A flow's first packet can therefore
// come out of another queue than later ones; workers must not assume a
// flow stays on one queue (the flow table in nat is shared anyway).
//
// # What it must not do
//
// Know anything about packets beyond moving them: no parsing, no NAT, no
// copying of packet data (but the GSO split and GRO coalescing of an
// OffloadTUN, which wireguard's tun does), no goroutines, no allocation
// per packet, no mutable package state. Configure the interface (link state, MTU,
// addresses, routes: the gateway does that over netlink) or change
// anything in a network namespace other than the one Open runs in. Tests
// open TUNs only inside netlab namespaces, never in the root namespace.
//
// Known limits: water leaks the /dev/net/tun descriptor when TUNSETIFF
// fails (an existing non-TUN interface of that name, or a mismatched
// multi-queue flag); a packet longer than its buffer is cut to the buffer
// (sizes[i] is then the buffer's length, and packet.Parse reports the
// packet truncated).
package tun
