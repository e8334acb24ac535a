package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vsgate/vsgate/internal/netlab"
)

// Step is one check of the demo.
type Step struct {
	Name string
	Run  func(ctx context.Context, e *Env) (detail string, err error)
}

// Result is a step's outcome.
type Result struct {
	Step   string
	Detail string
	Err    error
	Took   time.Duration
}

// Steps are the demo's checks, in order (later ones build on earlier
// ones: the weights changed in one are in force in the next).
func Steps() []Step {
	steps := []Step{
		{"HTTP: 30 requests to the VIP spread 10/10/10 over three real servers (rr)", stepHTTPSpread},
		{"TCP line service (telnet-style, port 7) balanced the same way", stepTCPEcho},
		{"weights changed live with vsgate adm (wrr 3:1:1) and the new spread", stepWeights},
		{"a real server killed: the health check takes it out, requests keep succeeding", stepHealth},
		{"masquerade: every real server reaches the client side from the masquerade address (v4 and v6)", stepMasquerade},
		{"UDP service (port 53) answered by a real server", stepUDP},
		{"a spoofed-source handshake flood (2,000 sources: SYN, then an ACK with a bad checksum or a blind guess) leaves no ESTABLISHED flow, and a real client is served meanwhile", stepSpoofedHandshakes},
		{"10,000 RSTs with random sequence numbers at 22 live connections' 4-tuples break none of them", stepBlindRSTs},
		{"SYN proxy (syn_proxy: on, NAT v4 and v6, FULLNAT): answered through a cookie, listed as synproxy; checked random data down and up through each over lossy, reordering links", stepSynProxy},
		{"a spoofed-source SYN flood (10,000/s for 10 s, at syn_proxy: on and at auto) makes no flow past the threshold, breaks none of 50 keep-alive connections, fails no new connection but for one known SYN-proxy stall (every one past 1 s is listed), leaves vsgate's memory flat", stepSynFlood},
		{"fragments: a datagram whose fragments come last first is answered; a storm of 20,000 incomplete datagrams never reaches the real servers, and a real fragmented request in it is answered within 1 s", stepFragments},
		{"IPv6 fragments: a datagram whose fragments come last first is answered; a storm of 20,000 incomplete IPv6 datagrams never reaches the real servers, and a real fragmented request in it is answered within 1 s", stepFragments6},
		{"every drop visible: vsgate adm drops and /metrics show vsgate's drops by reason and the device's own losses", stepDrops},
		{"fragments and ICMP errors: a 5000-byte datagram (fragmented both ways) echoed whole; a real server's port unreachable reaches the client", stepFragmentsICMP},
		{"IPv6: 30 requests to [2001:db8::10]:80 spread 10/10/10", stepIPv6},
		{"FULLNAT: the real server sees the gateway's FULLNAT address, the client sees the VIP", stepFullNAT},
		{"bulk: 300 MB through the VIP arrive intact (SHA-256 of every byte)", stepBulk},
		{"bulk IPv6: 300 MB through [2001:db8::10]:80 arrive intact (SHA-256)", stepBulk6},
		{"flow logs: an 8 MB download through a flow_log service, reset by the client, is logged once with reason rst and the packets and bytes each way that the service counted", stepFlowLog},
		{"bulk UDP: 20 MB of 1400-byte datagrams echoed through the VIP intact (SHA-256)", stepBulkUDP},
		{"refused changes (a VIP on loopback or link-local, the gateway's own address) change nothing: -S byte for byte, the VIPs answer, the next valid change works", stepRefusedChanges},
		{"closed to the outside: TCP SYN, UDP and ICMP probes of ports 1-1024 and more at every real server, v4 and v6, with default pass and drop: tcpdump on their links sees none, every probe is counted as stopped, the masquerade still works outbound", stepClosedToOutside},
		{"a connection open across a live reload (SIGHUP) keeps working", stepReload},
		{"flows to a backend set to weight 0 finish; new ones avoid it", stepQuiesce},
		{"a firewall-mark service (iptables -t mangle ... -j MARK, ipvsadm -A -f): ports 80 and 7 of four addresses as one persistent service", stepFwmark},
		{"one-packet scheduling (ipvsadm -o): each datagram of one UDP socket scheduled on its own, answered from the VIP, no flow kept", stepOnePacket},
		{"a persistent service of port 0 (ipvsadm -A -t VIP -p): every port its real servers serve, one real server for a client across ports", stepPortZero},
		{"connection thresholds (ipvsadm -x 2 -y 1): two connections per real server, a fifth refused and counted, and after one server's connections ended and expired, the next goes there", stepThresholds},
	}
	steps = append(steps, L7Steps()...)
	return append(steps, []Step{
		{"path MTU: with the real servers' side at 1400, DF datagrams of 1500 bytes (IPv4 and IPv6) get fragmentation needed / packet too big with 1400, which the client matches; one without DF is fragmented and echoed", stepPathMTU},
		{"a UDP GSO burst of 8000-byte datagrams from a 9000-byte link is cut to the real servers' 1500: echoed whole, no packet above 1500 on their links", stepGSOBurst},
		{"privileges: after setup vsgate runs as nobody with only CAP_NET_ADMIN (and CAP_NET_RAW on AF_PACKET, CAP_NET_BIND_SERVICE for L7 on the kernel's TCP), an empty bounding set, no_new_privs, a seccomp filter (every path of the demo runs under it); captures only as new files in pcap.dir", stepCaps},
		{"vsgate adm -L -n --stats (ipvsadm's listing)", stepList},
		{"the Grafana dashboard (docs/grafana/vsgate.json): every metric it queries is on /metrics, with the labels it groups by", stepDashboard},
		{"the status page in headless Chromium: its numbers are adm -L -n --stats's, a real server taken down is red on its next refresh by itself, a screenshot", stepStatusPage},
	}...)
}

// L7Steps are the application-layer checks, which both L7 stacks (the
// kernel's TCP, the default, and gVisor's netstack) pass.
func L7Steps() []Step {
	return []Step{
		{"L7: ProxyPass /sales/ and /rd/ route by path (v4 and v6); a balancer spreads /lb/ over three servers", stepL7},
		{"L7: keep-alive reused on both sides, a WebSocket echo, 100 MB streamed up and down intact", stepL7Streams},
		{"L7 over TLS: HTTPS with SNI (two certificates), HTTP/2 with concurrent streams on one connection, certificates swapped by SIGHUP while a connection stays open, root-only keys reloaded by vsgate adm reload", stepL7TLS},
		{"L7 reload: a route changed by reload applies to the next request on an open connection; a bad directive is refused and changes nothing; an L7 service added by reload is served, and one removed stops", stepL7Reload},
	}
}

// TUNSteps are the demo's checks on a TUN device: Steps, then a reload
// whose network wiring (routes into the TUN, which AF_PACKET mode does
// not make) fails part-way.
func TUNSteps() []Step {
	return append(Steps(), Step{"a reload whose wiring fails part-way (a route it needs is taken, at the first and at the second new VIP) changes nothing, names the step, and a probe of every VIP never fails; then it goes through and back", stepWiringFault})
}

