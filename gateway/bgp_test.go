package gateway

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vsgate/vsgate/bgp"
	"github.com/vsgate/vsgate/bgp/bgptest"
	"github.com/vsgate/vsgate/gateway/adm"
	"github.com/vsgate/vsgate/gateway/connsync"
	"github.com/vsgate/vsgate/gateway/health"
	"github.com/vsgate/vsgate/internal/tuntest"
	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
	"github.com/vsgate/vsgate/packet/device"
)

// acceptAll serves l until it is closed: a real server for TCP checks.
func acceptAll(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// TestBGPAnnounce: a VIP is announced while its service has a real server
// that passes its health checks, withdrawn when the last one fails and
// announced again when it is back; "always" and "never" services and the
// fixed prefixes are as they say; `vsgate adm bgp` shows the session and
// why each route is or is not announced; a reload may change what is
// announced but not the speaker; a stop withdraws every route before the
// gateway stops forwarding.
func TestBGPAnnounce(t *testing.T) {
	rs, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go acceptAll(rs)
	rsAddr := netip.MustParseAddrPort(rs.Addr().String())

	router := bgptest.Start(t, 65010, "")
	svc := func(vip string) nat.Service {
		return nat.Service{Proto: packet.ProtoTCP, VIP: netip.MustParseAddr(vip), Port: 80, Scheduler: "mh",
			Backends: []nat.Backend{{Addr: rsAddr.Addr(), Port: rsAddr.Port(), Weight: 1}}}
	}
	healthy, always, never := svc("198.18.0.10"), svc("198.18.0.11"), svc("198.18.0.12")
	spec := health.Spec{Type: "tcp", Interval: 20 * time.Millisecond, Timeout: 50 * time.Millisecond, Rise: 1, Fall: 1}
	bgpOpts := func(neverPolicy string) *BGPOptions {
		return &BGPOptions{
			Speaker: bgp.Config{AS: 65010, RouterID: netip.MustParseAddr("198.18.4.2"), ConnectRetry: time.Second,
				Peers: []bgp.Peer{{Addr: netip.MustParseAddr("127.0.0.1"), AS: bgptest.AS, Port: router.Port}}},
			Prefixes: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")},
			Drain:    2 * time.Second,
			Announce: map[string]string{adm.ServiceKey(always): "always", adm.ServiceKey(never): neverPolicy},
		}
	}
	optsWith := func(b *BGPOptions) Options {
		return Options{
			NAT:    nat.Config{Capacity: 256, Services: []nat.Service{healthy, always, never}},
			Health: map[string]health.Spec{adm.ServiceKey(healthy): spec, adm.ServiceKey(always): spec, adm.ServiceKey(never): spec},
			BGP:    b, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		}
	}
	opts := optsWith(bgpOpts("never"))
	opts.Devices = []device.Device{tuntest.Start(t, 1500, 16)}
	g, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() {
		cancel()
		<-done
		g.Close()
	}()

	p := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }
	routesAre := func(want ...string) func() bool {
		return func() bool {
			got := router.Routes(t)
			if len(got) != len(want) {
				return false
			}
			for _, w := range want {
				if _, ok := got[p(w)]; !ok {
					return false
				}
			}
			return true
		}
	}
	bgptest.Eventually(t, "the healthy and the always VIP, and the default route",
		routesAre("198.18.0.10/32", "198.18.0.11/32", "0.0.0.0/0"))

	out := g.handle(context.Background(), Request{Args: []string{"bgp"}}).Output
	for _, want := range []string{"127.0.0.1", "ESTABLISHED",
		"198.18.0.10/32  yes        TCP 198.18.0.10:80: announce healthy, a real server is up",
		"198.18.0.11/32  yes        TCP 198.18.0.11:80: announce always",
		"198.18.0.12/32  no         TCP 198.18.0.12:80: announce never",
		"0.0.0.0/0       yes        bgp.announce"} {
		if !strings.Contains(out, want) {
			t.Errorf("vsgate adm bgp does not show %q:\n%s", want, out)
		}
	}

	rs.Close() // the real server goes: checks fail
	bgptest.Eventually(t, "the healthy VIP withdrawn", routesAre("198.18.0.11/32", "0.0.0.0/0"))
	if out := g.handle(context.Background(), Request{Args: []string{"bgp"}}).Output; !strings.Contains(out, "198.18.0.10/32  no         TCP 198.18.0.10:80: announce healthy, no real server is up") {
		t.Errorf("vsgate adm bgp after the real server went:\n%s", out)
	}
	back, err := net.Listen("tcp", rsAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	go acceptAll(back)
	bgptest.Eventually(t, "the healthy VIP back", routesAre("198.18.0.10/32", "198.18.0.11/32", "0.0.0.0/0"))

	// A reload may change what is announced, not the speaker.
	changed := bgpOpts("never")
	changed.Speaker.AS = 65011
	if err := g.Reload(optsWith(changed)); err == nil || !strings.Contains(err.Error(), "needs a restart") {
		t.Errorf("reload with another AS: %v", err)
	}
	if err := g.Reload(optsWith(nil)); err == nil || !strings.Contains(err.Error(), "needs a restart") {
		t.Errorf("reload without bgp: %v", err)
	}
	if err := g.Reload(optsWith(bgpOpts("healthy"))); err != nil {
		t.Fatal(err)
	}
	bgptest.Eventually(t, "the third VIP announced after the reload",
		routesAre("198.18.0.10/32", "198.18.0.11/32", "198.18.0.12/32", "0.0.0.0/0"))

	// A stop: every route goes while Run still forwards (Drain).
	cancel()
	bgptest.Eventually(t, "every route withdrawn by the stop", routesAre())
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) before the drain was over", err)
	default:
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil // for the deferred stop
}

