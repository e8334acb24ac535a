package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/vsgate/vsgate/bgp"
)

// BGP is the bgp: block: the embedded speaker that announces the VIPs to
// the routers in front (package bgp), and what a graceful stop does.
type BGP struct {
	Speaker bgp.Config
	// Prefixes are announced for as long as the gateway runs, whatever
	// the services' health: such as the default route the real servers'
	// router sends their replies back by.
	Prefixes []netip.Prefix
	// Drain is how long a graceful stop keeps forwarding after it has
	// withdrawn every route, so that packets the routers sent before they
	// moved the flows to the other gateways still get through.
	Drain time.Duration
}

// DefaultDrain is bgp.drain when the file does not set it.
const DefaultDrain = 2 * time.Second

// Service announce policies (Service.Announce).
const (
	AnnounceHealthy = "healthy" // while a real server is up (health checks)
	AnnounceAlways  = "always"  // while the gateway runs
	AnnounceNever   = "never"   // not announced by this service
)

type (
	fileBGP struct {
		AS           string        `yaml:"as"`
		RouterID     string        `yaml:"router_id"`
		HoldTime     string        `yaml:"hold_time"`
		Keepalive    string        `yaml:"keepalive"`
		ConnectRetry string        `yaml:"connect_retry"`
		Communities  []string      `yaml:"communities"`
		NextHop      []string      `yaml:"next_hop"`
		Announce     []string      `yaml:"announce"`
		Drain        string        `yaml:"drain"`
		Peers        []fileBGPPeer `yaml:"peers"`
	}
	fileBGPPeer struct {
		Address       string `yaml:"address"`
		AS            string `yaml:"as"`
		Port          string `yaml:"port"`
		Password      string `yaml:"password"`
		HoldTime      string `yaml:"hold_time"`
		Keepalive     string `yaml:"keepalive"`
		BFD           string `yaml:"bfd"`
		BFDInterval   string `yaml:"bfd_interval"`
		BFDMultiplier string `yaml:"bfd_multiplier"`
	}
)

// bgp converts the bgp: block; nil when the file has none.
func (cv *conv) bgp(fb *fileBGP) *BGP {
	if !cv.f.has("bgp") {
		return nil
	}
	b := &BGP{Drain: cv.duration("bgp.drain", "bgp drain", fb.Drain, DefaultDrain, true)}
	sp := &b.Speaker
	sp.AS = uint32(cv.integer("bgp.as", "bgp as", fb.AS, 0, 1, 1<<32-1))
	if fb.AS == "" {
		cv.r.fail("bgp.as", "bgp has no as", "add the gateway's AS number, such as as: 65010")
	}
	if fb.RouterID == "" {
		cv.r.fail("bgp.router_id", "bgp has no router_id",
			"add an IPv4 address unique among the routers, usually the gateway's own on the router's link, such as router_id: 198.18.4.2")
	} else {
		sp.RouterID = cv.addr("bgp.router_id", "bgp router_id", fb.RouterID, "")
	}
	sp.HoldTime = cv.duration("bgp.hold_time", "bgp hold_time", fb.HoldTime, bgp.DefaultHoldTime, false)
	sp.Keepalive = cv.duration("bgp.keepalive", "bgp keepalive", fb.Keepalive, bgp.DefaultKeepalive, false)
	sp.ConnectRetry = cv.duration("bgp.connect_retry", "bgp connect_retry", fb.ConnectRetry, bgp.DefaultConnectRetry, false)
	for i, s := range fb.Communities {
		c, err := bgp.ParseCommunity(s)
		if err != nil {
			cv.r.fail(fmt.Sprintf("bgp.communities[%d]", i), err.Error(), "write AS:value, such as 65010:100")
		}
		sp.Communities = append(sp.Communities, c)
	}
	for i, s := range fb.NextHop {
		sp.NextHop = append(sp.NextHop, cv.addr(fmt.Sprintf("bgp.next_hop[%d]", i), "bgp next_hop", s, ""))
	}
	for i, s := range fb.Announce {
		b.Prefixes = append(b.Prefixes, cv.prefix(fmt.Sprintf("bgp.announce[%d]", i), "bgp announce", s))
	}
	if len(fb.Peers) == 0 {
		cv.r.fail("bgp.peers", "bgp has no peers", "add the routers to announce to, such as peers: [{address: 198.18.4.1, as: 65000}]")
	}
	for i := range fb.Peers {
		sp.Peers = append(sp.Peers, cv.bgpPeer(fmt.Sprintf("bgp.peers[%d]", i), &fb.Peers[i]))
	}
	return b
}

