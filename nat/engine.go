package nat

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/vsgate/vsgate/packet"
	"github.com/vsgate/vsgate/sched"
)

// Verdict is what the caller does with a packet after Process.
type Verdict uint8

const (
	// Forward: the packet was translated in place (or, for a flow that
	// needs no change, left as is); send it on.
	Forward Verdict = iota
	// Drop: discard it; the reason was counted.
	Drop
	// ToL7: the packet is for an application-layer (HTTP) service; hand
	// it to the proxy's netstack unchanged.
	ToL7
	// Pass: it matched nothing and the configured default is to pass
	// packets unchanged.
	Pass
	// Reply: the packet was turned into the answer to its sender (a TCP
	// reset, see Config.ResetRemoved) and shortened: Process re-sliced
	// pkts[i] to its new length. Send it on like Forward.
	Reply
	// Held: the engine keeps the packet (a fragment, copied, until its
	// datagram is complete: Worker.Released hands it out then). Nothing
	// to send now; not a drop.
	Held
	// Route: direct routing (ModeDR): the packet is unchanged and goes to
	// the real server Worker.Via names, on the link (its MAC as the
	// frame's destination); the real server answers the client itself.
	Route
)

var verdictNames = [...]string{"forward", "drop", "to_l7", "pass", "reply", "held", "route"}

func (v Verdict) String() string { return verdictNames[v] }

// Mode is how a virtual service forwards.
type Mode uint8

const (
	// ModeNAT rewrites the destination to the real server; replies, which
	// the real server routes back through the gateway, get the VIP back as
	// their source (LVS-NAT, ipmasqadm portfw).
	ModeNAT Mode = iota
	// ModeFullNAT also rewrites the source to a gateway-owned address and
	// port from the FULLNAT pool, so real servers need no route back
	// through the gateway.
	ModeFullNAT
	// ModeL7 hands the service's packets to the application-layer proxy.
	ModeL7
	// ModeDR is direct routing (ipvsadm -g): the client's packets reach
	// the real server unchanged, by its MAC (verdict Route), and the real
	// server, holding the VIP on a loopback, answers the client itself;
	// the real server's port is the VIP's. The gateway sees one direction
	// of each flow, so its TCP tracking is IPVS's input-only one: the
	// client's ACK establishes the flow, and windows are not checked.
	ModeDR
)

// Backend is one real server of a service.
type Backend struct {
	Addr   netip.Addr
	Port   uint16
	Weight uint32 // 0 = quiescent: no new flows, existing ones stay
	Down   bool   // marked down by health checks
	// Upper and Lower are the connection thresholds (ipvsadm -x, -y; 0:
	// none): at Upper flows the backend is overloaded and gets no new
	// ones until it falls below Lower, or 3/4 of Upper without Lower
	// (sched.Backend). A persistent client's template still leads to an
	// overloaded backend, as in IPVS.
	Upper, Lower uint32
}

// Service is one virtual service: (protocol, VIP, port) to real servers.
type Service struct {
	Proto uint8 // packet.ProtoTCP or packet.ProtoUDP
	VIP   netip.Addr
	// Port 0 is every port of the VIP that no service of its own serves
	// (ipvsadm's port-0 services, which must be persistent: one
	// persistence template then holds a client for all ports); a
	// backend of port 0 is reached on the port the client asked for.
	Port      uint16
	Mode      Mode
	Scheduler string       // a sched name: rr, wrr, lc, wlc, sed, nq, sh, dh, mh, p2c, fo, ovf, lblc, lblcr
	Sched     sched.Config // the scheduler's options
	Backends  []Backend
	// Sloppy adopts a TCP flow seen first mid-stream (no SYN), as IPVS's
	// sloppy_tcp; meant for mh, which maps the flow to the same backend
	// on every gateway. An adopted flow starts ESTABLISHED (IPVS's table
	// would put it in CLOSE, which expires a quiet connection in 10 s).
	// In NAT mode a sloppy service, TCP or UDP, also adopts a flow from
	// its real server's side, when that backend (address and port)
	// serves no other service: the answer's source then names the VIP,
	// so a gateway that never saw the client's packets (another one
	// behind ECMP did) translates it (Worker.adoptReply). A flow whose
	// segments come back ahead of its window, after the routers sent it
	// through other gateways for a while, is taken up again
	// (Worker.cameBack).
	Sloppy bool
	// Persistence sends all connections of one client to the same
	// backend while the client has connections, and for this long after
	// the last one ends (ipvsadm -p). 0 disables it.
	Persistence time.Duration
	// PersistMask is the prefix length that groups clients for
	// persistence (ipvsadm -M): 0 means the whole address (32 or 128).
	PersistMask int
	// TCPLiberal skips the TCP window check for this service's flows
	// (conntrack's be_liberal): for deployments where vsgate sees only
	// one direction of them. States still move only on the right flags.
	TCPLiberal bool
	// SynProxy answers new connections with SYN cookies, and makes a flow
	// only for a client that returns one (synproxy.go). The zero value is
	// SynProxyAuto.
	SynProxy SynProxy
	// Fwmark makes a firewall-mark service (ipvsadm -f): it takes the new
	// TCP and UDP flows that Config.Marks give its mark, of its VIP's
	// family. VIP is then that family's unspecified address (0.0.0.0 or
	// ::), Port and Proto 0; a backend of port 0 is reached on the port
	// the client asked for, and persistence holds a client across every
	// address and port of the mark. The mark is looked at first, as
	// IPVS's ip_vs_service_find does.
	Fwmark uint32
	// OnePacket is IPVS's one-packet scheduling (ipvsadm -o), for UDP
	// services in NAT or DR mode: every datagram is scheduled on its own
	// and no flow is kept. A real server's answer is translated back by
	// its source when that backend (address and port) serves no other
	// service (Worker.onePacketReply); else it is dropped as
	// real_server_no_flow. A datagram whose real server lies in an
	// inbound masquerade subnet, which needs a flow to map the answer
	// back, takes one as without OnePacket.
	OnePacket bool
	// FlowLog logs the service's flows as they end (flowlog.go).
	FlowLog FlowLog
}

