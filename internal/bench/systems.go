package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/vsgate/vsgate/internal/netlab"
	"github.com/vsgate/vsgate/internal/testcert"
)

// Addresses and ports on top of netlab's basic plan: the VIP and
// vsgate's FULLNAT source address.
const (
	vipText     = "198.18.0.10"
	fullnatAddr = "198.18.0.30"

	httpPort  = 80   // HTTP, balanced round robin over the three backends
	httpsPort = 443  // HTTPS (L7 systems with TLS), to the same backends
	iperfPort = 5201 // iperf3 TCP and UDP: one backend (b1), since its control and data connections must meet
)

// System is one system under test: how to start it in a fresh lab's
// gateway namespace. Plain data; the zero value is unusable.
type System struct {
	Name     string
	Layer    Layer
	Desc     string
	Baseline bool
	UDP      bool     // can forward UDP (iperf3 -u)
	SynFlood bool     // measured under the SYN flood workloads too
	HTTPOnly bool     // measured under the HTTP workloads only
	TLS      bool     // serves HTTPS on the VIP too (the TLS workloads)
	Tools    []string // executables it needs, with their Debian package after ':'
	version  []string // command printing its version
	start    func(ctx context.Context, e *sysEnv) error
	topo     string // netlab topology: "" for basic, netlab.TopoL2 for the AF_PACKET gateway
	// xdp runs vsgate with device.type afxdp, in a lab whose hosts send
	// whole checksums (netlab's NoChecksumOffload).
	xdp bool
}

// vip4 returns the VIP.
func vip4() netip.Addr { return netip.MustParseAddr(vipText) }

