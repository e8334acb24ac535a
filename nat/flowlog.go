package nat

import (
	"net/netip"
	"sync/atomic"
	"time"
)

// FlowLog is a service's flow logging (Service.FlowLog): a record of
// every finished flow, or of a sample, handed to Config.FlowLogger.
type FlowLog struct {
	// Every logs one flow in Every, chosen when the flow starts (by its
	// hash, so the choice costs nothing); 1 logs every flow, 0 none.
	// Only a chosen flow has its packets and bytes counted.
	Every uint32
	// Rate is the most records a second the service's flows may give
	// (with a burst of one second's worth): under a flood, flows end
	// faster than anyone reads about them. The rest are counted
	// (FlowLogStats.Suppressed) and not given. 0 is no limit.
	Rate uint32
}

// FlowLogger takes the records of finished flows. LogFlow is called with
// the flow table's locks held, from the workers (a flow evicted or
// replaced) and from Expire: it must not block or take long; it should
// hand the record on (a queue) and return.
type FlowLogger interface {
	LogFlow(FlowEnd)
}

// FlowEnd is the record of one finished flow of a service with flow logs.
type FlowEnd struct {
	// Service names the flow's service as ipvsadm's listings and the
	// metrics do: "tcp 198.18.0.10:80", "fwm 7".
	Service string
	Proto   uint8
	Client  netip.AddrPort // the original direction's source
	VIP     netip.AddrPort // the original direction's destination (a fwmark service's: the address the client asked for)
	// RealServer is the reply direction's source, and Local its
	// destination: the client for NAT and DR, vsgate's own address for
	// FULLNAT and a masqueraded subnet's.
	RealServer, Local netip.AddrPort
	// Start is when this gateway made the flow (for a flow the
	// connection sync brought, when the record came); End when it was
	// removed, as conntrack's timestamps have it: a flow that timed out
	// ends its state's timeout after its last packet (a reset one, 10 s).
	Start, End time.Time
	// Packets and Bytes are by direction (DirOriginal: from the client),
	// counted as the service's counters count them (ipvsadm --stats): IP
	// packets as vsgate handled them, a segmentation-offload packet as
	// its segments and its bytes.
	Packets, Bytes [2]uint64
	Reason         EndReason
	// State is the flow's state when it ended: a TCP state as ipvsadm
	// -L -c shows it, or UDP.
	State string
}

// Duration is how long the flow lived.
func (r *FlowEnd) Duration() time.Duration { return r.End.Sub(r.Start) }

// EndReason is why a flow ended.
type EndReason uint8

// Why flows end.
const (
	// EndTimeout: no packet for its state's timeout while open (a TCP
	// connection not closed, a half-open one never answered, UDP).
	EndTimeout EndReason = iota + 1
	// EndFIN: closed with FINs, then its last timeout ran out (or a new
	// connection took its ports).
	EndFIN
	// EndRST: reset (the CLOSE state), then its last timeout ran out.
	EndRST
	// EndEvicted: a new flow needed its slot in a full table (only flows
	// not established are evicted).
	EndEvicted
	// EndReplaced: a new connection's SYN came on its ports while it was
	// open (a flow whose end this gateway never saw, behind ECMP).
	EndReplaced
	// EndRemoved: its real server was removed and removed_backends is
	// reset (Config.ResetRemoved).
	EndRemoved
	// EndShutdown: still open when the gateway stopped (LogLiveFlows).
	EndShutdown
)

var endReasonNames = [...]string{EndTimeout: "timeout", EndFIN: "fin", EndRST: "rst", EndEvicted: "evicted",
	EndReplaced: "replaced", EndRemoved: "removed", EndShutdown: "shutdown"}

func (r EndReason) String() string {
	if int(r) < len(endReasonNames) && endReasonNames[r] != "" {
		return endReasonNames[r]
	}
	return "?"
}

// endOf is why a flow in state st ended, when it timed out or a new
// connection took its ports (cause EndTimeout or EndReplaced): a closed
// TCP flow ended by how it closed.
func endOf(st uint32, cause EndReason) EndReason {
	switch tcpState(st) {
	case tcpClose:
		return EndRST
	case tcpTimeWait, tcpFinWait, tcpCloseWait, tcpLastAck:
		return EndFIN
	}
	return cause
}

// ownerLogged, added to an owner id when a flow is inserted, marks the
// flow as one whose packets are counted and whose end is logged: the
// top bit of flow.meta.
const ownerLogged = 1 << 23

// metaLogged is ownerLogged where flow.meta holds it.
const metaLogged = ownerLogged << 8

// flowCounts are a logged flow's start and counters, kept beside the flow
// slab (Engine.flowCounts, by flow index) so that a flow stays two cache
// lines and only logged flows touch a third: one line each (a slice this
// large is page-aligned), since at a million flows a line that straddles
// two costs a second miss on every packet. A free slot's are zero.
type flowCounts struct {
	start   atomic.Int64 // unix nanoseconds
	packets [2]atomic.Uint64
	bytes   [2]atomic.Uint64
	_       [24]byte
}

// lineLimit is a service's flow-log rate limit: the generic cell rate
// algorithm (a token bucket kept as one time, so that any worker checks
// it with a compare-and-swap and no lock). tat is when the bucket would
// be full again, in unix nanoseconds.
type lineLimit struct {
	tat atomic.Int64
}

