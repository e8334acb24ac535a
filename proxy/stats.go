package proxy

import (
	"math"
	"sync/atomic"
	"time"
)

// FrontStats is a snapshot of a Front's counters, for metrics and status
// pages. The counters run from the Front's start: a reload that swaps its
// Proxy keeps them.
type FrontStats struct {
	Connections int    // client connections open now
	Waiting     int    // of them, waiting for a request (Front.Waiting)
	Accepted    uint64 // client connections accepted
	// Paused counts the times the Front stopped accepting because
	// MaxConnections were open: new clients then wait in the kernel's
	// listen queue (or are refused by it when that is full too).
	Paused uint64
	// LoopRequests counts the requests an event loop served itself;
	// HandedOver the connections it gave to a goroutine (a request or
	// response it does not serve, TLS).
	LoopRequests, HandedOver uint64
	Responses                []ResponseCount // final responses sent, by status; 1xx are not counted
	// Durations is how long requests took, from their head read whole
	// to their response's last byte handed to the client's socket.
	Durations Histogram
}

// Histogram is a snapshot of a duration histogram: Counts[i] requests
// took at most Bounds[i] (cumulative, as Prometheus's buckets), Count
// all of them, Sum their total.
type Histogram struct {
	Bounds []time.Duration
	Counts []uint64
	Count  uint64
	Sum    time.Duration
}

// durations counts request durations into buckets (not cumulative; the
// last one holds what took longer than every bound).
type durations struct {
	bounds  []time.Duration
	buckets []atomic.Uint64
	sum     atomic.Int64 // nanoseconds
}

// newDurations has buckets fine below a millisecond, where a proxy's own
// time lies, and up to Apache's default Timeout.
func newDurations() *durations {
	h := &durations{bounds: []time.Duration{
		100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
		time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
		25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
		500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second,
		10 * time.Second, 30 * time.Second, 60 * time.Second,
	}}
	h.buckets = make([]atomic.Uint64, len(h.bounds)+1)
	return h
}

// observe counts one request that took d (a search of 18 bounds and two
// atomic adds: no lock, no allocation).
func (h *durations) observe(d time.Duration) {
	i := 0
	for i < len(h.bounds) && d > h.bounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sum.Add(int64(min(d, time.Duration(math.MaxInt64/2))))
}

func (h *durations) snapshot() Histogram {
	out := Histogram{Bounds: h.bounds, Counts: make([]uint64, len(h.bounds))}
	for i := range h.buckets {
		out.Count += h.buckets[i].Load()
		if i < len(h.bounds) {
			out.Counts[i] = out.Count
		}
	}
	out.Sum = time.Duration(h.sum.Load())
	return out
}

// ResponseCount is how many responses of one status one side made.
type ResponseCount struct {
	Status int
	// FromProxy: the proxy answered itself (a refused request, a limit
	// reached, no real server to reach), not a real server.
	FromProxy bool
	Count     uint64
}

// responseCounts counts final responses by status (0 stands for one
// outside 100-599) and by who made them.
type responseCounts struct {
	byStatus [2][600]atomic.Uint64 // [fromProxy][status]
}

func (rc *responseCounts) add(status int, fromProxy bool) {
	if status < 100 || status > 599 {
		status = 0
	}
	i := 0
	if fromProxy {
		i = 1
	}
	rc.byStatus[i][status].Add(1)
}

func (rc *responseCounts) snapshot() []ResponseCount {
	var out []ResponseCount
	for i := range rc.byStatus {
		for status := range rc.byStatus[i] {
			if n := rc.byStatus[i][status].Load(); n > 0 {
				out = append(out, ResponseCount{Status: status, FromProxy: i == 1, Count: n})
			}
		}
	}
	return out
}

// Stats returns the Front's counters now.
func (f *Front) Stats() FrontStats {
	return FrontStats{
		Connections:  f.Connections(),
		Waiting:      f.Waiting(),
		Accepted:     f.accepted.Load(),
		Paused:       f.paused.Load(),
		LoopRequests: f.loopRequests.Load(),
		HandedOver:   f.handedOver.Load(),
		Responses:    f.responses.snapshot(),
		Durations:    f.durations.snapshot(),
	}
}
