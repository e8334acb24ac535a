package gateway

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vsgate/vsgate/internal/tuntest"
	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
	"github.com/vsgate/vsgate/packet/device"
	"github.com/vsgate/vsgate/proxy/netstack"
)

// TestL7ThroughGateway: a client (its own netstack) talks HTTP to an L7
// VIP through the gateway's device: the engine hands the packets to the
// gateway's netstack, the handler answers, and the answer leaves through
// the device. An L4 service beside it keeps working.
func TestL7ThroughGateway(t *testing.T) {
	dev := tuntest.Start(t, 1500, 16)
	vip := netip.MustParseAddrPort("198.18.0.10:81")
	g, err := New(Options{
		Devices: []device.Device{dev},
		NAT:     nat.Config{Capacity: 1024},
		L7: []L7Service{{VIP: vip, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "l7 %s %s", r.URL.Path, r.RemoteAddr)
		})}},
	})
	if err != nil {
		t.Fatal(err)
	}
	runGateway(t, g)
	client, err := netstack.New(netstack.Options{Output: func(pkts [][]byte, _ []packet.Offload) {
		for _, p := range pkts {
			dev.Inbound <- append([]byte(nil), p...)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := client.AddAddress(netip.MustParseAddr("198.18.0.2")); err != nil {
		t.Fatal(err)
	}
	go func() {
		for p := range dev.Outbound {
			client.Inject(p)
		}
	}()
	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return client.Dial(ctx, vip)
	}}}
	for i := range 3 { // three requests on one keep-alive connection
		resp, err := hc.Get(fmt.Sprintf("http://%s/p%d", vip, i))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("l7 /p%d 198.18.0.2:", i); !strings.HasPrefix(string(b), want) {
			t.Fatalf("answer %q, want prefix %q", b, want)
		}
	}
	if n := g.counts[0].toL7.Load(); n == 0 {
		t.Fatal("no packet went to L7")
	}
}