// Masquerade is source NAT (ipchains -j MASQ), in one of two directions;
// a rule sets exactly one of From and Into.
//
// Outbound (From, ipchains -s NET): flows from the subnet behind the
// gateway to anywhere outside it get To as their source, keeping the
// source port (or ICMP identifier) when free, else one from Ports.
//
// Inbound (Into, ipchains -d NET): a NAT service's flow whose real server
// lies in Into gets To as its source, so the real server answers To and
// needs no route back to the client: it is translated as FULLNAT is, with
// To and Ports in place of the FULLNAT pool (a FULLNAT service keeps its
// pool; an L7 service's proxy connects from the gateway itself). Only
// service flows: ipchains under an ACCEPT policy also masqueraded any
// packet forwarded into NET, but vsgate opens the inside to services
// only, so an inbound rule opens nothing else.
type Masquerade struct {
	From  netip.Prefix
	Into  netip.Prefix
	To    netip.Addr
	Ports [2]uint16 // inclusive range; zero means 1024..65535
}

// Subnet is the rule's subnet, whichever direction it has.
func (m Masquerade) Subnet() netip.Prefix {
	if m.Into.IsValid() {
		return m.Into
	}
	return m.From
}

// masqKey names a masquerade rule across updates (its counters).
type masqKey struct {
	from, into netip.Prefix
}

func (m Masquerade) key() masqKey { return masqKey{m.From, m.Into} }

// Config is the engine's configuration. Services, masquerade rules, the
// FULLNAT pool, timeouts, DropUnmatched and ResetRemoved can be replaced
// at run time with Update; Capacity, ShardBits and Tick are fixed at New.
type Config struct {
	Capacity  int           // maximum tracked flows; 0 means 1<<16
	ShardBits uint          // 2^ShardBits lock shards; 0 means 64 shards
	Tick      time.Duration // the clock's resolution; 0 means 1 s
	Timeouts  Timeouts
	// DropUnmatched drops packets that match no flow, service or rule
	// (counted); otherwise they pass unchanged.
	DropUnmatched bool
	// ResetRemoved ends the flows of a backend that was removed (or
	// whose service was) at their next packet, instead of letting them
	// drain: a client's TCP segment is answered with a reset, anything
	// else is dropped, and the flow is forgotten (IPVS's
	// expire_nodest_conn, plus the reset).
	ResetRemoved bool
	// TCPLiberal skips the TCP window check for every flow (see
	// Service.TCPLiberal).
	TCPLiberal bool
	// SourceFlows and SourceHalfOpen limit the flows, and the half-open
	// TCP flows, one source prefix may hold (source.go); 0 means no
	// limit. SourceBits4 and SourceBits6 are the prefix lengths that make
	// one source (0 means 32 and 128), fixed at New.
	SourceFlows, SourceHalfOpen int
	SourceBits4, SourceBits6    int
	// SynProxyHalfOpen and SynProxyFill are when SynProxyAuto services
	// proxy: while the table holds at least SynProxyHalfOpen half-open
	// TCP flows (0 means 1024), or is at least SynProxyFill percent full
	// (0 means 75; judged from the shard the new flow would go in, which
	// the hash fills as evenly as the rest).
	SynProxyHalfOpen, SynProxyFill int

	Services   []Service
	Masquerade []Masquerade
	// FullNATPool is the gateway-owned source addresses of FULLNAT flows
	// (one per family is enough), with FullNATPorts their port range.
	FullNATPool  []netip.Addr
	FullNATPorts [2]uint16
	// FullNATTakeover are other gateways' FULLNAT addresses: their flows
	// reach this one by the connection sync (sync.go), and their real
	// servers' answers when the routers send them here (their owner is
	// gone). Owned as the pool is, never a source of new flows.
	FullNATTakeover []netip.Addr
	// Marks give new flows a firewall mark for the services of Fwmark, as
	// the iptables mangle table's MARK rules do before IPVS: every rule a
	// flow's first packet matches sets its mark, so the last matching
	// rule's mark is the flow's. Their destinations are the gateway's, as
	// VIPs are.
	Marks []Mark
	// FlowLogger takes the records of the flows of services with flow
	// logs (Service.FlowLog); fixed at New. Without one no service may
	// have them.
	FlowLogger FlowLogger
	// WallClock is the time flow records carry and their rate limits
	// run on; fixed at New. Nil means time.Now.
	WallClock func() time.Time
}

