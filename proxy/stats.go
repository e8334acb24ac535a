package proxy

import "sync/atomic"

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
	}
}
