package gateway

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/vsgate/vsgate/internal/tuntest"
	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
	"github.com/vsgate/vsgate/packet/device"
)

func syn(src, dst netip.AddrPort) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.IP(src.Addr().AsSlice()), DstIP: net.IP(dst.Addr().AsSlice())}
	t := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), SYN: true, Window: 100}
	t.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, t); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func dst(t *testing.T, b []byte) netip.AddrPort {
	t.Helper()
	var p packet.Parsed
	if r := packet.Parse(b, &p); r != packet.ReasonNone {
		t.Fatal(r)
	}
	return netip.AddrPortFrom(netip.AddrFrom16(p.Dst).Unmap(), p.DstPort)
}

// TestGatewayWithFakeDevice runs the gateway on a channel device: packets
// read are translated and written back; adm commands over the control
// socket change the table live and list it in ipvsadm's format; a bad
// command leaves the table as it was.
func TestGatewayWithFakeDevice(t *testing.T) {
	dev := tuntest.Start(t, 1500, 16)
	sock := filepath.Join(t.TempDir(), "vsgate.sock")
	capDir := filepath.Join(t.TempDir(), "pcap")
	vip := netip.MustParseAddrPort("198.18.0.10:80")
	g, err := New(Options{
		Devices: []device.Device{dev}, ControlSocket: sock, MetricsListen: "127.0.0.1:0", PcapDir: capDir,
		NAT: nat.Config{Capacity: 1024, Services: []nat.Service{{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: vip.Port(), Scheduler: "rr",
			Backends: []nat.Backend{{Addr: netip.MustParseAddr("198.18.2.11"), Port: 80, Weight: 1}}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	runGateway(t, g)

	adm := func(args ...string) Response {
		resp, err := Call(context.Background(), sock, Request{Args: args})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if fi, err := os.Stat(capDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("capture directory %v (%v), want mode 0700", fi, err)
	}
	capFile := filepath.Join(capDir, "cap.pcap")
	if r := adm("pcap", "start", "cap.pcap"); r.Status != 0 || r.Output != "capturing to "+capFile+"\n" {
		t.Fatalf("pcap start: %+v", r)
	}
	dev.Inbound <- syn(netip.MustParseAddrPort("198.18.0.2:1000"), vip)
	if got := dst(t, dev.Recv(t, 10*time.Second)); got != netip.MustParseAddrPort("198.18.2.11:80") {
		t.Fatalf("SYN went to %v", got)
	}
	if r := adm("pcap", "stop"); r.Status != 0 || r.Output != "capture stopped: 2 packets\n" {
		t.Fatalf("pcap stop: %+v", r)
	}
	if f, err := os.Open(capFile); err != nil {
		t.Fatal(err)
	} else {
		rd, err := pcapgo.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for {
			if _, _, err := rd.ReadPacketData(); err != nil {
				break
			}
			n++
		}
		f.Close()
		if n != 2 {
			t.Fatalf("capture holds %d packets, want the SYN in and out", n)
		}
	}
	// A capture never overwrites a file, nor follows a link to one, nor
	// goes anywhere but the capture directory.
	if r := adm("pcap", "start", capFile); r.Status == 0 {
		t.Fatalf("pcap start over an existing file: %+v", r)
	}
	target := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(target, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(capDir, "link.pcap")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"link.pcap", filepath.Join(capDir, "link.pcap"), target + ".pcap", "../out.pcap", "sub/x.pcap", "..", ""} {
		if r := adm("pcap", "start", name); r.Status == 0 {
			t.Fatalf("pcap start %q: %+v", name, r)
		}
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Fatalf("the link's target was written: %q", b)
	}
	if _, err := os.Stat(target + ".pcap"); err == nil {
		t.Fatalf("a capture was written outside the capture directory")
	}
	if r := adm("-a", "-t", "198.18.0.10:80", "-r", "198.18.2.12:80", "-m", "-w", "2"); r.Status != 0 {
		t.Fatalf("-a: %+v", r)
	}
	if r := adm("-a", "-t", "198.18.0.99:80", "-r", "198.18.2.12", "-m"); r.Status != 255 || r.Error != "Service not defined" {
		t.Fatalf("-a to no service: %+v", r)
	}
	if r := adm("-Q"); r.Status != 255 || !strings.HasPrefix(r.Error, "Try `ipvsadm -h'") {
		t.Fatalf("bad first option: %+v", r)
	}
	if r := adm("-L", "-Q"); r.Status != 255 || r.Error != "-Q: unknown option" {
		t.Fatalf("bad option: %+v", r)
	}
	if r := adm("-L", "-n", "-t", "198.18.0.99:80"); r.Status != 1 || r.Error != "No such service" || r.Output != "" {
		t.Fatalf("-L of no service: %+v", r)
	}
	// -R as ipvsadm: each line its own change, a refused one reported
	// and the rest applied, the status the last line's.
	restore, err := Call(context.Background(), sock, Request{Args: []string{"-R"},
		Stdin: "-A -t 198.18.0.77:80 -s rr\n-a -t 198.18.0.99:80 -r 198.18.2.12 -m\n-a -t 198.18.0.77:80 -r 198.18.2.12 -m\n"})
	if err != nil || restore.Status != 0 || restore.Error != "Service not defined" {
		t.Fatalf("-R with a refused line in the middle: %+v, %v", restore, err)
	}
	if r := adm("-L", "-n", "-t", "198.18.0.77:80"); r.Status != 0 || !strings.Contains(r.Output, "198.18.2.12:80") {
		t.Fatalf("after -R: %+v", r)
	}
	// Lines that change nothing run too (ipvsadm.c's process_options for
	// each line): listings print, -Z of no service is reported and the
	// next line runs, -v prints and ends the restore with status 0.
	restore, err = Call(context.Background(), sock, Request{Args: []string{"-R"},
		Stdin: "-S -n\n-Z -t 198.18.0.99:80\n-L -n -t 198.18.0.77:80\n-v\n-D -t 198.18.0.77:80\n"})
	if err != nil || restore.Status != 0 || restore.Error != "No such service" ||
		!strings.Contains(restore.Output, "-a -t 198.18.0.77:80 -r 198.18.2.12:80 -m -w 1\n") ||
		!strings.Contains(restore.Output, "TCP  198.18.0.77:80 rr\n") || !strings.HasSuffix(restore.Output, "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n") {
		t.Fatalf("-R with -S, -Z, -L and -v lines: %+v, %v", restore, err)
	}
	if r := adm("-L", "-n", "-t", "198.18.0.77:80"); r.Status != 0 {
		t.Fatalf("the -D after -v in -R ran: %+v", r)
	}
	restore, err = Call(context.Background(), sock, Request{Args: []string{"-R"},
		Stdin: "-L -n -t 198.18.0.99:80\n-D -t 198.18.0.77:80\n"})
	if err != nil || restore.Status != 1 || restore.Error != "No such service" {
		t.Fatalf("-R with a failing listing: %+v, %v (ipvsadm exits 1 there)", restore, err)
	}
	if r := adm("-D", "-t", "198.18.0.77:80"); r.Status != 0 {
		t.Fatalf("-D after -R: %+v", r)
	}
	if r := adm("-Z", "-t", "198.18.0.99:80"); r.Status != 255 || r.Error != "No such service" {
		t.Fatalf("-Z of no service: %+v", r)
	}
	if r := adm("-L", "-n", "-t", "198.18.0.10:80"); r.Status != 0 || strings.Contains(r.Output, "IP Virtual Server version") || !strings.Contains(r.Output, "TCP  198.18.0.10:80 rr") {
		t.Fatalf("-L of one service: %+v (ipvsadm prints no version line for it)", r)
	}
	r := adm("-L", "-n")
	for _, want := range []string{"TCP  198.18.0.10:80 rr", "  -> 198.18.2.11:80               Masq    1      0          1",
		"  -> 198.18.2.12:80               Masq    2      0          0"} {
		if !strings.Contains(r.Output, want) {
			t.Errorf("-L -n misses %q:\n%s", want, r.Output)
		}
	}
	// The new backend takes new flows (rr: the next one).
	dev.Inbound <- syn(netip.MustParseAddrPort("198.18.0.2:1001"), vip)
	if got := dst(t, dev.Recv(t, 10*time.Second)); got.Addr() != netip.MustParseAddr("198.18.2.12") {
		t.Fatalf("second SYN went to %v", got)
	}
	if r := adm("-S", "-n"); r.Output != "-A -t 198.18.0.10:80 -s rr\n-a -t 198.18.0.10:80 -r 198.18.2.11:80 -m -w 1\n-a -t 198.18.0.10:80 -r 198.18.2.12:80 -m -w 2\n" {
		t.Fatalf("-S:\n%s", r.Output)
	}
	if r := adm("-L", "-n", "-c"); !strings.Contains(r.Output, "TCP 01:00  SYN_RECV    198.18.0.2:1000    198.18.0.10:80     198.18.2.11:80") {
		t.Fatalf("-L -c:\n%s", r.Output)
	}
	// Metrics, scraped.
	resp, err := http.Get("http://" + g.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`vsgate_service_connections_total{service="TCP 198.18.0.10:80"} 2`,
		`vsgate_backend_inactive_connections{backend="198.18.2.12:80",service="TCP 198.18.0.10:80"} 1`,
		`vsgate_backend_weight{backend="198.18.2.12:80",service="TCP 198.18.0.10:80"} 2`,
		`vsgate_flows 2`, `vsgate_worker_packets_total{worker="0"} 2`, `vsgate_drops_total{reason="no_flow"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics miss %q", want)
		}
	}
}

// TestRateLimited: a burst of warnings logs once, and the next one after a
// second says how many were held back.
func TestRateLimited(t *testing.T) {
	var buf strings.Builder
	l := slog.New(slog.NewTextHandler(&buf, nil))
	var r rateLimited
	for range 100 {
		r.log(l, "write", "err", "boom")
	}
	if n := strings.Count(buf.String(), "msg=write"); n != 1 {
		t.Fatalf("%d warnings logged for a burst, want 1", n)
	}
	r.last = r.last.Add(-time.Second)
	r.log(l, "write", "err", "boom")
	if !strings.Contains(buf.String(), "suppressed=99") {
		t.Fatalf("the next warning does not count the held-back ones:\n%s", buf.String())
	}
}

// runGateway runs g until the test ends, then stops and closes it.
func runGateway(t *testing.T, g *Gateway) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		g.Close()
	})
}

// TestMetricsPprof: Go's profiles are served next to /metrics only when
// asked for (metrics.pprof).
func TestMetricsPprof(t *testing.T) {
	for _, on := range []bool{false, true} {
		dev := tuntest.Start(t, 1500, 16)
		g, err := New(Options{Devices: []device.Device{dev}, MetricsListen: "127.0.0.1:0", MetricsPprof: on, NAT: nat.Config{Capacity: 64}})
		if err != nil {
			t.Fatal(err)
		}
		runGateway(t, g)
		resp, err := http.Get("http://" + g.MetricsAddr() + "/debug/pprof/cmdline")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[bool]int{false: http.StatusNotFound, true: http.StatusOK}[on]; resp.StatusCode != want {
			t.Errorf("pprof %v: /debug/pprof/cmdline answered %d, want %d", on, resp.StatusCode, want)
		}
		if !on {
			continue
		}
		// Durations are bounded: a profile or trace of an hour, or of a
		// number that is none, is refused before it starts.
		for _, q := range []string{"profile?seconds=3600", "trace?seconds=61", "profile?seconds=-1", "trace?seconds=1e9", "heap?seconds=99999999999999999999", "profile?seconds=0"} {
			resp, err := http.Get("http://" + g.MetricsAddr() + "/debug/pprof/" + q)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("/debug/pprof/%s answered %d, want 400", q, resp.StatusCode)
			}
		}
		resp, err = http.Get("http://" + g.MetricsAddr() + "/debug/pprof/trace?seconds=1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("a 1 s trace answered %d, want 200", resp.StatusCode)
		}
	}
}
