// Package nat is the L4 engine: virtual services keyed by protocol, VIP and
// port; the sharded flow table; TCP state (IPVS's state table and
// timeouts, changed so that only the real server's SYN-ACK and the
// client's ACK make a flow ESTABLISHED) with conntrack's window tracking
// (tcptrack.go: a segment out of the window, a blind RST or FIN, changes
// nothing; checksums are checked on the segments that open or change a
// flow unless the device vouched for them); per-source limits
// (source.go); UDP and ICMP flows; NAT (LVS-NAT) and FULLNAT translation;
// masquerade (source NAT for the server subnet); ICMP errors about tracked
// flows; counters. It takes packets and returns verdicts (Worker.Process).
//
// How a flow translates: every flow holds two tuples, the original
// direction (client to VIP) and the reply direction (real server to client,
// or to the FULLNAT/masquerade address), both in the table. A packet that
// matches one tuple is rewritten to the other tuple reversed. NAT, FULLNAT
// and masquerade differ only in the reply tuple they create.
//
// The table: lookups are lock-free (every field a lookup reads is atomic;
// a per-flow generation acts as a seqlock and a per-shard sequence makes a
// miss reliable while a flow is unlinked); inserts and deletes take the
// locks of the flow's two shards. The index is cache-line buckets of seven
// tagged slots each (table.go), so a lookup reads one bucket line and then
// only the flow whose tag matches. Capacity is fixed and flows come from a
// preallocated slab (128 bytes each, two cache lines, 32 of them the TCP
// window tracking; plus 8 bytes of SYN proxy shifts beside the slab, 32
// bytes of index and about 9 of the shards' live lists: 177 per flow),
// so nothing is allocated per packet or per flow. Free slots and flow
// counts are kept per shard, so that new flows on different workers write
// no common cache line. A flow holds no pointers
// (it names its owner by a 24-bit id, and keeps its deadline in 32 bits of
// clock ticks), so the garbage collector never scans the slab. When the
// table is full, the stalest half-open (or UDP/ICMP) flow among a bounded
// sample is evicted; an established TCP flow never is.
//
// Fragments: a first fragment is translated as its flow's packets are, and
// its translation is remembered for the later fragments of its datagram
// (frag.go). Persistence (ipvsadm -p/-M) keeps a client network on one
// backend (persist.go). Counters are per worker, summed on read.
//
// The SYN proxy (synproxy.go, synhold.go), per service off, on or auto:
// SYN cookies as Linux makes them, a flow only for a client that returns
// one, then the real server's connection opened with the client's
// options and every segment moved between the two sequence spaces, as
// the kernel's SYNPROXY and DPVS do it.
//
// Flow logs (flowlog.go), per service: one flow in Service.FlowLog.Every
// is chosen as it starts (by its hash) and marked in the flow (the top
// bit of its owner word); only a marked flow's packets and bytes are
// counted, beside the slab (64 bytes a flow, a cache line, allocated
// when a service first logs), and its end — timeout, FIN, RST, eviction, a SYN that
// replaced it, its real server removed, the gateway's stop — becomes a
// FlowEnd record for Config.FlowLogger, under the service's rate limit (a
// lock-free token bucket). The records are made where flows are removed,
// under the table's locks: the FlowLogger only queues them. Like
// IPFIX's flowEndReason, without its active timeout: a long connection
// is logged once, when it ends.
//
// Where the issue that asked for them is silent, the TCP tracking does what
// conntrack does (nf_conntrack_proto_tcp.c), and says where it differs
// (tcptrack.go: no td_maxack, so an old RST is held, not dropped).
//
// What it must not do: any I/O or knowledge of devices, any allocation or
// lock on the path of an established flow. It imports only packet and sched.
package nat
