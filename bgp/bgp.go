package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// Defaults: short timers, so that a router drops a dead gateway's routes
// within seconds (a process that dies closes its sessions at once; the
// hold time covers a machine or link that stops answering).
const (
	DefaultHoldTime     = 3 * time.Second
	DefaultKeepalive    = time.Second
	DefaultConnectRetry = 2 * time.Second
	DefaultPort         = 179
)

// Config is the speaker's configuration.
type Config struct {
	AS       uint32
	RouterID netip.Addr // IPv4, unique among the routers
	// HoldTime and Keepalive are the default timers of every peer
	// (0: DefaultHoldTime, DefaultKeepalive).
	HoldTime, Keepalive time.Duration
	// ConnectRetry is how long the speaker waits between attempts to
	// reach a peer that is not up (0: DefaultConnectRetry).
	ConnectRetry time.Duration
	// Communities go on every announced route (RFC 1997, AS<<16|value).
	Communities []uint32
	// NextHop, at most one per family, is the next hop announced for
	// that family's routes; none means the session's own address.
	NextHop []netip.Addr
	Peers   []Peer
}

// Peer is one BGP neighbour.
type Peer struct {
	Addr     netip.Addr
	AS       uint32
	Port     uint16 // 0: DefaultPort
	Password string // TCP MD5 (RFC 2385); empty for none
	// HoldTime and Keepalive override Config's when not zero.
	HoldTime, Keepalive time.Duration
	// BFD runs a BFD session (RFC 5880, single hop) beside the BGP one:
	// the peer drops the gateway's routes as soon as BFD says it is
	// down, in BFDInterval × BFDMultiplier.
	BFD           bool
	BFDInterval   time.Duration // 0: 300 ms
	BFDMultiplier int           // 0: 3
}

// Validate reports the first thing wrong with c.
func (c *Config) Validate() error {
	switch {
	case c.AS == 0:
		return errors.New("bgp: as is 0")
	case !c.RouterID.Is4():
		return fmt.Errorf("bgp: router id %v is not an IPv4 address", c.RouterID)
	case len(c.Peers) == 0:
		return errors.New("bgp: no peers")
	}
	fams := map[bool]bool{}
	for _, nh := range c.NextHop {
		if fams[nh.Is4()] {
			return fmt.Errorf("bgp: two next hops for IPv%s", family(nh))
		}
		fams[nh.Is4()] = true
	}
	seen := map[netip.Addr]bool{}
	for _, p := range c.Peers {
		switch {
		case !p.Addr.IsValid():
			return errors.New("bgp: a peer has no address")
		case seen[p.Addr]:
			return fmt.Errorf("bgp: peer %v is listed twice", p.Addr)
		case p.AS == 0:
			return fmt.Errorf("bgp: peer %v: as is 0", p.Addr)
		}
		seen[p.Addr] = true
		if h, k := p.timers(c); h < 3*time.Second || k <= 0 || k > h/3 {
			return fmt.Errorf("bgp: peer %v: hold time %v and keepalive %v: the hold time must be at least 3s (RFC 4271) and the keepalive at most a third of it", p.Addr, h, k)
		}
	}
	return nil
}

// timers are p's hold time and keepalive.
func (p *Peer) timers(c *Config) (hold, keepalive time.Duration) {
	hold, keepalive = c.HoldTime, c.Keepalive
	if p.HoldTime != 0 {
		hold = p.HoldTime
	}
	if p.Keepalive != 0 {
		keepalive = p.Keepalive
	}
	return hold, keepalive
}

// ParseCommunity parses a community as "AS:value" (each 0..65535) or a
// plain 32-bit number.
func ParseCommunity(s string) (uint32, error) {
	if as, v, ok := strings.Cut(s, ":"); ok {
		a, err1 := strconv.ParseUint(as, 10, 16)
		b, err2 := strconv.ParseUint(v, 10, 16)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("community %q: want AS:value, each 0..65535", s)
		}
		return uint32(a)<<16 | uint32(b), nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("community %q: want AS:value, each 0..65535", s)
	}
	return uint32(n), nil
}

// FormatCommunity is c as "AS:value".
func FormatCommunity(c uint32) string { return fmt.Sprintf("%d:%d", c>>16, c&0xffff) }

// Speaker is a running BGP speaker. Methods are safe for concurrent use.
type Speaker struct {
	cfg Config
	srv *server.BgpServer
	log *slog.Logger

	mu        sync.Mutex
	announced map[netip.Prefix]bool
	closed    bool
}