// Mark is one marking rule: a packet to Dst (an address or a prefix of at
// most MaxMarkAddrs addresses), of protocol Proto (TCP or UDP; 0 both),
// to a port in Ports (inclusive; zero: any) gets Mark (1 or more).
type Mark struct {
	Mark  uint32
	Dst   netip.Prefix
	Proto uint8
	Ports [2]uint16
}

// MaxMarkAddrs bounds the addresses of one Mark: each is a VIP to the
// gateway's wiring (a route into the device, an ARP/ND answer).
const MaxMarkAddrs = 256

// Addrs returns the addresses m's destination covers.
func (m Mark) Addrs() []netip.Addr {
	var out []netip.Addr
	for a := m.Dst.Masked().Addr(); m.Dst.Contains(a) && len(out) < MaxMarkAddrs; a = a.Next() {
		out = append(out, a)
	}
	return out
}

// owner is what a flow counts against: a service's backend, or a
// masquerade rule (dest nil).
type owner struct {
	dest atomic.Pointer[sched.Dest] // nil for a masquerade rule; replaced when the service's scheduler changes
	// svc is the owner's service as of the latest Update (nil for a
	// masquerade rule): Update installs each new snapshot's service.
	svc  atomic.Pointer[service]
	stat statID
	id   uint32      // its place in Engine.owners, which flows record (flow.meta)
	gone atomic.Bool // the backend (or its service) is no longer configured
	// stale are Dests this owner counted on before dest, whose counts
	// still move to dest (see drainStale). Guarded by Engine.mu.
	stale []staleDest
}

type staleDest struct {
	d     *sched.Dest
	epoch uint64 // Engine.epoch right after it was replaced
}

// drainStale moves the connection counts of the owner's stale Dests to its
// current one. A worker that loaded a stale Dest before Update replaced it
// can still add to it until its Process call ends, however long that
// takes (a preempted goroutine); so a stale Dest is let go only when found
// at zero after every worker busy at its replacement has finished that
// call: when quiescent (Engine.quiescent) has reached its epoch. Caller
// holds Engine.mu.
func (own *owner) drainStale(quiescent uint64) {
	cur := own.dest.Load()
	keep := own.stale[:0]
	for _, s := range own.stale {
		a, i := s.d.Conns()
		if a != 0 || i != 0 {
			cur.Add(a, i)
			s.d.Add(-a, -i)
		} else if quiescent >= s.epoch {
			continue
		}
		keep = append(keep, s)
	}
	clear(own.stale[len(keep):])
	own.stale = keep
}

type svcKey struct {
	addr  [16]byte
	port  uint16
	proto uint8
	mark  uint32 // a firewall-mark service's mark (addr is then its family's unspecified address)
}

// keyOf is the service's identity.
func keyOf(s Service) svcKey {
	return svcKey{addr: addr16(s.VIP), port: s.Port, proto: s.Proto, mark: s.Fwmark}
}

type service struct {
	cfg      Service
	key      svcKey
	up       map[uint64]bool // backend ID -> in the service and not down (persistence may use it, even at weight 0)
	persist  int64           // persistence timeout in ticks, 0 = none
	sched    sched.Scheduler
	stat     statID
	backends map[uint64]*owner // by sched.Dest ID
	// lines is the flow logs' rate limit, kept across updates as the
	// counters are.
	lines *lineLimit
	name  string // serviceName(cfg), for flow records
}

type masqRule struct {
	net   netip.Prefix // From for an outbound rule, Into for an inbound one
	to    [16]byte
	ports [2]uint16
	own   *owner
}

// masqueradeInto returns the inbound masquerade rule whose subnet holds
// the real server at addr, or nil.
func (s *snapshot) masqueradeInto(addr [16]byte) *masqRule {
	for _, m := range s.masqInto {
		if m.net.Contains(addrOf(addr)) {
			return m
		}
	}
	return nil
}

// snapshot is the immutable configuration workers read with one atomic
// load per batch.
type snapshot struct {
	svcIndex svcIndex // the services by (VIP, port, protocol)
	// marks are Config.Marks, each with the firewall-mark service of its
	// mark and family (nil if none).
	marks []markRule
	// portZero: some service has port 0 (every port of its VIP, see
	// Service.Port), so a packet no service's own port matches is looked
	// up again with port 0.
	portZero    bool
	realServers svcIndex // the services by their backends' (address, port, protocol)
	// soleNAT are the sloppy NAT-mode services by their backends'
	// (address, port, protocol), for backends that serve no other
	// service: their answers identify the flow's VIP on their own
	// (Worker.adoptReply).
	soleNAT svcIndex
	// onePacket are the one-packet NAT services by their backends'
	// (address, port, protocol), for backends that serve no other
	// service (Worker.onePacketReply).
	onePacket     svcIndex
	masq          []*masqRule // outbound rules (From)
	masqInto      []*masqRule // inbound rules (Into)
	masqAddr      map[[16]byte]bool
	owned         map[[16]byte]bool       // VIPs and FULLNAT addresses: unmatched packets to them are dropped, never passed
	realAddr      map[[16]byte]bool       // the real servers' addresses: inside (see inside)
	timeout       [numTCPStates + 2]int64 // per state, in ticks
	resetRemoved  bool
	dropUnmatched bool
	tcpLiberal    bool
	srcFlows      int32 // Config.SourceFlows; 0: none
	srcHalfOpen   int32 // Config.SourceHalfOpen; 0: none
	// synProxyHalfOpen and synProxyFill (flows) are Config.SynProxyHalfOpen
	// and SynProxyFill, defaults applied.
	synProxyHalfOpen int64
	synProxyFill     int
	fullnat          [2][16]byte // [0] IPv4 (mapped), [1] IPv6; zero if none
	hasFull          [2]bool
	fnPorts          [2]uint16
}