// Systems returns every system the benchmark knows, in report order
// (the baseline of each layer first).
func Systems() []System {
	return []System{
		{Name: "kernel-dnat", Layer: L4, Baseline: true, UDP: true, SynFlood: true, Tools: []string{"nft:nftables"},
			Desc:    "nftables DNAT (numgen round robin) in the gateway namespace: forwarding in softirq",
			version: []string{"nft", "--version"}, start: startKernel},
		{Name: "kernel-synproxy", Layer: L4, SynFlood: true, HTTPOnly: true, Tools: []string{"nft:nftables"},
			Desc:    "kernel-dnat behind the kernel's SYN proxy (nft synproxy in the forward path, the proxy's SYN DNATed in output, nf_conntrack_tcp_loose=0)",
			version: []string{"nft", "--version"}, start: startKernelSynproxy},
		{Name: "direct", Layer: L4, UDP: true, Tools: []string{"ip:iproute2"},
			Desc:    "the lab's ceiling: plain kernel forwarding to one real server, no NAT and no conntrack (b1 holds the VIP on its loopback, the gateway routes the VIP to b1)",
			version: []string{"ip", "-V"}, start: startDirect},
		{Name: "direct-xdp", Layer: L4, UDP: true, Tools: []string{"ip:iproute2"}, xdp: true,
			Desc:    "direct with an XDP program on both gateway interfaces that passes every frame to the kernel, in vsgate-afxdp's lab (hosts sending whole checksums): the ceiling of any data path that attaches XDP to these veths, as an AF_XDP socket needs",
			version: []string{"ip", "-V"}, start: startDirectXDP},
		{Name: "direct-tc", Layer: L4, UDP: true, Tools: []string{"ip:iproute2"},
			Desc:    "direct with a TC program at each gateway interface's ingress that sends every IPv4 packet not for the gateway itself out of the other (bpf_redirect_neigh): the kernel's stack skipped, its skbs (GSO, partial checksums) kept; the ceiling of a data path in TC BPF",
			version: []string{"ip", "-V"}, start: startDirectTC},
		{Name: "vsgate-nat", Layer: L4, UDP: true,
			Desc:  "vsgate run on TUN, NAT mode (DNAT, replies via policy rule), no offloads",
			start: func(ctx context.Context, e *sysEnv) error { return startVsgate(ctx, e, "nat", false) }},
		{Name: "vsgate-nat-gso", Layer: L4, UDP: true, SynFlood: true,
			Desc:  "vsgate-nat with offloads: TUN virtio-net header, TSO/USO (super-packets translated whole, UDP runs merged on write); syn_proxy: off",
			start: func(ctx context.Context, e *sysEnv) error { return startVsgate(ctx, e, "nat", true) }},
		{Name: "vsgate-synproxy", Layer: L4, SynFlood: true, HTTPOnly: true,
			Desc:  "vsgate-nat-gso with syn_proxy: on (SYN cookies; a flow only for a client that returns one)",
			start: func(ctx context.Context, e *sysEnv) error { return startVsgateWith(ctx, e, "nat", true, "on") }},
		{Name: "vsgate-afpacket", Layer: L4, UDP: true, topo: netlab.TopoL2,
			Desc:  "vsgate run on AF_PACKET (l2 topology: vsgate answers ARP for the VIP, the kernel forwards nothing), NAT mode, PACKET_VNET_HDR (GSO whole)",
			start: func(ctx context.Context, e *sysEnv) error { return startVsgate(ctx, e, "nat", true) }},
		{Name: "vsgate-afxdp", Layer: L4, UDP: true, SynFlood: true, topo: netlab.TopoL2, xdp: true,
			Desc:  "vsgate run on AF_XDP (device.type: afxdp, l2 topology: an XDP program hands the frames to one AF_XDP socket per interface, copy mode), NAT mode; the lab's hosts send whole checksums (no TSO: XDP on a veth takes no super-packets)",
			start: func(ctx context.Context, e *sysEnv) error { return startVsgate(ctx, e, "nat", true) }},
		{Name: "vsgate-afxdp-synproxy", Layer: L4, SynFlood: true, HTTPOnly: true, topo: netlab.TopoL2, xdp: true,
			Desc:  "vsgate-afxdp with syn_proxy: on",
			start: func(ctx context.Context, e *sysEnv) error { return startVsgateWith(ctx, e, "nat", true, "on") }},
		{Name: "vsgate-afpacket-synproxy", Layer: L4, SynFlood: true, HTTPOnly: true, topo: netlab.TopoL2,
			Desc:  "vsgate-afpacket with syn_proxy: on",
			start: func(ctx context.Context, e *sysEnv) error { return startVsgateWith(ctx, e, "nat", true, "on") }},
		{Name: "vsgate-fullnat", Layer: L4, UDP: true,
			Desc:  "vsgate run on TUN, FULLNAT mode (source 198.18.0.30), no offloads",
			start: func(ctx context.Context, e *sysEnv) error { return startVsgate(ctx, e, "fullnat", false) }},
		{Name: "haproxy-tcp", Layer: L4, Tools: []string{"haproxy:haproxy"},
			Desc:    "HAProxy mode tcp (terminates TCP; no UDP)",
			version: []string{"haproxy", "-v"}, start: startHAProxy(false)},
		{Name: "nginx-stream", Layer: L4, UDP: true, Tools: []string{"nginx:nginx", "/usr/lib/nginx/modules/ngx_stream_module.so:libnginx-mod-stream"},
			Desc:    "nginx stream proxy (terminates TCP; UDP proxy for iperf3 -u)",
			version: []string{"nginx", "-v"}, start: startNginx(false)},
		{Name: "nginx-http", Layer: L7, Baseline: true, TLS: true, Tools: []string{"nginx:nginx"},
			Desc:    "nginx proxy_pass to an upstream with keep-alive, adding X-Forwarded-For, -Host and -Server as Apache's mod_proxy (and so vsgate) does",
			version: []string{"nginx", "-v"}, start: startNginx(true)},
		{Name: "vsgate-l7", Layer: L7, TLS: true,
			Desc:  "vsgate L7 service: the kernel's TCP (l7.stack: kernel) + ProxyPass to a balancer:// of the three backends",
			start: func(ctx context.Context, e *sysEnv) error { return startVsgateL7(ctx, e, "kernel") }},
		{Name: "vsgate-l7-netstack", Layer: L7, TLS: true,
			Desc:  "the same on gVisor's netstack (l7.stack: netstack)",
			start: func(ctx context.Context, e *sysEnv) error { return startVsgateL7(ctx, e, "netstack") }},
		{Name: "haproxy-http", Layer: L7, TLS: true, Tools: []string{"haproxy:haproxy"},
			Desc:    "HAProxy mode http (server keep-alive, http-reuse safe), adding X-Forwarded-For, -Host and -Server",
			version: []string{"haproxy", "-v"}, start: startHAProxy(true)},
		{Name: "apache-proxy", Layer: L7, Tools: []string{"apache2:apache2"},
			Desc:    "Apache 2.4 mpm_event, ProxyPass to a balancer:// of the three backends",
			version: []string{"apache2", "-v"}, start: startApache},
	}
}