// Start starts the speaker and begins dialling its peers; it announces
// nothing until Announce.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (_ *Speaker, err error) {
	if cfg.HoldTime == 0 {
		cfg.HoldTime = DefaultHoldTime
	}
	if cfg.Keepalive == 0 {
		cfg.Keepalive = DefaultKeepalive
	}
	if cfg.ConnectRetry == 0 {
		cfg.ConnectRetry = DefaultConnectRetry
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// gobgp logs every state change and message at debug; vsgate logs
	// the session changes itself (watch), so gobgp's own go at warn.
	lvl := &slog.LevelVar{}
	lvl.Set(slog.LevelWarn)
	s := &Speaker{cfg: cfg, log: log, announced: map[netip.Prefix]bool{},
		srv: server.NewBgpServer(server.LoggerOption(log.With("component", "bgp"), lvl))}
	go s.srv.Serve()
	defer func() {
		if err != nil {
			s.srv.Stop()
		}
	}()
	if err := s.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: cfg.AS, RouterId: cfg.RouterID.String(),
		ListenPort: -1, // dial only: no privileged port, nothing to accept
	}}); err != nil {
		return nil, fmt.Errorf("bgp: %w", err)
	}
	// Accept no route from any peer: a router's announcements must not
	// change what the gateway does, nor pass through it to another peer.
	// (The global import policy also sees the gateway's own routes, so
	// it rejects by route type rather than by default.)
	var stmts []*api.Statement
	for _, rt := range []api.Conditions_RouteType{api.Conditions_ROUTE_TYPE_EXTERNAL, api.Conditions_ROUTE_TYPE_INTERNAL} {
		stmts = append(stmts, &api.Statement{Name: "vsgate-reject-" + rt.String(),
			Conditions: &api.Conditions{RouteType: rt},
			Actions:    &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_REJECT}})
	}
	pol := &api.Policy{Name: "vsgate-no-import", Statements: stmts}
	if err := s.srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: pol}); err != nil {
		return nil, fmt.Errorf("bgp: import policy: %w", err)
	}
	if err := s.srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name: "global", Direction: api.PolicyDirection_POLICY_DIRECTION_IMPORT,
		Policies: []*api.Policy{{Name: pol.Name}}, DefaultAction: api.RouteAction_ROUTE_ACTION_ACCEPT,
	}}); err != nil {
		return nil, fmt.Errorf("bgp: import policy: %w", err)
	}
	if err := s.srv.WatchEvent(context.Background(), server.WatchEventMessageCallbacks{
		OnPeerUpdate: s.peerEvent,
	}, server.WatchPeer()); err != nil {
		return nil, fmt.Errorf("bgp: %w", err)
	}
	for _, p := range cfg.Peers {
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.apiPeer(p)}); err != nil {
			return nil, fmt.Errorf("bgp: peer %v: %w", p.Addr, err)
		}
	}
	return s, nil
}

func (s *Speaker) apiPeer(p Peer) *api.Peer {
	hold, ka := p.timers(&s.cfg)
	fam := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	if p.Addr.Is6() {
		fam.Afi = api.Family_AFI_IP6
	}
	port := uint32(p.Port)
	if port == 0 {
		port = DefaultPort
	}
	ap := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: p.Addr.String(), PeerAsn: p.AS, AuthPassword: p.Password},
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry:      uint64(max(s.cfg.ConnectRetry/time.Second, 1)),
			HoldTime:          uint64(hold / time.Second),
			KeepaliveInterval: uint64(max(ka/time.Second, 1)),
			// Withdrawals and announcements go out at once, not batched
			// for eBGP's default 30 s.
			MinimumAdvertisementInterval: 0,
			IdleHoldTimeAfterReset:       1,
		}},
		Transport: &api.Transport{RemotePort: port},
		AfiSafis:  []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: fam, Enabled: true}}},
	}
	if p.BFD {
		iv, mult := p.BFDInterval, p.BFDMultiplier
		if iv == 0 {
			iv = 300 * time.Millisecond
		}
		if mult == 0 {
			mult = 3
		}
		ap.Bfd = &api.BfdPeerConfig{Enabled: true,
			DesiredMinimumTxInterval: uint32(iv / time.Microsecond), RequiredMinimumReceive: uint32(iv / time.Microsecond),
			DetectionMultiplier: uint32(mult)}
	}
	return ap
}

func (s *Speaker) peerEvent(ev *apiutil.WatchEventMessage_PeerEvent, _ time.Time) {
	if ev.Type != apiutil.PEER_EVENT_STATE {
		return
	}
	st := ev.Peer.State
	s.log.Info("bgp peer", "peer", st.NeighborAddress, "as", st.PeerASN, "state", strings.TrimPrefix(st.SessionState.String(), "BGP_FSM_"))
}

// Announce makes routes the whole set of prefixes announced: new ones are
// announced, ones no longer in it withdrawn.
func (s *Speaker) Announce(routes []netip.Prefix) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("bgp: speaker stopped")
	}
	want := map[netip.Prefix]bool{}
	var add, del []*apiutil.Path
	for _, r := range routes {
		r = r.Masked()
		want[r] = true
		if !s.announced[r] {
			p, err := s.path(r)
			if err != nil {
				return err
			}
			add = append(add, p)
		}
	}
	for r := range s.announced {
		if !want[r] {
			p, err := s.path(r)
			if err != nil {
				return err
			}
			del = append(del, p)
		}
	}
	if len(add) > 0 {
		if _, err := s.srv.AddPath(apiutil.AddPathRequest{Paths: add}); err != nil {
			return fmt.Errorf("bgp: announce: %w", err)
		}
	}
	if len(del) > 0 {
		if err := s.srv.DeletePath(apiutil.DeletePathRequest{Paths: del}); err != nil {
			return fmt.Errorf("bgp: withdraw: %w", err)
		}
	}
	for _, p := range add {
		s.announced[prefixOf(p)] = true
	}
	for _, p := range del {
		delete(s.announced, prefixOf(p))
	}
	if len(add)+len(del) > 0 {
		s.log.Info("bgp routes", "announce", prefixes(add), "withdraw", prefixes(del))
	}
	return nil
}