// AFPacketSteps are the demo's checks in AF_PACKET mode: Steps between a
// first check of what the client heard on start (before any traffic) and
// a last one of who resolved what.
func AFPacketSteps() []Step {
	steps := []Step{{"ARP on start: a gratuitous ARP put each of vsgate's client-side IPv4 addresses in the client's neighbour table at the gateway's MAC, before any traffic", stepAnnounced}}
	steps = append(steps, Steps()...)
	steps = append(steps,
		Step{"pcap on AF_PACKET: vsgate adm pcap records whole frames, Ethernet headers included, both ways", stepPcapFrames},
		Step{"a VIP added live with vsgate adm is announced and answered: the client reaches it at the gateway's MAC", stepLiveVIP},
		Step{"the host's own traffic on vsgate's interfaces is untouched: the client and a real server reach the gateway's own addresses", stepHostTraffic})
	return append(steps, Step{"ARP/ND: the client resolved the VIPs (v4, v6) and the real servers their default gateway (v4, v6) to the gateway's MACs", stepResolved})
}

// AFXDPSteps are AFPacketSteps with the frames through AF_XDP, but for
// the UDP GSO burst from a 9000-byte link: XDP on a veth caps its peer's
// MTU at about 3.5 KB (a frame must fit one page; multi-buffer XDP is not
// used), so that link cannot be made. Every other step is the same.
func AFXDPSteps() []Step {
	var out []Step
	for _, s := range AFPacketSteps() {
		if !strings.HasPrefix(s.Name, "a UDP GSO burst") {
			out = append(out, s)
		}
	}
	return out
}

// BulkSteps are the steps that move volume: TCP over IPv4 and IPv6, and
// UDP (run with offloads on and off by TestBulkOffloads).
func BulkSteps() []Step {
	var bulk []Step
	for _, s := range Steps() {
		if strings.HasPrefix(s.Name, "bulk") {
			bulk = append(bulk, s)
		}
	}
	return bulk
}

// RunSteps runs the given steps and reports each as it finishes.
func RunSteps(ctx context.Context, e *Env, steps []Step, report func(Result)) []Result {
	var rs []Result
	for _, s := range steps {
		start := time.Now()
		d, err := s.Run(ctx, e)
		r := Result{Step: s.Name, Detail: d, Err: err, Took: time.Since(start)}
		rs = append(rs, r)
		if report != nil {
			report(r)
		}
	}
	return rs
}

func stepHTTPSpread(ctx context.Context, e *Env) (string, error) {
	counts, err := e.Lab.ScenarioHTTPRoundRobin(ctx, e.Lab.Topo.Plan.VIP4, 10)
	return fmtSpread(counts), err
}

func stepTCPEcho(ctx context.Context, e *Env) (string, error) {
	seen, err := e.echoSessions(ctx, netip.AddrPortFrom(e.Lab.Topo.Plan.VIP4, 7), "hello", 3)
	if err != nil {
		return fmtSpread(seen), err
	}
	if len(seen) != 3 {
		return fmtSpread(seen), fmt.Errorf("3 connections reached %d real servers, want 3 (rr)", len(seen))
	}
	return fmtSpread(seen), nil
}

// echoSessions opens n sessions to the line service at addr, one line
// each ("word i"), and counts the real servers that answered.
func (e *Env) echoSessions(ctx context.Context, addr netip.AddrPort, word string, n int) (map[string]int, error) {
	seen := map[string]int{}
	for i := range n {
		line := fmt.Sprintf("%s %d", word, i)
		got, err := e.echo(ctx, addr.String(), line)
		if err != nil {
			return seen, err
		}
		name, rest, ok := strings.Cut(got, ": ")
		if !ok || rest != line {
			return seen, fmt.Errorf("answer %q", got)
		}
		seen[name]++
	}
	return seen, nil
}

func stepWeights(ctx context.Context, e *Env) (string, error) {
	vip := netip.AddrPortFrom(e.Lab.Topo.Plan.VIP4, 80).String()
	for _, cmd := range [][]string{
		{"-E", "-t", vip, "-s", "wrr"},
		{"-e", "-t", vip, "-r", "198.18.2.11:80", "-m", "-w", "3"},
	} {
		if _, err := e.Adm(ctx, cmd...); err != nil {
			return "", err
		}
	}
	counts, err := e.spread(ctx, "http://"+vip+"/", 50)
	detail := "vsgate adm -E -t " + vip + " -s wrr; -e -r 198.18.2.11:80 -m -w 3 -> " + fmtSpread(counts)
	if err != nil {
		return detail, err
	}
	if counts["b1"] != 30 || counts["b2"] != 10 || counts["b3"] != 10 {
		return detail, fmt.Errorf("want b1=30 b2=10 b3=10")
	}
	return detail, nil
}

