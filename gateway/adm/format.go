package adm

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vsgate/vsgate/gateway/names"
	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// Rates are per-second estimates, as ipvsadm --rate shows them. The
// gateway estimates them; zero where unknown.
type Rates struct {
	CPS, InPPS, OutPPS, InBPS, OutBPS uint64
}

// View is what a listing shows: the engine's services (with rates keyed by
// the same "tcp VIP:port" and backend strings the gateway uses), flows,
// timeouts and table size.
type View struct {
	Services []nat.ServiceInfo
	Rates    map[string]Rates // by ServiceKey / BackendKey
	Flows    []nat.FlowInfo
	Timeouts nat.Timeouts
	Size     int
	Config   nat.Config
	// Names are shown in place of addresses and ports by listings without
	// -n; nil shows numbers only.
	Names *Names
}

// HasService tells whether the command's service (-t/-u) is in the view.
func (v *View) HasService(c *Command) bool {
	for _, s := range v.Services {
		if c.Selects(s.Service) {
			return true
		}
	}
	return false
}

// Names are what a listing without -n shows in place of numbers: the host
// names found for addresses (hosts file or reverse DNS, within a time
// limit: LookupNames) and the service names of ports (Services, read from
// the services file). A missing name prints as the number.
type Names struct {
	Hosts    map[netip.Addr]string
	Services names.Resolver // for PortName; nil: numbers
}

// LookupNames finds the host names of addrs with r, all within
// names.DefaultTimeout together, for a listing without -n; ports are named
// with r too.
func LookupNames(ctx context.Context, r names.Resolver, addrs []netip.Addr) *Names {
	return &Names{Hosts: names.HostNames(ctx, r, addrs), Services: r}
}

// LookupSaveNames is LookupNames for -S: it keeps a host's name only where
// the name stands for that address alone, so that -R of the saved lines
// (which takes a name for every address it has) makes the same table.
func LookupSaveNames(ctx context.Context, r names.Resolver, addrs []netip.Addr) *Names {
	n := LookupNames(ctx, r, addrs)
	for a, name := range n.Hosts {
		if got, err := r.LookupHost(ctx, name); err != nil || len(got) != 1 || got[0].Unmap() != a.Unmap() {
			delete(n.Hosts, a)
		}
	}
	return n
}

// host returns a's name, or a as a number.
func (n *Names) host(a netip.Addr) string {
	a = a.Unmap()
	if n != nil && n.Hosts[a] != "" {
		return n.Hosts[a]
	}
	return a.String()
}

// port returns port's service name for proto, or the number. A
// firewall-mark service's real servers have no protocol (0): numbers, as
// ipvsadm prints them.
func (n *Names) port(proto uint8, port uint16) string {
	if n != nil && n.Services != nil && proto != 0 {
		if s := n.Services.PortName(protoWord(proto), port); s != "" {
			return s
		}
	}
	return fmt.Sprint(port)
}

// addrPort prints as ipvsadm does: a.b.c.d:port or [v6]:port, with names
// where it has them (ipvsadm's addrport_to_anyname, which makes at most
// 59 bytes).
func (n *Names) addrPort(a netip.Addr, port uint16, proto uint8) string {
	if n == nil {
		return addrPort(a, port)
	}
	s := "[" + n.host(a) + "]:" + n.port(proto, port)
	if a.Unmap().Is4() {
		s = n.host(a) + ":" + n.port(proto, port)
	}
	return s[:min(len(s), 59)]
}

// serviceLabel is a service's name in a listing: "TCP  addr:port", or for
// a firewall-mark service "FWM  mark" (with " IPv6" for IPv6).
func serviceLabel(s nat.Service, n *Names) string {
	if s.Fwmark != 0 {
		if s.VIP.Is6() {
			return fmt.Sprintf("FWM  %d IPv6", s.Fwmark)
		}
		return fmt.Sprintf("FWM  %d", s.Fwmark)
	}
	return fmt.Sprintf("%s  %s", protoName(s.Proto), n.addrPort(s.VIP, s.Port, s.Proto))
}

