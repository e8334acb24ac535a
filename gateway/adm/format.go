package adm

import (
	"cmp"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"

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
}

// ServiceKey and BackendKey name rate entries.
func ServiceKey(s nat.Service) string {
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
	if m == nat.ModeFullNAT {
		return "FullNat"
	}
	return "Masq"
}

// sorted returns the services in ipvsadm's order (protocol, address,
// port) with each one's real servers sorted by address and port.
func sorted(in []nat.ServiceInfo) []nat.ServiceInfo {
	out := slices.Clone(in)
	slices.SortFunc(out, func(a, b nat.ServiceInfo) int {
		return cmp.Or(cmp.Compare(a.Proto, b.Proto), a.VIP.Compare(b.VIP), cmp.Compare(a.Port, b.Port))
	})
	for i := range out {
		bs := slices.Clone(out[i].Backends)
		slices.SortFunc(bs, func(a, b nat.BackendInfo) int {
			return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Port, b.Port))
		})
		out[i].Backends = bs
	}
	return out
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
	fmt.Fprintf(w, "IP Virtual Server version 1.2.1 (size=%d)\n", v.Size)
	switch {
	case c.Stats:
		fmt.Fprintf(w, "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n", "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes")
	case c.Rate:
		fmt.Fprintf(w, "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n", "Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS")
	default:
		fmt.Fprint(w, "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
	}
	for _, s := range sorted(v.Services) {
		if c.VIP.IsValid() && (s.Proto != c.Proto || netip.AddrPortFrom(s.VIP, s.Port) != c.VIP) {
			continue
		}
		name := fmt.Sprintf("%s  %s", protoName(s.Proto), addrPort(s.VIP, s.Port))
		if s.VIP.Is4() && len(name) > 33 {
			name = name[:33]
		}
		switch {
		case c.Stats:
			fmt.Fprintf(w, "%-33s", name)
			writeStats(w, s.Stats, c.Exact)
			for _, b := range s.Backends {
				fmt.Fprintf(w, "  -> %-28s", addrPort(b.Addr, b.Port))
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
				fmt.Fprintf(w, "  -> %-28s %8d %8d %8d", addrPort(b.Addr, b.Port), r.CPS, r.InPPS, r.OutPPS)
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
			fmt.Fprintln(w)
			for _, b := range s.Backends {
				fmt.Fprintf(w, "  -> %-28s %-7s %-6d %-10d %-10d\n", addrPort(b.Addr, b.Port), fwdName(s.Mode), b.Weight, b.ActiveConns, b.InactiveConns)
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
// flows have no virtual service; ipchains -L lists those).
func writeConns(w io.Writer, flows []nat.FlowInfo) {
	fmt.Fprintln(w, "IPVS connection entries")
	fmt.Fprintf(w, "pro expire %-11s %-18s %-18s %s\n", "state", "source", "virtual", "destination")
	for _, f := range flows {
		secs := int(f.Expires / time.Second)
		fmt.Fprintf(w, "%-3s %-6s %-11s %-18s %-18s %s\n", protoName(f.Proto),
			fmt.Sprintf("%02d:%02d", secs/60, secs%60), f.State, f.OrigSrc, f.OrigDst, f.ReplySrc)
	}
}

// WriteSave writes the table as ipvsadm -S does: commands -R reads back.
func WriteSave(w io.Writer, cfg nat.Config) {
	for _, s := range cfg.Services {
		if s.Mode == nat.ModeL7 {
			continue // not an IPVS service
		}
		svc := fmt.Sprintf("-%s %s", map[bool]string{true: "u", false: "t"}[s.Proto == packet.ProtoUDP], addrPort(s.VIP, s.Port))
		fmt.Fprintf(w, "-A %s -s %s", svc, s.Scheduler)
		if f := schedFlags(s); f != "" {
			fmt.Fprintf(w, " -b %s", f)
		}
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
		fmt.Fprintln(w)
		fwd := "-m"
		if s.Mode == nat.ModeFullNAT {
			fwd = "--fullnat"
		}
		for _, b := range s.Backends {
			fmt.Fprintf(w, "-a %s -r %s %s -w %d\n", svc, addrPort(b.Addr, b.Port), fwd, b.Weight)
		}
	}
}

// WritePortfw writes ipmasqadm portfw -l output.
func WritePortfw(w io.Writer, v *View) {
	fmt.Fprintln(w, "prot localaddr            rediraddr               lport    rport  pcnt  pref")
	for _, s := range sorted(v.Services) {
		for _, b := range s.Backends {
			fmt.Fprintf(w, "%-4s %-20s %-20s %8d %8d %5d %5d\n", protoName(s.Proto), s.VIP.Unmap(), b.Addr.Unmap(),
				s.Port, b.Port, b.ActiveConns+b.InactiveConns, b.Weight)
		}
	}
}

// WriteMasq writes the masquerade rules as ipchains -L forward shows them.
func WriteMasq(w io.Writer, cfg nat.Config) {
	fmt.Fprintln(w, "Chain forward (policy ACCEPT):")
	fmt.Fprintf(w, "%-10s %-5s %-7s %-21s %-21s %s\n", "target", "prot", "opt", "source", "destination", "ports")
	for _, m := range cfg.Masquerade {
		dst := "0.0.0.0/0"
		if m.From.Addr().Is6() {
			dst = "::/0"
		}
		fmt.Fprintf(w, "%-10s %-5s %-7s %-21s %-21s %s\n", "MASQ", "all", "------", m.From, dst, "n/a -> "+m.To.String())
	}
}