// TestSyncDaemonAdm: ipvsadm's --start-daemon and --stop-daemon switch
// the connection sync's roles, -L --daemon lists them in ipvsadm's form,
// options of IPVS's multicast sync are refused with the reason, and the
// sync's metrics are served.
func TestSyncDaemonAdm(t *testing.T) {
	l, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := netip.MustParseAddrPort(l.LocalAddr().String())
	l.Close()
	peer := netip.MustParseAddrPort("127.0.0.1:9")
	g, err := New(Options{NAT: nat.Config{Capacity: 64}, Devices: []device.Device{tuntest.Start(t, 1500, 16)}, MetricsListen: "127.0.0.1:0",
		Sync:   &connsync.Config{Listen: listen, Peers: []netip.AddrPort{peer}, Key: []byte("0123456789abcdef"), Master: true, Backup: true},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	runGateway(t, g)
	adm := func(args ...string) Response { return g.handle(context.Background(), Request{Args: args}) }
	both := "master sync daemon (unicast=127.0.0.1:9, listen=" + listen.String() + ")\nbackup sync daemon (unicast=127.0.0.1:9, listen=" + listen.String() + ")\n"
	if r := adm("-L", "--daemon"); r.Output != both {
		t.Errorf("-L --daemon:\n%s\nwant\n%s", r.Output, both)
	}
	if r := adm("--stop-daemon", "master"); r.Status != 0 || r.Error != "" {
		t.Fatalf("--stop-daemon master: %+v", r)
	}
	if r := adm("-L", "-n", "--daemon"); strings.Contains(r.Output, "master") || !strings.Contains(r.Output, "backup sync daemon") {
		t.Errorf("after --stop-daemon master:\n%s", r.Output)
	}
	// ipvsadm's words and statuses (ipvsadm.c parse_options, the
	// commands_v_options matrix, the kernel's EEXIST and ESRCH).
	for _, tc := range []struct {
		args   string
		status int
		err    string
	}{
		{"--stop-daemon master", 255, "No daemon is running"},
		{"--start-daemon master --mcast-interface eth0 --syncid 5", 0, ""},
		{"--start-daemon master", 255, "Daemon has already run"},
		{"--start-daemon", 255, "Try `ipvsadm -h' or 'ipvsadm --help' for more information."},
		{"--start-daemon primary", 2, "illegal start-daemon parameter specified"},
		{"--stop-daemon primary", 2, "illegal start_daemon specified"},
		{"--stop-daemon backup --mcast-interface eth0", 2, "Illegal 'mcast-interface' option with the 'stop-daemon' command"},
		{"--start-daemon backup -n", 2, "Illegal 'numeric' option with the 'start-daemon' command"},
		{"--start-daemon backup --syncid 256", 2, "illegal syncid specified"},
		{"--start-daemon backup --mcast-group 224.0.0.81 --mcast-port 8848", 255, "--mcast-group --mcast-port: vsgate's sync sends by unicast"},
		{"-L --daemon --stats", 2, "options conflicts in the list command"},
	} {
		if r := adm(strings.Fields(tc.args)...); r.Status != tc.status || !strings.HasPrefix(r.Error, tc.err) {
			t.Errorf("%s: %+v, want status %d and %q", tc.args, r, tc.status, tc.err)
		}
	}
	// In a restore, a refused daemon line is reported and the next runs.
	if r := g.handle(context.Background(), Request{Args: []string{"-R"}, Stdin: "--start-daemon master\n--stop-daemon backup\n"}); r.Status != 0 || r.Error != "Daemon has already run" {
		t.Errorf("-R of daemon lines: %+v", r)
	}
	if r := adm("-L", "--daemon"); strings.Contains(r.Output, "backup") || !strings.Contains(r.Output, "master sync daemon") {
		t.Errorf("after -R's --stop-daemon backup:\n%s", r.Output)
	}
	resp, err := http.Get("http://" + g.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`vsgate_sync_role{role="master"} 1`, `vsgate_sync_rejected_total{reason="bad_mac"} 0`, "vsgate_sync_datagrams_total"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Without a sync block, the daemon commands say what is missing.
	g2, err := New(Options{NAT: nat.Config{Capacity: 64}, Devices: []device.Device{tuntest.Start(t, 1500, 16)}})
	if err != nil {
		t.Fatal(err)
	}
	runGateway(t, g2)
	if r := g2.handle(context.Background(), Request{Args: []string{"--start-daemon", "master"}}); r.Status == 0 || !strings.Contains(r.Error, "no sync: block") {
		t.Errorf("--start-daemon without sync: %+v", r)
	}
}