// Engine is the L4 virtual server: it translates packets in place and
// tracks their flows. Create it with New; it has no usable zero value.
// Process runs on any number of Workers concurrently; Update, Expire and
// the read-only accessors may run beside them.
type Engine struct {
	tab *table
	// expireMu serialises Expire, which owns expireBuf: the live flows'
	// indices, copied from the shards (kept from call to call, so that a
	// steady table costs Expire no allocation).
	expireMu  sync.Mutex
	expireBuf []uint32

	tick    time.Duration
	clock   atomic.Int64 // coarse time in ticks; Advance moves it
	conf    atomic.Pointer[snapshot]
	counts  counters
	frags   fragCache
	held    *fragStore // fragments held until their datagram is complete (fragstore.go)
	persist persistTable
	sync    syncState
	cookies atomic.Pointer[cookieKeys] // the SYN proxy's secrets (synproxy.go)
	early   segmentHold                // proxied flows' segments before their real server answered (synhold.go)
	src     *sources                   // per-source counts (source.go)
	// fragTimeout is how long a first fragment's translation is kept, in
	// ticks (Linux keeps fragments 30 s: ipfrag_time).
	fragTimeout int64
	// flowCounts are the logged flows' counts, by flow index: made by the
	// first Update with a service that logs (64 bytes a flow of the
	// table), then kept; nil until then.
	flowCounts atomic.Pointer[[]flowCounts]
	flowLogger FlowLogger
	wallClock  func() time.Time

	nextStat atomic.Uint32 // statIDs handed out; workers grow their counters to it
	// owners is every owner ever made, by id (0 = none), so that a flow
	// can name its owner in 24 bits and the flow slab holds no pointers.
	// Only appended to, under mu, before any map a worker reads holds the
	// new owner, so before any flow can name it: whoever reads a flow's
	// owner id and then this list finds the owner here (ownerOf). An
	// owner is kept after its backend or rule is gone (its flows still
	// name it), so this grows with the distinct backends and rules ever
	// configured, not with reloads.
	owners atomic.Pointer[[]*owner]

	mu      sync.Mutex          // serialises Update; guards what follows
	scheds  map[svcKey]*service // kept across updates so sched counters survive
	masqs   map[masqKey]*owner  // likewise for masquerade counters
	stats   map[string]statID   // services by name, for ServiceStats
	workers []*Worker
	// epoch counts Dest replacements (owner.drainStale); workers note it
	// at the start of every Process call.
	epoch atomic.Uint64
	// staleOwners are the owners with stale Dests (owner.drainStale).
	staleOwners []*owner
	cur         Config           // the configuration in force, for listings
	zero        map[statID]Stats // counters as they were at the last ZeroStats
}

// New builds an engine with its flow table preallocated.
func New(cfg Config) (*Engine, error) {
	if cfg.Capacity <= 0 {
		cfg.Capacity = 1 << 16
	}
	if cfg.ShardBits == 0 {
		cfg.ShardBits = 6
	}
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	if cfg.SourceBits4 == 0 {
		cfg.SourceBits4 = 32
	}
	if cfg.SourceBits6 == 0 {
		cfg.SourceBits6 = 128
	}
	if cfg.SourceBits4 < 1 || cfg.SourceBits4 > 32 || cfg.SourceBits6 < 1 || cfg.SourceBits6 > 128 {
		return nil, fmt.Errorf("%w: source prefix lengths %d and %d: use 1..32 and 1..128", ErrConfig, cfg.SourceBits4, cfg.SourceBits6)
	}
	e := &Engine{
		tab:        newTable(cfg.Capacity, cfg.ShardBits),
		held:       newFragStore(),
		tick:       cfg.Tick,
		scheds:     map[svcKey]*service{},
		masqs:      map[masqKey]*owner{},
		stats:      map[string]statID{},
		flowLogger: cfg.FlowLogger,
		wallClock:  cfg.WallClock,
	}
	if e.wallClock == nil {
		e.wallClock = time.Now
	}
	if cfg.SourceFlows > 0 || cfg.SourceHalfOpen > 0 {
		e.src = newSources(cfg.Capacity, cfg.SourceBits4, cfg.SourceBits6)
	}
	e.persist.max = cfg.Capacity
	e.owners.Store(&[]*owner{nil})
	e.epoch.Store(1) // a worker's 0 means "not in a Process call"
	e.fragTimeout = int64((30*time.Second + cfg.Tick - 1) / cfg.Tick)
	e.rotateCookies()
	if err := e.Update(cfg); err != nil {
		return nil, err
	}
	return e, nil
}

