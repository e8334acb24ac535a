// Package sched chooses the real server for a new flow: the backend
// schedulers of a virtual server, with the names and semantics of Linux IPVS
// (ipvsadm -s) plus Maglev and power-of-two choices.
//
// # What it is for
//
// A Scheduler is created once per virtual service with [New], given the
// service's backends with [Scheduler.Update], and asked for a backend for
// each new flow with [Scheduler.Pick]. The backend set is an immutable
// snapshot behind an atomic.Pointer: Update builds the next one (Maglev and
// hash tables, weighted schedules, load trees) and swaps it in; Pick loads it
// once, takes no lock (lblc and lblcr excepted, see below) and allocates
// nothing, so any number of workers may call it while Update runs.
//
// Algorithms (name for New, IPVS module it follows):
//
//	rr   round robin over available backends           ip_vs_rr
//	wrr  weighted round robin, nginx "smooth" variant   ip_vs_wrr (see below)
//	lc   least connections                             ip_vs_lc
//	wlc  weighted least connections                    ip_vs_wlc
//	sed  shortest expected delay                       ip_vs_sed
//	nq   never queue                                   ip_vs_nq
//	sh   source hashing (Config.Port: sh-port, Config.Fallback: sh-fallback)
//	dh   destination hashing (Config.Fallback)
//	mh   Maglev hashing of the flow hash (NSDI 2016)
//	p2c  power of two random choices on active connections
//	fo   weighted failover                             ip_vs_fo
//	ovf  weighted overflow                             ip_vs_ovf
//	lblc locality-based least connection              ip_vs_lblc
//	lblcr locality-based least connection, replicated ip_vs_lblcr
//
// "Available" means Weight > 0 (weight 0 is quiescent: no new flows, existing
// flows stay) and not Down (marked down by health checks). No algorithm ever
// returns an unavailable backend; when none is available Pick says so with
// ok == false and the caller decides whether to drop or reject.
//
// # Connection thresholds
//
// A backend may have upper and lower connection thresholds (Backend.Upper
// and Lower, ipvsadm -x and -y), with IPVS's rule for its OVERLOAD flag
// ([Dest.Overloaded]): a new connection that brings its connections
// (active plus inactive) to Upper sets it; an ended one that brings them
// below Lower, or below 3/4 of Upper when Lower is 0, clears it; an Update
// that raises or removes Upper clears it. No algorithm picks an overloaded
// backend, as in IPVS; when every available backend is overloaded Pick
// finds none.
//
// # Connection counters
//
// Every backend a Scheduler knows is a [*Dest], whose identity is its
// address and port: the same *Dest is returned across Updates, whatever the
// position of the backend in the list, and its counters survive. The caller
// (the flow engine) owns the accounting and reports it with [Dest.Add],
// exactly as IPVS counts activeconns and inactconns:
//
//	flow bound to the backend            d.Add(0, +1)   new connections start inactive
//	TCP reaches ESTABLISHED              d.Add(+1, -1)
//	TCP leaves ESTABLISHED (FIN, RST...) d.Add(-1, +1)
//	flow expires or is removed           d.Add(0, -1)   or d.Add(-1, 0) if it was active
//
// UDP and other flows stay inactive for their whole life, as in IPVS.
// lc, wlc, sed and nq keep a tournament tree of the per-formula minimum that
// Add updates in O(log n) under a per-Scheduler mutex, so that their Pick is
// O(1) and exact; for every other algorithm Add is two atomic adds.
//
// # Choices that differ from IPVS, and why
//
//   - wrr uses nginx's smooth weighted round robin, not IPVS's gcd
//     interleave. Both give every backend exactly weight/sum(weights) of the
//     picks over each full period, but IPVS's sequence sends runs of
//     consecutive new flows to the heaviest backend (weights 5,1,1 give
//     AAAAABC... per round), while the smooth sequence spreads them
//     (AABACAA). The sequence is precomputed at Update and indexed by an
//     atomic counter, so Pick is lock-free. When the period sum(w)/gcd(w) is
//     too long to precompute (more than 65536 picks, or more than 4M steps
//     of work) the schedule becomes a low-discrepancy stride over the weight
//     intervals (position p picks the backend whose interval holds
//     p*C mod P, C coprime with P near P/phi); it keeps the exact-share
//     guarantee over every period and spreads picks nearly as evenly.
//   - sh and dh hash what IPVS hashes (source address, plus source port
//     with sh-port; destination address) and keep IPVS's availability rule
//     (a hashed backend that is down or quiescent gives no backend, or the
//     next available bucket with Fallback), but their bucket table is
//     filled with the Maglev algorithm keyed by backend identity rather
//     than IPVS's 256 buckets dealt out in list order. IPVS's table
//     reshuffles every key when any member is added, removed or reordered
//     and leaves servers beyond the 256th without traffic; ours moves only
//     the removed backend's keys plus well under 1% of the others. Down
//     backends keep their buckets, so a health flap moves no other key.
//     sh places backends by weight (weight 0 counts as 1, as in IPVS), so
//     a weight change re-deals a little of the table, as a removal does;
//     dh ignores weights, as IPVS does.
//   - mh follows the NSDI 2016 paper (offset = h1 % M, skip = h2 % (M-1) + 1,
//     turns proportional to weight) over the caller's flow hash ([Key].Hash)
//     rather than IPVS mh's source address; use sh for source affinity.
//     Its table holds only available backends and is rebuilt on every
//     Update, so health changes move only the affected backend's slots plus
//     a small fraction of the others.
//   - lblc and lblcr remember destination addresses in a fixed table (4,096
//     addresses, sets of 4 by hash, the least recently used replaced;
//     lblcr sets of at most 8 servers) where IPVS's grows and is swept of
//     entries unused for a day; an address pushed out is scheduled afresh,
//     as an expired one is in IPVS. Their picks take a mutex, as IPVS
//     takes its sched_lock, on the new-flow path only. A remembered lblc
//     server over its connection thresholds is not used (IPVS checks only
//     lblc's own "more active connections than weight" rule there). Entries
//     age by Key.Now, the caller's clock: sched reads none of its own.
//
// Weights are 0..[MaxWeight] (ipvsadm's range); a set holds at most
// [MaxBackends] backends.
//
// # What it must not do
//
// sched knows nothing of packets, flows, protocols or devices, and reads no
// clock. It does no I/O, starts no goroutine, logs nothing and keeps no
// package-level mutable state. It must not allocate in Pick, nor block
// there but for lblc's and lblcr's table mutex. The flow engine (nat, proxy) owns flows and their state; the gateway owns health checks
// and configuration and tells sched the result through Update.
//
// Hashes of backend identity and of flow keys are part of the behaviour
// (Maglev and sh/dh tables must come out the same on every gateway and
// after every upgrade) and MUST NOT change; golden tests catch a change.
package sched
