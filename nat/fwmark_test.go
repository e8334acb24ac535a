package nat_test

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// TestFwmark: marking rules give new flows a mark as iptables' mangle
// MARK rules do (the last matching rule's), and the firewall-mark service
// of that mark takes them before any service of the address and port, as
// IPVS's ip_vs_service_find looks at the mark first: port-0 backends on
// the port asked for, one persistence across the mark's addresses and
// ports, answers translated back. An address of a rule that marks a flow
// for no service is the gateway's: unmatched there, dropped.
func TestFwmark(t *testing.T) {
	var bs []nat.Backend
	for _, r := range rips {
		bs = append(bs, nat.Backend{Addr: r, Weight: 1})
	}
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	cfg := nat.Config{Capacity: 256,
		Marks: []nat.Mark{
			{Mark: 1, Dst: netip.MustParsePrefix("198.18.0.16/30"), Proto: packet.ProtoTCP, Ports: [2]uint16{80, 81}},
			{Mark: 1, Dst: netip.MustParsePrefix("198.18.0.20/32")},
			{Mark: 3, Dst: netip.MustParsePrefix("198.18.0.17/32"), Proto: packet.ProtoTCP, Ports: [2]uint16{81, 81}},
		},
		Services: []nat.Service{
			{Fwmark: 1, VIP: netip.IPv4Unspecified(), Scheduler: "rr", Persistence: time.Minute, Backends: bs, SynProxy: nat.SynProxyOff},
			{Proto: packet.ProtoTCP, VIP: a("198.18.0.18"), Port: 81, Scheduler: "rr", Backends: []nat.Backend{{Addr: rips[2], Port: 9999, Weight: 1}}, SynProxy: nat.SynProxyOff},
		}}
	e, err := nat.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := e.NewWorker()
	var first netip.Addr
	for i, to := range []netip.AddrPort{
		netip.MustParseAddrPort("198.18.0.17:80"),
		netip.MustParseAddrPort("198.18.0.18:81"), // marked first: not the address's own service
		netip.MustParseAddrPort("198.18.0.19:80"),
	} {
		c := netip.AddrPortFrom(client.Addr(), uint16(5000+i))
		d := openPortZero(t, w, c, to)
		if i == 0 {
			first = d
		} else if d != first {
			t.Fatalf("SYN to %v went to %v; the mark's persistence says %v", to, d, first)
		}
	}
	// Any protocol and port of 198.18.0.20: a UDP datagram too.
	u := udp(client, netip.MustParseAddrPort("198.18.0.20:5353"), 8)
	if v := one(w, u); v != nat.Forward {
		t.Fatalf("UDP to 198.18.0.20:5353: %v", v)
	}
	if _, d := endpoints(t, u); d != netip.AddrPortFrom(first, 5353) {
		t.Fatalf("UDP to 198.18.0.20:5353 went to %v, want %v", d, netip.AddrPortFrom(first, 5353))
	}
	// The last matching rule wins: 198.18.0.17:81 gets mark 3, which no
	// service has, and the address has no service of its own: dropped.
	// A port no rule names is dropped too.
	for _, to := range []string{"198.18.0.17:81", "198.18.0.17:82"} {
		if v := one(w, tcp(netip.AddrPortFrom(client.Addr(), 6000), netip.MustParseAddrPort(to), syn, 0)); v != nat.Drop {
			t.Fatalf("SYN to %s: %v, want a drop", to, v)
		}
	}
	if e.Services()[0].Stats.Conns != 4 {
		t.Fatalf("the fwmark service counted %d connections, want 4", e.Services()[0].Stats.Conns)
	}
	if !e.ZeroFwmark(1, false) || e.Services()[0].Stats.Conns != 0 || e.ZeroFwmark(1, true) {
		t.Fatal("ZeroFwmark")
	}
	// A refused mark changes nothing, not even the services given with it.
	bad := cfg
	bad.Marks = append(slices.Clone(cfg.Marks), nat.Mark{Mark: 4, Dst: netip.MustParsePrefix("198.18.0.0/23")})
	bad.Services = slices.Clone(cfg.Services)
	bad.Services[0].Scheduler = "wlc"
	if err := e.Update(bad); err == nil {
		t.Fatal("a mark rule of 512 addresses was accepted")
	}
	if got := e.Config(); got.Services[0].Scheduler != "rr" || len(got.Marks) != 3 {
		t.Fatalf("the refused Update changed the configuration: %+v", got.Services[0])
	}
}