func stepHealth(ctx context.Context, e *Env) (string, error) {
	if err := e.servers["b2"].Close(); err != nil {
		return "", err
	}
	down := `vsgate_backend_up{backend="198.18.2.12:80",service="TCP 198.18.0.10:80"} 0`
	start := time.Now()
	for {
		ok, err := e.metric(ctx, down)
		if err != nil {
			return "", err
		}
		if ok {
			break
		}
		if time.Since(start) > 10*time.Second {
			return "", fmt.Errorf("b2 not marked down within 10 s\n%s", e.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(start).Round(10 * time.Millisecond)
	vip := netip.AddrPortFrom(e.Lab.Topo.Plan.VIP4, 80).String()
	counts, err := e.spread(ctx, "http://"+vip+"/", 20)
	detail := fmt.Sprintf("b2's HTTP server stopped; marked down after %v; 20 requests: %s", took, fmtSpread(counts))
	if err != nil {
		return detail, err
	}
	if counts["b2"] != 0 || counts["b1"]+counts["b3"] != 20 {
		return detail, fmt.Errorf("requests still reach b2, or failed")
	}
	// Bring it back: the check lets it in again.
	h := e.Lab.MustHost("b2")
	s, err := h.StartHTTP("b2", ":80")
	if err != nil {
		return detail, err
	}
	e.servers["b2"] = s
	up := strings.Replace(down, "} 0", "} 1", 1)
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		if ok, err := e.metric(ctx, up); err != nil || ok {
			return detail + "; b2 restarted and back up", err
		}
		if time.Since(start) > 10*time.Second {
			return detail, fmt.Errorf("b2 not back up within 10 s")
		}
	}
}

func stepMasquerade(ctx context.Context, e *Env) (string, error) {
	p := e.Lab.Topo.Plan
	for _, m := range []netip.Addr{p.Masq4, p.Masq6} {
		if err := e.Lab.ScenarioMasquerade(ctx, m); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("the client saw %v and %v as the source", p.Masq4, p.Masq6), nil
}

func stepUDP(ctx context.Context, e *Env) (string, error) {
	return "", e.Lab.ScenarioUDP(ctx, e.Lab.Topo.Plan.VIP4)
}

func stepIPv6(ctx context.Context, e *Env) (string, error) {
	counts, err := e.Lab.ScenarioHTTPRoundRobin(ctx, e.Lab.Topo.Plan.VIP6, 10)
	detail := fmtSpread(counts)
	if err != nil {
		return detail, err
	}
	// Three more, every packet of the client's carrying a destination
	// options header (its transport checksum left partial by the
	// client's kernel): one to each real server, as round robin goes on.
	seen := map[string]int{}
	for range 3 {
		rep, err := e.getWithDestOpts(ctx, netip.AddrPortFrom(e.Lab.Topo.Plan.VIP6, 80), "/dstopts")
		if err != nil {
			return detail, fmt.Errorf("with a destination options header: %w", err)
		}
		seen[rep.Backend]++
	}
	detail += "; with a destination options header: " + fmtSpread(seen)
	if seen["b1"] != 1 || seen["b2"] != 1 || seen["b3"] != 1 {
		return detail, errors.New("with a destination options header: want one request at each real server")
	}
	return detail, nil
}

func stepFullNAT(ctx context.Context, e *Env) (string, error) {
	rep, err := e.get(ctx, "http://"+fullnatVIP.String()+"/fullnat")
	if err != nil {
		return "", err
	}
	detail := fmt.Sprintf("%s saw the connection from %s", rep.Backend, rep.Remote)
	if hostOf(rep.Remote) != fullnatAddr {
		return detail, fmt.Errorf("want it from %v", fullnatAddr)
	}
	return detail, nil
}

func stepList(ctx context.Context, e *Env) (string, error) {
	out, err := e.Adm(ctx, "-L", "-n", "--stats")
	if err != nil {
		return out, err
	}
	for _, want := range []string{"TCP  198.18.0.10:80", "UDP  198.18.0.10:53", "TCP  [2001:db8::10]:80", "  -> 198.18.2.11:80"} {
		if !strings.Contains(out, want) {
			return out, fmt.Errorf("listing lacks %q", want)
		}
	}
	return out, nil
}

// newRequest is a GET bound to ctx.
func newRequest(ctx context.Context, url string) (*http.Request, error) {
	return http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
}

// bulkBytes is what stepBulk fetches.
const bulkBytes = 300 << 20

func stepBulk(ctx context.Context, e *Env) (string, error) {
	return e.bulk(ctx, e.Lab.Topo.Plan.VIP4)
}

func stepBulk6(ctx context.Context, e *Env) (string, error) {
	return e.bulk(ctx, e.Lab.Topo.Plan.VIP6)
}

// bulk fetches bulkBytes from vip:80 and checks every byte, and that the
// service's statistics count the packets the bytes took on the wire (a
// super-packet as its segments): at least one per 1500 bytes.
func (e *Env) bulk(ctx context.Context, vip netip.Addr) (string, error) {
	url := fmt.Sprintf("http://%s/big?bytes=%d", netip.AddrPortFrom(vip, 80), bulkBytes)
	series := fmt.Sprintf(`vsgate_service_packets_total{direction="out",service="TCP %s"}`, netip.AddrPortFrom(vip, 80))
	before, err := e.metricValue(ctx, series)
	if err != nil {
		return "", err
	}
	req, err := newRequest(ctx, url)
	if err != nil {
		return "", err
	}
	start := time.Now()
	resp, err := e.client.HTTPClient(2 * time.Minute).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	got := sha256.New()
	n, err := io.Copy(got, resp.Body)
	took := time.Since(start)
	detail := fmt.Sprintf("%d MB in %v (%.0f Mbit/s)", n>>20, took.Round(time.Millisecond), float64(n)*8/took.Seconds()/1e6)
	if err != nil {
		return detail, err
	}
	want := sha256.New()
	chunk := bytes.Repeat([]byte{'x'}, 1<<20)
	for range bulkBytes >> 20 {
		want.Write(chunk)
	}
	if n != bulkBytes || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		return detail, fmt.Errorf("received %d bytes with SHA-256 %x, want %d bytes with %x", n, got.Sum(nil), bulkBytes, want.Sum(nil))
	}
	detail += ", SHA-256 matches"
	after, err := e.metricValue(ctx, series)
	if err != nil {
		return detail, err
	}
	counted := int64(after - before)
	detail += fmt.Sprintf("; %d packets out counted", counted)
	if counted < bulkBytes/1500 {
		return detail, fmt.Errorf("the service counted %d packets out for %d bytes: fewer than the segments on the wire", counted, bulkBytes)
	}
	return detail, nil
}

// session is one open line-service connection from the client.
type session struct {
	c net.Conn
	r *bufio.Reader
}

func (e *Env) openSession(ctx context.Context) (*session, error) {
	c, err := e.client.DialContext(ctx, "tcp", netip.AddrPortFrom(e.Lab.Topo.Plan.VIP4, 7).String())
	if err != nil {
		return nil, err
	}
	return &session{c: c, r: bufio.NewReader(c)}, nil
}

// say sends a line and returns which backend answered.
func (s *session) say(line string) (string, error) {
	_ = s.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(s.c, line+"\n"); err != nil {
		return "", err
	}
	got, err := s.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	name, rest, ok := strings.Cut(strings.TrimSpace(got), ": ")
	if !ok || rest != line {
		return "", fmt.Errorf("answer %q to %q", got, line)
	}
	return name, nil
}

func stepReload(ctx context.Context, e *Env) (string, error) {
	s, err := e.openSession(ctx)
	if err != nil {
		return "", err
	}
	defer s.c.Close()
	before, err := s.say("before")
	if err != nil {
		return "", err
	}
	// Change the file (the line service's scheduler) and reload.
	cfg, err := os.ReadFile(e.Config)
	if err != nil {
		return "", err
	}
	changed := strings.Replace(string(cfg), "  - name: telnet\n    proto: tcp\n    vip: 198.18.0.10:7\n    scheduler: rr", "  - name: telnet\n    proto: tcp\n    vip: 198.18.0.10:7\n    scheduler: lc", 1)
	if changed == string(cfg) {
		return "", fmt.Errorf("demo config: telnet service not found")
	}
	// vsgate runs as nobody: it rereads on SIGHUP a file nobody may read.
	if err := os.WriteFile(e.Config, []byte(changed), 0o600); err != nil {
		return "", err
	}
	if err := os.Chmod(e.Config, 0o644); err != nil {
		return "", err
	}
	reloads := strings.Count(e.Log(), "configuration reloaded")
	if err := e.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return "", err
	}
	for start := time.Now(); strings.Count(e.Log(), "configuration reloaded") == reloads; time.Sleep(50 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			return "", fmt.Errorf("no reload logged\n%s", e.Log())
		}
	}
	out, err := e.Adm(ctx, "-L", "-n", "-t", "198.18.0.10:7")
	if err != nil || !strings.Contains(out, "TCP  198.18.0.10:7 lc") {
		return out, fmt.Errorf("after the reload the service is not lc: %v", err)
	}
	after, err := s.say("after")
	if err != nil {
		return "", fmt.Errorf("the open connection broke across the reload: %w", err)
	}
	if after != before {
		return "", fmt.Errorf("the open connection moved from %s to %s", before, after)
	}
	// The same through vsgate adm with a file only root may read: the
	// gateway says it cannot read it, vsgate adm reads it and sends it.
	if err := os.WriteFile(e.Config, []byte(strings.Replace(changed, "scheduler: lc", "scheduler: wlc", 1)), 0o600); err != nil {
		return "", err
	}
	if err := os.Chmod(e.Config, 0o600); err != nil {
		return "", err
	}
	if out, err := e.Adm(ctx, "reload"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		return out, fmt.Errorf("the gateway read a root-only file as nobody, or said something else: %v", err)
	}
	if out, err := e.admCommand(ctx, "reload"); err != nil || out != "configuration reloaded\n" {
		return out, fmt.Errorf("vsgate adm reload of a root-only file: %v", err)
	}
	good, _ := os.ReadFile(e.Config)
	if err := os.WriteFile(e.Config, []byte(strings.Replace(string(good), "scheduler: wlc", "scheduler: nosuch", 1)), 0o600); err != nil {
		return "", err
	}
	if _, err := e.admCommand(ctx, "reload"); err == nil || !strings.Contains(err.Error(), "nosuch") {
		return "", fmt.Errorf("a bad file was accepted: %v", err)
	}
	_ = os.WriteFile(e.Config, good, 0o600)
	out, err = e.Adm(ctx, "-L", "-n", "-t", "198.18.0.10:7")
	if err != nil || !strings.Contains(out, "TCP  198.18.0.10:7 wlc") {
		return out, fmt.Errorf("after adm reload the service is not wlc: %v", err)
	}
	if last, err := s.say("last"); err != nil || last != before {
		return "", fmt.Errorf("the open connection after two reloads: %v (%s)", err, last)
	}
	return fmt.Sprintf("connection on %s answered across SIGHUP (rr -> lc) and vsgate adm reload of a root-only file (lc -> wlc); a bad file was refused", before), nil
}

