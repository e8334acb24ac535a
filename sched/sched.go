package sched

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Limits.
const (
	// MaxWeight is the largest backend weight, as ipvsadm accepts (0..65535).
	MaxWeight = 65535
	// MaxBackends is the largest number of backends in one set.
	MaxBackends = 65535
	// DefaultTableSize is the Maglev (and sh/dh) table size M when
	// Config.TableSize is 0: the prime the NSDI 2016 paper uses. Keep M above
	// 100 times the number of backends for the "under 1% disruption" bound.
	DefaultTableSize = 65537
	// MaxTableSize bounds Config.TableSize.
	MaxTableSize = 1 << 24
)

// Errors. Every error returned by this package wraps exactly one of these;
// test with errors.Is.
var (
	// ErrUnknownScheduler: New was given a name that is not one of Names().
	ErrUnknownScheduler = errors.New("unknown scheduler")
	// ErrOption: a Config option was set for a scheduler that does not use it
	// (Port is for sh; Fallback for sh and dh; TableSize for sh, dh and mh).
	ErrOption = errors.New("option does not apply to this scheduler")
	// ErrTableSize: Config.TableSize is not a prime no larger than
	// MaxTableSize, or a set has more table members than the table has slots.
	ErrTableSize = errors.New("bad table size")
	// ErrWeight: a backend weight is above MaxWeight.
	ErrWeight = errors.New("weight out of range")
	// ErrDuplicate: the same address and port appear twice in one set.
	ErrDuplicate = errors.New("duplicate backend")
	// ErrTooMany: a set has more than MaxBackends backends.
	ErrTooMany = errors.New("too many backends")
	// ErrThreshold: a backend's lower connection threshold is above its
	// upper one (IPVS refuses it with ERANGE, also when the upper one is 0).
	ErrThreshold = errors.New("lower threshold above upper threshold")
)

// Backend is one real server as configured: the input to Update.
//
// The zero value is the unspecified address [::], port 0, weight 0
// (quiescent). Backend is a plain value; copies are independent.
type Backend struct {
	// Addr is the server's IPv6 address, or its IPv4 address v4-mapped
	// (::ffff:a.b.c.d) as netip.Addr.As16 returns it.
	Addr [16]byte
	// Port is the server's port (host byte order); 0 if the service is not
	// port based.
	Port uint16
	// Weight is 0..MaxWeight. 0 means quiescent: no new flows, existing
	// flows stay. rr, lc and dh only tell 0 from non-zero.
	Weight uint32
	// Down marks a backend that health checks found dead: no algorithm
	// picks it. Its counters and, for sh and dh, its hash buckets stay.
	Down bool
	// Upper and Lower are the connection thresholds (ipvsadm -x and -y;
	// 0 means none): a backend whose connections (active plus inactive)
	// reach Upper is overloaded and gets no new flows until they fall
	// below Lower, or below 3/4 of Upper when Lower is 0 (see
	// [Dest.Overloaded]). Lower may not exceed Upper.
	Upper, Lower uint32
}

// ID returns the backend's identity: a 64-bit hash of Addr and Port and
// nothing else. Maglev permutations and sh/dh tables are derived from it, so
// they do not depend on the backend's position in the list. The function
// MUST NOT change (see the seeds in hash.go).
func (b Backend) ID() uint64 { return identity(&b.Addr, b.Port) }

func (b Backend) available() bool { return b.Weight > 0 && !b.Down }

func (b Backend) String() string {
	return netip.AddrPortFrom(netip.AddrFrom16(b.Addr).Unmap(), b.Port).String()
}

// Key describes the new flow that needs a backend.
//
// The zero value is a valid key (hash 0, unspecified addresses). Key is a
// plain value.
type Key struct {
	// Hash is the flow's hash, computed by the caller over what identifies
	// the flow (typically protocol and 5-tuple). mh maps it through the
	// Maglev table and p2c draws its two candidates from it. It is remixed,
	// so it need not be well mixed, but different flows should differ.
	Hash uint64
	// SrcAddr and DstAddr are the flow's addresses as the client sent them
	// (IPv4 v4-mapped). sh hashes SrcAddr, and SrcPort too with
	// Config.Port; dh hashes DstAddr.
	SrcAddr [16]byte
	DstAddr [16]byte
	SrcPort uint16
	// Now is the caller's monotonic clock in nanoseconds. Only lblc and
	// lblcr read it: it ages their entries (see locality.go); sched reads
	// no clock of its own.
	Now int64
}

