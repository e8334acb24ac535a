// Package tun is the TUN device: raw IP packets (no link header, no packet
// information) in and out of a Linux TUN interface, one device.Device per queue,
// with a batch-first API shaped like wireguard-go's tun.Device
// (STYLE.md 6):
//
//	devs, err := tun.Open("tun0", queues) // in the gateway's namespace
//	// bring the link up, set MTU, addresses and routes over netlink
//	// (by devs[0].Name(), or devs[0].(*tun.TUN).Index())
//	for _, d := range devs { go worker(d) } // one worker per queue
//
//	func worker(d device.Device) {
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
// OpenOffload opens the queues itself (/dev/net/tun, TUNSETIFF with
// IFF_VNET_HDR, TUNSETOFFLOAD with TSO4/TSO6 and, on Linux 6.2+, USO4/USO6)
// and reads and writes them as a TUN does, through the runtime poller. The
// kernel then moves TCP (and UDP) super-packets of up to 64 KiB through the
// TUN in one system call instead of 45 MTU-sized ones, and packets may
// carry a partial checksum (the pseudo-header sum; the kernel or the NIC
// finishes it). Read returns packets as they come, super-packets whole,
// each with its 10-byte virtio-net header in the headroom; the engine
// translates a super-packet once (its segments share every header field
// NAT rewrites) and counts it as its segments (SegmentCount). Write
// refreshes a partial checksum for the rewritten addresses
// (packet.VNetHdr.RefreshPartial: the engine's incremental update is right
// only for complete checksums), merges runs of one flow's small UDP
// datagrams into one UDP GSO super-packet where the kernel has USO
// (packet.CoalesceUDP), and writes each packet with its header. Segments
// splits a super-packet, with complete checksums, for consumers that take
// only plain packets (the L7 netstack).
//
// Why whole super-packets instead of wireguard-go's tun (which this
// package used before: split every super-packet into segments with full
// checksums on read, coalesce them again on write): measured in bench-e2e
// on this machine, interleaved, old binary against new, two runs each
// (vsgate-nat-gso; kernel DNAT in the same runs): bulk TCP 8.9 and 6.7 →
// 13.0 and 11.2 Gbit/s, small UDP 116k and 98k → 148k and 134k pkt/s,
// HTTP keep-alive 30.8k and 30.4k → 35.3k and 33.2k req/s, new connections
// 7.5k and 7.4k → 8.7k and 8.2k conn/s. The split's checksum and copy
// work was the largest item in the gateway's own profile under bulk TCP
// (wireguard's checksumNoFold, 14% of samples, plus its memmove), and it
// bought nothing: NAT rewrites only headers that every segment shares.
// The same tests hold (TestOffloadTrains: random trains of TCP segments,
// TCP super-packets and UDP runs through the kernel and back, every
// segment checked against gVisor's checksum code).
//
// Callers pass Headroom() as offset (OffloadHeadroom, room for the
// 10-byte header) and give each buffer OffloadHeadroom+MaxPacket bytes:
// Read may fill them, and Write merges into their spare capacity. A packet
// made elsewhere (the engine's resets and ICMP errors, the L7 netstack's
// output) must have zeros in the header's place. A kernel that refuses
// the offloads gives an error wrapping ErrNoOffload; the gateway then
// falls back to Open.
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
// copying of packet data (but Segments and the UDP merging of an
// OffloadTUN), no goroutines, no allocation
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