// realName is a real server's column: ipvsadm cuts an IPv4 one at 28
// bytes (dname[28] = 0).
func (n *Names) realName(a netip.Addr, port uint16, proto uint8) string {
	s := n.addrPort(a, port, proto)
	if a.Unmap().Is4() && len(s) > 28 {
		s = s[:28]
	}
	return s
}

// ServiceKey and BackendKey name rate entries.
func ServiceKey(s nat.Service) string {
	if s.Fwmark != 0 {
		return serviceLabel(s, nil)
	}
	return protoName(s.Proto) + " " + netip.AddrPortFrom(s.VIP, s.Port).String()
}

// BackendKey names a backend's rate entry.
func BackendKey(s nat.Service, b nat.Backend) string {
	return ServiceKey(s) + " " + netip.AddrPortFrom(b.Addr, b.Port).String()
}

func protoName(p uint8) string {
	if p == packet.ProtoUDP {
		return "UDP"
	}
	return "TCP"
}

func fwdName(m nat.Mode) string {
	switch m {
	case nat.ModeFullNAT:
		return "FullNat"
	case nat.ModeDR:
		return "Route"
	}
	return "Masq"
}

// sorted returns the services in ipvsadm's order with each one's real
// servers in ipvsadm's order (see compareService, compareAddr).
func sorted(in []nat.ServiceInfo) []nat.ServiceInfo {
	out := slices.Clone(in)
	slices.SortStableFunc(out, func(a, b nat.ServiceInfo) int { return compareService(a.Service, b.Service) })
	for i := range out {
		bs := slices.Clone(out[i].Backends)
		slices.SortStableFunc(bs, func(a, b nat.BackendInfo) int {
			return cmp.Or(compareAddr(a.Addr, b.Addr), cmp.Compare(a.Port, b.Port))
		})
		out[i].Backends = bs
	}
	return out
}

// compareService is libipvs's ipvs_cmp_services: firewall mark (as a
// signed difference, so services without one come first), family (IPv4
// first), then protocol, address and port.
func compareService(a, b nat.Service) int {
	return cmp.Or(cmp.Compare(int32(a.Fwmark-b.Fwmark), 0), cmp.Compare(a.VIP.Unmap().BitLen(), b.VIP.Unmap().BitLen()), cmp.Compare(a.Proto, b.Proto),
		compareAddr(a.VIP, b.VIP), cmp.Compare(a.Port, b.Port))
}

// compareAddr is libipvs's address comparison: 32-bit word by word, each
// the difference of the words in host order taken as a signed int. So two
// words more than 2^31 apart sort backwards (200.0.0.1 before 10.0.0.1),
// as ipvsadm lists them.
func compareAddr(a, b netip.Addr) int {
	x, y := a.Unmap().AsSlice(), b.Unmap().AsSlice()
	if len(x) != len(y) {
		return cmp.Compare(len(x), len(y))
	}
	for i := 0; i < len(x); i += 4 {
		if d := int32(binary.BigEndian.Uint32(x[i:]) - binary.BigEndian.Uint32(y[i:])); d != 0 {
			return cmp.Compare(d, 0)
		}
	}
	return 0
}

// addrPort prints as ipvsadm -n does: a.b.c.d:port or [v6]:port.
func addrPort(a netip.Addr, port uint16) string {
	return netip.AddrPortFrom(a.Unmap(), port).String()
}

// largenum prints a counter as ipvsadm's print_largenum.
func largenum(w io.Writer, i uint64, exact bool) {
	switch {
	case exact:
		s := fmt.Sprint(i)
		fmt.Fprintf(w, "%*d", max(9, len(s)+1), i)
	case i < 100_000_000:
		fmt.Fprintf(w, "%9d", i)
	case i < 1_000_000_000:
		fmt.Fprintf(w, "%8dK", i/1000)
	case i < 100_000_000_000:
		fmt.Fprintf(w, "%8dM", i/1_000_000)
	case i < 100_000_000_000_000:
		fmt.Fprintf(w, "%8dG", i/1_000_000_000)
	default:
		fmt.Fprintf(w, "%8dT", i/1_000_000_000_000)
	}
}

