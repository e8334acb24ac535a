package sched

import "sync"

// lblc and lblcr, IPVS's locality-based schedulers for cache clusters
// (ip_vs_lblc.c, ip_vs_lblcr.c): a flow's destination address is
// remembered with the server (lblc) or the set of servers (lblcr) that
// took it, so that the same destination keeps going to the same cache.
//
// The table is fixed at New: localityBuckets sets of localityWays entries,
// an entry chosen by a hash of the destination address, the least recently
// used entry of its set replaced when a new address needs one. IPVS's
// table grows without a bound and drops entries unused for a day (for six
// minutes once it holds more than 16,384); here memory is fixed and an
// address pushed out of the table is scheduled afresh, as an expired one
// is in IPVS. Entries unused for localityExpire are treated as gone.
//
// The table takes a mutex for each pick, as IPVS takes its sched_lock to
// change an entry: it is on the new-flow path only, never an established
// flow's. It allocates nothing after New.
const (
	localityBuckets = 1024
	localityWays    = 4
	// localitySet bounds an lblcr set; when it is full, a server that is
	// no longer usable, else the most loaded one, makes room.
	localitySet = 8
	// localityExpire is IPVS's default lblc_expiration and
	// lblcr_expiration (a day): an entry unused for that long is gone, and
	// an lblcr set unchanged for that long sheds its most loaded server at
	// each pick, down to one.
	localityExpire = int64(24 * 60 * 60 * 1e9)
)

type locality struct {
	mu      sync.Mutex
	entries []localEntry // localityBuckets * localityWays
}

type localEntry struct {
	addr    [16]byte
	inUse   bool
	lastUse int64 // Key.Now of the last pick that found or made it
	lastMod int64 // lblcr: Key.Now when a server last joined the set
	n       int   // servers in set; lblc uses set[0] only
	set     [localitySet]*Dest
}

func newLocality() *locality {
	return &locality{entries: make([]localEntry, localityBuckets*localityWays)}
}

// pick schedules a new flow to k.DstAddr for lblc or lblcr over the
// snapshot p.
func (l *locality) pick(p *snapshot, k Key) (*Dest, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.find(&k.DstAddr, k.Now)
	if p.kind == kLBLC {
		if e != nil {
			e.lastUse = k.Now
			if d := e.set[0]; usableLocal(d) && !p.localOverloaded(d) {
				return d, true
			}
		}
		d := p.leastLoaded()
		if d == nil {
			return nil, false
		}
		if e == nil {
			e = l.claim(&k.DstAddr, k.Now)
		}
		e.set[0], e.n = d, 1
		return d, true
	}
	if e != nil {
		e.lastUse = k.Now
		d := e.setMin()
		if e.n > 1 && k.Now-e.lastMod > localityExpire {
			e.remove(e.setMax())
		}
		if d != nil && !p.localOverloaded(d) {
			return d, true
		}
		if d = p.leastLoaded(); d == nil {
			return nil, false
		}
		e.insert(d, k.Now)
		return d, true
	}
	d := p.leastLoaded()
	if d == nil {
		return nil, false
	}
	e = l.claim(&k.DstAddr, k.Now)
	e.set[0], e.n, e.lastMod = d, 1, k.Now
	return d, true
}

// bucket returns the set of entries addr hashes to.
func (l *locality) bucket(addr *[16]byte) []localEntry {
	b := reduce(hashAddr(seedLocal, addr, 0), localityBuckets)
	return l.entries[b*localityWays : (b+1)*localityWays]
}

// find returns addr's live entry, or nil.
func (l *locality) find(addr *[16]byte, now int64) *localEntry {
	bucket := l.bucket(addr)
	for i := range bucket {
		e := &bucket[i]
		if e.inUse && e.addr == *addr && now-e.lastUse <= localityExpire {
			return e
		}
	}
	return nil
}