func stepQuiesce(ctx context.Context, e *Env) (string, error) {
	s, err := e.openSession(ctx)
	if err != nil {
		return "", err
	}
	defer s.c.Close()
	who, err := s.say("one")
	if err != nil {
		return "", err
	}
	rip := map[string]string{"b1": "198.18.2.11:7", "b2": "198.18.2.12:7", "b3": "198.18.2.13:7"}[who]
	if _, err := e.Adm(ctx, "-e", "-t", "198.18.0.10:7", "-r", rip, "-m", "-w", "0"); err != nil {
		return "", err
	}
	if again, err := s.say("two"); err != nil || again != who {
		return "", fmt.Errorf("the open connection to the quiesced %s: %v (answered by %q)", who, err, again)
	}
	for i := range 4 {
		other, err := e.openSession(ctx)
		if err != nil {
			return "", err
		}
		got, err := other.say(fmt.Sprintf("new %d", i))
		other.c.Close()
		if err != nil {
			return "", err
		}
		if got == who {
			return "", fmt.Errorf("a new connection went to %s at weight 0", who)
		}
	}
	if _, err := s.say("three"); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s at weight 0: its open connection kept answering, 4 new connections went elsewhere", who), nil
}

func stepCaps(ctx context.Context, e *Env) (string, error) {
	pid := e.cmd.Process.Pid
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return "", err
	}
	var bits uint64 = 1 << unix.CAP_NET_ADMIN
	if e.opts.AFPacket {
		bits |= 1 << unix.CAP_NET_RAW
	}
	if !e.opts.Netstack {
		bits |= 1 << unix.CAP_NET_BIND_SERVICE // an L7 service a reload adds listens on its port
	}
	caps := fmt.Sprintf("%016x", bits)
	want := map[string]string{"Uid": "65534 65534 65534 65534", "Gid": "65534 65534 65534 65534", "Groups": "",
		"CapInh": caps, "CapPrm": caps, "CapEff": caps, "CapAmb": caps, "CapBnd": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2"}
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			return "", err
		}
		got := map[string]string{}
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok {
				got[k] = strings.Join(strings.Fields(v), " ")
			}
		}
		for k, w := range want {
			if got[k] != w {
				return "", fmt.Errorf("thread %s: %s %q, want %q", t.Name(), k, got[k], w)
			}
		}
	}
	// A link planted in the capture directory is not followed.
	dir := e.Socket + ".pcap"
	target := filepath.Join(e.Dir, "not-a-capture")
	if err := os.WriteFile(target, []byte("keep"), 0o600); err != nil {
		return "", err
	}
	if err := os.Symlink(target, filepath.Join(dir, "planted.pcap")); err != nil {
		return "", err
	}
	for _, name := range []string{"planted.pcap", target, "../x.pcap"} {
		if out, err := e.Adm(ctx, "pcap", "start", name); err == nil {
			e.Adm(ctx, "pcap", "stop")
			return out, fmt.Errorf("pcap start %s was accepted", name)
		}
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		return "", fmt.Errorf("a capture wrote through the planted link")
	}
	return fmt.Sprintf("%d threads: uid/gid 65534, CapEff=CapPrm=CapAmb %s, CapBnd 0, NoNewPrivs 1, Seccomp 2 (filter); a planted link, a path outside and ../ refused", len(tasks), caps), nil
}