// Config holds the options of one scheduler. The zero value gives the
// defaults (IPVS's, where IPVS has the option). Config is a plain value;
// New copies it.
type Config struct {
	// TableSize is the number of slots M of the Maglev table (mh) and of the
	// bucket table (sh, dh). It must be prime; 0 means DefaultTableSize.
	// A set may not have more table members than M.
	TableSize uint32
	// Port makes sh hash the source port as well as the source address
	// (IPVS flag sh-port): finer spread, no per-client affinity.
	Port bool
	// Fallback makes sh and dh, when the hashed backend is down or
	// quiescent, take the next available backend in the bucket table
	// instead of reporting none (IPVS flag sh-fallback; for dh an
	// extension). The choice is deterministic for a given key and set;
	// finding it probes about n/available buckets.
	Fallback bool
}

// Scheduler picks a backend for each new flow. Create one with New.
//
// All methods are safe for concurrent use. Pick is lock-free and does not
// allocate; it may run in any number of goroutines while Update replaces the
// set. Updates are serialized. A nil Scheduler is not usable; the only
// implementation is the one New returns.
type Scheduler interface {
	// Name returns the algorithm name given to New, such as "wlc".
	Name() string

	// Check reports the error Update would give for backends, changing
	// nothing: a caller updating several schedulers at once checks all of
	// them first.
	Check(backends []Backend) error

	// Update replaces the backend set. The order of backends is the
	// "list order" of IPVS: ties go to the earlier backend (lc, wlc, sed,
	// nq, fo) and rr and wrr visit backends in that order. Backends are
	// identified by address and port: a backend present before and after
	// keeps its *Dest and counters. Update builds every table it needs, then
	// publishes the new set atomically. On error the current set is kept.
	Update(backends []Backend) error

	// Pick returns the backend for a new flow, from one consistent set. ok
	// is false, and d nil, when no backend is available (none configured,
	// all down or quiescent, or for sh and dh without Fallback the hashed
	// backend is unavailable): the caller drops or rejects the flow.
	Pick(k Key) (d *Dest, ok bool)

	// Dests returns the current backends, available or not, in list order.
	// The slice is new; the *Dest values are shared.
	Dests() []*Dest
}

// Dest is a backend as one Scheduler knows it: its identity and its live
// connection counters. A Scheduler creates one per address and port and
// hands out the same pointer for as long as the backend stays in its set
// (or, once removed, while it still has connections counted, so that
// re-adding it keeps them, as IPVS's destination trash does).
//
// There is no usable zero value; Dests come from a Scheduler. Methods are
// safe for concurrent use. The counters sit on their own cache line.
type Dest struct {
	addr  [16]byte
	port  uint16
	id    uint64
	owner *scheduler
	leaf  int32  // position in the current load tree, -1 if none; guarded by owner.mu
	gen   uint64 // last Update generation that listed this Dest; guarded by owner.mu
	// limits is Upper<<32 | Lower as the last Update gave them.
	limits atomic.Uint64

	active   atomic.Int64
	inactive atomic.Int64
	// over is IPVS's IP_VS_DEST_F_OVERLOAD: set and cleared by Add (and
	// cleared by Update) under the thresholds in limits.
	over atomic.Bool
	// weight is the backend's weight if it is available in the current
	// set, else 0 (quiescent, down or removed): what ovf, lblc and lblcr
	// compare, and how lblc and lblcr tell a remembered Dest still usable.
	weight atomic.Uint32
	_      [64 - 24]byte
}

// Addr returns the backend's address (IPv4 v4-mapped).
func (d *Dest) Addr() [16]byte { return d.addr }