// Missing returns the Debian packages providing the tools s needs that
// are not installed.
func (s System) Missing() []string { return missingTools(s.Tools) }

// missingTools returns the packages of tools ("exe:package") not found.
func missingTools(tools []string) []string {
	var pkgs []string
	for _, t := range tools {
		exe, pkg, _ := strings.Cut(t, ":")
		if strings.HasPrefix(exe, "/") {
			if _, err := os.Stat(exe); err == nil {
				continue
			}
		} else if _, err := exec.LookPath(exe); err == nil {
			continue
		}
		pkgs = append(pkgs, pkg)
	}
	return pkgs
}

// sysEnv is one system's fresh lab while it is measured. Not safe for
// concurrent use.
type sysEnv struct {
	lab     *netlab.Lab
	gw      *netlab.Host
	client  *netlab.Host
	dir     string // this system's temp dir (configs, logs)
	exe     string // vsgate binary
	workers int
	procs   []*proc // gateway processes (CPU is measured on their trees)
	others  []*proc // helper processes (iperf3 server)
	kernel  bool    // the gateway's work is in the kernel: no process to measure
	// attached are BPF programs and links the system holds in the
	// gateway namespace, closed with it.
	attached []interface{ Close() error }
}

// backends4 returns the IPv4 addresses of the lab's backends.
func (e *sysEnv) backends4() []netip.Addr {
	var out []netip.Addr
	for i := range e.lab.Topo.Plan.Backends {
		out = append(out, netip.AddrFrom4([4]byte{198, 18, 2, byte(11 + i)}))
	}
	return out
}

// addVIP makes the VIP a local address of the gateway (for proxies, which
// listen on it).
func (e *sysEnv) addVIP() error {
	link, err := e.gw.Netlink().LinkByName(e.lab.IfName(netlab.IfGWOut))
	if err != nil {
		return err
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: vip4().AsSlice(), Mask: net.CIDRMask(32, 32)}}
	return e.gw.Netlink().AddrAdd(link, a)
}

// proc is a process the benchmark started (through ip netns exec, which
// execs it, so the PID is the program's own).
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// startProc starts name with args in host h, output to dir/<label>.log.
// The process gets SIGKILL if this process dies (Pdeathsig).
func startProc(h *netlab.Host, dir, label, name string, args ...string) (*proc, error) {
	lf, err := os.Create(filepath.Join(dir, label+".log"))
	if err != nil {
		return nil, err
	}
	cmd := h.Command(context.Background(), name, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("bench: start %s: %w", name, err)
	}
	p := &proc{name: label, cmd: cmd, done: make(chan struct{}), log: lf}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// pid returns the process ID.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// logTail returns the end of the process's log.
func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.log.Name())
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// stop ends the process: SIGTERM, then SIGKILL to it and to the
// descendants it had (nginx and Apache workers), all by PID.
func (p *proc) stop() {
	defer p.log.Close()
	if p.exited() {
		return
	}
	kids := descendants(p.pid())
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	for _, k := range kids {
		if alive(k, p.pid()) {
			_ = syscall.Kill(k, syscall.SIGKILL)
		}
	}
}

// alive reports whether pid still exists and was a descendant of root
// (its parent is root, or it was reparented to init after root ended):
// guards against signalling a recycled PID.
func alive(pid, root int) bool {
	st, err := readStat(pid)
	return err == nil && (st.ppid == root || st.ppid == 1)
}

// writeFile writes a config file into the system's dir.
// tlsFiles issues the VIP's certificate (for every system alike: ECDSA
// P-256) into the run's directory and returns the certificate, the key
// and both in one file (HAProxy's crt).
func (e *sysEnv) tlsFiles() (cert, key, both string, err error) {
	ca, err := testcert.NewCA()
	if err != nil {
		return "", "", "", err
	}
	if cert, key, err = ca.Issue(e.dir, "vip.example", 2); err != nil {
		return "", "", "", err
	}
	c, err := os.ReadFile(cert)
	if err != nil {
		return "", "", "", err
	}
	k, err := os.ReadFile(key)
	if err != nil {
		return "", "", "", err
	}
	both, err = e.writeFile("vip.pem", string(c)+string(k))
	return cert, key, both, err
}

func (e *sysEnv) writeFile(name, content string) (string, error) {
	p := filepath.Join(e.dir, name)
	return p, os.WriteFile(p, []byte(content), 0o644)
}

