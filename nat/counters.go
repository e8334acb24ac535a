package nat

import (
	"net/netip"
	"sync/atomic"

	"github.com/vsgate/vsgate/packet"
)

// Stats are the counters of one service, backend or masquerade rule, in
// the terms of ipvsadm -L --stats: connections, and packets and bytes in
// (client to server) and out. A snapshot value.
type Stats struct {
	Conns, PacketsIn, PacketsOut, BytesIn, BytesOut uint64
}

// statID indexes a counter set in every worker's counters. IDs are handed
// out by the engine and never reused.
type statID uint32

// Counter slots within a counter set.
const (
	cConns = iota
	cPacketsIn
	cPacketsOut
	cBytesIn
	cBytesOut
	numCounters
)

// counterSet is one worker's counters for one statID. Only the owning
// worker writes them, a load and a store (no read-modify-write: the store
// is an XCHG on amd64, cheap on a line no other core writes); readers sum
// across workers. Tallying a call's counts in plain memory and storing
// them once at its end was measured slower (established/1K 65 -> 71 ns):
// the bookkeeping costs more than the stores.
type counterSet [numCounters]atomic.Uint64

func (c *counterSet) add(i int, n uint64) { c[i].Store(c[i].Load() + n) }

// count records segs packets of n bytes in all in direction d.
func (c *counterSet) count(d Dir, segs, n int) {
	if d == DirOriginal {
		c.add(cPacketsIn, uint64(segs))
		c.add(cBytesIn, uint64(n))
	} else {
		c.add(cPacketsOut, uint64(segs))
		c.add(cBytesOut, uint64(n))
	}
}

// DropReason says why the engine dropped a packet. The first
// packet.NumReasons values are the parser's reasons.
type DropReason int

const (
	DropNoFlow             = DropReason(packet.NumReasons) + iota // TCP segment without SYN for no known flow
	DropNoBackend                                                 // the scheduler had no available backend
	DropTableFull                                                 // no room for a new flow, nothing evictable
	DropSourceRouted                                              // a source route still pending
	DropFragmentNoFirst                                           // a later fragment whose first fragment was not seen (or is too old)
	DropICMPNoFlow                                                // an ICMP error about no known flow
	DropMasqUnsolicited                                           // inbound to a masquerade address, no flow
	DropUnmatched                                                 // matched nothing, and the default is drop
	DropPortsExhausted                                            // no free FULLNAT, masquerade or NAT clash port among those probed
	DropBackendRemoved                                            // a flow of a removed backend, ended (Config.ResetRemoved)
	DropRealServerNoFlow                                          // from a service's real server (address and port), for no known flow
	DropBadChecksum                                               // a TCP segment that would open a flow or change its state has a bad checksum
	DropTCPOutOfWindow                                            // a TCP segment outside its flow's window (or a SYN-ACK that does not answer the SYN)
	DropSourceFlows                                               // its source prefix holds Config.SourceFlows flows already
	DropSourceHalfOpen                                            // its source prefix holds Config.SourceHalfOpen half-open flows already
	DropFragmentIncomplete                                        // a held fragment of a datagram that did not complete in time, or was given up for room
	DropFragmentBudget                                            // a fragment refused: its source's share of the fragment pool is full
	DropFragmentDuplicate                                         // a copy of a fragment already held
	DropFragmentMalformed                                         // a fragment that overlaps another, or a datagram too long or in too many pieces
	DropSynProxyCookie                                            // a TCP ACK for no flow to a SYN-proxied service, without a valid cookie
	DropSynProxyEarly                                             // a bare ACK, RST or fragment of a proxied flow before its real server answered (a segment with data is held, or sends the SYN again: synproxy.go), or a real server segment before the handshake settled
	DropInboundUnsolicited                                        // from the outside to an inside host (a real server, a masqueraded subnet) for no service or flow
	DropSourceNotInside                                           // to be routed on, for no service, flow or masquerade, from a source that is no inside address (BCP 38)
	DropNotRoutable                                               // to or from where no router passes a packet: multicast, broadcast, link-local, loopback, unspecified (the kernel's own MLD reports on a TUN)
	numDropReasons
)

var dropNames = [...]string{"no_flow", "no_backend", "table_full", "source_routed", "fragment_no_first",
	"icmp_no_flow", "masq_unsolicited", "unmatched", "ports_exhausted", "backend_removed", "real_server_no_flow",
	"bad_checksum", "tcp_out_of_window", "source_flow_limit", "source_half_open_limit",
	"fragment_incomplete", "fragment_budget", "fragment_duplicate", "fragment_malformed",
	"syn_proxy_bad_cookie", "syn_proxy_early", "inbound_unsolicited", "source_not_inside", "not_routable"}

