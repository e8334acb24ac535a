package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vsgate/vsgate/gateway/connsync"
)

// Sync is the sync: block: the connection sync with peer gateways
// (gateway/connsync; IPVS's sync daemon).
type Sync struct {
	Listen netip.AddrPort
	Peers  []netip.AddrPort
	Key    string
	// Master and Backup are the roles at start (role: master, backup or
	// both); vsgate adm --start-daemon and --stop-daemon change them.
	Master, Backup bool
	Interval       time.Duration
	Refresh        time.Duration
	Rate           int
}

// MinSyncKey is the shortest sync key.
const MinSyncKey = 16

type fileSync struct {
	Listen   string   `yaml:"listen"`
	Peers    []string `yaml:"peers"`
	Key      string   `yaml:"key"`
	Role     string   `yaml:"role"`
	Interval string   `yaml:"interval"`
	Refresh  string   `yaml:"refresh"`
	Rate     string   `yaml:"rate"`
}

// sync converts the sync: block; nil when the file has none.
func (cv *conv) sync(fs *fileSync) *Sync {
	if !cv.f.has("sync") {
		return nil
	}
	s := &Sync{
		Interval: cv.duration("sync.interval", "sync interval", fs.Interval, connsync.DefaultInterval, false),
		Refresh:  cv.duration("sync.refresh", "sync refresh", fs.Refresh, connsync.DefaultRefresh, false),
		Rate:     int(cv.integer("sync.rate", "sync rate", fs.Rate, connsync.DefaultRate, 1, 1_000_000)),
		Key:      fs.Key,
	}
	s.Listen = cv.syncAddr("sync.listen", "sync listen address", fs.Listen)
	if fs.Listen == "" {
		cv.r.fail("sync.listen", "sync has no listen address",
			fmt.Sprintf("add the gateway's address its peers reach it on, such as listen: 198.18.2.1 (port %d by default)", connsync.DefaultPort))
	}
	for i, p := range fs.Peers {
		s.Peers = append(s.Peers, cv.syncAddr(fmt.Sprintf("sync.peers[%d]", i), "sync peer", p))
	}
	if len(fs.Peers) == 0 {
		cv.r.fail("sync.peers", "sync has no peers", "add the other gateways' sync addresses, such as peers: [198.18.2.2, 198.18.2.3]")
	}
	switch cv.enum("sync.role", fs.Role, "both", "both", "master", "backup") {
	case "both":
		s.Master, s.Backup = true, true
	case "master":
		s.Master = true
	case "backup":
		s.Backup = true
	}
	return s
}

// syncAddr parses an address with an optional port (connsync.DefaultPort).
func (cv *conv) syncAddr(path, what, s string) netip.AddrPort {
	if s == "" {
		return netip.AddrPort{}
	}
	a, port, ok := cv.hostPort(path, what, s)
	if !ok {
		return netip.AddrPort{}
	}
	if port == 0 {
		port = connsync.DefaultPort
	}
	return netip.AddrPortFrom(a, port)
}

// validateSync checks the sync: block.
func validateSync(c *Config, r *report) {
	s := c.Sync
	if s == nil && len(c.FullNAT.Takeover) > 0 {
		r.fail("fullnat.takeover", "fullnat.takeover without a sync: block",
			"add sync: (the peers whose flows this gateway continues), or remove takeover")
	}
	if s == nil || r.failedUnder("sync") {
		return
	}
	if len(s.Key) < MinSyncKey {
		r.fail("sync.key", fmt.Sprintf("sync key is %d bytes, under %d", len(s.Key), MinSyncKey),
			"set key: to a secret of 16 bytes or more, the same on every gateway (such as the output of: head -c 24 /dev/urandom | base64)")
	}
	if msg, fix := unicastProblem("sync listen address", s.Listen.Addr()); msg != "" {
		r.fail("sync.listen", msg, fix)
	}
	seen := map[netip.AddrPort]int{}
	for i, p := range s.Peers {
		path := fmt.Sprintf("sync.peers[%d]", i)
		switch {
		case p == s.Listen:
			r.fail(path, fmt.Sprintf("sync peer %v is this gateway's listen address", p), "list the other gateways only")
		case p.Addr().Is4() != s.Listen.Addr().Is4():
			r.fail(path, fmt.Sprintf("sync peer %v is not of listen's family (%v)", p, s.Listen.Addr()), "use peers of the listen address's family")
		}
		if j, dup := seen[p]; dup {
			r.fail(path, fmt.Sprintf("sync peer %v is listed twice (also peers[%d])", p, j), "keep one")
		}
		seen[p] = i
	}
	for i, a := range c.FullNAT.Takeover {
		path := fmt.Sprintf("fullnat.takeover[%d]", i)
		if msg, fix := unicastProblem("FULLNAT takeover address", a); msg != "" {
			r.fail(path, msg, fix)
		} else if slices.Contains(c.FullNAT.Pool, a) {
			r.fail(path, fmt.Sprintf("FULLNAT takeover address %v is in this gateway's own pool", a), "list the peer gateways' pool addresses only")
		}
	}
	if s.Interval > time.Second {
		r.fail("sync.interval", fmt.Sprintf("sync interval %v is over a second", s.Interval),
			"use a few milliseconds (default 5ms): a new flow waits this long before its peers know it")
	}
}

// yamlSync writes the sync: block for Config.YAML.
func yamlSync(s *Sync, w func(int, string, ...any), q func(string) string) {
	if s == nil {
		return
	}
	w(0, "sync:")
	w(1, "listen: %s", q(s.Listen.String()))
	var ps []string
	for _, p := range s.Peers {
		ps = append(ps, q(p.String()))
	}
	w(1, "peers: [%s]", strings.Join(ps, ", "))
	w(1, "key: %s", q(s.Key))
	role := "both"
	switch {
	case s.Master && !s.Backup:
		role = "master"
	case s.Backup && !s.Master:
		role = "backup"
	}
	w(1, "role: %s", role)
	w(1, "interval: %s", q(s.Interval.String()))
	w(1, "refresh: %s", q(s.Refresh.String()))
	w(1, "rate: %d", s.Rate)
}