// startGateway starts a gateway process in the gateway namespace.
func (e *sysEnv) startGateway(label, name string, args ...string) error {
	p, err := startProc(e.gw, e.dir, label, name, args...)
	if err != nil {
		return err
	}
	e.procs = append(e.procs, p)
	return nil
}

// ready waits until the client reaches every port of the VIP through
// the gateway, or a gateway process exits.
func (e *sysEnv) ready(ctx context.Context, ports ...uint16) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for _, port := range ports {
		addr := netip.AddrPortFrom(vip4(), port).String()
		for {
			dctx, dcancel := context.WithTimeout(ctx, time.Second)
			c, err := e.client.DialContext(dctx, "tcp", addr)
			dcancel()
			if err == nil {
				c.Close()
				break
			}
			for _, p := range e.procs {
				if p.exited() {
					return fmt.Errorf("bench: %s exited: %s", p.name, p.logTail())
				}
			}
			if ctx.Err() != nil {
				var logs []string
				for _, p := range e.procs {
					logs = append(logs, p.name+": "+p.logTail())
				}
				return fmt.Errorf("bench: %s not reachable through the gateway: %v %s", addr, err, strings.Join(logs, "; "))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// close stops every process of the system (gateway first) and detaches
// its programs.
func (e *sysEnv) close() {
	for _, p := range e.procs {
		p.stop()
	}
	for _, p := range e.others {
		p.stop()
	}
	for _, a := range e.attached {
		a.Close()
	}
	e.attached = nil
}

func startKernel(ctx context.Context, e *sysEnv) error {
	e.kernel = true
	ref, err := e.lab.KernelRefFor()
	if err != nil {
		return err
	}
	// The reference as the e2e tests use it, narrowed to HTTP over IPv4
	// and without masquerade; iperf3 goes to one backend (own table).
	ref.VIPs, ref.TCPPorts, ref.UDPPorts = []netip.Addr{vip4()}, []uint16{httpPort}, nil
	ref.MasqFrom, ref.MasqTo = nil, nil
	var b4 []netip.Addr
	for _, a := range ref.Backends {
		if a.Is4() {
			b4 = append(b4, a)
		}
	}
	ref.Backends = b4
	if err := e.lab.StartKernelRef(ctx, ref); err != nil {
		return err
	}
	rs := fmt.Sprintf(`table ip vsgate_bench {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr %[1]s tcp dport %[2]d dnat ip to %[3]s
		ip daddr %[1]s udp dport %[2]d dnat ip to %[3]s
	}
}
`, vip4(), iperfPort, e.backends4()[0])
	cmd := e.gw.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rs)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("bench: nft: %w: %s", err, out)
	}
	return nil
}

// startDirect makes the VIP one real server's own address: b1 holds it
// on its loopback and the gateway routes it to b1, so every workload's
// packets are forwarded by the gateway's kernel untranslated, with no
// netfilter table in the gateway namespace (conntrack is not even
// loaded there). This is the most any gateway can do on this lab's
// links and cores.
func startDirect(ctx context.Context, e *sysEnv) error {
	e.kernel = true
	b1 := e.lab.MustHost(e.lab.Topo.Plan.Backends[0])
	if out, err := b1.Run(ctx, "ip", "addr", "add", vip4().String()+"/32", "dev", "lo"); err != nil {
		return fmt.Errorf("bench: %w: %s", err, out)
	}
	if out, err := e.gw.Run(ctx, "ip", "route", "add", vip4().String()+"/32", "via", e.backends4()[0].String()); err != nil {
		return fmt.Errorf("bench: %w: %s", err, out)
	}
	// iperf3's UDP server answers from an unconnected socket, which the
	// kernel gives b1's own address: b1's default route prefers the VIP
	// as the source, as a real server behind direct routing is set up.
	routes, err := b1.Netlink().RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			r.Src = vip4().AsSlice()
			if err := b1.Netlink().RouteReplace(&r); err != nil {
				return fmt.Errorf("bench: %s's default route from the VIP: %w", b1.Name, err)
			}
			return nil
		}
	}
	return fmt.Errorf("bench: %s has no default route", b1.Name)
}