// String names the reason (the parser's names for parser reasons).
func (r DropReason) String() string {
	if r < DropReason(packet.NumReasons) {
		return packet.Reason(r).String()
	}
	return dropNames[r-DropNoFlow]
}

// NumDropReasons is the number of DropReason values.
const NumDropReasons = int(numDropReasons)

// counters are the engine-wide counters.
type counters struct {
	drops     [numDropReasons]paddedCounter
	evictions paddedCounter
	expired   paddedCounter
	resets    paddedCounter
	// halfOpen is the half-open TCP flows in the table (SynProxyAuto).
	halfOpen paddedCounter
	// cookiesSent and cookiesValid are the SYN proxy's SYN-ACKs, and the
	// ACKs that returned a valid cookie.
	cookiesSent, cookiesValid paddedCounter
	// serverSynResent are SYNs to a real server sent again (see
	// Worker.resendServerSyn).
	serverSynResent paddedCounter
	// syncImported and syncLost are the connection sync's (sync.go).
	syncImported, syncLost paddedCounter
	// flowLogs and flowLogsSuppressed are the flow records given to the
	// FlowLogger, and those the rate limits held back (flowlog.go).
	flowLogs, flowLogsSuppressed paddedCounter
}

// countHalfOpen adds n (1 or -1) to the half-open count if st is a
// half-open state.
func (e *Engine) countHalfOpen(st uint32, n int) {
	if halfOpen(st) {
		e.counts.halfOpen.Add(uint64(n))
	}
}

// SynProxyStats are the SYN proxy's counters: cookies sent in SYN-ACKs,
// and returned valid in ACKs (each one a proxied flow).
type SynProxyStats struct {
	CookiesSent, CookiesValid uint64
	// ServerSynResent counts SYNs to real servers sent again: a client
	// segment came while the real server had not answered.
	ServerSynResent uint64
}

// SynProxy returns the SYN proxy's counters.
func (e *Engine) SynProxy() SynProxyStats {
	return SynProxyStats{e.counts.cookiesSent.Load(), e.counts.cookiesValid.Load(), e.counts.serverSynResent.Load()}
}

// HalfOpen returns how many half-open TCP flows the table holds.
func (e *Engine) HalfOpen() int64 { return int64(e.counts.halfOpen.Load()) }

// paddedCounter is a counter on a cache line of its own: every worker adds
// to these (under a flood of drops, for every packet), and two on one line
// would make the workers' cores pass it back and forth.
type paddedCounter struct {
	atomic.Uint64
	_ [56]byte
}

// Resets returns how many TCP resets the engine sent (Config.ResetRemoved).
func (e *Engine) Resets() uint64 { return e.counts.resets.Load() }

// Drops returns the number of packets dropped for reason r.
func (e *Engine) Drops(r DropReason) uint64 { return e.counts.drops[r].Load() }

// Evictions returns how many flows were evicted to admit new ones.
func (e *Engine) Evictions() uint64 { return e.counts.evictions.Load() }

// Expired returns how many flows timed out.
func (e *Engine) Expired() uint64 { return e.counts.expired.Load() }

// newStat hands out a counter set. Caller holds e.mu.
func (e *Engine) newStat() statID {
	id := statID(e.nextStat.Load())
	e.nextStat.Store(uint32(id) + 1)
	return id
}

// sum adds up counter set id over every worker.
func (e *Engine) sum(id statID) Stats {
	var s Stats
	for _, w := range e.workers {
		if int(id) < len(*w.counts.Load()) {
			c := &(*w.counts.Load())[id]
			s.Conns += c[cConns].Load()
			s.PacketsIn += c[cPacketsIn].Load()
			s.PacketsOut += c[cPacketsOut].Load()
			s.BytesIn += c[cBytesIn].Load()
			s.BytesOut += c[cBytesOut].Load()
		}
	}
	return s
}

// ServiceStats returns the counters of the service named "tcp VIP:port" or
// "udp VIP:port" (as ipvsadm prints them), and whether it exists.
func (e *Engine) ServiceStats(name string) (Stats, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	id, ok := e.stats[name]
	if !ok {
		return Stats{}, false
	}
	return e.sum(id), true
}

// BackendConns sums the active and inactive connection counts over the
// backends of the service at vip (proto TCP or UDP), as ipvsadm's
// ActiveConn and InActConn columns would add up.
func (e *Engine) BackendConns(vip netip.AddrPort, proto uint8) (active, inactive int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	svc := e.scheds[svcKey{addr: vip.Addr().As16(), port: vip.Port(), proto: proto}]
	if svc == nil {
		return 0, 0
	}
	for _, own := range svc.backends {
		a, i := own.dest.Load().Conns()
		active += a
		inactive += i
	}
	return active, inactive
}
