// Package bgptest is an upstream router for tests of BGP speakers: a gobgp
// instance on loopback that listens for one neighbour, accepts every route
// it sends and lists them. It runs without privileges (any port).
//
// It must not be imported outside tests.
package bgptest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// AS is the router's AS number.
const AS = 65000

// Router is the test router.
type Router struct {
	Srv  *server.BgpServer
	Port uint16 // where it listens, on 127.0.0.1
}

// Start starts a router on 127.0.0.1 that takes a session from a speaker
// at 127.0.0.1 of AS peerAS, with TCP MD5 password (empty for none). It is
// stopped when the test ends.
func Start(t testing.TB, peerAS uint32, password string) *Router {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	r := &Router{Srv: server.NewBgpServer(server.LoggerOption(slog.New(slog.NewTextHandler(io.Discard, nil)), &slog.LevelVar{})), Port: port}
	go r.Srv.Serve()
	t.Cleanup(r.Srv.Stop)
	ctx := context.Background()
	if err := r.Srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: AS, RouterId: "198.18.255.1", ListenPort: int32(port), ListenAddresses: []string{"127.0.0.1"}}}); err != nil {
		t.Fatal(err)
	}
	if err := r.Srv.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: "127.0.0.1", PeerAsn: peerAS, AuthPassword: password},
		Transport: &api.Transport{PassiveMode: true},
		Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: 3, KeepaliveInterval: 1}},
	}}); err != nil {
		t.Fatal(err)
	}
	return r
}

// Routes is the router's IPv4 table: each prefix with its next hop and
// communities ("nh=127.0.0.1 c=65010:100").
func (r *Router) Routes(t testing.TB) map[netip.Prefix]string {
	t.Helper()
	out := map[netip.Prefix]string{}
	err := r.Srv.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: bgp.RF_IPv4_UC},
		func(prefix bgp.NLRI, paths []*apiutil.Path) {
			p := netip.MustParsePrefix(prefix.String())
			for _, path := range paths {
				desc := ""
				for _, a := range path.Attrs {
					switch a := a.(type) {
					case *bgp.PathAttributeNextHop:
						desc += "nh=" + a.Value.String()
					case *bgp.PathAttributeCommunities:
						for _, c := range a.Value {
							desc += " c=" + formatCommunity(c)
						}
					}
				}
				out[p] = desc
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func formatCommunity(c uint32) string { return fmt.Sprintf("%d:%d", c>>16, c&0xffff) }

// Eventually polls cond for up to 20 s: BGP sessions take their time
// (connect retry, OPEN, KEEPALIVE). The limit is a bound on a hang, not a
// speed goal.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