// ErrConfig wraps every configuration error Update returns.
var ErrConfig = errors.New("nat config")

func addr16(a netip.Addr) [16]byte { return a.As16() }

// Update replaces services, masquerade rules and the FULLNAT pool.
// Established flows are untouched: flows to backends that remain keep
// flowing; flows to removed backends drain until they expire. On error
// nothing changes.
func (e *Engine) Update(cfg Config) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	services := map[svcKey]*service{} // what the new snapshot serves
	snap := &snapshot{masqAddr: map[[16]byte]bool{}, owned: map[[16]byte]bool{}, realAddr: map[[16]byte]bool{}, fnPorts: cfg.FullNATPorts,
		timeout: cfg.Timeouts.ticks(e.tick), resetRemoved: cfg.ResetRemoved, dropUnmatched: cfg.DropUnmatched, tcpLiberal: cfg.TCPLiberal,
		srcFlows: int32(min(cfg.SourceFlows, math.MaxInt32)), srcHalfOpen: int32(min(cfg.SourceHalfOpen, math.MaxInt32)),
		synProxyHalfOpen: int64(cmp.Or(cfg.SynProxyHalfOpen, defaultSynProxyHalfOpen)),
		synProxyFill:     e.tab.capacity() * cmp.Or(cfg.SynProxyFill, defaultSynProxyFill) / 100}
	if cfg.SynProxyHalfOpen < 0 || cfg.SynProxyFill < 0 || cfg.SynProxyFill > 100 {
		return fmt.Errorf("%w: SYN proxy thresholds: half-open flows 0 (default) or more, table fill 0 (default) to 100 percent", ErrConfig)
	}
	if cfg.SourceFlows < 0 || cfg.SourceHalfOpen < 0 {
		return fmt.Errorf("%w: per-source limits are 0 (none) or more", ErrConfig)
	}
	switch b4, b6 := cmp.Or(cfg.SourceBits4, 32), cmp.Or(cfg.SourceBits6, 128); {
	case e.src == nil && (cfg.SourceFlows > 0 || cfg.SourceHalfOpen > 0):
		return fmt.Errorf("%w: per-source limits were off at start; turning them on needs a restart", ErrConfig)
	case e.src != nil && (b4 != e.src.bits4 || b6 != e.src.bits6):
		return fmt.Errorf("%w: the per-source prefix lengths are /%d and /%d since start; changing them to /%d and /%d needs a restart", ErrConfig, e.src.bits4, e.src.bits6, b4, b6)
	}
	if snap.fnPorts == [2]uint16{} {
		snap.fnPorts = [2]uint16{1024, 65535}
	}
	if err := checkPorts(snap.fnPorts); err != nil {
		return fmt.Errorf("%w: FULLNAT ports: %w", ErrConfig, err)
	}
	for _, a := range cfg.FullNATPool {
		fam := 0
		if a.Is6() && !a.Is4In6() {
			fam = 1
		}
		snap.fullnat[fam], snap.hasFull[fam] = addr16(a), true
		snap.owned[addr16(a)] = true
	}
	for _, a := range cfg.FullNATTakeover {
		snap.owned[addr16(a)] = true
	}
	seen := map[svcKey]*service{}
	for i, sc := range cfg.Services {
		if sc.Fwmark != 0 {
			if !sc.VIP.IsUnspecified() || sc.Port != 0 || sc.Proto != 0 || sc.Mode == ModeL7 || sc.OnePacket {
				return fmt.Errorf("%w: service %d: firewall-mark service %d: its VIP must be 0.0.0.0 or :: (the family), port and protocol 0, not l7, not one-packet", ErrConfig, i, sc.Fwmark)
			}
		} else if sc.Proto != packet.ProtoTCP && sc.Proto != packet.ProtoUDP {
			return fmt.Errorf("%w: service %d: protocol %d: must be TCP (6) or UDP (17)", ErrConfig, i, sc.Proto)
		}
		if !sc.VIP.IsValid() {
			return fmt.Errorf("%w: service %d: no VIP", ErrConfig, i)
		}
		k := keyOf(sc)
		if seen[k] != nil {
			return fmt.Errorf("%w: service %s listed twice", ErrConfig, serviceName(sc))
		}
		fam := 0
		if sc.VIP.Is6() && !sc.VIP.Is4In6() {
			fam = 1
		}
		if sc.OnePacket && (sc.Proto != packet.ProtoUDP || sc.Mode != ModeNAT && sc.Mode != ModeDR || sc.Port == 0) {
			return fmt.Errorf("%w: service %v:%d: one-packet scheduling is for UDP services of a port in NAT or DR mode (a real server's answer is translated back by its source, to the service's port)", ErrConfig, sc.VIP, sc.Port)
		}
		if sc.Port == 0 && sc.Fwmark == 0 && sc.Persistence == 0 {
			return fmt.Errorf("%w: service %v port 0 (every port) must be persistent, as IPVS's: give it a persistence time", ErrConfig, sc.VIP)
		}
		if sc.Mode == ModeDR {
			for _, b := range sc.Backends {
				if b.Port != sc.Port {
					return fmt.Errorf("%w: service %v:%d is direct routing: real server %v's port must be the VIP's (%d)", ErrConfig, sc.VIP, sc.Port, netip.AddrPortFrom(b.Addr, b.Port), sc.Port)
				}
			}
		}
		if sc.FlowLog.Every > 0 && (e.flowLogger == nil || sc.OnePacket) {
			return fmt.Errorf("%w: service %s: flow logs need a flow logger, and flows (not one-packet scheduling)", ErrConfig, serviceName(sc))
		}
		if sc.Mode == ModeFullNAT && !snap.hasFull[fam] {
			return fmt.Errorf("%w: service %v:%d is FULLNAT but the FULLNAT pool has no address of its family", ErrConfig, sc.VIP, sc.Port)
		}
		svc := e.scheds[k]
		if svc == nil || svc.cfg.Scheduler != sc.Scheduler || svc.cfg.Sched != sc.Sched {
			s, err := sched.New(sc.Scheduler, sc.Sched)
			if err != nil {
				return fmt.Errorf("%w: service %v:%d: %w", ErrConfig, sc.VIP, sc.Port, err)
			}
			st, ok := e.stats[serviceName(sc)]
			if !ok {
				st = e.newStat()
			}
			// A new scheduler (ipvsadm -E -s): the backends keep their
			// owners, so their counters and flows carry over (below).
			backends := map[uint64]*owner{}
			if svc != nil {
				maps.Copy(backends, svc.backends)
			}
			lines := &lineLimit{}
			if svc != nil {
				lines = svc.lines
			}
			svc = &service{sched: s, stat: st, backends: backends, lines: lines}
		} else {
			// The same scheduler, so workers still on the old snapshot
			// may pick a backend added here as soon as the scheduler is
			// updated below; they look for its owner in the old map (a
			// copy: this Update must not write a map they read) and drop
			// the packet if it is not there yet (see newServiceFlow).
			svc = &service{sched: svc.sched, stat: svc.stat, backends: maps.Clone(svc.backends), lines: svc.lines}
		}
		svc.cfg, svc.key, svc.name = sc, k, serviceName(sc)
		svc.up = map[uint64]bool{}
		if sc.Persistence > 0 {
			svc.persist = max(1, int64(sc.Persistence/e.tick))
		}
		bits := 128
		if sc.VIP.Is4() {
			bits = 32
		}
		if sc.PersistMask < 0 || sc.PersistMask > bits {
			return fmt.Errorf("%w: service %v:%d: persistence netmask /%d: must be 0..%d", ErrConfig, sc.VIP, sc.Port, sc.PersistMask, bits)
		}
		for _, b := range sc.Backends {
			svc.up[sched.Backend{Addr: addr16(b.Addr), Port: b.Port}.ID()] = !b.Down
			if b.Addr.Is4() != sc.VIP.Is4() {
				return fmt.Errorf("%w: service %v:%d: backend %v: address family differs from the VIP's", ErrConfig, sc.VIP, sc.Port, b.Addr)
			}
		}
		seen[k] = svc // its scheduler is updated below, once everything validated
	}
	newOwners := 0
	for _, m := range cfg.Masquerade {
		if e.masqs[m.key()] == nil {
			newOwners++
		}
	}
	for _, svc := range seen {
		for _, b := range svc.cfg.Backends {
			if svc.backends[sched.Backend{Addr: addr16(b.Addr), Port: b.Port}.ID()] == nil {
				newOwners++
			}
		}
	}
	if made := len(*e.owners.Load()) - 1; made+newOwners > maxOwners {
		return fmt.Errorf("%w: %d backends and masquerade rules made since start, %d more asked; the limit is %d: restart to reset it", ErrConfig, made, newOwners, maxOwners)
	}
	for st, t := range snap.timeout {
		if t < 0 || t > math.MaxInt32 {
			return fmt.Errorf("%w: the %v timeout is %d clock ticks; it must be 0 to 2^31-1 (a longer tick, or a shorter timeout)", ErrConfig, tcpState(st), t)
		}
	}
	for i, m := range cfg.Masquerade {
		if m.From.IsValid() == m.Into.IsValid() || !m.To.IsValid() || m.Subnet().Addr().Is4() != m.To.Is4() {
			return fmt.Errorf("%w: masquerade rule %d: needs one subnet (From or Into) and an address of the same family", ErrConfig, i)
		}
		if m.Ports != [2]uint16{} {
			if err := checkPorts(m.Ports); err != nil {
				return fmt.Errorf("%w: masquerade rule %d: %w", ErrConfig, i, err)
			}
		}
	}
	backends := map[svcKey][]sched.Backend{}
	for k, svc := range seen {
		bs := make([]sched.Backend, len(svc.cfg.Backends))
		for j, b := range svc.cfg.Backends {
			bs[j] = sched.Backend{Addr: addr16(b.Addr), Port: b.Port, Weight: b.Weight, Down: b.Down, Upper: b.Upper, Lower: b.Lower}
		}
		// Checked here, not left to the Update below: a scheduler
		// shared with the live snapshot must not change unless the
		// whole configuration goes in.
		if err := svc.sched.Check(bs); err != nil {
			return fmt.Errorf("%w: service %v:%d: %w", ErrConfig, svc.cfg.VIP, svc.cfg.Port, err)
		}
		backends[k] = bs
	}
	for i, m := range cfg.Marks {
		switch {
		case m.Mark == 0 || !m.Dst.IsValid() || m.Dst.Addr().Is4In6() || m.Ports[0] > m.Ports[1] ||
			m.Proto != 0 && m.Proto != packet.ProtoTCP && m.Proto != packet.ProtoUDP:
			return fmt.Errorf("%w: mark rule %d: needs a mark of 1 or more, a destination, TCP, UDP or both, and a port range low to high", ErrConfig, i)
		case m.Dst.Bits() < m.Dst.Addr().BitLen()-8:
			return fmt.Errorf("%w: mark rule %d: destination %v has more than %d addresses", ErrConfig, i, m.Dst, MaxMarkAddrs)
		}
	}
	// Everything validated: commit.
	if e.flowCounts.Load() == nil && slices.ContainsFunc(cfg.Services, func(s Service) bool { return s.FlowLog.Every > 0 }) {
		counts := make([]flowCounts, len(e.tab.flows))
		e.flowCounts.Store(&counts)
	}
	for k, svc := range seen {
		if err := svc.sched.Update(backends[k]); err != nil {
			// Update fails only where Check does, which passed.
			return fmt.Errorf("%w: service %v:%d: %w (after its check passed: the configuration is partly applied)", ErrConfig, svc.cfg.VIP, svc.cfg.Port, err)
		}
		for _, d := range svc.sched.Dests() {
			own := svc.backends[d.ID()]
			if own == nil {
				own = e.newOwner()
				own.dest.Store(d)
				svc.backends[d.ID()] = own
				continue
			}
			if old := own.dest.Load(); old != d {
				// The scheduler changed (or dropped the backend's Dest
				// while it was out of the set): the new Dest takes over
				// the connection counts, and the flows account against
				// it from now on. Workers that loaded the old Dest just
				// before may still count on it: it stays on the owner's
				// stale list, drained again by Expire.
				own.dest.Store(d)
				if len(own.stale) == 0 {
					e.staleOwners = append(e.staleOwners, own)
				}
				own.stale = append(own.stale, staleDest{old, e.epoch.Add(1)})
				own.drainStale(0)
			}
		}
		for _, own := range svc.backends {
			own.svc.Store(svc)
		}
		services[k] = svc
		if k.mark == 0 {
			snap.owned[k.addr] = true
		}
		if old := e.scheds[k]; old != nil && old.persist > 0 && (svc.persist == 0 || old.cfg.PersistMask != svc.cfg.PersistMask) {
			// Flows release their template with the settings in force
			// when they end: templates made under other ones would keep
			// their connections, and their client network, for ever.
			e.persist.forget(k)
		}
		e.scheds[k] = svc
		e.stats[serviceName(svc.cfg)] = svc.stat
	}
	for _, m := range cfg.Masquerade {
		own := e.masqs[m.key()]
		if own == nil {
			own = e.newOwner()
			e.masqs[m.key()] = own
		}
		ports := m.Ports
		if ports == [2]uint16{} {
			ports = [2]uint16{1024, 65535}
		}
		r := &masqRule{net: m.Subnet(), to: addr16(m.To), ports: ports, own: own}
		if m.Into.IsValid() {
			snap.masqInto = append(snap.masqInto, r)
		} else {
			snap.masq = append(snap.masq, r)
		}
		snap.masqAddr[r.to] = true
	}
	// Mark the backends that are gone (their flows drain, or are reset).
	for k, svc := range e.scheds {
		cur := services[k]
		for id, own := range svc.backends {
			_, configured := svc.up[id]
			own.gone.Store(cur != svc || !configured)
		}
	}
	snap.svcIndex = newSvcIndex(services)
	for k := range services {
		snap.portZero = snap.portZero || k.port == 0 && k.mark == 0
	}
	for _, m := range cfg.Marks {
		r := markRule{mark: m.Mark, dst: m.Dst.Masked(), proto: m.Proto, ports: m.Ports}
		if r.ports == [2]uint16{} {
			r.ports = [2]uint16{0, 65535}
		}
		for _, a := range m.Addrs() {
			snap.owned[addr16(a)] = true
		}
		fam := netip.IPv4Unspecified()
		if m.Dst.Addr().Is6() {
			fam = netip.IPv6Unspecified()
		}
		r.svc = services[svcKey{addr: addr16(fam), mark: m.Mark}]
		snap.marks = append(snap.marks, r)
	}
	reals := map[svcKey]*service{}
	serving := map[svcKey]int{} // how many services a backend serves
	// anyPort are the (address, protocol) of backends that a service of
	// every port reaches (port 0, or a firewall mark): an answer from
	// such an address names no one service by its source alone.
	anyPort := map[svcKey]bool{}
	for k, svc := range services {
		protos := []uint8{k.proto}
		if k.mark != 0 {
			protos = []uint8{packet.ProtoTCP, packet.ProtoUDP} // a mark's service takes both
		}
		for _, b := range svc.cfg.Backends {
			for _, proto := range protos {
				rk := svcKey{addr: addr16(b.Addr), port: b.Port, proto: proto}
				reals[rk] = svc
				serving[rk]++
				if k.port == 0 || b.Port == 0 {
					anyPort[svcKey{addr: rk.addr, proto: proto}] = true
				}
			}
			snap.realAddr[addr16(b.Addr)] = true
		}
	}
	snap.realServers = newSvcIndex(reals)
	// The answer of a backend that serves one service of one port names
	// the VIP and port to translate it from: only those are taken up by
	// their source (sloppy, one-packet).
	byItsSource := func(rk svcKey, svc *service) bool {
		return serving[rk] == 1 && svc.cfg.Mode == ModeNAT && svc.key.port != 0 && !anyPort[svcKey{addr: rk.addr, proto: rk.proto}]
	}
	sole := map[svcKey]*service{}
	ops := map[svcKey]*service{}
	for rk, svc := range reals {
		switch {
		case !byItsSource(rk, svc):
		case svc.cfg.OnePacket:
			ops[rk] = svc
		case svc.cfg.Sloppy:
			sole[rk] = svc
		}
	}
	snap.soleNAT = newSvcIndex(sole)
	snap.onePacket = newSvcIndex(ops)
	e.conf.Store(snap)
	e.cur = cfg
	return nil
}