// Port returns the backend's port.
func (d *Dest) Port() uint16 { return d.port }

// ID returns the backend's identity, equal to Backend.ID.
func (d *Dest) ID() uint64 { return d.id }

// String returns "addr:port" ("[v6]:port" for IPv6).
func (d *Dest) String() string {
	return Backend{Addr: d.addr, Port: d.port}.String()
}

// Overloaded reports whether the backend is over its connection thresholds
// (IPVS's OVERLOAD flag): no algorithm picks it for a new flow. Add sets it
// when a new connection brings the total (active plus inactive) to Upper,
// and clears it when a connection's end brings the total below Lower, or
// below 3/4 of Upper when Lower is 0; Update clears it when Upper is
// raised or removed. Under concurrent Adds the flag may briefly trail the
// counts, as IPVS's does.
func (d *Dest) Overloaded() bool { return d.over.Load() }

// Thresholds returns the upper and lower connection thresholds the last
// Update gave the backend.
func (d *Dest) Thresholds() (upper, lower uint32) {
	l := d.limits.Load()
	return uint32(l >> 32), uint32(l)
}

// Conns returns the active and inactive connection counts as reported
// through Add.
func (d *Dest) Conns() (active, inactive int64) {
	return d.active.Load(), d.inactive.Load()
}

// Add changes the connection counts by the given deltas (see the package
// documentation for when to call it). Counts should never go negative;
// schedulers read a negative count as 0. For lc, wlc, sed and nq, Add also
// updates the scheduler's load tree, under a mutex, in O(log n); for the
// other algorithms it is two atomic adds. Add does not allocate.
func (d *Dest) Add(active, inactive int64) {
	s := d.owner
	if !s.kind.loadTracked() {
		if active != 0 {
			d.active.Add(active)
		}
		if inactive != 0 {
			d.inactive.Add(inactive)
		}
		// The flag matters only with thresholds (or one left set by them).
		if delta := active + inactive; delta != 0 && (d.limits.Load() != 0 || d.over.Load()) {
			d.updateOverload(delta, d.active.Load()+d.inactive.Load())
		}
		return
	}
	s.mu.Lock()
	a := d.active.Add(active)
	in := d.inactive.Add(inactive)
	d.updateOverload(active+inactive, a+in)
	if d.leaf >= 0 {
		s.cur.Load().tree.set(d.leaf, loadKey(s.kind, a, in), d.over.Load())
	}
	s.mu.Unlock()
}

// updateOverload applies IPVS's rule for the OVERLOAD flag after the total
// connection count changed by delta to total: a new connection
// (ip_vs_bind_dest) sets it at Upper; an ended one (ip_vs_unbind_dest)
// clears it below Lower, below 3/4 of Upper without Lower, and at once
// without thresholds.
func (d *Dest) updateOverload(delta, total int64) {
	switch {
	case delta > 0:
		if l := d.limits.Load(); l != 0 {
			if upper := int64(l >> 32); upper != 0 && total >= upper && !d.over.Load() {
				d.over.Store(true)
			}
		}
	case delta < 0:
		if !d.over.Load() {
			return
		}
		l := d.limits.Load()
		upper, lower := int64(l>>32), int64(uint32(l))
		if lower != 0 && total < lower || lower == 0 && (upper == 0 || total*4 < upper*3) {
			d.over.Store(false)
		}
	}
}

// kind is one algorithm.
type kind uint8

const (
	kRR kind = iota
	kWRR
	kLC
	kWLC
	kSED
	kNQ
	kSH
	kDH
	kMH
	kP2C
	kFO
	kOVF
	kLBLC
	kLBLCR
	numKinds
)

