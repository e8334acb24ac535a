package nat_test

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

func persistEngine(t *testing.T, backends []nat.Backend) (*nat.Engine, nat.Config) {
	t.Helper()
	cfg := nat.Config{Capacity: 256, Services: []nat.Service{{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: vip.Port(),
		Scheduler: "rr", Persistence: 5 * time.Minute, PersistMask: 24, Backends: backends}}}
	e, err := nat.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e, cfg
}

func threeBackends() []nat.Backend {
	var bs []nat.Backend
	for _, r := range rips {
		bs = append(bs, nat.Backend{Addr: r, Port: 8080, Weight: 1})
	}
	return bs
}

// connect opens a TCP connection from c and returns the backend it got.
func connect(t *testing.T, w *nat.Worker, c netip.AddrPort) netip.Addr {
	t.Helper()
	b := tcp(c, vip, syn, 0)
	if v := one(w, b); v != nat.Forward {
		t.Fatalf("SYN from %v: %v", c, v)
	}
	_, d := endpoints(t, b)
	return d.Addr()
}

// TestPersistence: with -p 300 -M 24 every connection from one /24 goes to
// one backend (rr would spread them); another /24 may go elsewhere; the
// template outlives the connections by the timeout and then expires.
func TestPersistence(t *testing.T) {
	e, _ := persistEngine(t, threeBackends())
	w := e.NewWorker()
	first := connect(t, w, netip.MustParseAddrPort("198.18.1.5:1000"))
	for i := range 10 {
		// same /24, different hosts and ports
		c := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 1, byte(10 + i)}), uint16(2000+i))
		if got := connect(t, w, c); got != first {
			t.Fatalf("connection %d from %v went to %v, persistent backend is %v", i, c, got, first)
		}
	}
	other := connect(t, w, netip.MustParseAddrPort("198.18.7.5:1000"))
	if other == first {
		t.Fatalf("a second client network landed on the same backend under rr: persistence leaked across /24s")
	}
	// Each backend lists its templates (ipvsadm -L --persistent-conn):
	// one per client network.
	for _, b := range e.Services()[0].Backends {
		want := int64(0)
		if b.Addr == first || b.Addr == other {
			want = 1
		}
		if b.PersistConns != want {
			t.Fatalf("backend %v lists %d persistent connections, want %d", b.Addr, b.PersistConns, want)
		}
	}
	// All connections time out (SYN_RECV: 60 s); the template lives 5 min more.
	e.Advance(2 * time.Minute)
	e.Expire()
	if e.Flows() != 0 {
		t.Fatalf("%d flows", e.Flows())
	}
	if got := connect(t, w, netip.MustParseAddrPort("198.18.1.99:3000")); got != first {
		t.Fatalf("within the persistence timeout: %v, want %v", got, first)
	}
	e.Advance(20 * time.Minute)
	e.Expire()
	// Template gone: rr goes on from where it was, not necessarily first.
	seen := map[netip.Addr]bool{}
	for i := range 3 {
		now := time.Duration(30+i*10) * time.Minute
		e.Advance(now)
		e.Expire() // the previous connection ends; its template has 5 min left
		e.Advance(now + 6*time.Minute)
		e.Expire() // and now the template is gone
		seen[connect(t, w, netip.AddrPortFrom(netip.MustParseAddr("198.18.1.1"), uint16(4000+i)))] = true
	}
	if len(seen) < 2 {
		t.Fatalf("after the templates expired, three separate connections still all went to %v", seen)
	}
}

// TestPersistenceBackendDown: a template whose backend goes down is not
// used; the client is rescheduled.
func TestPersistenceBackendDown(t *testing.T) {
	bs := threeBackends()
	e, cfg := persistEngine(t, bs)
	w := e.NewWorker()
	first := connect(t, w, netip.MustParseAddrPort("198.18.1.5:1000"))
	for i := range cfg.Services[0].Backends {
		if cfg.Services[0].Backends[i].Addr == first {
			cfg.Services[0].Backends[i].Down = true
		}
	}
	if err := e.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if got := connect(t, w, netip.MustParseAddrPort("198.18.1.6:1000")); got == first {
		t.Fatalf("persistent client sent to backend %v that is down", got)
	}
}