// checkPorts validates an inclusive port range.
func checkPorts(r [2]uint16) error {
	if r[0] == 0 || r[0] > r[1] {
		return fmt.Errorf("range %d-%d: must be 1-65535, low to high", r[0], r[1])
	}
	return nil
}

func serviceName(s Service) string {
	if s.Fwmark != 0 {
		if s.VIP.Is6() {
			return fmt.Sprintf("fwm %d ipv6", s.Fwmark)
		}
		return fmt.Sprintf("fwm %d", s.Fwmark)
	}
	p := "tcp"
	if s.Proto == packet.ProtoUDP {
		p = "udp"
	}
	return p + " " + netip.AddrPortFrom(s.VIP, s.Port).String()
}

// maxOwners bounds the owners an engine makes over its life: a flow
// records its owner's id in 23 bits (flow.meta; ownerLogged is the 24th),
// and 0 means none.
const maxOwners = ownerLogged - 1

// newOwner makes an owner with its own counters and registers it in
// e.owners. Called under e.mu.
func (e *Engine) newOwner() *owner {
	old := *e.owners.Load()
	own := &owner{stat: e.newStat(), id: uint32(len(old))}
	// append writes past the end of what readers of old can see, or
	// copies: either way they never see the new element half-made.
	owners := append(old, own)
	e.owners.Store(&owners)
	return own
}

