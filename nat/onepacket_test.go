package nat_test

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// TestOnePacket: a one-packet UDP service (ipvsadm -o) schedules every
// datagram of one client's socket on its own (rr: each real server in
// turn), keeps no flow, counts a connection per datagram, and translates
// each real server's answer back to the VIP by its source; with
// persistence, the client's datagrams stay on one real server. It is
// refused for TCP.
func TestOnePacket(t *testing.T) {
	var bs []nat.Backend
	for _, r := range rips {
		bs = append(bs, nat.Backend{Addr: r, Port: 5353, Weight: 1})
	}
	svc := nat.Service{Proto: packet.ProtoUDP, VIP: vip.Addr(), Port: 53, Scheduler: "rr", OnePacket: true, Backends: bs}
	cfg := nat.Config{Capacity: 256, Services: []nat.Service{svc}}
	e, err := nat.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := e.NewWorker()
	to := netip.AddrPortFrom(vip.Addr(), 53)
	seen := map[netip.Addr]int{}
	for i := range 6 {
		b := udp(client, to, 20)
		if v := one(w, b); v != nat.Forward {
			t.Fatalf("datagram %d: %v", i, v)
		}
		_, d := endpoints(t, b)
		checksumsValid(t, b)
		seen[d.Addr()]++
		if d.Port() != 5353 {
			t.Fatalf("datagram %d went to %v", i, d)
		}
		ans := udp(d, client, 40)
		if v := one(w, ans); v != nat.Forward {
			t.Fatalf("the answer of %v: %v", d, v)
		}
		if s, _ := endpoints(t, ans); s != to {
			t.Fatalf("the answer of %v left from %v, want %v", d, s, to)
		}
		checksumsValid(t, ans)
	}
	if len(seen) != 3 || seen[rips[0]] != 2 || seen[rips[1]] != 2 || seen[rips[2]] != 2 {
		t.Fatalf("6 datagrams of one socket went %v: one-packet scheduling picks for each", seen)
	}
	if n := e.Flows(); n != 0 {
		t.Fatalf("%d flows kept", n)
	}
	if st := e.Services()[0].Stats; st.Conns != 6 || st.PacketsIn != 6 || st.PacketsOut != 6 {
		t.Fatalf("stats %+v, want 6 connections, 6 packets each way", st)
	}

	cfg.Services[0].Persistence = time.Minute
	if err := e.Update(cfg); err != nil {
		t.Fatal(err)
	}
	seen = map[netip.Addr]int{}
	for range 4 {
		b := udp(client, to, 20)
		if v := one(w, b); v != nat.Forward {
			t.Fatal(v)
		}
		_, d := endpoints(t, b)
		seen[d.Addr()]++
	}
	if len(seen) != 1 {
		t.Fatalf("a persistent one-packet service sent one client to %v", seen)
	}

	for _, bad := range []nat.Service{
		{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: 54, Scheduler: "rr", OnePacket: true, Backends: bs},
		// Port 0: an answer could not be translated back to the port asked.
		{Proto: packet.ProtoUDP, VIP: vip.Addr(), Port: 0, Persistence: time.Minute, Scheduler: "rr", OnePacket: true, Backends: bs},
	} {
		c := cfg
		c.Services = append(slices.Clone(cfg.Services), bad)
		if err := e.Update(c); err == nil {
			t.Fatalf("one-packet scheduling accepted for %+v", bad)
		}
	}
}