// allow takes one record's turn at time now (unix nanoseconds) at rate
// records a second, with a burst of one second's worth.
func (l *lineLimit) allow(now int64, rate uint32) bool {
	if rate == 0 {
		return true
	}
	interval := max(int64(time.Second)/int64(rate), 1)
	for {
		tat := l.tat.Load()
		next := max(tat, now) + interval
		if next-now > int64(time.Second) {
			return false
		}
		if l.tat.CompareAndSwap(tat, next) {
			return true
		}
	}
}

// FlowLogStats are the flow logs' counters: records given to the
// FlowLogger, and records the services' rate limits held back.
type FlowLogStats struct {
	Logged, Suppressed uint64
}

// FlowLogs returns the flow logs' counters.
func (e *Engine) FlowLogs() FlowLogStats {
	return FlowLogStats{e.counts.flowLogs.Load(), e.counts.flowLogsSuppressed.Load()}
}

// logBit is ownerLogged if a flow of owner own whose original key hashes
// to h is to be logged, else 0.
func (e *Engine) logBit(own *owner, h uint64) uint32 {
	if own == nil {
		return 0
	}
	svc := own.svc.Load()
	if svc == nil || svc.cfg.FlowLog.Every == 0 {
		return 0
	}
	// The hash's top bits: its low ones pick the bucket.
	if n := svc.cfg.FlowLog.Every; n > 1 && uint32(h>>32)%n != 0 {
		return 0
	}
	return ownerLogged
}

// startLog starts the counts of flow idx, just made at now (unix
// nanoseconds) from packets packets (n bytes) of direction d (none: a flow
// the sync brought), if it is logged. The counts are stored, not added: a
// free slot's are zero, but a worker that found the slot's previous flow
// may still have added to them.
func (e *Engine) startLog(idx uint32, d Dir, packets uint64, n int, now int64) {
	c := &(*e.flowCounts.Load())[idx]
	c.start.Store(now)
	c.packets[d].Store(packets)
	c.bytes[d].Store(uint64(n))
	c.packets[1-d].Store(0)
	c.bytes[1-d].Store(0)
}

// startLog starts the counts of flow idx, just made from the packet being
// handled (n bytes, of direction d), if it is logged.
func (w *Worker) startLog(idx uint32, d Dir, n int) {
	if w.e.tab.flows[idx].meta.Load()&metaLogged == 0 {
		return
	}
	if w.wall == 0 {
		w.wall = w.e.wallClock().UnixNano()
	}
	w.e.startLog(idx, d, uint64(w.segs), n, w.wall)
}

// countLogged counts the packet being handled (w.segs packets, n bytes)
// against flow idx, which is logged.
func (w *Worker) countLogged(idx uint32, d Dir, n int) {
	c := &(*w.e.flowCounts.Load())[idx]
	c.packets[d].Add(uint64(w.segs))
	c.bytes[d].Add(uint64(n))
}

// logEnd gives the record of flow idx, which ended in state st for
// reason why (see record), and clears its counts. Called under the
// table's locks, from retire.
func (e *Engine) logEnd(idx uint32, f *flow, own *owner, st uint32, why EndReason) {
	e.record(idx, f, own, st, why)
	c := &(*e.flowCounts.Load())[idx]
	c.start.Store(0)
	for d := range c.packets {
		c.packets[d].Store(0)
		c.bytes[d].Store(0)
	}
}

// record gives the FlowLogger the record of logged flow idx, in state st,
// ending for reason why, if its service still logs and its rate allows.
func (e *Engine) record(idx uint32, f *flow, own *owner, st uint32, why EndReason) {
	var svc *service
	if own != nil {
		svc = own.svc.Load()
	}
	if svc == nil || svc.cfg.FlowLog.Every == 0 || e.flowLogger == nil {
		return // flow logs turned off since the flow began
	}
	end := e.wallClock()
	if !svc.lines.allow(end.UnixNano(), svc.cfg.FlowLog.Rate) {
		e.counts.flowLogsSuppressed.Add(1)
		return
	}
	c := &(*e.flowCounts.Load())[idx]
	orig, reply := f.key(DirOriginal), f.key(DirReply)
	r := FlowEnd{Service: svc.name, Proto: uint8(f.meta.Load()), Start: time.Unix(0, c.start.Load()), End: end, Reason: why, State: tcpState(st).String()}
	r.Client, r.VIP = keyEnds(&orig)
	r.RealServer, r.Local = keyEnds(&reply)
	for d := range c.packets {
		r.Packets[d], r.Bytes[d] = c.packets[d].Load(), c.bytes[d].Load()
	}
	e.flowLogger.LogFlow(r)
	e.counts.flowLogs.Add(1)
}

// keyEnds returns a key's source and destination.
func keyEnds(w *tupleWords) (src, dst netip.AddrPort) {
	t := w.tuple()
	return netip.AddrPortFrom(addrOf(t.Src), t.SrcPort), netip.AddrPortFrom(addrOf(t.Dst), t.DstPort)
}

// LogLiveFlows gives a record of every logged flow still in the table,
// with reason EndShutdown, under the services' rate limits: the gateway
// calls it as it stops, when no worker runs. The flows stay.
func (e *Engine) LogLiveFlows() {
	if e.flowCounts.Load() == nil {
		return
	}
	e.expireMu.Lock()
	defer e.expireMu.Unlock()
	e.expireBuf = e.tab.liveFlows(e.expireBuf[:0])
	for _, i := range e.expireBuf {
		f := &e.tab.flows[i]
		if gen := f.gen.Load(); gen&1 == 0 && f.meta.Load()&metaLogged != 0 {
			e.record(i, f, e.ownerOf(f), f.state.Load()&stateMask, EndShutdown)
		}
	}
}