func (k kind) String() string {
	switch k {
	case kRR:
		return "rr"
	case kWRR:
		return "wrr"
	case kLC:
		return "lc"
	case kWLC:
		return "wlc"
	case kSED:
		return "sed"
	case kNQ:
		return "nq"
	case kSH:
		return "sh"
	case kDH:
		return "dh"
	case kMH:
		return "mh"
	case kP2C:
		return "p2c"
	case kFO:
		return "fo"
	case kOVF:
		return "ovf"
	case kLBLC:
		return "lblc"
	case kLBLCR:
		return "lblcr"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// loadTracked reports whether Pick depends on the load tree.
func (k kind) loadTracked() bool { return k >= kLC && k <= kNQ }

// hashed reports whether the scheduler has a slot table.
func (k kind) hashed() bool { return k == kSH || k == kDH || k == kMH }

// local reports whether the scheduler keeps a locality table.
func (k kind) local() bool { return k == kLBLC || k == kLBLCR }

// Names returns the scheduler names New accepts, in a fixed order.
func Names() []string {
	names := make([]string, 0, numKinds)
	for k := range numKinds {
		names = append(names, k.String())
	}
	return names
}

// New returns a scheduler running the named algorithm (see Names) with an
// empty backend set: Pick reports no backend until Update gives it some.
func New(name string, cfg Config) (Scheduler, error) {
	k := numKinds
	for c := range numKinds {
		if c.String() == name {
			k = c
		}
	}
	if k == numKinds {
		return nil, fmt.Errorf("sched: scheduler %q: %w (want one of %s)",
			name, ErrUnknownScheduler, strings.Join(Names(), ", "))
	}
	if cfg.Port && k != kSH {
		return nil, fmt.Errorf("sched %s: Port (sh-port) applies only to sh: %w", k, ErrOption)
	}
	if cfg.Fallback && k != kSH && k != kDH {
		return nil, fmt.Errorf("sched %s: Fallback applies only to sh and dh: %w", k, ErrOption)
	}
	if cfg.TableSize != 0 && !k.hashed() {
		return nil, fmt.Errorf("sched %s: TableSize applies only to sh, dh and mh: %w", k, ErrOption)
	}
	m := uint64(cfg.TableSize)
	if m == 0 {
		m = DefaultTableSize
	}
	if m > MaxTableSize || !isPrime(m) {
		return nil, fmt.Errorf("sched %s: table size %d: %w (want a prime up to %d, such as %d)",
			k, m, ErrTableSize, MaxTableSize, DefaultTableSize)
	}
	s := &scheduler{kind: k, cfg: cfg, m: m, dests: make(map[addrPort]*Dest)}
	if k.local() {
		s.loc = newLocality()
	}
	s.cur.Store(s.build(nil, nil, nil))
	return s, nil
}

type addrPort struct {
	addr [16]byte
	port uint16
}

// scheduler implements Scheduler for every algorithm: the snapshot carries
// what the algorithm needs and Pick switches on the kind.
type scheduler struct {
	kind kind
	cfg  Config
	m    uint64 // table size (sh, dh, mh)
	cur  atomic.Pointer[snapshot]

	mu    sync.Mutex // serializes Update; for lc/wlc/sed/nq also Dest.Add
	gen   uint64
	dests map[addrPort]*Dest // current and retired-with-connections Dests

	loc *locality // lblc, lblcr
}

// snapshot is one immutable backend set and the tables built from it. Only
// the rr/wrr cursor and the load tree change after publication.
type snapshot struct {
	kind  kind
	all   []*Dest // every backend, list order (Dests)
	dests []*Dest // what Pick indexes; see build

	cursor *cursor // rr, wrr

	// wrr: seq (smooth) or stride+bound (long periods) over dests.
	seq    []uint16
	period uint64
	stride uint64
	bound  []uint64

	tree *loadTree // lc, wlc, sed, nq

	weight []uint64 // p2c, ovf, lblc, lblcr: weight of dests[i]

	fo []*Dest // fo: the available backends by weight, highest (then first) first

	// sh, dh, mh
	table    []uint16 // slot -> index into dests
	up       []bool   // sh, dh: dests[i] is available
	anyUp    bool
	port     bool
	fallback bool
}

// cursor is the shared rr/wrr position, alone on its cache line.
type cursor struct {
	n atomic.Uint64
	_ [56]byte
}

func (s *scheduler) Name() string { return s.kind.String() }

func (s *scheduler) Dests() []*Dest { return slices.Clone(s.cur.Load().all) }

func (s *scheduler) Check(backends []Backend) error {
	if len(backends) > MaxBackends {
		return fmt.Errorf("sched %s: %d backends: %w (at most %d)", s.kind, len(backends), ErrTooMany, MaxBackends)
	}
	seen := make(map[addrPort]struct{}, len(backends))
	members := 0
	for i := range backends {
		b := &backends[i]
		if b.Weight > MaxWeight {
			return fmt.Errorf("sched %s: backend %s: weight %d: %w (0..%d)", s.kind, b, b.Weight, ErrWeight, MaxWeight)
		}
		if b.Lower > b.Upper {
			return fmt.Errorf("sched %s: backend %s: lower threshold %d, upper %d: %w", s.kind, b, b.Lower, b.Upper, ErrThreshold)
		}
		k := addrPort{b.Addr, b.Port}
		if _, dup := seen[k]; dup {
			return fmt.Errorf("sched %s: backend %s: %w (listed twice)", s.kind, b, ErrDuplicate)
		}
		seen[k] = struct{}{}
		if s.kind != kMH || b.available() {
			members++
		}
	}
	if s.kind.hashed() && uint64(members) > s.m {
		return fmt.Errorf("sched %s: %d backends do not fit a table of %d slots: %w (raise TableSize)",
			s.kind, members, s.m, ErrTableSize)
	}
	return nil
}

func (s *scheduler) Update(backends []Backend) error {
	if err := s.Check(backends); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	all := make([]*Dest, len(backends))
	for i := range backends {
		b := &backends[i]
		k := addrPort{b.Addr, b.Port}
		d := s.dests[k]
		if d == nil {
			d = &Dest{addr: b.Addr, port: b.Port, id: b.ID(), owner: s, leaf: -1}
			s.dests[k] = d
		}
		d.gen = s.gen
		all[i] = d
		// ip_vs_update_dest: a raised or removed upper threshold clears
		// the flag; a lowered one sets it only at the next connection.
		old := d.limits.Load()
		if b.Upper == 0 || uint64(b.Upper) > old>>32 {
			d.over.Store(false)
		}
		d.limits.Store(uint64(b.Upper)<<32 | uint64(b.Lower))
		if b.available() {
			d.weight.Store(b.Weight)
		} else {
			d.weight.Store(0)
		}
	}
	for k, d := range s.dests {
		d.leaf = -1
		if d.gen != s.gen {
			d.weight.Store(0)
			if a, in := d.Conns(); a == 0 && in == 0 {
				delete(s.dests, k)
			}
		}
	}
	s.cur.Store(s.build(backends, all, s.cur.Load()))
	return nil
}

// build makes the snapshot for backends (already validated); all[i] is the
// Dest of backends[i]. prev is the snapshot being replaced, or nil. For
// load-tracked kinds it runs under s.mu and sets Dest.leaf.
func (s *scheduler) build(backends []Backend, all []*Dest, prev *snapshot) *snapshot {
	p := &snapshot{kind: s.kind, all: all}
	var avail []*Dest
	var weights []uint32
	for i := range backends {
		if backends[i].available() {
			avail = append(avail, all[i])
			weights = append(weights, backends[i].Weight)
		}
	}
	switch s.kind {
	case kRR, kWRR:
		p.dests = avail
		p.cursor = new(cursor)
		if prev != nil && prev.cursor != nil {
			// Carry the position over, as IPVS keeps its place in the
			// list, so frequent updates do not favour the first backends.
			p.cursor.n.Store(prev.cursor.n.Load())
		}
		if s.kind == kWRR {
			p.buildWRR(weights)
		}
	case kLC, kWLC, kSED, kNQ:
		p.dests = avail
		p.tree = newLoadTree(s.kind, avail, weights)
	case kP2C, kOVF, kLBLC, kLBLCR:
		p.dests = avail
		p.weight = make([]uint64, len(weights))
		for i, w := range weights {
			p.weight[i] = uint64(w)
		}
	case kFO:
		idx := make([]int, len(avail))
		for i := range idx {
			idx[i] = i
		}
		slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(weights[b], weights[a]) })
		p.fo = make([]*Dest, len(idx))
		for j, i := range idx {
			p.fo[j] = avail[i]
		}
	case kMH:
		idx := make([]int, len(avail))
		for i := range idx {
			idx[i] = i
		}
		slices.SortFunc(idx, func(a, b int) int { return compareIdentity(avail[a], avail[b]) })
		p.dests = make([]*Dest, len(idx))
		place := make([]uint32, len(idx))
		ids := make([]uint64, len(idx))
		for j, i := range idx {
			p.dests[j], place[j], ids[j] = avail[i], weights[i], avail[i].id
		}
		if len(ids) > 0 {
			p.table = make([]uint16, s.m)
			buildMaglev(p.table, ids, place)
		}
	case kSH, kDH:
		idx := make([]int, len(backends))
		for i := range idx {
			idx[i] = i
		}
		slices.SortFunc(idx, func(a, b int) int { return compareIdentity(all[a], all[b]) })
		p.dests = make([]*Dest, len(idx))
		p.up = make([]bool, len(idx))
		place := make([]uint32, len(idx))
		ids := make([]uint64, len(idx))
		for j, i := range idx {
			b := &backends[i]
			p.dests[j], p.up[j], ids[j] = all[i], b.available(), all[i].id
			p.anyUp = p.anyUp || p.up[j]
			place[j] = 1
			if s.kind == kSH && b.Weight > 1 {
				place[j] = b.Weight
			}
		}
		if len(ids) > 0 {
			p.table = make([]uint16, s.m)
			buildMaglev(p.table, ids, place)
		}
		p.port, p.fallback = s.cfg.Port, s.cfg.Fallback
	}
	return p
}

