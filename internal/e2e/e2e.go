package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vsgate/vsgate/gateway"
	"github.com/vsgate/vsgate/internal/netlab"
	"github.com/vsgate/vsgate/internal/testcert"
)

// Addresses of the demo on top of netlab's basic plan.
var (
	fullnatAddr = netip.MustParseAddr("198.18.0.30")
	fullnatVIP  = netip.MustParseAddrPort("198.18.0.10:8080")
	// fullnatSynProxyVIP is a FULLNAT service with syn_proxy: on.
	fullnatSynProxyVIP = netip.MustParseAddrPort("198.18.0.10:8082")
)

// Env is a running demo: the lab, the gateway process and how to talk to
// it. Create it with Start; Close tears everything down.
type Env struct {
	Lab      *netlab.Lab
	Dir      string // config, control socket, log
	Config   string // the configuration file vsgate runs with
	Socket   string
	cmd      *exec.Cmd
	servers  map[string]*netlab.Server // HTTP servers by backend
	client   *netlab.Host
	gw       *netlab.Host
	exited   chan error
	extra    []io.Closer // listeners of the extra L7 servers
	logFile  *os.File
	backends []string
	ca       *testcert.CA // issues the HTTPS service's certificates
	opts     Options
	exe      string // the vsgate binary
}

// Options change how Start runs the gateway.
type Options struct {
	// NoOffloads runs the TUN without the virtio-net header
	// (device.offloads: false): every packet crosses it MTU-sized.
	NoOffloads bool
	// AFPacket runs vsgate in AF_PACKET mode on netlab's "l2" topology
	// instead of on a TUN in "basic".
	AFPacket bool
	// XDP (with AFPacket) carries the frames through AF_XDP
	// (device.type: afxdp); the lab's hosts then send complete
	// checksums (netlab's NoChecksumOffload).
	XDP bool
	// Handbook runs the handbook replay's configuration (handbookConfig)
	// instead of the demo's: method 2 is then typed in by HandbookSteps.
	Handbook bool
	// Netstack terminates the L7 services in gVisor's netstack
	// (l7.stack: netstack) instead of the kernel's TCP.
	Netstack bool
}

// Start builds the lab, starts the test servers on every backend and runs
// the vsgate binary at exe in the gateway's namespace, with offloads.
func Start(ctx context.Context, exe string) (*Env, error) {
	return StartWith(ctx, exe, Options{})
}

// StartWith is Start with options.
func StartWith(ctx context.Context, exe string, opts Options) (_ *Env, err error) {
	if err := netlab.Check(); err != nil {
		return nil, err
	}
	topo := netlab.Basic()
	if opts.AFPacket {
		topo = netlab.L2()
		topo.NoChecksumOffload = opts.XDP
		if opts.XDP {
			// Two queues on the gateway's veths: two AF_XDP sockets
			// and workers each, the flows spread between them.
			for i, ls := range topo.Links {
				for _, end := range []netlab.Endpoint{ls.A, ls.B} {
					if end.Host == netlab.HostGW {
						topo.Links[i].Queues = xdpQueues
					}
				}
			}
		}
	}
	lab, err := netlab.Build(ctx, topo, netlab.Options{})
	if err != nil {
		return nil, err
	}
	e := &Env{Lab: lab, servers: map[string]*netlab.Server{}, exited: make(chan error, 1), opts: opts, exe: exe}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	p := lab.Topo.Plan
	e.client, e.gw, e.backends = lab.MustHost(netlab.HostClient), lab.MustHost(netlab.HostGW), p.Backends
	// The masquerade addresses are vsgate's to answer now, not the
	// kernel's: take them off the gateway's interface (vsgate answers
	// ARP/ND for them and routes them into its device). "l2" never gave
	// them to the kernel.
	out := lab.IfName(netlab.IfGWOut)
	for _, a := range []netip.Addr{p.Masq4, p.Masq6} {
		if opts.AFPacket {
			break
		}
		if b, err := e.gw.Run(ctx, "ip", "addr", "del", netip.PrefixFrom(a, map[bool]int{true: 24, false: 64}[a.Is4()]).String(), "dev", out); err != nil {
			return e, fmt.Errorf("removing %v from the gateway: %v: %s", a, err, b)
		}
	}
	for _, b := range p.Backends {
		h := lab.MustHost(b)
		s, err := h.StartHTTP(b, ":80")
		if err != nil {
			return e, err
		}
		e.servers[b] = s
		if _, err := h.StartUDPEcho(b, ":53"); err != nil {
			return e, err
		}
		if _, err := h.StartTCPEcho(b, ":7"); err != nil {
			return e, err
		}
	}
	if err := e.startL7Servers(); err != nil {
		return e, err
	}
	if e.Dir, err = os.MkdirTemp("", "vsgate-demo-"); err != nil {
		return e, err
	}
	// vsgate drops to nobody after setup: it must reach its capture
	// directory (which it makes, vsgate.sock.pcap) through this one,
	// without reading what is here.
	if err := os.Chmod(e.Dir, 0o711); err != nil {
		return e, err
	}
	if e.ca, err = testcert.NewCA(); err != nil {
		return e, err
	}
	if err := e.writeCerts(1, 0); err != nil {
		return e, err
	}
	e.Socket = filepath.Join(e.Dir, "vsgate.sock")
	cfg := filepath.Join(e.Dir, "vsgate.yaml")
	e.Config = cfg
	text := e.config(p)
	if opts.Handbook {
		text = e.handbookConfig(p)
	}
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		return e, err
	}
	if e.logFile, err = os.Create(filepath.Join(e.Dir, "vsgate.log")); err != nil {
		return e, err
	}
	e.cmd = e.gw.Command(context.Background(), exe, "run", "-c", cfg)
	e.cmd.Stdout, e.cmd.Stderr = e.logFile, e.logFile
	if err := e.cmd.Start(); err != nil {
		return e, fmt.Errorf("starting vsgate: %w", err)
	}
	go func() { e.exited <- e.cmd.Wait() }()
	// Ready when the control socket answers.
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := e.Adm(ctx, "-L", "-n"); err == nil {
			return e, nil
		}
		select {
		case err := <-e.exited:
			e.exited <- err
			return e, fmt.Errorf("vsgate exited: %v\n%s", err, e.Log())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return e, fmt.Errorf("vsgate did not come up\n%s", e.Log())
		}
	}
}

