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

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vsgate/vsgate/internal/tuntest"
	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
	"github.com/vsgate/vsgate/packet/device"
	"github.com/vsgate/vsgate/proxy"
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
		// A test device carries the packets: the gateway's netstack
		// terminates them (the kernel has no route to it).
		L7Netstack: true,
		L7: []L7Service{{VIP: vip, Proxy: proxyTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "l7 %s %s", r.URL.Path, r.Header.Get("X-Forwarded-For"))
		}))}},
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
		if want := fmt.Sprintf("l7 /p%d 198.18.0.2", i); string(b) != want {
			t.Fatalf("answer %q, want %q", b, want)
		}
	}
	if n := g.counts[0].toL7.Load(); n == 0 {
		t.Fatal("no packet went to L7")
	}
	svc := "TCP " + vip.String()
	if v := gathered(t, g, "vsgate_l7_responses_total", "code", "200", "service", svc, "source", "backend"); v != 3 {
		t.Fatalf("vsgate_l7_responses_total of 200 from the real server: %v, want 3", v)
	}
	if v := gathered(t, g, "vsgate_l7_connections_accepted_total", "service", svc); v != 1 {
		t.Fatalf("vsgate_l7_connections_accepted_total: %v, want 1 (three requests on one connection)", v)
	}
	// A request is timed once its response went out: the client may read
	// it a moment before that.
	for deadline := time.Now().Add(10 * time.Second); ; {
		v := gathered(t, g, "vsgate_l7_request_duration_seconds", "service", svc)
		if v == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("vsgate_l7_request_duration_seconds counts %v requests, want 3", v)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The netstack's connections are the goroutine path's.
	if v := gathered(t, g, "vsgate_l7_event_loop_requests_total", "service", svc); v != 0 {
		t.Fatalf("vsgate_l7_event_loop_requests_total on the netstack: %v, want 0", v)
	}
}

// gathered is the value of the gateway's metric name with exactly the
// label pairs given, or -1 when it has none such.
func gathered(t *testing.T, g *Gateway, name string, labels ...string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{g})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel())*2 != len(labels) {
				continue
			}
			for i, l := range m.GetLabel() {
				if l.GetName() != labels[2*i] || l.GetValue() != labels[2*i+1] {
					continue metrics
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

// TestL7ServiceIsNotAdms: an L7 service's engine entry only hands its
// packets to the proxy; its routes and members are the configuration's
// directives. vsgate adm commands that would change the entry (-E, -a, -e,
// -d, -D) and -A on its address are refused with a reason, a reload that
// puts an L4 service on its address is refused, and the listing is what
// it was each time; -L lists it.
func TestL7ServiceIsNotAdms(t *testing.T) {
	dev := tuntest.Start(t, 1500, 16)
	vip := netip.MustParseAddrPort("198.18.0.10:81")
	l4 := nat.Service{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: 80, Scheduler: "rr",
		Backends: []nat.Backend{{Addr: netip.MustParseAddr("198.18.2.11"), Port: 80, Weight: 1}}}
	g, err := New(Options{Devices: []device.Device{dev}, NAT: nat.Config{Capacity: 1024, Services: []nat.Service{l4}},
		L7Netstack: true, L7: []L7Service{{VIP: vip, Proxy: proxyTo(t, http.NotFoundHandler())}}})
	if err != nil {
		t.Fatal(err)
	}
	runGateway(t, g)
	adm := func(args ...string) Response { return g.handle(context.Background(), Request{Args: args}) }
	list := func() string { return adm("-L", "-n").Output + adm("-S", "-n").Output }
	before := list()
	if !strings.Contains(before, "TCP  198.18.0.10:81 rr\n") {
		t.Fatalf("-L does not list the L7 service:\n%s", before)
	}
	for _, args := range [][]string{
		{"-E", "-t", vip.String(), "-s", "wrr"},
		{"-a", "-t", vip.String(), "-r", "198.18.2.11:80", "-m"},
		{"-e", "-t", vip.String(), "-r", "198.18.2.11:80", "-w", "2"},
		{"-d", "-t", vip.String(), "-r", "198.18.2.11:80"},
		{"-D", "-t", vip.String()},
		{"-A", "-t", vip.String()},
	} {
		if r := adm(args...); r.Status == 0 || !strings.Contains(r.Error, "L7 (ProxyPass) service") {
			t.Errorf("adm %v: %+v, want refused as an L7 service", args, r)
		}
		if got := list(); got != before {
			t.Fatalf("adm %v changed the listing:\n%s\nwas:\n%s", args, got, before)
		}
	}
	moved := l4
	moved.Port = vip.Port()
	err = g.Reload(Options{L7Netstack: true, NAT: nat.Config{Capacity: 1024, Services: []nat.Service{moved}},
		L7: []L7Service{{VIP: vip, Proxy: proxyTo(t, http.NotFoundHandler())}}})
	if err == nil || !strings.Contains(err.Error(), "is the address of an L7 (ProxyPass) service") {
		t.Fatalf("a reload with an L4 service on the L7 service's address: %v", err)
	}
	if got := list(); got != before {
		t.Fatalf("the refused reload changed the listing:\n%s\nwas:\n%s", got, before)
	}
}

// proxyTo is a proxy whose every path goes to a loopback real server that
// h answers.
func proxyTo(t *testing.T, h http.Handler) *proxy.Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	cfg, err := proxy.ParseDirectives("ProxyPass / http://"+ln.Addr().String()+"/", "test.conf", 1)
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(cfg, proxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}