func (cv *conv) bgpPeer(path string, fp *fileBGPPeer) bgp.Peer {
	var p bgp.Peer
	if fp.Address == "" {
		cv.r.fail(path+".address", "bgp peer has no address", "add the router's address on the gateway's link, such as address: 198.18.4.1")
	} else {
		p.Addr = cv.addr(path+".address", "bgp peer address", fp.Address, " and the port in port:")
	}
	if fp.AS == "" {
		cv.r.fail(path+".as", "bgp peer has no as", "add the router's AS number, such as as: 65000")
	}
	p.AS = uint32(cv.integer(path+".as", "bgp peer as", fp.AS, 0, 1, 1<<32-1))
	p.Port = uint16(cv.integer(path+".port", "bgp peer port", fp.Port, 0, 1, 65535))
	p.Password = fp.Password
	if len(p.Password) > 80 {
		cv.r.fail(path+".password", "bgp peer password is longer than 80 bytes (the kernel's TCP MD5 key limit)", "use a shorter one")
	}
	p.HoldTime = cv.duration(path+".hold_time", "bgp peer hold_time", fp.HoldTime, 0, true)
	p.Keepalive = cv.duration(path+".keepalive", "bgp peer keepalive", fp.Keepalive, 0, true)
	p.BFD = cv.boolean(path+".bfd", fp.BFD)
	p.BFDInterval = cv.duration(path+".bfd_interval", "bgp peer bfd_interval", fp.BFDInterval, 0, true)
	p.BFDMultiplier = int(cv.integer(path+".bfd_multiplier", "bgp peer bfd_multiplier", fp.BFDMultiplier, 0, 1, 255))
	if !p.BFD && (fp.BFDInterval != "" || fp.BFDMultiplier != "") {
		cv.r.fail(path+".bfd", "bfd_interval or bfd_multiplier without bfd: true", "add bfd: true, or remove them")
	}
	return p
}

// validateBGP checks the bgp: block against the rest of the file.
func validateBGP(c *Config, r *report) {
	b := c.BGP
	for i, s := range c.Services {
		switch s.Announce {
		case "", AnnounceHealthy, AnnounceAlways, AnnounceNever:
		default:
			r.fail(fmt.Sprintf("services[%d].announce", i), fmt.Sprintf("announce %q is not known", s.Announce), "use healthy, always or never")
		}
	}
	if b == nil {
		for i, s := range c.Services {
			if s.Announce != "" && s.Announce != AnnounceHealthy {
				r.fail(fmt.Sprintf("services[%d].announce", i), "announce without a bgp: block",
					"add bgp: (the routers to announce to), or remove announce")
			}
		}
		return
	}
	if r.failedUnder("bgp") {
		return
	}
	sp := b.Speaker
	if !sp.RouterID.Is4() {
		r.fail("bgp.router_id", fmt.Sprintf("bgp router_id %v is not an IPv4 address", sp.RouterID),
			"use an IPv4 address (BGP identifiers are 32 bits), even on an IPv6-only gateway")
	}
	fam := map[bool]bool{}
	for i, a := range sp.NextHop {
		p := fmt.Sprintf("bgp.next_hop[%d]", i)
		if msg, fix := unicastProblem("bgp next_hop", a); msg != "" {
			r.fail(p, msg, fix)
		} else if fam[a.Is4()] {
			r.fail(p, fmt.Sprintf("bgp next_hop has a second IPv%s address, %s", family(a), a), "keep one per family")
		}
		fam[a.Is4()] = true
	}
	peers := map[netip.Addr]int{}
	for i, p := range sp.Peers {
		path := fmt.Sprintf("bgp.peers[%d]", i)
		if j, dup := peers[p.Addr]; dup {
			r.fail(path+".address", fmt.Sprintf("bgp peer %v is listed twice (also peers[%d])", p.Addr, j), "keep one")
		}
		peers[p.Addr] = i
		if msg, fix := unicastProblem("bgp peer address", p.Addr); msg != "" {
			r.fail(path+".address", msg, fix)
		}
		// A problem is reported where the value was set: the peer's own
		// timer, or bgp's default.
		hold, ka, holdAt, kaAt := sp.HoldTime, sp.Keepalive, "bgp.hold_time", "bgp.keepalive"
		if p.HoldTime != 0 {
			hold, holdAt = p.HoldTime, path+".hold_time"
		}
		if p.Keepalive != 0 {
			ka, kaAt = p.Keepalive, path+".keepalive"
		}
		if r.failed(holdAt) || r.failed(kaAt) {
			continue
		}
		switch {
		case hold < 3*time.Second || hold%time.Second != 0:
			r.fail(holdAt, fmt.Sprintf("bgp hold time %v is not a whole number of seconds of 3s or more", hold),
				"use 3s or more (RFC 4271), in whole seconds")
		case ka > hold/3 || ka%time.Second != 0:
			r.fail(kaAt, fmt.Sprintf("bgp keepalive %v is not a whole number of seconds at most a third of the hold time %v", ka, hold),
				fmt.Sprintf("use at most %v", (hold/3).Truncate(time.Second)))
		}
		if p.BFD && p.BFDInterval != 0 && p.BFDInterval < time.Millisecond {
			r.fail(path+".bfd_interval", fmt.Sprintf("bgp peer bfd_interval %v is under a millisecond", p.BFDInterval), "use 10ms or more")
		}
	}
	if sp.ConnectRetry%time.Second != 0 {
		r.fail("bgp.connect_retry", fmt.Sprintf("bgp connect_retry %v is not a whole number of seconds", sp.ConnectRetry), "use whole seconds, such as 2s")
	}
	for i, s := range c.Services {
		if s.Announce == AnnounceNever {
			continue
		}
		if !hasPeerOfFamily(sp.Peers, s.VIP.Addr().Is4()) {
			r.fail(fmt.Sprintf("services[%d].announce", i),
				fmt.Sprintf("service %v is announced, and no bgp peer is IPv%s (each peer carries its own family's routes)", s.VIP, family(s.VIP.Addr())),
				fmt.Sprintf("add an IPv%s peer, or set announce: never", family(s.VIP.Addr())))
		}
	}
	for i, p := range b.Prefixes {
		if !hasPeerOfFamily(sp.Peers, p.Addr().Is4()) {
			r.fail(fmt.Sprintf("bgp.announce[%d]", i),
				fmt.Sprintf("%v is announced, and no bgp peer is IPv%s (each peer carries its own family's routes)", p, family(p.Addr())),
				fmt.Sprintf("add an IPv%s peer, or remove it", family(p.Addr())))
		}
	}
}