// startDirectXDP is direct with an XDP program on the gateway's two
// interfaces that only returns XDP_PASS. Attaching XDP to a veth costs
// its peer GSO and makes the veth turn every frame into an XDP buffer
// before the kernel sees it: what remains is the most a data path that
// needs XDP on these links (AF_XDP) can reach.
func startDirectXDP(ctx context.Context, e *sysEnv) error {
	if err := startDirect(ctx, e); err != nil {
		return err
	}
	p := e.lab.Topo.Plan
	return e.gw.Do(func() error {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "pass", Type: ebpf.XDP, License: "GPL",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}}) // XDP_PASS
		if err != nil {
			return fmt.Errorf("bench: XDP program: %w", err)
		}
		e.attached = append(e.attached, prog)
		for _, name := range []string{e.lab.IfName(p.GatewayOut), e.lab.IfName(p.GatewayIn)} {
			ifi, err := net.InterfaceByName(name)
			if err != nil {
				return err
			}
			l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifi.Index, Flags: link.XDPDriverMode})
			if err != nil {
				return fmt.Errorf("bench: XDP on %s: %w", name, err)
			}
			e.attached = append(e.attached, l)
		}
		return nil
	})
}

// startDirectTC is direct with a TCX ingress program on each gateway
// interface that hands every IPv4 packet not addressed to the interface's
// own address to bpf_redirect_neigh towards the other interface: the
// kernel's FIB and neighbour table give the next hop, and the packet
// leaves without the IP stack, netfilter or a copy, as the skb it
// arrived as (a GSO super-packet stays one).
func startDirectTC(ctx context.Context, e *sysEnv) error {
	if err := startDirect(ctx, e); err != nil {
		return err
	}
	p := e.lab.Topo.Plan
	names := [2]string{e.lab.IfName(p.GatewayOut), e.lab.IfName(p.GatewayIn)}
	return e.gw.Do(func() error {
		var ifs [2]*net.Interface
		for i, name := range names {
			var err error
			if ifs[i], err = net.InterfaceByName(name); err != nil {
				return err
			}
		}
		for i, ifi := range ifs {
			own, err := interfaceIPv4(ifi)
			if err != nil {
				return err
			}
			prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "redirect", Type: ebpf.SchedCLS, License: "GPL",
				Instructions: redirectNeigh(own, ifs[1-i].Index)})
			if err != nil {
				return fmt.Errorf("bench: TC program: %w", err)
			}
			e.attached = append(e.attached, prog)
			l, err := link.AttachTCX(link.TCXOptions{Program: prog, Attach: ebpf.AttachTCXIngress, Interface: ifi.Index})
			if err != nil {
				return fmt.Errorf("bench: TC on %s: %w", ifi.Name, err)
			}
			e.attached = append(e.attached, l)
		}
		return nil
	})
}

// interfaceIPv4 is ifi's IPv4 address.
func interfaceIPv4(ifi *net.Interface) (netip.Addr, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() {
				return ip.Unmap(), nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("bench: %s has no IPv4 address", ifi.Name)
}

// redirectNeigh is a TC program: an IPv4 packet whose destination is not
// own goes to bpf_redirect_neigh(out); everything else to the stack.
func redirectNeigh(own netip.Addr, out int) asm.Instructions {
	a := own.As4()
	return asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, 76, asm.Word), // skb->data
		asm.LoadMem(asm.R3, asm.R1, 80, asm.Word), // skb->data_end
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 14+20),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.LoadMem(asm.R4, asm.R2, 12, asm.Half),
		asm.JNE.Imm(asm.R4, int32(binary.NativeEndian.Uint16([]byte{0x08, 0x00})), "pass"),
		asm.LoadMem(asm.R4, asm.R2, 14+16, asm.Word),
		asm.JEq.Imm32(asm.R4, int32(binary.NativeEndian.Uint32(a[:])), "pass"),
		asm.Mov.Imm(asm.R1, int32(out)),
		asm.Mov.Imm(asm.R2, 0), // no parameters: the FIB lookup is the kernel's
		asm.Mov.Imm(asm.R3, 0),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnRedirectNeigh.Call(),
		asm.Return(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("pass"), // TC_ACT_OK
		asm.Return(),
	}
}

