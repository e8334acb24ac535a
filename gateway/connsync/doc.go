// Package connsync is vsgate's connection sync, the job of IPVS's sync
// daemon (ipvsadm --start-daemon): each gateway sends its service flows —
// client, VIP, real server, the FULLNAT source port, the TCP state — to
// its peer gateways over UDP, and takes theirs into its own table
// (nat.Worker.ImportFlow), so that a gateway the routers move a flow to
// continues it exactly, whether or not it could have worked the mapping
// out itself.
//
// The wire (wire.go): datagrams of up to 1,400 bytes, each a header
// (magic, version, the sender's id, its sequence number and clock) and up
// to 17 records of 76 bytes, authenticated with HMAC-SHA-256 under a
// shared key. A receiver drops (and counts, by reason) what is not
// authentic, not newer than what it had from that sender, older than
// MaxAge, or malformed. Unicast to configured peers; no multicast.
//
// The daemon (daemon.go): a master sends the new flows and state changes
// the workers noted (nat.Engine.DrainSync) before the batch that made
// them leaves the gateway (Flush, which the gateway's workers call: a
// gateway lost right after it forwarded a SYN leaves no flow its peers
// do not know), and every Interval what is left; every Refresh it sends
// every flow again (so that a peer that joined learns them, and their
// timers stay fresh); sending is bounded by Rate datagrams a second, the
// rest dropped and counted, and never waits for room in the socket. A
// backup imports what it receives.
//
// What it must not do: send or accept anything without the key, block a
// packet worker, or import a flow for a service or real server this
// gateway does not have (ImportFlow refuses those, counted).
package connsync