// WriteList writes ipvsadm -L output for the command's options. Names are
// never resolved: vsgate always prints numerically, as -n does.
func WriteList(w io.Writer, c *Command, v *View) {
	switch {
	case c.Timeout:
		t := v.Timeouts
		fmt.Fprintf(w, "Timeout (tcp tcpfin udp): %d %d %d\n",
			int(t.TCPEstablished/time.Second), int(t.TCPFinWait/time.Second), int(t.UDP/time.Second))
		return
	case c.Conns:
		writeConns(w, v.Flows)
		return
	}
	if !c.VIP.IsValid() {
		// ipvsadm prints it for the whole table only. IPVS's size is its
		// connection hash table's; vsgate's is the flow table's capacity
		// (table.size), the flows it can track at once.
		fmt.Fprintf(w, "IP Virtual Server version 1.2.1 (size=%d)\n", v.Size)
	}
	switch {
	case c.Stats:
		fmt.Fprintf(w, "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n", "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes")
	case c.Rate:
		fmt.Fprintf(w, "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n", "Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS")
	case c.Thresholds:
		fmt.Fprintf(w, "%-33s %-10s %-10s %-10s %-10s\n  -> RemoteAddress:Port\n", "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn")
	case c.PersistentConn:
		fmt.Fprintf(w, "%-33s %-9s %-11s %-10s %-10s\n  -> RemoteAddress:Port\n", "Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn")
	case c.TunInfo:
		fmt.Fprint(w, "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n")
	default:
		fmt.Fprint(w, "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
	}
	services := sorted(v.Services)
	if c.NoSort {
		services = slices.Clone(v.Services)
		for i := range services {
			services[i].Backends = slices.Clone(services[i].Backends)
			slices.Reverse(services[i].Backends)
		}
	}
	for _, s := range services {
		if c.VIP.IsValid() && !c.Selects(s.Service) {
			continue
		}
		name := serviceLabel(s.Service, v.Names)
		if s.VIP.Is4() && len(name) > 33 {
			name = name[:33]
		}
		switch {
		case c.Stats:
			fmt.Fprintf(w, "%-33s", name)
			writeStats(w, s.Stats, c.Exact)
			for _, b := range s.Backends {
				fmt.Fprintf(w, "  -> %-28s", v.Names.realName(b.Addr, b.Port, s.Proto))
				writeStats(w, b.Stats, c.Exact)
			}
		case c.Rate:
			r := v.Rates[ServiceKey(s.Service)]
			fmt.Fprintf(w, "%-33s", name)
			for _, x := range []uint64{r.CPS, r.InPPS, r.OutPPS, r.InBPS, r.OutBPS} {
				largenum(w, x, c.Exact)
			}
			fmt.Fprintln(w)
			for _, b := range s.Backends {
				r := v.Rates[BackendKey(s.Service, b.Backend)]
				fmt.Fprintf(w, "  -> %-28s %8d %8d %8d", v.Names.realName(b.Addr, b.Port, s.Proto), r.CPS, r.InPPS, r.OutPPS)
				largenum(w, r.InBPS, c.Exact)
				largenum(w, r.OutBPS, c.Exact)
				fmt.Fprintln(w)
			}
		default:
			fmt.Fprintf(w, "%s %s", name, s.Scheduler)
			if f := schedFlags(s.Service); f != "" {
				fmt.Fprintf(w, " (%s)", f)
			}
			if s.Persistence > 0 {
				fmt.Fprintf(w, " persistent %d", int(s.Persistence/time.Second))
				if m := s.PersistMask; m != 0 && m != s.VIP.BitLen() {
					if s.VIP.Is4() {
						fmt.Fprintf(w, " mask %s", dottedMask(m))
					} else {
						fmt.Fprintf(w, " mask %d", m)
					}
				}
			}
			if s.OnePacket {
				fmt.Fprint(w, " ops")
			}
			fmt.Fprintln(w)
			for _, b := range s.Backends {
				if c.PersistentConn {
					fmt.Fprintf(w, "  -> %-28s %-9d %-11d %-10d %-10d\n", v.Names.realName(b.Addr, b.Port, s.Proto), b.Weight, b.PersistConns, b.ActiveConns, b.InactiveConns)
					continue
				}
				if c.TunInfo {
					// vsgate has no tunnels (-i): every real server's is n/a.
					fmt.Fprintf(w, "  -> %-28s %-7s %-13s %-6d %-10d %-10d\n", v.Names.realName(b.Addr, b.Port, s.Proto), fwdName(s.Mode), "n/a", b.Weight, b.ActiveConns, b.InactiveConns)
					continue
				}
				if c.Thresholds {
					fmt.Fprintf(w, "  -> %-28s %-10d %-10d %-10d %-10d\n", v.Names.realName(b.Addr, b.Port, s.Proto), b.Upper, b.Lower, b.ActiveConns, b.InactiveConns)
					continue
				}
				fmt.Fprintf(w, "  -> %-28s %-7s %-6d %-10d %-10d\n", v.Names.realName(b.Addr, b.Port, s.Proto), fwdName(s.Mode), b.Weight, b.ActiveConns, b.InactiveConns)
			}
		}
	}
}

func writeStats(w io.Writer, s nat.Stats, exact bool) {
	for _, x := range []uint64{s.Conns, s.PacketsIn, s.PacketsOut, s.BytesIn, s.BytesOut} {
		largenum(w, x, exact)
	}
	fmt.Fprintln(w)
}

func schedFlags(s nat.Service) string {
	var f []string
	if s.Sched.Fallback {
		f = append(f, "sh-fallback")
	}
	if s.Sched.Port {
		f = append(f, "sh-port")
	}
	return strings.Join(f, ",")
}

func dottedMask(bits int) string {
	m := ^uint32(0) << (32 - bits) // bits is 1..31 here: 0 and 32 print no mask
	return fmt.Sprintf("%d.%d.%d.%d", m>>24, m>>16&0xff, m>>8&0xff, m&0xff)
}

// writeConns writes ipvsadm -L -c output: service flows only (masquerade
// flows have no virtual service; ipchains -L lists those). A flow whose
// handshake was the SYN proxy's has the word "synproxy" after ipvsadm's
// columns, where a script reading those columns does not see it.
func writeConns(w io.Writer, flows []nat.FlowInfo) {
	fmt.Fprintln(w, "IPVS connection entries")
	fmt.Fprintf(w, "pro expire %-11s %-18s %-18s %s\n", "state", "source", "virtual", "destination")
	for _, f := range flows {
		secs := int(f.Expires / time.Second)
		mark := ""
		if f.Proxied {
			mark = " synproxy"
		}
		fmt.Fprintf(w, "%-3s %-6s %-11s %-18s %-18s %s%s\n", protoName(f.Proto),
			fmt.Sprintf("%02d:%02d", secs/60, secs%60), f.State, f.OrigSrc, f.OrigDst, f.ReplySrc, mark)
	}
}

// WriteSave writes the table as ipvsadm -S does: commands -R reads back,
// in ipvsadm's order, with names where n has them (-S without -n; nil:
// numbers). Connection thresholds are not written, as ipvsadm writes none.
func WriteSave(w io.Writer, cfg nat.Config, n *Names) {
	services := slices.Clone(cfg.Services)
	slices.SortStableFunc(services, compareService)
	for _, s := range services {
		if s.Mode == nat.ModeL7 {
			continue // not an IPVS service
		}
		svc := fmt.Sprintf("-%s %s", map[bool]string{true: "u", false: "t"}[s.Proto == packet.ProtoUDP], n.addrPort(s.VIP, s.Port, s.Proto))
		if s.Fwmark != 0 {
			svc = fmt.Sprintf("-f %d", s.Fwmark)
			if s.VIP.Is6() {
				svc += " -6"
			}
		}
		fmt.Fprintf(w, "-A %s -s %s", svc, s.Scheduler)
		if s.Persistence > 0 {
			fmt.Fprintf(w, " -p %d", int(s.Persistence/time.Second))
			if m := s.PersistMask; m != 0 && m != s.VIP.BitLen() {
				if s.VIP.Is4() {
					fmt.Fprintf(w, " -M %s", dottedMask(m))
				} else {
					fmt.Fprintf(w, " -M %d", m)
				}
			}
		}
		if s.OnePacket {
			fmt.Fprint(w, " -o")
		}
		if f := schedFlags(s); f != "" {
			fmt.Fprintf(w, " -b %s", f)
		}
		fmt.Fprintln(w)
		fwd := "-m"
		switch s.Mode {
		case nat.ModeFullNAT:
			fwd = "--fullnat"
		case nat.ModeDR:
			fwd = "-g"
		}
		backends := slices.Clone(s.Backends)
		slices.SortStableFunc(backends, func(a, b nat.Backend) int {
			return cmp.Or(compareAddr(a.Addr, b.Addr), cmp.Compare(a.Port, b.Port))
		})
		for _, b := range backends {
			fmt.Fprintf(w, "-a %s -r %s %s -w %d\n", svc, n.addrPort(b.Addr, b.Port, s.Proto), fwd, b.Weight)
		}
	}
}

// WritePortfw writes ipmasqadm portfw -l output.
func WritePortfw(w io.Writer, v *View) {
	fmt.Fprintln(w, "prot localaddr            rediraddr               lport    rport  pcnt  pref")
	for _, s := range sorted(v.Services) {
		for _, b := range s.Backends {
			fmt.Fprintf(w, "%-4s %-20s %-20s %8s %8s %5d %5d\n", protoName(s.Proto), v.Names.host(s.VIP), v.Names.host(b.Addr),
				v.Names.port(s.Proto, s.Port), v.Names.port(s.Proto, b.Port), b.ActiveConns+b.InactiveConns, b.Weight)
		}
	}
}

// WriteMasq writes the forward chain as ipchains 1.3 -L forward shows it
// (list_entries, print_firewall): its policy, then the masquerade rules in
// order. vsgate adds the address a rule masquerades to after the ports
// column, as " => ADDR" (where ipchains shows a REDIRECT's port): ipchains
// took the interface's address and had none to show.
func WriteMasq(w io.Writer, cfg nat.Config, n *Names) {
	policy := "ACCEPT"
	if cfg.DropUnmatched {
		policy = "DENY"
	}
	fmt.Fprintf(w, "Chain forward (policy %s):\n", policy)
	fmt.Fprintf(w, "%-9s  prot opt     %-20s  %-20s  ports\n", "target", "source", "destination")
	for _, m := range cfg.Masquerade {
		src, dst := n.subnet(m.From), n.subnet(netip.Prefix{})
		if m.Into.IsValid() {
			src, dst = n.subnet(netip.Prefix{}), n.subnet(m.Into)
		}
		fmt.Fprintf(w, "%-9s  %-5s------  %-20s %-20s  n/a => %s\n", "MASQ", "all", src, dst, n.host(m.To))
	}
}

// subnet prints a rule's subnet as ipchains does: "anywhere" (0.0.0.0/0
// with -n) for no subnet, a host as its name (without -n, where it has
// one), a subnet as ADDRESS/BITS.
func (n *Names) subnet(p netip.Prefix) string {
	switch {
	case !p.IsValid() && n == nil:
		return "0.0.0.0/0"
	case !p.IsValid():
		return "anywhere"
	case p.IsSingleIP():
		return n.host(p.Addr())
	}
	return p.String()
}