// compareIdentity orders Dests by identity, then by address and port so
// that the order stays total if two identities ever collide.
func compareIdentity(a, b *Dest) int {
	if c := cmp.Compare(a.id, b.id); c != 0 {
		return c
	}
	if c := strings.Compare(string(a.addr[:]), string(b.addr[:])); c != 0 {
		return c
	}
	return cmp.Compare(a.port, b.port)
}

func (s *scheduler) Pick(k Key) (*Dest, bool) {
	p := s.cur.Load()
	switch p.kind {
	case kRR:
		// As ip_vs_rr_schedule: the next backend in the list that is not
		// overloaded; the cursor moves past the ones skipped.
		n := uint64(len(p.dests))
		for range n {
			if d := p.dests[(p.cursor.n.Add(1)-1)%n]; !d.over.Load() {
				return d, true
			}
		}
		// Other workers' picks took the free one's positions meanwhile.
		return p.firstFree(p.cursor.n.Load())
	case kWRR:
		if p.period == 0 {
			return nil, false
		}
		for range len(p.dests) {
			if d := p.dests[p.wrrIndex((p.cursor.n.Add(1)-1)%p.period)]; !d.over.Load() {
				return d, true
			}
		}
		// The schedule's next positions all named overloaded backends
		// (a heavy one is): take the first free one from a rotating start.
		return p.firstFree(p.cursor.n.Load())
	case kLC, kWLC, kSED, kNQ:
		r := p.tree.root.Load()
		if r < 0 {
			return nil, false
		}
		return p.dests[r], true
	case kP2C:
		return p.pickP2C(k.Hash)
	case kFO:
		for _, d := range p.fo {
			if !d.over.Load() {
				return d, true
			}
		}
		return nil, false
	case kOVF:
		return p.pickOVF()
	case kLBLC, kLBLCR:
		return s.loc.pick(p, k)
	case kMH:
		if len(p.table) == 0 {
			return nil, false
		}
		h := hashFlow(seedMH, k.Hash)
		slot := reduce(h, uint64(len(p.table)))
		if d := p.dests[p.table[slot]]; !d.over.Load() {
			return d, true
		}
		return p.probeTable(slot, func(i uint16) bool { return !p.dests[i].over.Load() })
	case kSH:
		port := uint16(0)
		if p.port {
			port = k.SrcPort
		}
		return p.pickTable(hashAddr(seedSH, &k.SrcAddr, port))
	case kDH:
		return p.pickTable(hashAddr(seedDH, &k.DstAddr, 0))
	}
	return nil, false
}