func stepL7(ctx context.Context, e *Env) (string, error) {
	base := "http://" + netip.AddrPortFrom(e.Lab.Topo.Plan.VIP4, 81).String()
	// The stack the configuration asks for is the one serving.
	stack := "stack=" + e.l7Stack()
	if !strings.Contains(e.Log(), stack) {
		return "", fmt.Errorf("vsgate's log does not say its L7 services run on %s", stack)
	}
	parts := []string{"on " + stack}
	for _, tc := range []struct{ path, backend, saw string }{
		{"/sales/item?id=7", "b1", "/item"},
		{"/rd/report", "b2", "/report"},
	} {
		rep, err := e.get(ctx, base+tc.path)
		if err != nil {
			return strings.Join(parts, "; "), err
		}
		parts = append(parts, fmt.Sprintf("%s -> %s saw %s (X-Forwarded-For %s)", tc.path, rep.Backend, rep.Path, rep.XFF))
		if rep.Backend != tc.backend || rep.Path != tc.saw || rep.XFF != "198.18.0.2" {
			return strings.Join(parts, "; "), fmt.Errorf("want %s to see %s with X-Forwarded-For 198.18.0.2", tc.backend, tc.saw)
		}
	}
	counts, err := e.spread(ctx, base+"/lb/x", 30)
	parts = append(parts, "/lb/ x30: "+fmtSpread(counts))
	if err != nil {
		return strings.Join(parts, "; "), err
	}
	if counts["b1"] != 10 || counts["b2"] != 10 || counts["b3"] != 10 {
		return strings.Join(parts, "; "), fmt.Errorf("balancer byrequests 1:1:1 should give 10/10/10")
	}
	// The same over IPv6, to an IPv6 real server.
	rep, err := e.get(ctx, "http://"+netip.AddrPortFrom(e.Lab.Topo.Plan.VIP6, 81).String()+"/sales/v6")
	if err != nil {
		return strings.Join(parts, "; "), err
	}
	parts = append(parts, fmt.Sprintf("IPv6 /sales/v6 -> %s saw %s", rep.Backend, rep.Path))
	if rep.Backend != "b1" || rep.Path != "/v6" || rep.XFF != "2001:db8::2" {
		return strings.Join(parts, "; "), fmt.Errorf("IPv6: want b1 to see /v6 with X-Forwarded-For 2001:db8::2, got %+v", rep)
	}
	// Over IPv6 again, every packet of the client's carrying a
	// destination options header: the L7 service is found behind it.
	rep, err = e.getWithDestOpts(ctx, netip.AddrPortFrom(e.Lab.Topo.Plan.VIP6, 81), "/sales/dstopts")
	if err != nil {
		return strings.Join(parts, "; "), fmt.Errorf("IPv6 with a destination options header: %w", err)
	}
	parts = append(parts, fmt.Sprintf("IPv6 behind a destination options header: /sales/dstopts -> %s saw %s", rep.Backend, rep.Path))
	if rep.Backend != "b1" || rep.Path != "/dstopts" {
		return strings.Join(parts, "; "), fmt.Errorf("IPv6 with a destination options header: want b1 to see /dstopts, got %+v", rep)
	}
	// A path no ProxyPass covers: Apache's 404.
	if _, err := e.get(ctx, base+"/nowhere"); err == nil || !strings.Contains(err.Error(), "404") {
		return strings.Join(parts, "; "), fmt.Errorf("unrouted path: %v, want 404", err)
	}
	// The metrics count each answer by status and by who made it.
	svc := "TCP " + netip.AddrPortFrom(e.Lab.Topo.Plan.VIP4, 81).String()
	ok200, err := e.metricValue(ctx, `vsgate_l7_responses_total{code="200",service="`+svc+`",source="backend"}`)
	if err != nil {
		return strings.Join(parts, "; "), err
	}
	own404, err := e.metricValue(ctx, `vsgate_l7_responses_total{code="404",service="`+svc+`",source="proxy"}`)
	if err != nil {
		return strings.Join(parts, "; "), err
	}
	parts = append(parts, fmt.Sprintf("metrics: %.0f 200 from real servers, %.0f 404 from the proxy", ok200, own404))
	if ok200 < 32 || own404 < 1 {
		return strings.Join(parts, "; "), fmt.Errorf("vsgate_l7_responses_total counts fewer answers than were made")
	}
	// On the kernel's TCP the plain GETs above are the event loop's own;
	// the netstack's connections are served by goroutines.
	looped, err := e.metricValue(ctx, `vsgate_l7_event_loop_requests_total{service="`+svc+`"}`)
	if err != nil {
		return strings.Join(parts, "; "), err
	}
	parts = append(parts, fmt.Sprintf("%.0f served by the event loop", looped))
	if kernel := e.l7Stack() == "kernel"; kernel && looped < 32 || !kernel && looped != 0 {
		return strings.Join(parts, "; "), fmt.Errorf("vsgate_l7_event_loop_requests_total: %.0f on the %s stack", looped, e.l7Stack())
	}
	return strings.Join(parts, "; "), nil
}

