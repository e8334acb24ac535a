package config

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/vsgate/vsgate/bgp"
)

const bgpFile = `bgp:
  as: 65010
  router_id: 198.18.4.2
  hold_time: 6s
  keepalive: 2s
  communities: ["65010:100"]
  announce: [0.0.0.0/0, "::/0"]
  drain: 1s
  peers:
    - {address: 198.18.4.1, as: 65000, password: s3cret, bfd: true, bfd_interval: 100ms}
    - {address: 198.18.2.254, as: 65001, hold_time: 3s, keepalive: 1s}
    - {address: "2001:db8:4::1", as: 65000}
services:
  - {proto: tcp, vip: 198.18.0.10:80, scheduler: mh, backends: [{addr: 198.18.2.11}]}
  - {proto: tcp, vip: 198.18.0.11:80, sloppy: false, announce: always, backends: [{addr: 198.18.2.12}]}
  - {proto: udp, vip: "[2001:db8::10]:53", announce: never, backends: [{addr: "2001:db8:2::11"}]}
`

// TestBGP: the bgp block as parsed, sloppy on by default behind it, and
// the YAML dump parsing back to the same configuration.
func TestBGP(t *testing.T) {
	c, err := Parse([]byte(bgpFile), "bgp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &BGP{
		Speaker: bgp.Config{
			AS: 65010, RouterID: netip.MustParseAddr("198.18.4.2"), HoldTime: 6 * time.Second, Keepalive: 2 * time.Second,
			ConnectRetry: bgp.DefaultConnectRetry, Communities: []uint32{65010<<16 | 100},
			Peers: []bgp.Peer{
				{Addr: netip.MustParseAddr("198.18.4.1"), AS: 65000, Password: "s3cret", BFD: true, BFDInterval: 100 * time.Millisecond},
				{Addr: netip.MustParseAddr("198.18.2.254"), AS: 65001, HoldTime: 3 * time.Second, Keepalive: time.Second},
				{Addr: netip.MustParseAddr("2001:db8:4::1"), AS: 65000},
			},
		},
		Prefixes: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")},
		Drain:    time.Second,
	}
	if !reflect.DeepEqual(c.BGP, want) {
		t.Errorf("bgp = %+v\nwant %+v", c.BGP, want)
	}
	if s := c.Services; !s[0].Sloppy || s[1].Sloppy || !s[2].Sloppy {
		t.Errorf("sloppy = %t %t %t, want true (default behind bgp), false (given), true", s[0].Sloppy, s[1].Sloppy, s[2].Sloppy)
	}
	if s := c.Services; s[0].Announce != AnnounceHealthy || s[1].Announce != AnnounceAlways || s[2].Announce != AnnounceNever {
		t.Errorf("announce = %s %s %s", s[0].Announce, s[1].Announce, s[2].Announce)
	}
	roundTrip(t, c)
	if err := (&bgp.Config{}).Validate(); err == nil {
		t.Error("the zero bgp.Config is valid")
	}
	if err := c.BGP.Speaker.Validate(); err != nil {
		t.Errorf("the speaker refuses what config accepted: %v", err)
	}

	// Without bgp, sloppy stays off by default.
	c, err = Parse([]byte("services:\n  - {proto: tcp, vip: 198.18.0.10:80}\n"), "nobgp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.BGP != nil || c.Services[0].Sloppy {
		t.Errorf("without bgp: bgp %v, sloppy %t", c.BGP, c.Services[0].Sloppy)
	}
}

// TestSync: the sync block as parsed, with defaults, and the dump parsing
// back to the same configuration.
func TestSync(t *testing.T) {
	c, err := Parse([]byte(`sync:
  listen: 198.18.2.1
  peers: [198.18.2.2, "198.18.2.3:9000"]
  key: "0123456789abcdef"
  role: master
fullnat: {pool: [198.18.0.31], takeover: [198.18.0.32, 198.18.0.33]}
`), "sync.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Sync{Listen: netip.MustParseAddrPort("198.18.2.1:8848"),
		Peers: []netip.AddrPort{netip.MustParseAddrPort("198.18.2.2:8848"), netip.MustParseAddrPort("198.18.2.3:9000")},
		Key:   "0123456789abcdef", Master: true, Interval: 5 * time.Millisecond, Refresh: 10 * time.Second, Rate: 10000}
	if !reflect.DeepEqual(c.Sync, want) {
		t.Errorf("sync = %+v\nwant %+v", c.Sync, want)
	}
	if len(c.FullNAT.Takeover) != 2 {
		t.Errorf("takeover = %v", c.FullNAT.Takeover)
	}
	roundTrip(t, c)
}