// config is the demo's configuration file.
func (e *Env) config(p netlab.Plan) string {
	var b strings.Builder
	be := func(port uint16, v6 bool) string {
		var s []string
		for i := range e.backends {
			if v6 {
				s = append(s, fmt.Sprintf("{addr: \"[2001:db8:2::%d]:%d\"}", 11+i, port))
			} else {
				s = append(s, fmt.Sprintf("{addr: 198.18.2.%d:%d}", 11+i, port))
			}
		}
		return "[" + strings.Join(s, ", ") + "]"
	}
	fmt.Fprintf(&b, `# vsgate demo configuration (written by make demo)
device: %[14]s
# syn_proxy: auto services proxy from 4096 half-open flows: above what the
# spoofed-handshake step leaves, so that the SYN flood step sees auto
# take over.
table: {syn_proxy: {half_open: 4096}}
services:
  - name: web
    proto: tcp
    vip: %[1]s:80
    scheduler: rr
    health: {type: http, path: /health, expect: 200, interval: 300ms, timeout: 200ms, rise: 1, fall: 2}
    backends: %[3]s
  - name: telnet
    proto: tcp
    vip: %[1]s:7
    scheduler: rr
    backends: %[4]s
  - name: dns
    proto: udp
    vip: %[1]s:53
    scheduler: rr
    backends: %[5]s
  - name: udp-closed
    proto: udp
    vip: %[1]s:54
    scheduler: rr
    backends: %[15]s
  - name: dns6
    proto: udp
    vip: "[%[2]s]:53"
    scheduler: rr
    backends: %[17]s
  - name: web-logged
    proto: tcp
    vip: %[1]s:84
    scheduler: rr
    flow_log: {rate: 100}
    backends: %[3]s
  - name: web6
    proto: tcp
    vip: "[%[2]s]:80"
    scheduler: rr
    backends: %[6]s
  - name: web-fullnat
    proto: tcp
    vip: %[7]s
    mode: fullnat
    scheduler: rr
    backends: %[3]s
  - name: web-synproxy
    proto: tcp
    vip: %[1]s:82
    scheduler: rr
    syn_proxy: on
    backends: %[3]s
  - name: web6-synproxy
    proto: tcp
    vip: "[%[2]s]:82"
    scheduler: rr
    syn_proxy: on
    backends: %[6]s
  - name: fullnat-synproxy
    proto: tcp
    vip: %[16]s
    mode: fullnat
    scheduler: rr
    syn_proxy: on
    backends: %[3]s
  - name: http-l7
    proto: tcp
    vip: %[1]s:81
    mode: l7
    health: {type: tcp, interval: 300ms, timeout: 200ms, rise: 1, fall: 2}
    l7:
      directives: |
        # the seed's own lines: ProxyPass /sales http://HOST/ ...
        ProxyPass /sales/ http://198.18.2.11/
        ProxyPass /rd/ http://198.18.2.12/
        <Proxy balancer://pool>
          BalancerMember http://198.18.2.11 loadfactor=1
          BalancerMember http://198.18.2.12 loadfactor=1
          BalancerMember http://198.18.2.13 loadfactor=1
        </Proxy>
        ProxyPass /lb/ balancer://pool/
        ProxyPass /up/ http://198.18.2.11:8082/
        ProxyPass /ws/ http://198.18.2.13:8081/ upgrade=websocket
        ProxyPassReverse /sales/ http://198.18.2.11/
  - name: https-l7
    proto: tcp
    vip: %[1]s:443
    mode: l7
    l7:
      directives: |
        %[19]s
  - name: http-l7-v6
    proto: tcp
    vip: "[%[2]s]:81"
    mode: l7
    l7:
      directives: |
        ProxyPass /sales/ http://[2001:db8:2::11]/
masquerade:
  - {from: %[8]s, to: %[9]s}
  - {from: "%[10]s", to: "%[11]s"}
fullnat: {pool: [%[12]s]}
control: {socket: %[13]s}
pcap: {dir: %[13]s.pcap}
metrics: {listen: 127.0.0.1:9100}
l7: {stack: %[18]s}
`, p.VIP4, p.VIP6, be(80, false), be(7, false), be(53, false), be(80, true), fullnatVIP,
		p.ServerNet4, p.Masq4, p.ServerNet6, p.Masq6, fullnatAddr, e.Socket, e.device(p), be(54, false), fullnatSynProxyVIP, be(53, true), e.l7Stack(), e.tlsDirectives())
	return b.String()
}

