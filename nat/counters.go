package nat

import (
	"net/netip"
	"sync/atomic"

	"github.com/vsgate/vsgate/packet"
)

// Stats are the counters of one service, backend or masquerade rule, in
// the terms of ipvsadm -L --stats: connections, packets and bytes in
// (client to server) and out. Updated with atomic adds; each Stats sits on
// its own cache lines. The zero value is ready to use.
type Stats struct {
	Conns      atomic.Uint64
	PacketsIn  atomic.Uint64
	PacketsOut atomic.Uint64
	BytesIn    atomic.Uint64
	BytesOut   atomic.Uint64
	_          [64 - 40]byte
}

func (s *Stats) count(d Dir, n int) {
	if d == DirOriginal {
		s.PacketsIn.Add(1)
		s.BytesIn.Add(uint64(n))
	} else {
		s.PacketsOut.Add(1)
		s.BytesOut.Add(uint64(n))
	}
}

// DropReason says why the engine dropped a packet. The first
// packet.NumReasons values are the parser's reasons.
type DropReason int

const (
	DropNoFlow          = DropReason(packet.NumReasons) + iota // TCP segment without SYN for no known flow
	DropNoBackend                                              // the scheduler had no available backend
	DropTableFull                                              // no room for a new flow, nothing evictable
	DropSourceRouted                                           // a source route still pending
	DropFragment                                               // fragments are not translated yet
	DropICMPNoFlow                                             // an ICMP error about no known flow
	DropMasqUnsolicited                                        // inbound to a masquerade address, no flow
	DropUnmatched                                              // matched nothing, and the default is drop
	DropPortsExhausted                                         // no free FULLNAT or masquerade port
	numDropReasons
)

var dropNames = [...]string{"no_flow", "no_backend", "table_full", "source_routed", "fragment",
	"icmp_no_flow", "masq_unsolicited", "unmatched", "ports_exhausted"}

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
	drops     [numDropReasons]atomic.Uint64
	evictions atomic.Uint64
	expired   atomic.Uint64
	created   atomic.Uint64
}

// Drops returns the number of packets dropped for reason r.
func (e *Engine) Drops(r DropReason) uint64 { return e.counts.drops[r].Load() }

// Evictions returns how many flows were evicted to admit new ones.
func (e *Engine) Evictions() uint64 { return e.counts.evictions.Load() }

// Expired returns how many flows timed out.
func (e *Engine) Expired() uint64 { return e.counts.expired.Load() }

// ServiceStats returns the counters of the service named "tcp VIP:port" or
// "udp VIP:port" (as ipvsadm prints them), or nil.
func (e *Engine) ServiceStats(name string) *Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stats[name]
}

// BackendConns sums the active and inactive connection counts over the
// backends of the service at vip (proto TCP or UDP), as ipvsadm's
// ActiveConn and InActConn columns would add up.
func (e *Engine) BackendConns(vip netip.AddrPort, proto uint8) (active, inactive int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	svc := e.scheds[svcKey{vip.Addr().As16(), vip.Port(), proto}]
	if svc == nil {
		return 0, 0
	}
	for _, own := range svc.backends {
		a, i := own.dest.Conns()
		active += a
		inactive += i
	}
	return active, inactive
}
