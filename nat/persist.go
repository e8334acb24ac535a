package nat

import (
	"net/netip"
	"sync"
)

// Persistence (ipvsadm -p, -M). A template per (service, client network)
// remembers the backend the client's connections go to. As in IPVS, the
// template lives while the client has connections through it and for the
// persistence timeout after the last one ends; its backend is used as long
// as it is in the service and not down, even at weight 0 (IPVS's default,
// expire_quiescent_template=0).
//
// Templates are taken only on new flows and when flows end, never for the
// packets of established flows. A new client's template is a map insert,
// which allocates when the map grows.

type persistKey struct {
	svc    svcKey
	client [16]byte // masked
}

type persistEntry struct {
	dest     uint64 // sched.Dest ID
	conns    int
	deadline int64
}

// persistTable holds every service's templates. The zero value is ready.
// Lock order: a table shard's lock may be held when taking mu (flows end
// under it), so mu is never held while taking a shard's lock.
type persistTable struct {
	mu sync.Mutex
	m  map[persistKey]persistEntry
	// max bounds the templates: the flow table's capacity, as IPVS's
	// templates are entries of its connection table. A source that
	// made many (a one-packet service's spoofed datagrams) meets it.
	max int
}

func persistKeyOf(svc *service, client [16]byte) persistKey {
	a := netip.AddrFrom16(client).Unmap()
	bits := svc.cfg.PersistMask
	if bits == 0 {
		bits = a.BitLen()
	}
	pfx, _ := a.Prefix(bits) // bits was validated against the family
	return persistKey{svc: svc.key, client: pfx.Addr().As16()}
}

// lookup returns the backend remembered for k and counts a new connection
// against the template, or reports false.
func (t *persistTable) lookup(k persistKey, now int64, usable map[uint64]bool) (uint64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[k]
	if !ok || e.conns == 0 && e.deadline <= now || !usable[e.dest] {
		return 0, false
	}
	e.conns++
	t.m[k] = e
	return e.dest, true
}

// bind records that k's connections go to dest, with one connection. It
// reports false, and records nothing, when k is new and the table holds
// max templates.
func (t *persistTable) bind(k persistKey, dest uint64) bool {
	t.mu.Lock()
	if t.m == nil {
		t.m = map[persistKey]persistEntry{}
	}
	// A template with another backend (down, or bound by a racing first
	// connection) takes the new one but keeps its connections: they
	// still end through it, and it must live until they have.
	e, ok := t.m[k]
	if !ok && len(t.m) >= t.max {
		t.mu.Unlock()
		return false
	}
	e.dest = dest
	e.conns++
	t.m[k] = e
	t.mu.Unlock()
	return true
}

// release ends one connection of k; the template then lives until
// now+timeout unless another connection comes.
func (t *persistTable) release(k persistKey, now, timeout int64) {
	t.mu.Lock()
	if e, ok := t.m[k]; ok {
		if e.conns > 0 {
			e.conns--
		}
		e.deadline = max(e.deadline, now+timeout)
		t.m[k] = e
	}
	t.mu.Unlock()
}

// expire drops templates without connections whose time is up.
func (t *persistTable) expire(now int64) {
	t.mu.Lock()
	for k, e := range t.m {
		if e.conns == 0 && e.deadline <= now {
			delete(t.m, k)
		}
	}
	t.mu.Unlock()
}

// forget drops every template of service svc (its persistence settings
// changed).
func (t *persistTable) forget(svc svcKey) {
	t.mu.Lock()
	for k := range t.m {
		if k.svc == svc {
			delete(t.m, k)
		}
	}
	t.mu.Unlock()
}

// byDest counts svc's live templates (with connections, or within their
// timeout) by backend: IPVS's persistent connections of a real server
// (ipvsadm -L --persistent-conn).
func (t *persistTable) byDest(svc svcKey, now int64) map[uint64]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[uint64]int64{}
	for k, e := range t.m {
		if k.svc == svc && (e.conns > 0 || e.deadline > now) {
			out[e.dest]++
		}
	}
	return out
}

// len returns the number of templates.
func (t *persistTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}
