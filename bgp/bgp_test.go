package bgp

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/vsgate/vsgate/bgp/bgptest"
)

func speakerConfig(port uint16, password string) Config {
	return Config{
		AS: 65010, RouterID: netip.MustParseAddr("198.18.4.2"),
		Communities:  []uint32{65010<<16 | 100},
		ConnectRetry: time.Second,
		Peers: []Peer{{Addr: netip.MustParseAddr("127.0.0.1"), AS: 65000, Port: port, Password: password,
			HoldTime: 3 * time.Second, Keepalive: time.Second}},
	}
}

// TestAnnounceWithdraw: the router learns what Announce sets, with the
// community and the session's address as next hop, loses what a later
// Announce leaves out, and loses everything when the speaker closes. With
// and without a TCP MD5 password.
func TestAnnounceWithdraw(t *testing.T) {
	for _, pw := range []string{"", "s3cret"} {
		t.Run("password="+pw, func(t *testing.T) {
			r := bgptest.Start(t, 65010, pw)
			sp, err := Start(context.Background(), speakerConfig(r.Port, pw), slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			vip1, vip2 := netip.MustParsePrefix("198.18.0.10/32"), netip.MustParsePrefix("198.18.0.11/32")
			def := netip.MustParsePrefix("0.0.0.0/0")
			if err := sp.Announce([]netip.Prefix{vip1, vip2, def}); err != nil {
				t.Fatal(err)
			}
			bgptest.Eventually(t, "the peer up", func() bool { return sp.Peers()[0].State == "ESTABLISHED" })
			bgptest.Eventually(t, "three routes at the router", func() bool { return len(r.Routes(t)) == 3 })
			if got, want := r.Routes(t)[vip1], "nh=127.0.0.1 c=65010:100"; got != want {
				t.Errorf("router has %v as %q, want %q", vip1, got, want)
			}
			if got := sp.Routes(); !slices.Equal(got, []netip.Prefix{def, vip1, vip2}) {
				t.Errorf("Routes() = %v", got)
			}
			if err := sp.Announce([]netip.Prefix{vip2, def}); err != nil {
				t.Fatal(err)
			}
			bgptest.Eventually(t, "the withdrawal of "+vip1.String(), func() bool {
				rs := r.Routes(t)
				_, has1 := rs[vip1]
				_, has2 := rs[vip2]
				return !has1 && has2 && len(rs) == 2
			})
			if ps := sp.Peers()[0]; ps.Sent != 2 || ps.HoldTime != 3*time.Second || ps.AS != 65000 {
				t.Errorf("peer state %+v: want 2 routes sent, hold time 3s, AS 65000", ps)
			}
			if err := sp.Close(); err != nil {
				t.Fatal(err)
			}
			bgptest.Eventually(t, "every route gone after Close", func() bool { return len(r.Routes(t)) == 0 })
			if err := sp.Announce([]netip.Prefix{vip1}); err == nil {
				t.Error("Announce after Close succeeded")
			}
		})
	}
}

// TestWrongPasswordNoSession: with a TCP MD5 password the router does not
// know, no session comes up and the router learns nothing.
func TestWrongPasswordNoSession(t *testing.T) {
	r := bgptest.Start(t, 65010, "right")
	sp, err := Start(context.Background(), speakerConfig(r.Port, "wrong"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if err := sp.Announce([]netip.Prefix{netip.MustParsePrefix("198.18.0.10/32")}); err != nil {
		t.Fatal(err)
	}
	// Long enough for several connect attempts (ConnectRetry 1 s): a
	// session that could come up would have.
	time.Sleep(4 * time.Second)
	if st := sp.Peers()[0].State; st == "ESTABLISHED" {
		t.Fatalf("session up with the wrong password")
	}
	if n := len(r.Routes(t)); n != 0 {
		t.Fatalf("router learned %d routes", n)
	}
}

// TestNoImport: routes the router sends are not taken in.
func TestNoImport(t *testing.T) {
	r := bgptest.Start(t, 65010, "")
	sp, err := Start(context.Background(), speakerConfig(r.Port, ""), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	nlri, _ := bgp.NewIPAddrPrefix(netip.MustParsePrefix("198.18.9.0/24"))
	nh, _ := bgp.NewPathAttributeNextHop(netip.MustParseAddr("127.0.0.1"))
	if _, err := r.Srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{{Family: bgp.RF_IPv4_UC, Nlri: nlri,
		Attrs: []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(0), nh}}}}); err != nil {
		t.Fatal(err)
	}
	bgptest.Eventually(t, "the peer up", func() bool { return sp.Peers()[0].State == "ESTABLISHED" })
	bgptest.Eventually(t, "the router's route sent", func() bool {
		var sent uint64
		_ = r.Srv.ListPeer(context.Background(), &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
			for _, af := range p.GetAfiSafis() {
				sent += af.GetState().GetAdvertised()
			}
		})
		return sent == 1
	})
	n := 0
	_ = sp.srv.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: bgp.RF_IPv4_UC},
		func(bgp.NLRI, []*apiutil.Path) { n++ })
	if n != 0 {
		t.Fatalf("the speaker's table holds %d routes from the router", n)
	}
}

func TestValidate(t *testing.T) {
	good := speakerConfig(179, "")
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Config){
		"no AS":           func(c *Config) { c.AS = 0 },
		"v6 router id":    func(c *Config) { c.RouterID = netip.MustParseAddr("2001:db8::1") },
		"no peers":        func(c *Config) { c.Peers = nil },
		"peer twice":      func(c *Config) { c.Peers = append(c.Peers, c.Peers[0]) },
		"peer AS 0":       func(c *Config) { c.Peers[0].AS = 0 },
		"hold 2s":         func(c *Config) { c.Peers[0].HoldTime = 2 * time.Second },
		"keepalive > h/3": func(c *Config) { c.Peers[0].Keepalive = 2 * time.Second },
		"two v4 hops": func(c *Config) {
			c.NextHop = []netip.Addr{netip.MustParseAddr("198.18.4.2"), netip.MustParseAddr("198.18.4.3")}
		},
	} {
		c := speakerConfig(179, "")
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestParseCommunity(t *testing.T) {
	for in, want := range map[string]uint32{"65010:100": 65010<<16 | 100, "0:0": 0, "4259840100": 4259840100} {
		got, err := ParseCommunity(in)
		if err != nil || got != want {
			t.Errorf("ParseCommunity(%q) = %d, %v; want %d", in, got, err, want)
		}
		if in != "4259840100" && FormatCommunity(got) != in {
			t.Errorf("FormatCommunity(%d) = %q", got, FormatCommunity(got))
		}
	}
	for _, bad := range []string{"", "65536:1", "1:65536", "a:b", "-1", "1:2:3"} {
		if _, err := ParseCommunity(bad); err == nil {
			t.Errorf("ParseCommunity(%q) accepted", bad)
		}
	}
}
