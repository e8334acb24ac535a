package nat_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// TestSourceLimits: one /24 may hold 3 half-open flows and 5 flows in all;
// the fourth SYN from it is refused (and counted) while another /24 still
// connects; a completed handshake frees a half-open place; expiry gives
// every place back.
func TestSourceLimits(t *testing.T) {
	e, err := nat.New(nat.Config{Capacity: 64, SourceHalfOpen: 3, SourceFlows: 5, SourceBits4: 24,
		Services: []nat.Service{
			{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: vip.Port(), Scheduler: "rr", Backends: []nat.Backend{{Addr: rips[0], Port: 8080, Weight: 1}}},
			{Proto: packet.ProtoUDP, VIP: vip.Addr(), Port: 53, Scheduler: "rr", Backends: []nat.Backend{{Addr: rips[0], Port: 53, Weight: 1}}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	w := e.NewWorker()
	from := func(host byte, port uint16) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, host}), port)
	}
	for i := range 3 {
		if v := one(w, tcp(from(byte(2+i), 1000), vip, syn, 0)); v != nat.Forward {
			t.Fatalf("SYN %d: %v", i, v)
		}
	}
	if v := one(w, tcp(from(9, 1000), vip, syn, 0)); v != nat.Drop || e.Drops(nat.DropSourceHalfOpen) != 1 {
		t.Fatalf("fourth half-open flow of the /24: %v, source_half_open_limit %d", v, e.Drops(nat.DropSourceHalfOpen))
	}
	other := netip.AddrPortFrom(netip.MustParseAddr("198.18.1.2"), 1000)
	if v := one(w, tcp(other, vip, syn, 0)); v != nat.Forward {
		t.Fatalf("another /24: %v", v)
	}
	// Complete one handshake: a half-open place frees up.
	one(w, tcpSeq(netip.AddrPortFrom(rips[0], 8080), from(2, 1000), synack, 0, 5000, 2))
	one(w, tcpSeq(from(2, 1000), vip, ack, 0, 2, 5001))
	if v := one(w, tcp(from(9, 1000), vip, syn, 0)); v != nat.Forward {
		t.Fatalf("after a handshake completed: %v", v)
	}
	// 4 flows of the /24 now; one UDP flow makes 5, the next is refused.
	if v := one(w, udp(from(20, 2000), netip.AddrPortFrom(vip.Addr(), 53), 1)); v != nat.Forward {
		t.Fatalf("fifth flow: %v", v)
	}
	if v := one(w, udp(from(21, 2000), netip.AddrPortFrom(vip.Addr(), 53), 1)); v != nat.Drop || e.Drops(nat.DropSourceFlows) != 1 {
		t.Fatalf("sixth flow of the /24: %v, source_flow_limit %d", v, e.Drops(nat.DropSourceFlows))
	}
	if err := e.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
	e.Advance(time.Hour)
	e.Expire()
	if err := e.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
	if v := one(w, udp(from(21, 2000), netip.AddrPortFrom(vip.Addr(), 53), 1)); v != nat.Forward {
		t.Fatalf("after expiry: %v", v)
	}
}

// TestSourceBitsFixed: the per-source prefix lengths are fixed at New, and
// so is whether sources are counted at all; an Update that changes either
// is refused; the limits themselves change live.
func TestSourceBitsFixed(t *testing.T) {
	e, err := nat.New(nat.Config{Capacity: 16, SourceBits4: 24, SourceFlows: 5})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Update(nat.Config{SourceBits4: 32, SourceFlows: 5}); err == nil {
		t.Fatal("a change of the source prefix length was accepted")
	}
	if err := e.Update(nat.Config{SourceBits4: 24, SourceFlows: 10}); err != nil {
		t.Fatalf("a new limit: %v", err)
	}
	if err := e.Update(nat.Config{SourceBits4: 24}); err != nil {
		t.Fatalf("limits off: %v", err)
	}
	off, err := nat.New(nat.Config{Capacity: 16})
	if err != nil {
		t.Fatal(err)
	}
	if err := off.Update(nat.Config{SourceHalfOpen: 3}); err == nil {
		t.Fatal("limits turned on in an engine made without them")
	}
}