// startKernelSynproxy is kernel-dnat behind the kernel's SYN proxy, as
// its documentation sets it up for forwarded traffic: the client's SYN is
// not tracked (raw prerouting), so it is not DNATed and is forwarded
// towards the VIP, where the forward chain's synproxy answers it with a
// cookie; the client's ACK is invalid to conntrack (tcp_loose off) and
// meets synproxy there too, which then sends the SYN itself, from the
// gateway's output path: the output NAT chain DNATs it over the
// backends. From then on the connection is conntrack's, DNATed and
// sequence-adjusted.
func startKernelSynproxy(ctx context.Context, e *sysEnv) error {
	if err := startKernel(ctx, e); err != nil {
		return err
	}
	if out, err := e.gw.Run(ctx, "sysctl", "-w", "net.netfilter.nf_conntrack_tcp_loose=0"); err != nil {
		return fmt.Errorf("bench: %w: %s", err, out)
	}
	var m []string
	for i, a := range e.backends4() {
		m = append(m, fmt.Sprintf("%d : %s", i, a))
	}
	rs := fmt.Sprintf(`table ip vsgate_bench_synproxy {
	chain sp_raw {
		type filter hook prerouting priority raw; policy accept;
		ip daddr %[1]s tcp dport %[2]d tcp flags & (syn|ack) == syn notrack
	}
	chain sp_forward {
		type filter hook forward priority filter; policy accept;
		ip daddr %[1]s tcp dport %[2]d ct state invalid,untracked synproxy mss 1460 wscale 7 timestamp sack-perm
		ct state invalid drop
	}
	chain sp_output {
		type nat hook output priority -100; policy accept;
		ip daddr %[1]s tcp dport %[2]d dnat ip to numgen inc mod %[3]d map { %[4]s }
	}
}
`, vip4(), httpPort, len(m), strings.Join(m, ", "))
	cmd := e.gw.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rs)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("bench: nft: %w: %s", err, out)
	}
	return nil
}

// vsgateConfig is the configuration of vsgate for the benchmark.
func (e *sysEnv) vsgateConfig(mode string, offloads bool, synProxy string) string {
	var be []string
	for _, a := range e.backends4() {
		be = append(be, fmt.Sprintf("{addr: %s:%d}", a, httpPort))
	}
	one := fmt.Sprintf("[{addr: %s:%d}]", e.backends4()[0], iperfPort)
	return fmt.Sprintf(`# vsgate bench configuration (written by vsgate-lab bench)
device: %[1]s
table: {size: 262144}
services:
  - {name: web, proto: tcp, vip: "%[2]s:%[3]d", scheduler: rr, mode: %[4]s, syn_proxy: %[10]s, backends: [%[5]s]}
  - {name: bulk, proto: tcp, vip: "%[2]s:%[6]d", scheduler: rr, mode: %[4]s, syn_proxy: off, backends: %[7]s}
  - {name: udp, proto: udp, vip: "%[2]s:%[6]d", scheduler: rr, mode: %[4]s, backends: %[7]s}
fullnat: {pool: [%[8]s]}
control: {socket: %[9]s}
pcap: {dir: %[9]s.pcap}
metrics: {listen: "off"}
log: {level: warn}
`, e.vsgateDevice(offloads), vip4(), httpPort, mode, strings.Join(be, ", "), iperfPort, one, fullnatAddr, filepath.Join(e.dir, "vsgate.sock"), synProxy)
}

// vsgateDevice is the device line of vsgate's configuration: a TUN with
// one queue per worker, or in the l2 topology AF_PACKET on the gateway's
// two interfaces with the workers shared between them.
func (e *sysEnv) vsgateDevice(offloads bool) string {
	p := e.lab.Topo.Plan
	if e.lab.Topo.Name != netlab.TopoL2 {
		return fmt.Sprintf("{type: tun, name: vsg0, queues: %d, offloads: %t}", e.workers, offloads)
	}
	var owned []string
	for _, a := range p.Owned {
		owned = append(owned, fmt.Sprintf("%q", a))
	}
	typ, queues := "afpacket", max(1, e.workers/2)
	if e.lab.Topo.NoChecksumOffload {
		typ, queues = "afxdp", 1 // the lab's veths have one queue each (two tried: no gain, docs/BENCHMARKS.md)
	}
	return fmt.Sprintf("{type: %s, interfaces: [%s, %s], queues: %d, addresses: [%s]}",
		typ, e.lab.IfName(p.GatewayOut), e.lab.IfName(p.GatewayIn), queues, strings.Join(owned, ", "))
}

// startVsgate runs vsgate with the SYN proxy off: the systems other than
// the -synproxy ones measure the data path alone.
func startVsgate(ctx context.Context, e *sysEnv, mode string, offloads bool) error {
	return startVsgateWith(ctx, e, mode, offloads, "off")
}