// Withdraw takes back every route.
func (s *Speaker) Withdraw() error { return s.Announce(nil) }

// path is the route for prefix r, with the configured attributes.
func (s *Speaker) path(r netip.Prefix) (*apiutil.Path, error) {
	nlri, err := bgp.NewIPAddrPrefix(r)
	if err != nil {
		return nil, fmt.Errorf("bgp: %v: %w", r, err)
	}
	nh := netip.IPv4Unspecified()
	fam := bgp.RF_IPv4_UC
	if r.Addr().Is6() {
		nh, fam = netip.IPv6Unspecified(), bgp.RF_IPv6_UC
	}
	for _, a := range s.cfg.NextHop {
		if a.Is4() == r.Addr().Is4() {
			nh = a
		}
	}
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	if fam == bgp.RF_IPv4_UC {
		a, err := bgp.NewPathAttributeNextHop(nh)
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, a)
	} else {
		a, err := bgp.NewPathAttributeMpReachNLRI(fam, []bgp.PathNLRI{{NLRI: nlri}}, nh)
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, a)
	}
	if len(s.cfg.Communities) > 0 {
		attrs = append(attrs, bgp.NewPathAttributeCommunities(s.cfg.Communities))
	}
	return &apiutil.Path{Family: fam, Nlri: nlri, Attrs: attrs}, nil
}

func prefixOf(p *apiutil.Path) netip.Prefix {
	pf, _ := netip.ParsePrefix(p.Nlri.String())
	return pf
}

func prefixes(ps []*apiutil.Path) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Nlri.String())
	}
	return out
}

// Routes lists the announced prefixes, sorted.
func (s *Speaker) Routes() []netip.Prefix {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []netip.Prefix
	for r := range s.announced {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return out
}

// PeerState is what one session is doing.
type PeerState struct {
	Addr  netip.Addr
	AS    uint32
	State string // IDLE, CONNECT, ACTIVE, OPENSENT, OPENCONFIRM, ESTABLISHED
	// Since is when the session last came up or went down (zero before
	// either).
	Since time.Time
	// Sent is how many routes were advertised to the peer.
	Sent     uint64
	HoldTime time.Duration // negotiated, once established
	BFD      string        // the BFD session's state, or "" without BFD
}

// Peers lists the sessions in configuration order.
func (s *Speaker) Peers() []PeerState {
	byAddr := map[netip.Addr]PeerState{}
	_ = s.srv.ListPeer(context.Background(), &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		a, err := netip.ParseAddr(p.GetConf().GetNeighborAddress())
		if err != nil {
			return
		}
		ps := PeerState{Addr: a, AS: p.GetConf().GetPeerAsn(), State: stateName(p.GetState().GetSessionState())}
		ts := p.GetTimers().GetState()
		if ps.State == "ESTABLISHED" && ts.GetUptime() != nil {
			ps.Since = ts.GetUptime().AsTime()
		} else if ts.GetDowntime() != nil && ts.GetDowntime().AsTime().Unix() > 0 {
			ps.Since = ts.GetDowntime().AsTime()
		}
		ps.HoldTime = time.Duration(ts.GetNegotiatedHoldTime()) * time.Second
		for _, af := range p.GetAfiSafis() {
			ps.Sent += af.GetState().GetAdvertised()
		}
		if b := p.GetState().GetBfdState(); b != nil && s.bfd(a) {
			ps.BFD = strings.TrimPrefix(b.GetSessionState().String(), "BFD_SESSION_STATE_")
		}
		byAddr[a] = ps
	})
	var out []PeerState
	for _, p := range s.cfg.Peers {
		ps, ok := byAddr[p.Addr]
		if !ok {
			ps = PeerState{Addr: p.Addr, AS: p.AS, State: "IDLE"}
		}
		out = append(out, ps)
	}
	return out
}

// bfd reports whether peer a runs BFD.
func (s *Speaker) bfd(a netip.Addr) bool {
	for _, p := range s.cfg.Peers {
		if p.Addr == a {
			return p.BFD
		}
	}
	return false
}

func stateName(st api.PeerState_SessionState) string {
	return strings.TrimPrefix(st.String(), "SESSION_STATE_")
}

// Close ends the sessions with a Cease notification, on which each peer
// drops every route the gateway announced at once, and stops the speaker.
func (s *Speaker) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	clear(s.announced)
	s.mu.Unlock()
	// Stop sends the Cease (StopBgp) and stops the BFD server; calling
	// StopBgp first as well would make Stop log that BGP was not running.
	s.srv.Stop()
	return nil
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "4"
	}
	return "6"
}