// ownerOf is the owner flow f counts against, or nil.
// The id is read first: an owner is in the list before any flow names it,
// so the list loaded after the id always holds it (loading the list first,
// a recycled flow could name an owner added since).
func (e *Engine) ownerOf(f *flow) *owner {
	id := f.owner()
	return (*e.owners.Load())[id]
}

// Advance moves the engine's clock to now (the gateway calls it from a
// ticker; tests pass a fake time), and draws the SYN proxy's secret when
// a new period begins.
func (e *Engine) Advance(now time.Duration) {
	e.clock.Store(int64(now / e.tick))
	e.rotateCookies()
}

// Flows returns the number of tracked flows.
func (e *Engine) Flows() int { return e.tab.len() }

// Capacity returns the flow table's size.
func (e *Engine) Capacity() int { return e.tab.capacity() }

// TableBytes returns the memory the flow table holds, allocated in full at
// New: the flow slab and the hash index; and, once a service logs its
// flows, their counts (flowCounts, 64 bytes a flow). Divided by Capacity
// it is the memory per flow.
func (e *Engine) TableBytes() int {
	n := e.tab.bytes()
	if c := e.flowCounts.Load(); c != nil {
		n += len(*c) * int(unsafe.Sizeof(flowCounts{}))
	}
	return n
}

// inside reports whether addr is inside the gateway: a real server, or in
// a masqueraded subnet (either direction's).
func (s *snapshot) inside(addr [16]byte) bool {
	if s.realAddr[addr] {
		return true
	}
	for _, m := range s.masq {
		if m.net.Contains(addrOf(addr)) {
			return true
		}
	}
	for _, m := range s.masqInto {
		if m.net.Contains(addrOf(addr)) {
			return true
		}
	}
	return false
}

// markRule is a Mark as the workers match it.
type markRule struct {
	mark  uint32
	dst   netip.Prefix
	proto uint8
	ports [2]uint16
	svc   *service
}

// markedService returns the firewall-mark service of the mark the rules
// give a new flow to dst, port and proto (the last matching rule's), or
// nil.
func (s *snapshot) markedService(dst [16]byte, port uint16, proto uint8) *service {
	a := addrOf(dst)
	var svc *service
	for i := range s.marks {
		r := &s.marks[i]
		if (r.proto == 0 || r.proto == proto) && port >= r.ports[0] && port <= r.ports[1] && r.dst.Contains(a) {
			svc = r.svc
		}
	}
	return svc
}