// l7Stack is the configuration's l7.stack.
func (e *Env) l7Stack() string {
	if e.opts.Netstack {
		return "netstack"
	}
	return "kernel"
}

// xdpQueues is the receive queues of the gateway's veths under AF_XDP.
const xdpQueues = 2

// device is the configuration's device line.
func (e *Env) device(p netlab.Plan) string {
	if !e.opts.AFPacket {
		return fmt.Sprintf("{type: tun, name: vsg0, queues: 2, offloads: %t}", !e.opts.NoOffloads)
	}
	var owned []string
	for _, a := range p.Owned {
		owned = append(owned, strconv.Quote(a.String()))
	}
	typ, queues := "afpacket", 2
	if e.opts.XDP {
		// One AF_XDP socket per receive queue of the gateway's veths.
		typ, queues = "afxdp", xdpQueues
	}
	return fmt.Sprintf("{type: %s, interfaces: [%s, %s], queues: %d, addresses: [%s]}",
		typ, e.Lab.IfName(p.GatewayOut), e.Lab.IfName(p.GatewayIn), queues, strings.Join(owned, ", "))
}

// Log returns what vsgate logged so far.
func (e *Env) Log() string {
	if e.logFile == nil {
		return ""
	}
	b, _ := os.ReadFile(e.logFile.Name())
	return string(b)
}

// Adm runs a vsgate adm command against the demo's gateway.
func (e *Env) Adm(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := gateway.Call(ctx, e.Socket, gateway.Request{Args: args})
	if err != nil {
		return "", err
	}
	if r.Status != 0 {
		return r.Output, fmt.Errorf("vsgate adm %s: %s (status %d)", strings.Join(args, " "), r.Error, r.Status)
	}
	return r.Output, nil
}