// getWithDestOpts fetches path from the client at vip over a connection
// whose every packet carries an IPv6 destination options header (a PadN
// option: the sticky IPV6_DSTOPTS socket option).
func (e *Env) getWithDestOpts(ctx context.Context, vip netip.AddrPort, path string) (netlab.HTTPReply, error) {
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			opts := []byte{0, 0, 1, 4, 0, 0, 0, 0} // next header (the kernel's), length 0, PadN of 4
			serr = unix.SetsockoptString(int(fd), unix.IPPROTO_IPV6, unix.IPV6_DSTOPTS, string(opts))
		})
		return errors.Join(err, serr)
	}}
	hc := e.client.HTTPClient(5 * time.Second)
	hc.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = e.client.Do(func() error {
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return getReply(ctx, hc, "http://"+vip.String()+path)
}

// l7Bytes is what stepL7Streams sends each way.
const l7Bytes = 100 << 20

func stepL7Streams(ctx context.Context, e *Env) (string, error) {
	vip := netip.AddrPortFrom(e.Lab.Topo.Plan.VIP4, 81)
	base := "http://" + vip.String()
	var parts []string
	// Keep-alive: one client connection, five requests; the backend sees
	// one proxy connection (one source port) for all of them.
	var dials int
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials++
		return e.client.DialContext(ctx, network, addr)
	}}}
	defer hc.CloseIdleConnections()
	remotes := map[string]bool{}
	for i := range 5 {
		resp, err := hc.Get(fmt.Sprintf("%s/sales/k%d", base, i))
		if err != nil {
			return "", err
		}
		var rep struct{ Remote string }
		err = json.NewDecoder(resp.Body).Decode(&rep)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return "", err
		}
		remotes[rep.Remote] = true
	}
	parts = append(parts, fmt.Sprintf("5 requests: %d client connection(s), %d backend connection(s)", dials, len(remotes)))
	if dials != 1 || len(remotes) != 1 {
		return strings.Join(parts, "; "), fmt.Errorf("keep-alive not reused")
	}
	// WebSocket-style Upgrade: the proxy passes the switched connection.
	c, err := e.client.DialContext(ctx, "tcp", vip.String())
	if err != nil {
		return "", err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /ws/chat HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", vip)
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	if err != nil || !strings.Contains(status, " 101 ") {
		c.Close()
		return strings.Join(parts, "; "), fmt.Errorf("upgrade: %q %v", status, err)
	}
	for {
		l, err := br.ReadString('\n')
		if err != nil || l == "\r\n" {
			break
		}
	}
	io.WriteString(c, "hello over the upgraded connection\n")
	echo, err := br.ReadString('\n')
	c.Close()
	if err != nil || echo != "hello over the upgraded connection\n" {
		return strings.Join(parts, "; "), fmt.Errorf("echo over the upgrade: %q %v", echo, err)
	}
	parts = append(parts, "Upgrade: 101 and echo")
	// 100 MB up: the backend answers the length and SHA-256 it received.
	want := sha256.New()
	chunk := bytes.Repeat([]byte{'y'}, 1<<20)
	for range l7Bytes >> 20 {
		want.Write(chunk)
	}
	pr, pw := io.Pipe()
	go func() {
		for range l7Bytes >> 20 {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Close()
	}()
	start := time.Now()
	resp, err := hc.Post(base+"/up/sink", "application/octet-stream", pr)
	if err != nil {
		return strings.Join(parts, "; "), err
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if exp := fmt.Sprintf("%d %x", l7Bytes, want.Sum(nil)); string(got) != exp {
		return strings.Join(parts, "; "), fmt.Errorf("upload: backend got %q, want %q", got, exp)
	}
	parts = append(parts, fmt.Sprintf("100 MB up in %v", time.Since(start).Round(time.Millisecond)))
	// 100 MB down.
	start = time.Now()
	resp, err = hc.Get(fmt.Sprintf("%s/sales/big?bytes=%d", base, l7Bytes))
	if err != nil {
		return strings.Join(parts, "; "), err
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	wantDown := sha256.New()
	xs := bytes.Repeat([]byte{'x'}, 1<<20)
	for range l7Bytes >> 20 {
		wantDown.Write(xs)
	}
	if err != nil || n != l7Bytes || !bytes.Equal(h.Sum(nil), wantDown.Sum(nil)) {
		return strings.Join(parts, "; "), fmt.Errorf("download: %d bytes, %v, SHA-256 match %v", n, err, bytes.Equal(h.Sum(nil), wantDown.Sum(nil)))
	}
	parts = append(parts, fmt.Sprintf("100 MB down in %v, SHA-256 both ways", time.Since(start).Round(time.Millisecond)))
	return strings.Join(parts, "; "), nil
}

// UDP bulk: udpDatagrams datagrams of udpPayload bytes, udpWindow in
// flight at a time (back to back, so that the gateway gets runs of one
// flow to coalesce).
const (
	udpPayload   = 1400
	udpDatagrams = 15000
	udpWindow    = 64
)

// udpDatagram fills b (udpPayload bytes) with datagram seq's content: its
// number, then bytes derived from it.
func udpDatagram(b []byte, seq uint32) {
	binary.BigEndian.PutUint32(b, seq)
	x := seq*2654435761 + 1
	for i := 4; i < len(b); i++ {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
}

// stepBulkUDP sends datagrams to the UDP service and checks that every
// echo carries exactly what was sent (the echo server prefixes its name).
// A window whose echoes do not all come back within a second is sent
// again, at most three times.
func stepBulkUDP(ctx context.Context, e *Env) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, err := e.client.DialContext(ctx, "udp", netip.AddrPortFrom(e.Lab.Topo.Plan.VIP4, 53).String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	sent, got := sha256.New(), sha256.New()
	pkt := make([]byte, udpPayload)
	rbuf := make([]byte, 64<<10)
	echoes := make([][]byte, udpWindow)
	resent := 0
	start := time.Now()
	for base := uint32(0); base < udpDatagrams; base += udpWindow {
		n := min(udpWindow, udpDatagrams-int(base))
		clear(echoes)
		missing := n
		for try := 0; missing > 0; try++ {
			if try == 3 {
				return "", fmt.Errorf("datagrams %d..%d: %d of %d echoes missing after %d tries", base, int(base)+n-1, missing, n, try)
			}
			if try > 0 {
				resent += missing
			}
			for i := range n {
				if echoes[i] == nil {
					udpDatagram(pkt, base+uint32(i))
					if _, err := c.Write(pkt); err != nil {
						return "", err
					}
				}
			}
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			for missing > 0 {
				k, err := c.Read(rbuf)
				if err != nil {
					break // timeout: send what is missing again
				}
				_, body, ok := bytes.Cut(rbuf[:k], []byte(": "))
				if !ok || len(body) < 4 {
					return "", fmt.Errorf("echo %q is not \"<backend>: <datagram>\"", rbuf[:min(k, 40)])
				}
				seq := binary.BigEndian.Uint32(body)
				if i := int(seq) - int(base); i >= 0 && i < n && echoes[i] == nil {
					echoes[i] = append([]byte(nil), body...)
					missing--
				}
			}
		}
		for i := range n {
			udpDatagram(pkt, base+uint32(i))
			sent.Write(pkt)
			got.Write(echoes[i])
		}
	}
	took := time.Since(start)
	total := udpDatagrams * udpPayload
	detail := fmt.Sprintf("%d datagrams (%d MB) in %v (%.0f Mbit/s each way), %d sent again",
		udpDatagrams, total>>20, took.Round(time.Millisecond), float64(total)*8/took.Seconds()/1e6, resent)
	if !bytes.Equal(sent.Sum(nil), got.Sum(nil)) {
		return detail, fmt.Errorf("echoes have SHA-256 %x, sent %x", got.Sum(nil), sent.Sum(nil))
	}
	return detail + ", SHA-256 matches", nil
}

// gwMAC is the MAC of the gateway's interface with suffix ifSuffix.
func (e *Env) gwMAC(ifSuffix string) (net.HardwareAddr, error) {
	l, err := e.gw.Netlink().LinkByName(e.Lab.IfName(ifSuffix))
	if err != nil {
		return nil, err
	}
	return l.Attrs().HardwareAddr, nil
}

// neighbour returns host's neighbour entry for addr on its interface, if
// it has a usable one.
func neighbour(h *netlab.Host, ifname string, addr netip.Addr) (net.HardwareAddr, bool) {
	l, err := h.Netlink().LinkByName(ifname)
	if err != nil {
		return nil, false
	}
	fam := netlink.FAMILY_V4
	if addr.Is6() {
		fam = netlink.FAMILY_V6
	}
	ns, err := h.Netlink().NeighList(l.Attrs().Index, fam)
	if err != nil {
		return nil, false
	}
	const usable = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE
	for _, n := range ns {
		if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == addr && n.State&usable != 0 {
			return n.HardwareAddr, true
		}
	}
	return nil, false
}

// expectNeighbours checks that host resolves each address to mac, waiting
// up to a second for entries still being learned.
func expectNeighbours(h *netlab.Host, ifname string, mac net.HardwareAddr, addrs ...netip.Addr) error {
	deadline := time.Now().Add(time.Second)
	for _, a := range addrs {
		for {
			got, ok := neighbour(h, ifname, a)
			if ok && bytes.Equal(got, mac) {
				break
			}
			if time.Now().After(deadline) {
				if !ok {
					return fmt.Errorf("%s has no neighbour entry for %v", h.Name, a)
				}
				return fmt.Errorf("%s resolves %v to %v, want the gateway's %v", h.Name, a, got, mac)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

func stepAnnounced(ctx context.Context, e *Env) (string, error) {
	mac, err := e.gwMAC(netlab.IfGWOut)
	if err != nil {
		return "", err
	}
	p := e.Lab.Topo.Plan
	addrs := []netip.Addr{p.VIP4, p.Masq4, fullnatAddr, p.Owned[0]}
	if err := expectNeighbours(e.client, e.Lab.IfName(netlab.IfHost), mac, addrs...); err != nil {
		return "", err
	}
	return fmt.Sprintf("client: %v at %v (not yet asked for)", addrs, mac), nil
}

func stepResolved(ctx context.Context, e *Env) (string, error) {
	out, err := e.gwMAC(netlab.IfGWOut)
	if err != nil {
		return "", err
	}
	in, err := e.gwMAC(netlab.IfGWIn)
	if err != nil {
		return "", err
	}
	p := e.Lab.Topo.Plan
	if err := expectNeighbours(e.client, e.Lab.IfName(netlab.IfHost), out, p.VIP4, p.VIP6); err != nil {
		return "", err
	}
	gw4, gw6 := p.Owned[2], p.Owned[3]
	for _, b := range p.Backends {
		if err := expectNeighbours(e.Lab.MustHost(b), e.Lab.IfName(netlab.IfHost), in, gw4, gw6); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("client: %v, %v at %v; %v: %v, %v at %v", p.VIP4, p.VIP6, out, strings.Join(p.Backends, " "), gw4, gw6, in), nil
}

func stepPcapFrames(ctx context.Context, e *Env) (string, error) {
	file := filepath.Join(e.Socket+".pcap", "frames.pcap")
	if out, err := e.Adm(ctx, "pcap", "start", "frames.pcap"); err != nil || out != "capturing to "+file+"\n" {
		return out, fmt.Errorf("pcap start: %v", err)
	}
	url := "http://" + netip.AddrPortFrom(e.Lab.Topo.Plan.VIP4, 80).String() + "/pcap"
	_, err := e.get(ctx, url)
	if out, serr := e.Adm(ctx, "pcap", "stop"); serr != nil {
		return out, serr
	}
	if err != nil {
		return "", err
	}
	outMAC, err := e.gwMAC(netlab.IfGWOut)
	if err != nil {
		return "", err
	}
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return "", err
	}
	if r.LinkType() != layers.LinkTypeEthernet {
		return "", fmt.Errorf("link type %v, want Ethernet", r.LinkType())
	}
	// The request reaches the gateway's out interface addressed to its
	// MAC; the reply leaves it from that MAC.
	var in, out, frames int
	for {
		data, _, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
		frames++
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if eth == nil || ip == nil {
			continue
		}
		switch {
		case bytes.Equal(eth.DstMAC, outMAC) && ip.DstIP.Equal(e.Lab.Topo.Plan.VIP4.AsSlice()):
			in++
		case bytes.Equal(eth.SrcMAC, outMAC) && ip.SrcIP.Equal(e.Lab.Topo.Plan.VIP4.AsSlice()):
			out++
		}
	}
	if in == 0 || out == 0 {
		return "", fmt.Errorf("%d frames: %d to the VIP at %v, %d from it; want both", frames, in, outMAC, out)
	}
	return fmt.Sprintf("%d frames (LINKTYPE_ETHERNET): %d client frames to the VIP at %v, %d replies from it", frames, in, outMAC, out), nil
}

func stepLiveVIP(ctx context.Context, e *Env) (string, error) {
	vip := netip.AddrPortFrom(netip.MustParseAddr("198.18.0.11"), 80)
	cmds := [][]string{
		{"-A", "-t", vip.String(), "-s", "rr"},
		{"-a", "-t", vip.String(), "-r", "198.18.2.13:80", "-m"},
	}
	for _, c := range cmds {
		if out, err := e.Adm(ctx, c...); err != nil {
			return out, err
		}
	}
	defer e.Adm(ctx, "-D", "-t", vip.String())
	mac, err := e.gwMAC(netlab.IfGWOut)
	if err != nil {
		return "", err
	}
	// The announcement alone puts it in the client's table (arp_accept).
	if err := expectNeighbours(e.client, e.Lab.IfName(netlab.IfHost), mac, vip.Addr()); err != nil {
		return "", err
	}
	r, err := e.get(ctx, "http://"+vip.String()+"/live")
	if err != nil {
		return "", err
	}
	if r.Backend != "b3" {
		return "", fmt.Errorf("answered by %q, want b3", r.Backend)
	}
	return fmt.Sprintf("vsgate adm -A -t %v; the client had it at %v before asking; b3 answered", vip, mac), nil
}

func stepHostTraffic(ctx context.Context, e *Env) (string, error) {
	var parts []string
	for _, c := range []struct {
		from *netlab.Host
		addr string
	}{{e.client, "198.18.0.3:2222"}, {e.Lab.MustHost(e.backends[0]), "[2001:db8:2::3]:2222"}} {
		ln, err := e.gw.Listen("tcp", c.addr)
		if err != nil {
			return "", err
		}
		accepted := make(chan error, 1)
		go func() {
			conn, err := ln.Accept()
			if err == nil {
				_, err = conn.Write([]byte("host\n"))
				conn.Close()
			}
			accepted <- err
		}()
		dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		conn, err := c.from.DialContext(dctx, "tcp", c.addr)
		cancel()
		if err != nil {
			ln.Close()
			return "", fmt.Errorf("%s to the gateway's own %s: %w", c.from.Name, c.addr, err)
		}
		conn.SetDeadline(time.Now().Add(3 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		ln.Close()
		if aerr := <-accepted; aerr != nil {
			return "", aerr
		}
		if err != nil || line != "host\n" {
			return "", fmt.Errorf("%s to the gateway's own %s: read %q, %v", c.from.Name, c.addr, line, err)
		}
		parts = append(parts, c.from.Name+" -> "+c.addr)
	}
	return strings.Join(parts, ", ") + ": answered by the gateway's kernel (health checks and the L7 proxy use these addresses too)", nil
}

func stepFragmentsICMP(ctx context.Context, e *Env) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	vip := e.Lab.Topo.Plan.VIP4
	c, err := e.client.DialContext(ctx, "udp", netip.AddrPortFrom(vip, 53).String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	_ = c.SetDeadline(dl)
	payload := bytes.Repeat([]byte("fragment "), 5000/9+1)[:5000]
	if _, err := c.Write(payload); err != nil {
		return "", err
	}
	buf := make([]byte, 64<<10)
	n, err := c.Read(buf)
	if err != nil {
		return "", fmt.Errorf("the 5000-byte datagram's answer: %w", err)
	}
	who, rest, ok := bytes.Cut(buf[:n], []byte(": "))
	if !ok || !bytes.Equal(rest, payload) {
		return "", fmt.Errorf("the answer to the 5000-byte datagram is %d bytes, not the datagram echoed", n)
	}

	closed, err := e.client.DialContext(ctx, "udp", netip.AddrPortFrom(vip, 54).String())
	if err != nil {
		return "", err
	}
	defer closed.Close()
	_ = closed.SetDeadline(dl)
	if _, err := closed.Write([]byte("anyone?")); err != nil {
		return "", err
	}
	if _, err := closed.Read(buf); !errors.Is(err, syscall.ECONNREFUSED) {
		return "", fmt.Errorf("a datagram to VIP:54, where no real server listens: read %v, want ECONNREFUSED (the translated ICMP port unreachable)", err)
	}
	return fmt.Sprintf("%s echoed 5000 bytes (4 fragments each way); VIP:54 -> ECONNREFUSED from the real server's ICMP error", who), nil
}

// stepL7Reload: an L7 service's directives change on reload while a
// client's keep-alive connection stays open, and its next request on
// that same connection follows the new route; a reload with a bad
// directive is refused, names the file and line, and changes nothing; one
// that adds an L7 service serves it at once, and the next, which removes
// it, stops it — the open connection stays through all of them.
func stepL7Reload(ctx context.Context, e *Env) (string, error) {
	base := "http://" + netip.AddrPortFrom(e.Lab.Topo.Plan.VIP4, 81).String()
	original, err := os.ReadFile(e.Config)
	if err != nil {
		return "", err
	}
	defer func() {
		if err := os.WriteFile(e.Config, original, 0o600); err == nil {
			e.admCommand(ctx, "reload")
		}
	}()
	var dials int
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials++
		return e.client.DialContext(ctx, network, addr)
	}}}
	defer hc.CloseIdleConnections()
	backend := func() (string, error) {
		resp, err := hc.Get(base + "/sales/reload")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var rep netlab.HTTPReply
		if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
			return "", fmt.Errorf("%s: %w", resp.Status, err)
		}
		return rep.Backend, nil
	}
	reload := func(text string) (string, error) {
		if err := os.WriteFile(e.Config, []byte(text), 0o600); err != nil {
			return "", err
		}
		return e.admCommand(ctx, "reload")
	}
	var parts []string
	first, err := backend()
	if err != nil || first != "b1" {
		return "", fmt.Errorf("/sales/ before the reload went to %q (%v), want b1", first, err)
	}
	const route = "ProxyPass /sales/ http://198.18.2.11/\n"
	if !strings.Contains(string(original), route) {
		return "", fmt.Errorf("demo config: %q not found", route)
	}
	moved := strings.Replace(string(original), route, "ProxyPass /sales/ http://198.18.2.12/\n", 1)
	if out, err := reload(moved); err != nil {
		return out, fmt.Errorf("moving /sales/ to b2: %w", err)
	}
	second, err := backend()
	parts = append(parts, fmt.Sprintf("/sales/ moved from b1 to b2 by a reload: the next request on the same connection went to %s (%d client connection(s))", second, dials))
	if err != nil || second != "b2" || dials != 1 {
		return strings.Join(parts, "; "), fmt.Errorf("after the reload: %v", err)
	}
	// A bad directive: refused at its line, nothing changes.
	lines := strings.Split(moved, "\n")
	bad := slices.Index(lines, "        ProxyPass /sales/ http://198.18.2.12/")
	if bad < 0 {
		return strings.Join(parts, "; "), errors.New("demo config: the moved route's line not found")
	}
	lines[bad] = "        ProxyPass /sales/"
	out, err := reload(strings.Join(lines, "\n"))
	where := fmt.Sprintf("%s:%d", e.Config, bad+1)
	parts = append(parts, fmt.Sprintf("a reload with a bad directive: %s", strings.TrimSpace(out+errText(err))))
	if err == nil || !strings.Contains(err.Error(), where) {
		return strings.Join(parts, "; "), fmt.Errorf("a bad directive was not refused at %s", where)
	}
	if b, err := backend(); err != nil || b != "b2" {
		return strings.Join(parts, "; "), fmt.Errorf("after the refused reload /sales/ went to %q (%v), want b2 still", b, err)
	}
	// A new L7 service: listened on and served at once; removed again by
	// the next reload. The open connection stays through both.
	added := strings.Replace(moved, "  - name: http-l7-v6\n", "  - name: http-l7-added\n    proto: tcp\n    vip: 198.18.0.10:83\n    mode: l7\n    l7: {directives: \"ProxyPass / http://198.18.2.11/\"}\n  - name: http-l7-v6\n", 1)
	if added == moved {
		return strings.Join(parts, "; "), errors.New("demo config: the IPv6 L7 service not found")
	}
	if _, err := reload(added); err != nil {
		return strings.Join(parts, "; "), fmt.Errorf("a reload adding an L7 service: %w", err)
	}
	rep, err := e.get(ctx, "http://198.18.0.10:83/new")
	parts = append(parts, fmt.Sprintf("a reload added an L7 service on 198.18.0.10:83: /new answered by %s", rep.Backend))
	if err != nil || rep.Backend != "b1" {
		return strings.Join(parts, "; "), fmt.Errorf("the added L7 service: %v", err)
	}
	// Two connections to it stay across its removal: one idle (closed
	// by the removal) and one in the middle of a 16 MiB download, which
	// finishes intact before its connection ends.
	idle, err := e.client.DialContext(ctx, "tcp", "198.18.0.10:83")
	if err != nil {
		return strings.Join(parts, "; "), err
	}
	defer idle.Close()
	idleBR := bufio.NewReader(idle)
	if err := httpGetOn(idle, idleBR, "/idle"); err != nil {
		return strings.Join(parts, "; "), fmt.Errorf("the idle connection's request: %w", err)
	}
	busy, err := e.client.DialContext(ctx, "tcp", "198.18.0.10:83")
	if err != nil {
		return strings.Join(parts, "; "), err
	}
	defer busy.Close()
	const size, seed = 16 << 20, 83
	busy.SetDeadline(time.Now().Add(60 * time.Second))
	fmt.Fprintf(busy, "GET /random?bytes=%d&seed=%d HTTP/1.1\r\nHost: x\r\n\r\n", size, seed)
	busyBR := bufio.NewReader(busy)
	resp, err := http.ReadResponse(busyBR, nil)
	if err != nil || resp.StatusCode != 200 || resp.ContentLength != size {
		return strings.Join(parts, "; "), fmt.Errorf("the download: %v %v", resp, err)
	}
	want := netlab.RandomBytes(seed)
	if err := sameBytes(resp.Body, want, 1<<20); err != nil {
		return strings.Join(parts, "; "), fmt.Errorf("the download's first MiB: %w", err)
	}
	if _, err := reload(moved); err != nil {
		return strings.Join(parts, "; "), fmt.Errorf("a reload removing it: %w", err)
	}
	idle.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := idleBR.ReadByte(); err != io.EOF {
		return strings.Join(parts, "; "), fmt.Errorf("the removed service's idle connection: read %v, want EOF (closed by the removal)", err)
	}
	if err := sameBytes(resp.Body, want, size-1<<20); err != nil {
		return strings.Join(parts, "; "), fmt.Errorf("the download across the removal: %w", err)
	}
	if _, err := busyBR.ReadByte(); err != io.EOF {
		return strings.Join(parts, "; "), fmt.Errorf("the download's connection after its response: read %v, want EOF", err)
	}
	parts = append(parts, "removed by the next reload: its idle connection closed, a 16 MiB download begun before finished intact and then its connection ended")
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	c, derr := e.client.DialContext(dctx, "tcp", "198.18.0.10:83")
	cancel()
	if derr == nil {
		c.Close()
		return strings.Join(parts, "; "), errors.New("198.18.0.10:83 still takes connections after the reload that removed its L7 service")
	}
	parts = append(parts, fmt.Sprintf("removed by the next: %v", derr))
	if b, err := backend(); err != nil || b != "b2" || dials != 1 {
		return strings.Join(parts, "; "), fmt.Errorf("after the reloads /sales/ went to %q (%v, %d connections), want b2 on the same connection", b, err, dials)
	}
	return strings.Join(parts, "; "), nil
}

// httpGetOn sends a GET for path on c and reads its whole response, which
// must be 200 and keep the connection.
func httpGetOn(c net.Conn, br *bufio.Reader, path string) error {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != 200 || resp.Close {
		return fmt.Errorf("%s, close %v", resp.Status, resp.Close)
	}
	return nil
}

// sameBytes reads n bytes of got and says where they differ from want's.
func sameBytes(got, want io.Reader, n int64) error {
	a, b := make([]byte, 64<<10), make([]byte, 64<<10)
	for off := int64(0); off < n; {
		k := int(min(int64(len(a)), n-off))
		if _, err := io.ReadFull(got, a[:k]); err != nil {
			return fmt.Errorf("at byte %d: %w", off, err)
		}
		io.ReadFull(want, b[:k])
		if !bytes.Equal(a[:k], b[:k]) {
			return fmt.Errorf("bytes %d..%d differ", off, off+int64(k))
		}
		off += int64(k)
	}
	return nil
}

// errText is err's message, or "".
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