// TestPersistSettingsChange: when a service's persistence mask changes, or
// persistence is turned off, the templates made under the old settings go:
// they would otherwise keep a connection for ever (a flow releases its
// template with the settings in force when it ends) and pin their client
// network to one backend once persistence is back.
func TestPersistSettingsChange(t *testing.T) {
	for _, change := range []string{"mask", "off"} {
		e, cfg := persistEngine(t, threeBackends())
		w := e.NewWorker()
		first := connect(t, w, netip.MustParseAddrPort("198.18.1.5:1000"))
		if change == "mask" {
			cfg.Services[0].PersistMask = 32
		} else {
			cfg.Services[0].Persistence = 0
		}
		if err := e.Update(cfg); err != nil {
			t.Fatal(err)
		}
		e.Advance(time.Hour)
		e.Expire()
		cfg.Services[0].PersistMask, cfg.Services[0].Persistence = 24, 5*time.Minute
		if err := e.Update(cfg); err != nil {
			t.Fatal(err)
		}
		spread := map[netip.Addr]bool{}
		for i := range 3 {
			spread[connect(t, w, netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 1, byte(9 + i)}), 3000))] = true
		}
		// One new /24 client network: all three connections share one
		// backend, chosen afresh by rr (the next after first), not the
		// template of the connection from before the change.
		if len(spread) != 1 || spread[first] {
			t.Fatalf("%s: the /24's connections went to %v; the old template pinned them to %v", change, spread, first)
		}
	}
}

// openPortZero opens a connection from c to a service whose backends have
// port 0, checks that the SYN went to the port asked for and that the
// answer leaves from to, and returns the backend's address.
func openPortZero(t *testing.T, w *nat.Worker, c, to netip.AddrPort) netip.Addr {
	t.Helper()
	b := tcp(c, to, syn, 0)
	if v := one(w, b); v != nat.Forward {
		t.Fatalf("SYN to %v: %v", to, v)
	}
	_, d := endpoints(t, b)
	if d.Port() != to.Port() {
		t.Fatalf("SYN to %v went to %v: a port-0 backend takes the port asked for", to, d)
	}
	ans := tcpSeq(d, c, synack, 0, 1, 1)
	if v := one(w, ans); v != nat.Forward {
		t.Fatalf("SYN-ACK from %v: %v", d, v)
	}
	if s, _ := endpoints(t, ans); s != to {
		t.Fatalf("the answer to %v left from %v", to, s)
	}
	return d.Addr()
}

// TestPortZero: a persistent service of port 0 takes every port of its VIP
// that no service of its own has (IPVS's port-0 services, found after the
// exact port as ip_vs_service_find does); its port-0 backends are reached
// on the client's port; one template holds a client for all ports; the
// real server's answer goes back from the port the client asked for.
func TestPortZero(t *testing.T) {
	var bs []nat.Backend
	for _, r := range rips {
		bs = append(bs, nat.Backend{Addr: r, Weight: 1})
	}
	cfg := nat.Config{Capacity: 256, Services: []nat.Service{
		{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: 0, Scheduler: "rr", Persistence: time.Minute, Backends: bs, SynProxy: nat.SynProxyOff},
		{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: 7, Scheduler: "rr", Backends: []nat.Backend{{Addr: rips[2], Port: 7007, Weight: 1}}, SynProxy: nat.SynProxyOff},
	}}
	e, err := nat.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := e.NewWorker()
	var first netip.Addr
	for i, port := range []uint16{80, 443, 22, 8080, 80} {
		c := netip.AddrPortFrom(client.Addr(), uint16(3000+i))
		d := openPortZero(t, w, c, netip.AddrPortFrom(vip.Addr(), port))
		if i == 0 {
			first = d
		} else if d != first {
			t.Fatalf("SYN to port %d went to %v, the client's template says %v", port, d, first)
		}
	}
	// The exact port's own service comes first.
	b := tcp(netip.AddrPortFrom(client.Addr(), 4000), netip.AddrPortFrom(vip.Addr(), 7), syn, 0)
	if v := one(w, b); v != nat.Forward {
		t.Fatalf("SYN to port 7: %v", v)
	}
	if _, d := endpoints(t, b); d != netip.AddrPortFrom(rips[2], 7007) {
		t.Fatalf("SYN to port 7 went to %v, want its own service's 198.18.2.13:7007", d)
	}
	// A sloppy service whose backend's address a port-0 service reaches
	// too does not take up that address's answers by their source: they
	// may be the port-0 service's (an answer from port 7 is dropped as a
	// real server's, not given the port-7 service's VIP).
	sloppy := cfg
	sloppy.Services = append(slices.Clone(cfg.Services), nat.Service{Proto: packet.ProtoTCP, VIP: netip.MustParseAddr("198.18.0.11"), Port: 7,
		Scheduler: "rr", Sloppy: true, Backends: []nat.Backend{{Addr: rips[0], Port: 7, Weight: 1}}, SynProxy: nat.SynProxyOff})
	if err := e.Update(sloppy); err != nil {
		t.Fatal(err)
	}
	if v := one(w, tcpSeq(netip.AddrPortFrom(rips[0], 7), netip.AddrPortFrom(client.Addr(), 7000), ack, 0, 1, 1)); v != nat.Drop {
		t.Fatalf("an answer from %v:7, which two services may own, was %v, want a drop", rips[0], v)
	}
	// Not persistent: refused, as ipvsadm refuses it.
	cfg.Services[0].Persistence = 0
	if err := e.Update(cfg); err == nil {
		t.Fatal("a port-0 service without persistence was accepted")
	}
}