// admCommand runs `vsgate adm` (the binary, as root) against the demo's
// gateway and returns its standard output; an exit status other than 0
// is an error with its standard error.
func (e *Env) admCommand(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.exe, append([]string{"adm", "--socket", e.Socket}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("vsgate adm %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// Close stops vsgate (SIGTERM: it removes its routes and rules), then the
// lab.
func (e *Env) Close() error {
	var errs []error
	if e.cmd != nil && e.cmd.Process != nil {
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-e.exited:
			if err != nil {
				errs = append(errs, fmt.Errorf("vsgate exit: %w", err))
			}
		case <-time.After(30 * time.Second):
			// Hung (or starved: -race on two shared cores is slow).
			// SIGQUIT makes the Go runtime print every goroutine's
			// stack into the log and exit: the error carries it.
			_ = e.cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case <-e.exited:
			case <-time.After(5 * time.Second):
				_ = e.cmd.Process.Kill()
			}
			log := e.Log()
			log = log[max(0, len(log)-16<<10):]
			errs = append(errs, fmt.Errorf("vsgate did not stop within 30 s of SIGTERM; the end of its log, with its goroutines:\n%s", log))
		}
	}
	for _, c := range e.extra {
		c.Close()
	}
	if e.logFile != nil {
		e.logFile.Close()
	}
	if e.Lab != nil {
		errs = append(errs, e.Lab.Close())
	}
	if e.Dir != "" {
		os.RemoveAll(e.Dir)
	}
	return errors.Join(errs...)
}

// get fetches url from the client and returns the test server's reply.
func (e *Env) get(ctx context.Context, url string) (netlab.HTTPReply, error) {
	return e.getWithin(ctx, url, 3*time.Second)
}

// getWithin is get allowing the request d.
func (e *Env) getWithin(ctx context.Context, url string, d time.Duration) (netlab.HTTPReply, error) {
	return getReply(ctx, e.client.HTTPClient(d), url)
}

// getReply fetches url with hc and returns the test server's reply.
func getReply(ctx context.Context, hc *http.Client, url string) (netlab.HTTPReply, error) {
	var rep netlab.HTTPReply
	req, err := newRequest(ctx, url)
	if err != nil {
		return rep, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return rep, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return rep, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return rep, json.NewDecoder(resp.Body).Decode(&rep)
}

// spread sends n requests to url and counts them per backend.
func (e *Env) spread(ctx context.Context, url string, n int) (map[string]int, error) {
	counts := map[string]int{}
	for i := range n {
		rep, err := e.get(ctx, url)
		if err != nil {
			return counts, fmt.Errorf("request %d of %d: %w", i+1, n, err)
		}
		counts[rep.Backend]++
	}
	return counts, nil
}

// echo sends one line to addr from the client and returns the answer.
func (e *Env) echo(ctx context.Context, addr, line string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := e.client.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	_ = c.SetDeadline(dl)
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(got), err
}

// metrics reads the gateway's /metrics (inside its namespace).
func (e *Env) metrics(ctx context.Context) (string, error) {
	req, err := newRequest(ctx, "http://127.0.0.1:9100/metrics")
	if err != nil {
		return "", err
	}
	resp, err := e.gw.HTTPClient(3 * time.Second).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// metric reports whether the gateway's /metrics holds line.
func (e *Env) metric(ctx context.Context, line string) (bool, error) {
	m, err := e.metrics(ctx)
	return strings.Contains(m, line), err
}

// metricValue reads the value of the sample whose name and labels are
// series (as the text format writes them) from the gateway's /metrics.
func (e *Env) metricValue(ctx context.Context, series string) (float64, error) {
	m, err := e.metrics(ctx)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(m) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /metrics", series)
}

// samples returns the samples of the gateway's /metrics whose series
// (name and labels, as the text format writes them) starts with one of
// prefixes, by series.
func (e *Env) samples(ctx context.Context, prefixes ...string) (map[string]float64, error) {
	m, err := e.metrics(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for line := range strings.Lines(m) {
		line = strings.TrimSpace(line)
		if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(line, p) }) {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("/metrics: %q: %w", line, err)
		}
		out[line[:i]] = v
	}
	return out, nil
}

// dropCounts returns the gateway's drops by series (every
// vsgate_drops_total and vsgate_device_drops_total sample).
func (e *Env) dropCounts(ctx context.Context) (map[string]float64, error) {
	return e.samples(ctx, "vsgate_drops_total{", "vsgate_device_drops_total{")
}

// dropsSince lists the drop series that grew since before (from
// dropCounts), with how much: "series +n, ...", or "none".
func (e *Env) dropsSince(ctx context.Context, before map[string]float64) string {
	after, err := e.dropCounts(ctx)
	if err != nil {
		return err.Error()
	}
	var out []string
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out = append(out, fmt.Sprintf("%s +%.0f", k, d))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// metricSum adds up the samples whose series starts with prefix and
// holds label.
func (e *Env) metricSum(ctx context.Context, prefix, label string) (float64, error) {
	all, err := e.samples(ctx, prefix)
	sum := 0.0
	for series, v := range all {
		if strings.Contains(series, label) {
			sum += v
		}
	}
	return sum, err
}

func fmtSpread(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var s []string
	for _, k := range keys {
		s = append(s, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(s, " ")
}

// hostOf strips the port from an "ip:port" the test server reports.
func hostOf(s string) netip.Addr {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		h, _, _ := net.SplitHostPort(s)
		a, _ := netip.ParseAddr(h)
		return a
	}
	return ap.Addr().Unmap()
}

// startL7Servers starts what the L7 step needs beyond the test servers: an
// upload sink on b1:8082 that answers the SHA-256 and length of the body,
// and an Upgrade (WebSocket-style) echo on b3:8081.
func (e *Env) startL7Servers() error {
	up, err := e.Lab.MustHost("b1").Listen("tcp", ":8082")
	if err != nil {
		return err
	}
	go http.Serve(up, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
	}))
	ws, err := e.Lab.MustHost("b3").Listen("tcp", ":8081")
	if err != nil {
		up.Close()
		return err
	}
	go http.Serve(ws, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "upgrade required", 426)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(c, brw) // echo everything back
	}))
	e.extra = append(e.extra, up, ws)
	return nil
}