func hasPeerOfFamily(ps []bgp.Peer, v4 bool) bool {
	for _, p := range ps {
		if p.Addr.Is4() == v4 {
			return true
		}
	}
	return false
}

// yamlBGP writes the bgp: block for Config.YAML.
func yamlBGP(b *BGP, w func(int, string, ...any), q func(string) string) {
	if b == nil {
		return
	}
	dur := func(d time.Duration) string { return q(d.String()) }
	sp := b.Speaker
	w(0, "bgp:")
	w(1, "as: %d", sp.AS)
	w(1, "router_id: %s", q(sp.RouterID.String()))
	w(1, "hold_time: %s", dur(sp.HoldTime))
	w(1, "keepalive: %s", dur(sp.Keepalive))
	w(1, "connect_retry: %s", dur(sp.ConnectRetry))
	w(1, "drain: %s", dur(b.Drain))
	list := func(key string, items []string) {
		if len(items) > 0 {
			for i := range items {
				items[i] = q(items[i])
			}
			w(1, "%s: [%s]", key, strings.Join(items, ", "))
		}
	}
	var cs, nh, ann []string
	for _, c := range sp.Communities {
		cs = append(cs, bgp.FormatCommunity(c))
	}
	for _, a := range sp.NextHop {
		nh = append(nh, a.String())
	}
	for _, p := range b.Prefixes {
		ann = append(ann, p.String())
	}
	list("communities", cs)
	list("next_hop", nh)
	list("announce", ann)
	w(1, "peers:")
	for _, p := range sp.Peers {
		w(2, "- address: %s", q(p.Addr.String()))
		w(3, "as: %d", p.AS)
		if p.Port != 0 {
			w(3, "port: %d", p.Port)
		}
		if p.Password != "" {
			w(3, "password: %s", q(p.Password))
		}
		if p.HoldTime != 0 {
			w(3, "hold_time: %s", dur(p.HoldTime))
		}
		if p.Keepalive != 0 {
			w(3, "keepalive: %s", dur(p.Keepalive))
		}
		if p.BFD {
			w(3, "bfd: true")
			if p.BFDInterval != 0 {
				w(3, "bfd_interval: %s", dur(p.BFDInterval))
			}
			if p.BFDMultiplier != 0 {
				w(3, "bfd_multiplier: %d", p.BFDMultiplier)
			}
		}
	}
}