// pickTable is sh and dh: the hashed bucket's backend if available, else
// (with fallback) the next available bucket's, probing linearly as IPVS's
// ip_vs_sh_get_fallback does.
func (p *snapshot) pickTable(h uint64) (*Dest, bool) {
	if !p.anyUp {
		return nil, false
	}
	m := uint64(len(p.table))
	slot := reduce(h, m)
	usable := func(i uint16) bool { return p.up[i] && !p.dests[i].over.Load() }
	if i := p.table[slot]; usable(i) {
		return p.dests[i], true
	}
	if !p.fallback {
		return nil, false
	}
	return p.probeTable(slot, usable)
}

// probeTable returns the backend of the first slot after slot whose
// backend is usable, probing linearly as IPVS's ip_vs_sh_get_fallback
// does. It first makes sure one exists (a scan of the members), so that a
// set whose members are all overloaded costs O(n), not O(table).
func (p *snapshot) probeTable(slot uint64, usable func(uint16) bool) (*Dest, bool) {
	any := false
	for i := range p.dests {
		if usable(uint16(i)) {
			any = true
			break
		}
	}
	if !any {
		return nil, false
	}
	m := uint64(len(p.table))
	for range m - 1 {
		if slot++; slot == m {
			slot = 0
		}
		if i := p.table[slot]; usable(i) {
			return p.dests[i], true
		}
	}
	return nil, false // unreachable: every member has a slot
}