// claim makes an empty entry for addr in its set, replacing a free, expired
// or else the least recently used one.
func (l *locality) claim(addr *[16]byte, now int64) *localEntry {
	bucket := l.bucket(addr)
	victim := &bucket[0]
	for i := range bucket {
		e := &bucket[i]
		if !e.inUse || now-e.lastUse > localityExpire || e.addr == *addr {
			victim = e
			break
		}
		if e.lastUse < victim.lastUse {
			victim = e
		}
	}
	*victim = localEntry{addr: *addr, inUse: true, lastUse: now}
	return victim
}

// usableLocal reports whether a remembered server may take a flow: still
// in the set, available and not overloaded.
func usableLocal(d *Dest) bool { return d != nil && d.weight.Load() > 0 && !d.over.Load() }

// connOverhead is ip_vs_dest_conn_overhead.
func connOverhead(d *Dest) uint64 {
	return clampCount(d.active.Load())<<8 + clampCount(d.inactive.Load())
}

// localOverloaded is lblc's and lblcr's is_overloaded: d has more active
// connections than its weight while some server has fewer than half its
// weight.
func (p *snapshot) localOverloaded(d *Dest) bool {
	if clampCount(d.active.Load()) <= uint64(d.weight.Load()) {
		return false
	}
	for i, x := range p.dests {
		if clampCount(x.active.Load())*2 < p.weight[i] {
			return true
		}
	}
	return false
}

// leastLoaded is __ip_vs_lblc_schedule (and lblcr's): the available server
// with the least overhead per weight, the first of equals, skipping
// overloaded ones.
func (p *snapshot) leastLoaded() *Dest {
	var least *Dest
	var loh, lw uint64
	for i, d := range p.dests {
		if d.over.Load() {
			continue
		}
		doh, dw := connOverhead(d), p.weight[i]
		if least == nil || loh*dw > doh*lw {
			least, loh, lw = d, doh, dw
		}
	}
	return least
}

// setMin is ip_vs_dest_set_min: the set's usable server with the least
// overhead per weight, the first (newest) of equals.
func (e *localEntry) setMin() *Dest {
	var least *Dest
	var loh, lw uint64
	for _, d := range e.set[:e.n] {
		if !usableLocal(d) {
			continue
		}
		doh, dw := connOverhead(d), uint64(d.weight.Load())
		if least == nil || loh*dw > doh*lw {
			least, loh, lw = d, doh, dw
		}
	}
	return least
}

// setMax is ip_vs_dest_set_max: the set's server of weight above 0 with
// the most overhead per weight, the first of equals; nil if none.
func (e *localEntry) setMax() *Dest {
	var most *Dest
	var moh, mw uint64
	for _, d := range e.set[:e.n] {
		dw := uint64(d.weight.Load())
		if dw == 0 {
			continue
		}
		doh := connOverhead(d)
		if most == nil || moh*dw < doh*mw {
			most, moh, mw = d, doh, dw
		}
	}
	return most
}

// insert adds d to the front of the set (ip_vs_dest_set_insert: newest
// first) unless it is there, making room as localitySet says.
func (e *localEntry) insert(d *Dest, now int64) {
	for _, x := range e.set[:e.n] {
		if x == d {
			return
		}
	}
	if e.n == localitySet {
		out := e.set[e.n-1]
		for _, x := range e.set[:e.n] {
			if x.weight.Load() == 0 {
				out = x
				break
			}
		}
		if m := e.setMax(); out.weight.Load() != 0 && m != nil {
			out = m
		}
		e.remove(out)
	}
	copy(e.set[1:e.n+1], e.set[:e.n])
	e.set[0] = d
	e.n++
	e.lastMod = now
}

// remove takes d out of the set (nil: nothing).
func (e *localEntry) remove(d *Dest) {
	for i, x := range e.set[:e.n] {
		if x == d {
			copy(e.set[i:e.n], e.set[i+1:e.n])
			e.n--
			e.set[e.n] = nil
			return
		}
	}
}