func startVsgateWith(ctx context.Context, e *sysEnv, mode string, offloads bool, synProxy string) error {
	if e.exe == "" {
		return errors.New("bench: no vsgate binary")
	}
	cfg, err := e.writeFile("vsgate.yaml", e.vsgateConfig(mode, offloads, synProxy))
	if err != nil {
		return err
	}
	return e.startGateway("vsgate", e.exe, "run", "-c", cfg)
}

// startVsgateL7 runs vsgate with one HTTP (L7) service on the VIP, routed
// like apache-proxy: ProxyPass / to a byrequests balancer of the backends,
// its clients' TCP terminated by stack (l7.stack).
func startVsgateL7(ctx context.Context, e *sysEnv, stack string) error {
	if e.exe == "" {
		return errors.New("bench: no vsgate binary")
	}
	var members strings.Builder
	for _, a := range e.backends4() {
		fmt.Fprintf(&members, "          BalancerMember http://%s:%d\n", a, httpPort)
	}
	cert, key, _, err := e.tlsFiles()
	if err != nil {
		return err
	}
	// MaxKeepAliveRequests 0, as the nginx and Apache configurations
	// here: a client's connection is never closed for its count.
	cfg, err := e.writeFile("vsgate.yaml", fmt.Sprintf(`# vsgate bench configuration (L7, written by vsgate-lab bench)
device: {type: tun, name: vsg0, queues: %[1]d}
services:
  - name: web
    proto: tcp
    vip: "%[2]s:%[3]d"
    mode: l7
    l7:
      directives: |
        MaxKeepAliveRequests 0
        <Proxy balancer://pool>
%[4]s        </Proxy>
        ProxyPass / balancer://pool/
  - name: web-tls
    proto: tcp
    vip: "%[2]s:%[7]d"
    mode: l7
    l7:
      directives: |
        MaxKeepAliveRequests 0
        SSLEngine on
        SSLCertificateFile %[8]s
        SSLCertificateKeyFile %[9]s
        <Proxy balancer://pool>
%[4]s        </Proxy>
        ProxyPass / balancer://pool/
control: {socket: %[5]s}
pcap: {dir: %[5]s.pcap}
metrics: {listen: "off"}
log: {level: warn}
l7: {stack: %[6]s}
`, e.workers, vip4(), httpPort, members.String(), filepath.Join(e.dir, "vsgate.sock"), stack, httpsPort, cert, key))
	if err != nil {
		return err
	}
	return e.startGateway("vsgate", e.exe, "run", "-c", cfg)
}

func startHAProxy(http bool) func(context.Context, *sysEnv) error {
	return func(ctx context.Context, e *sysEnv) error {
		if err := e.addVIP(); err != nil {
			return err
		}
		mode := "tcp"
		if http {
			mode = "http"
		}
		var b strings.Builder
		fmt.Fprintf(&b, `global
	nbthread %d
	maxconn 8000
defaults
	mode %s
	timeout connect 5s
	timeout client 30s
	timeout server 30s
frontend web
	bind %s:%d
	default_backend web
`, e.workers, mode, vip4(), httpPort)
		if http {
			_, _, both, err := e.tlsFiles()
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, "frontend web-tls\n\tbind %s:%d ssl crt %s\n\tdefault_backend web\n", vip4(), httpsPort, both)
			// The real servers get the fields every proxy of this bench
			// sends them: Apache's mod_proxy adds X-Forwarded-For, -Host
			// and -Server (ProxyAddHeaders On, its default), so vsgate
			// does, and the others are set to (each one is a field the
			// real server parses).
			b.WriteString("backend web\n\tbalance roundrobin\n\thttp-reuse safe\n\toption forwardfor\n" +
				"\thttp-request set-header X-Forwarded-Host %[req.hdr(host)]\n\thttp-request set-header X-Forwarded-Server %[hostname]\n")
		} else {
			b.WriteString("backend web\n\tbalance roundrobin\n")
		}
		for i, a := range e.backends4() {
			fmt.Fprintf(&b, "\tserver b%d %s:%d\n", i+1, a, httpPort)
		}
		fmt.Fprintf(&b, "frontend bulk\n\tmode tcp\n\tbind %s:%d\n\tdefault_backend bulk\nbackend bulk\n\tmode tcp\n\tserver b1 %s:%d\n",
			vip4(), iperfPort, e.backends4()[0], iperfPort)
		cfg, err := e.writeFile("haproxy.cfg", b.String())
		if err != nil {
			return err
		}
		return e.startGateway("haproxy", "haproxy", "-f", cfg, "-db")
	}
}