// firstFree returns the first backend that is not overloaded, scanning the
// available ones from position start (mod their number).
func (p *snapshot) firstFree(start uint64) (*Dest, bool) {
	n := uint64(len(p.dests))
	for j := range n {
		if d := p.dests[(start+j)%n]; !d.over.Load() {
			return d, true
		}
	}
	return nil, false
}

// pickOVF is ip_vs_ovf_schedule (weighted overflow): the backend of the
// highest weight, the first of equals, among those not overloaded whose
// active connections do not exceed their weight.
func (p *snapshot) pickOVF() (*Dest, bool) {
	var best *Dest
	var bw uint64
	for i, d := range p.dests {
		w := p.weight[i]
		if d.over.Load() || clampCount(d.active.Load()) > w {
			continue
		}
		if best == nil || w > bw {
			best, bw = d, w
		}
	}
	return best, best != nil
}

// pickP2C draws two distinct available backends from the flow hash and
// returns the one with the lower (active+1)/weight, the first on a tie.
func (p *snapshot) pickP2C(hash uint64) (*Dest, bool) {
	n := uint64(len(p.dests))
	switch n {
	case 0:
		return nil, false
	case 1:
		return p.firstFree(0)
	}
	i, j := p2cCandidates(hash, n)
	a, b := p.dests[i], p.dests[j]
	switch oa, ob := a.over.Load(), b.over.Load(); {
	case oa && ob:
		return p.firstFree(i)
	case oa:
		return b, true
	case ob:
		return a, true
	}
	la := (clampCount(a.active.Load()) + 1) * p.weight[j]
	lb := (clampCount(b.active.Load()) + 1) * p.weight[i]
	if lb < la {
		return b, true
	}
	return a, true
}

// p2cCandidates returns two distinct indexes in [0, n), n >= 2, from the flow
// hash: uniform, and independent enough for the power of two choices.
func p2cCandidates(hash, n uint64) (i, j uint64) {
	h := hashFlow(seedP2C, hash)
	i = reduce(h, n)
	j = reduce(h<<32|h>>32, n-1)
	if j >= i {
		j++
	}
	return i, j
}

// clampCount reads a counter as a non-negative count that fits 32 bits, so
// that the load products below cannot overflow.
func clampCount(v int64) uint64 {
	if v < 0 {
		return 0
	}
	if v > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint64(v)
}