func startNginx(http bool) func(context.Context, *sysEnv) error {
	return func(ctx context.Context, e *sysEnv) error {
		if err := e.addVIP(); err != nil {
			return err
		}
		var b strings.Builder
		fmt.Fprintf(&b, `load_module /usr/lib/nginx/modules/ngx_stream_module.so;
user root;
worker_processes %d;
worker_rlimit_nofile 20000;
pid %[2]s/nginx.pid;
error_log %[2]s/nginx-error.log warn;
events { worker_connections 8192; }
stream {
	server { listen %[3]s:%[4]d; proxy_pass %[5]s:%[4]d; }
	server { listen %[3]s:%[4]d udp; proxy_pass %[5]s:%[4]d; proxy_timeout 10s; }
`, e.workers, e.dir, vip4(), iperfPort, e.backends4()[0])
		if !http {
			b.WriteString("\tupstream web {\n")
			for _, a := range e.backends4() {
				fmt.Fprintf(&b, "\t\tserver %s:%d;\n", a, httpPort)
			}
			fmt.Fprintf(&b, "\t}\n\tserver { listen %s:%d; proxy_pass web; }\n", vip4(), httpPort)
		}
		b.WriteString("}\n")
		if http {
			cert, key, _, err := e.tlsFiles()
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, `http {
	access_log off;
	keepalive_requests 10000000;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	upstream web {
`, e.dir)
			for _, a := range e.backends4() {
				fmt.Fprintf(&b, "\t\tserver %s:%d;\n", a, httpPort)
			}
			fmt.Fprintf(&b, `		keepalive 64;
		keepalive_requests 10000000;
	}
	server {
		listen %[1]s:%[2]d;
		listen %[1]s:%[3]d ssl;
		ssl_certificate %[4]s;
		ssl_certificate_key %[5]s;
		location / {
			proxy_pass http://web;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			# The fields Apache's mod_proxy (and vsgate) add: see
			# startHAProxy.
			proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
			proxy_set_header X-Forwarded-Host $host;
			proxy_set_header X-Forwarded-Server $hostname;
		}
	}
}
`, vip4(), httpPort, httpsPort, cert, key)
		}
		cfg, err := e.writeFile("nginx.conf", b.String())
		if err != nil {
			return err
		}
		return e.startGateway("nginx", "nginx", "-p", e.dir, "-e", filepath.Join(e.dir, "nginx-error.log"), "-c", cfg, "-g", "daemon off;")
	}
}

func startApache(ctx context.Context, e *sysEnv) error {
	if err := e.addVIP(); err != nil {
		return err
	}
	var b strings.Builder
	for _, m := range []string{"mpm_event", "authz_core", "proxy", "proxy_http", "proxy_balancer", "slotmem_shm", "lbmethod_byrequests"} {
		fmt.Fprintf(&b, "LoadModule %s_module /usr/lib/apache2/modules/mod_%s.so\n", m, m)
	}
	// Two server processes, as the other systems have two workers; each
	// has enough threads for every client connection.
	fmt.Fprintf(&b, `ServerRoot %[1]s
ServerName vsgate-bench
DefaultRuntimeDir %[1]s
PidFile %[1]s/apache.pid
ErrorLog %[1]s/apache-error.log
LogLevel warn
Mutex file:%[1]s default
User www-data
Group www-data
Listen %[2]s:%[3]d
StartServers %[4]d
ServerLimit %[4]d
ThreadLimit 64
ThreadsPerChild 64
MinSpareThreads 1
MaxSpareThreads %[5]d
MaxRequestWorkers %[5]d
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 30
<Proxy balancer://web>
`, e.dir, vip4(), httpPort, e.workers, 64*e.workers)
	for _, a := range e.backends4() {
		fmt.Fprintf(&b, "\tBalancerMember http://%s:%d\n", a, httpPort)
	}
	b.WriteString("</Proxy>\nProxyPass / balancer://web/\n")
	cfg, err := e.writeFile("apache.conf", b.String())
	if err != nil {
		return err
	}
	if err := os.Chmod(e.dir, 0o755); err != nil {
		return err
	}
	return e.startGateway("apache", "apache2", "-f", cfg, "-DFOREGROUND")
}
