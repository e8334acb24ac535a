package nat_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// TestSloppyNeedsACK: a sloppy service adopts a segment from mid-stream,
// which carries ACK; a flagless probe (or PSH alone, FIN alone) is no such
// segment and is dropped as no_flow, not adopted (it used to index the
// state table with -1 and crash the gateway).
func TestSloppyNeedsACK(t *testing.T) {
	e, err := nat.New(nat.Config{Services: []nat.Service{{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: 80,
		Scheduler: "mh", Sloppy: true, Backends: []nat.Backend{{Addr: rips[0], Port: 80, Weight: 1}}}}})
	if err != nil {
		t.Fatal(err)
	}
	w := e.NewWorker()
	for i, flags := range []uint8{0, packet.TCPFlagFIN, rst | ack} {
		if v := one(w, tcp(netip.AddrPortFrom(client.Addr(), uint16(2000+i)), vip, flags, 0)); v != nat.Drop {
			t.Fatalf("flags %#x: %v, want drop", flags, v)
		}
	}
	if e.Drops(nat.DropNoFlow) != 3 || e.Flows() != 0 {
		t.Fatalf("no_flow drops %d, flows %d; want 3, 0", e.Drops(nat.DropNoFlow), e.Flows())
	}
	if v := one(w, tcp(client, vip, ack, 10)); v != nat.Forward || e.Flows() != 1 {
		t.Fatalf("mid-stream ACK: %v, %d flows; want it adopted", v, e.Flows())
	}
}

// TestBadPortRanges: an empty or inverted port range is refused, for
// masquerade rules and the FULLNAT pool (one made the engine divide by
// zero on the first flow, the other handed out ports outside it).
func TestBadPortRanges(t *testing.T) {
	for _, r := range [][2]uint16{{1, 0}, {60000, 1000}, {0, 100}} {
		_, err := nat.New(nat.Config{Masquerade: []nat.Masquerade{{From: netip.MustParsePrefix("198.18.2.0/24"), To: masqTo, Ports: r}}})
		if !errors.Is(err, nat.ErrConfig) {
			t.Errorf("masquerade ports %v: %v, want a config error", r, err)
		}
		_, err = nat.New(nat.Config{FullNATPool: []netip.Addr{lip}, FullNATPorts: r})
		if !errors.Is(err, nat.ErrConfig) {
			t.Errorf("FULLNAT ports %v: %v, want a config error", r, err)
		}
	}
}

// TestUpdateAllOrNothing: an Update whose second service has a bad backend
// list (listed twice) changes nothing, not even the first service, whose
// scheduler the live snapshot shares: new flows still go where they did.
func TestUpdateAllOrNothing(t *testing.T) {
	cfg := nat.Config{Capacity: 64, Services: []nat.Service{
		{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: 80, Scheduler: "rr", Backends: []nat.Backend{{Addr: rips[0], Port: 8080, Weight: 1}}},
		{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: 81, Scheduler: "rr", Backends: []nat.Backend{{Addr: rips[0], Port: 8080, Weight: 1}}},
	}}
	e, err := nat.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	bad := cfg
	bad.Services = []nat.Service{cfg.Services[0], cfg.Services[1]}
	bad.Services[0].Backends = []nat.Backend{{Addr: rips[1], Port: 8080, Weight: 1}}
	bad.Services[1].Backends = []nat.Backend{{Addr: rips[2], Port: 8080, Weight: 1}, {Addr: rips[2], Port: 8080, Weight: 1}}
	if err := e.Update(bad); !errors.Is(err, nat.ErrConfig) {
		t.Fatalf("Update with a backend listed twice: %v", err)
	}
	w := e.NewWorker()
	for i := range 3 {
		if d := connect(t, w, netip.AddrPortFrom(client.Addr(), uint16(3000+i))); d != rips[0] {
			t.Fatalf("after the refused Update a new flow went to %v, want %v", d, rips[0])
		}
	}
	if got := e.Config().Services[0].Backends[0].Addr; got != rips[0] {
		t.Fatalf("Config() lists %v after the refused Update", got)
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

// TestFragmentsAfterReset: a first fragment of a flow whose backend was
// removed (ResetRemoved) is dropped untranslated; the fragments after it
// must not be forwarded with its untranslated addresses (to the VIP, which
// routes back into the gateway): they are dropped too.
func TestFragmentsAfterReset(t *testing.T) {
	cfg := nat.Config{Capacity: 64, ResetRemoved: true, Services: []nat.Service{{Proto: packet.ProtoUDP, VIP: vip.Addr(), Port: 53,
		Scheduler: "rr", Backends: []nat.Backend{{Addr: rips[0], Port: 53, Weight: 1}, {Addr: rips[1], Port: 53, Weight: 1}}}}}
	e, err := nat.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := e.NewWorker()
	dst := netip.AddrPortFrom(vip.Addr(), 53)
	b := udp(client, dst, 8)
	one(w, b)
	_, got := endpoints(t, b)
	var keep []nat.Backend
	for _, be := range cfg.Services[0].Backends {
		if be.Addr != got.Addr() {
			keep = append(keep, be)
		}
	}
	cfg.Services[0].Backends = keep
	if err := e.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if out, v := through(w, fragments(client, dst, 3000, 1480, 7)); len(out) != 0 {
		t.Fatalf("%d fragments of a datagram of a reset flow left (%v), want none", len(out), v)
	}
}

// TestRealServerNoFlow: a real server's packet that no flow knows (its
// flow expired) is dropped and counted, not masqueraded out of the server
// subnet: the client would get it from the wrong address, and the stray
// masquerade flow would hold the tuple its retries need.
func TestRealServerNoFlow(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	dns := netip.AddrPortFrom(vip.Addr(), 53)
	b := udp(client, dns, 8)
	one(w, b)
	_, rip := endpoints(t, b)
	e.Advance(301 * time.Second)
	if n := e.Expire(); n != 1 {
		t.Fatalf("Expire removed %d flows, want the UDP flow", n)
	}
	if v := one(w, udp(rip, client, 8)); v != nat.Drop || e.Drops(nat.DropRealServerNoFlow) != 1 || e.Flows() != 0 {
		t.Fatalf("late answer: %v, real_server_no_flow drops %d, %d flows; want drop, 1, 0", v, e.Drops(nat.DropRealServerNoFlow), e.Flows())
	}
	if v := one(w, udp(client, dns, 8)); v != nat.Forward {
		t.Fatalf("the client's retry: %v, want a new flow", v)
	}
	// The same host from another port is an inside host like any other:
	// masqueraded.
	if v := one(w, udp(netip.AddrPortFrom(rip.Addr(), 5353), netip.MustParseAddrPort("198.19.7.7:53"), 8)); v != nat.Forward {
		t.Fatalf("the real server's own query: %v, want it masqueraded", v)
	}
}

// TestMasqueradeOpensOnSYN: only a SYN opens a masqueraded TCP flow, only
// an echo request an echo flow; and an outside echo request matching an
// echo flow is not let in (the flow is a request out, its reply back).
func TestMasqueradeOpensOnSYN(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	in := netip.AddrPortFrom(rips[0], 40000)
	for i, flags := range []uint8{ack, rst, 0, finack} {
		if v := one(w, tcp(netip.AddrPortFrom(in.Addr(), uint16(40001+i)), far, flags, 0)); v != nat.Drop {
			t.Fatalf("flags %#x from inside: %v, want drop", flags, v)
		}
	}
	if e.Flows() != 0 || e.Drops(nat.DropNoFlow) != 4 {
		t.Fatalf("%d flows, no_flow drops %d; want 0, 4", e.Flows(), e.Drops(nat.DropNoFlow))
	}
	if v := one(w, tcp(in, far, syn, 0)); v != nat.Forward {
		t.Fatalf("SYN from inside: %v", v)
	}
	if v := one(w, echo(rips[1], far.Addr(), 9, 1, true)); v != nat.Drop {
		t.Fatalf("an echo reply from inside opened a flow: %v", v)
	}
	if v := one(w, echo(rips[1], far.Addr(), 7, 1, false)); v != nat.Forward {
		t.Fatalf("ping from inside: %v", v)
	}
	if v := one(w, echo(far.Addr(), masqTo, 7, 2, false)); v != nat.Drop || e.Drops(nat.DropMasqUnsolicited) != 1 {
		t.Fatalf("an outside ping matching the echo flow: %v, masq_unsolicited %d; want drop, 1", v, e.Drops(nat.DropMasqUnsolicited))
	}
	if v := one(w, echo(far.Addr(), masqTo, 7, 1, true)); v != nat.Forward {
		t.Fatalf("the ping's reply: %v, want forward", v)
	}
}

// TestScenarios walks TCP connections through each mode (NAT, FULLNAT,
// masquerade): handshake, data, FIN both ways and TIME_WAIT's timeout;
// then a connection that a reset ends, from either side, and CLOSE's
// timeout. Each answer is built from the translated packet (the server
// answers whom it saw) and must come back to the client as from whom it
// addressed. States and their time left are read from AllFlows.
func TestScenarios(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mode     nat.Mode
		src, dst netip.AddrPort
	}{
		{"nat", nat.ModeNAT, client, vip},
		{"fullnat", nat.ModeFullNAT, client, vip},
		{"masquerade", nat.ModeNAT, netip.AddrPortFrom(rips[0], 40000), far},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := engine(t, tc.mode, 64)
			w := e.NewWorker()
			now := time.Duration(0)
			state := func(src netip.AddrPort) (string, time.Duration) {
				for f := range e.AllFlows() {
					if f.OrigSrc == src {
						return f.State, f.Expires
					}
				}
				return "gone", 0
			}
			expect := func(src netip.AddrPort, st string, left time.Duration) {
				t.Helper()
				if got, l := state(src); got != st || l != left {
					t.Fatalf("flow from %v: %s with %v left, want %s with %v", src, got, l, st, left)
				}
			}
			// connect runs the handshake from src and returns the
			// translated tuple the server sees.
			connect := func(src netip.AddrPort) (seenSrc, seenDst netip.AddrPort) {
				t.Helper()
				b := tcp(src, tc.dst, syn, 0)
				if v := one(w, b); v != nat.Forward {
					t.Fatalf("SYN: %v", v)
				}
				checksumsValid(t, b)
				seenSrc, seenDst = endpoints(t, b)
				b = tcp(seenDst, seenSrc, synack, 0)
				if v := one(w, b); v != nat.Forward {
					t.Fatalf("SYN-ACK: %v", v)
				}
				checksumsValid(t, b)
				if s, d := endpoints(t, b); s != tc.dst || d != src {
					t.Fatalf("SYN-ACK reached the client as %v > %v, want %v > %v", s, d, tc.dst, src)
				}
				one(w, tcp(src, tc.dst, ack, 0))
				expect(src, "ESTABLISHED", 15*time.Minute)
				return seenSrc, seenDst
			}
			src := tc.src
			sSrc, sDst := connect(src)
			b := tcp(src, tc.dst, ack, 100)
			if v := one(w, b); v != nat.Forward {
				t.Fatalf("data: %v", v)
			}
			checksumsValid(t, b)
			if s, d := endpoints(t, b); s != sSrc || d != sDst {
				t.Fatalf("data went %v > %v, want the handshake's %v > %v", s, d, sSrc, sDst)
			}
			// IPVS's states are the server's: the client's FIN puts the
			// connection in CLOSE_WAIT (60 s), the server's in TIME_WAIT.
			one(w, tcp(src, tc.dst, finack, 0))
			expect(src, "CLOSE_WAIT", time.Minute)
			one(w, tcp(sDst, sSrc, finack, 0))
			expect(src, "TIME_WAIT", 2*time.Minute)
			one(w, tcp(src, tc.dst, ack, 0))
			expect(src, "TIME_WAIT", 2*time.Minute)
			now += 2*time.Minute + time.Second
			e.Advance(now)
			if n := e.Expire(); n != 1 {
				t.Fatalf("TIME_WAIT: Expire removed %d", n)
			}
			expect(src, "gone", 0)

			for i, fromServer := range []bool{true, false} {
				src := netip.AddrPortFrom(tc.src.Addr(), tc.src.Port()+uint16(1+i))
				sSrc, sDst := connect(src)
				if fromServer {
					one(w, tcp(sDst, sSrc, rst, 0))
				} else {
					one(w, tcp(src, tc.dst, rst, 0))
				}
				expect(src, "CLOSE", 10*time.Second)
				now += 11 * time.Second
				e.Advance(now)
				if n := e.Expire(); n != 1 {
					t.Fatalf("CLOSE after a reset (from the server: %v): Expire removed %d", fromServer, n)
				}
			}
			if tc.name != "masquerade" {
				if a, in := e.BackendConns(vip, packet.ProtoTCP); a != 0 || in != 0 {
					t.Fatalf("after every connection ended the backends count %d active, %d inactive", a, in)
				}
			}
		})
	}
}

// TestDropUnmatchedAndL7: with DropUnmatched a packet that matches no
// flow, service or rule is dropped and counted instead of passed; a packet
// for an L7 service is handed to the proxy unchanged (ToL7), its
// fragments after it too, and the engine keeps no flow for it.
func TestDropUnmatchedAndL7(t *testing.T) {
	web := netip.AddrPortFrom(vip.Addr(), 8443)
	e, err := nat.New(nat.Config{Capacity: 64, DropUnmatched: true, Services: []nat.Service{
		{Proto: packet.ProtoTCP, VIP: web.Addr(), Port: web.Port(), Mode: nat.ModeL7, Scheduler: "rr",
			Backends: []nat.Backend{{Addr: rips[0], Port: 8080, Weight: 1}}},
		{Proto: packet.ProtoUDP, VIP: web.Addr(), Port: web.Port(), Mode: nat.ModeL7, Scheduler: "rr",
			Backends: []nat.Backend{{Addr: rips[0], Port: 8080, Weight: 1}}}}})
	if err != nil {
		t.Fatal(err)
	}
	w := e.NewWorker()
	if v := one(w, tcp(netip.AddrPortFrom(rips[0], 5000), far, syn, 0)); v != nat.Drop || e.Drops(nat.DropUnmatched) != 1 {
		t.Fatalf("unmatched with DropUnmatched: %v, unmatched drops %d; want drop, 1", v, e.Drops(nat.DropUnmatched))
	}
	b := tcp(client, web, syn, 0)
	orig := string(b)
	if v := one(w, b); v != nat.ToL7 || string(b) != orig || e.Flows() != 0 {
		t.Fatalf("SYN to the L7 service: %v (changed %v), %d flows; want to_l7, unchanged, 0", v, string(b) != orig, e.Flows())
	}
	_, v := through(w, fragments(client, web, 3000, 1480, 31))
	if len(v) != 3 {
		t.Fatalf("%d fragments of a datagram to the L7 service left, want 3", len(v))
	}
	for i, x := range v {
		if x != nat.ToL7 {
			t.Fatalf("fragment %d of a datagram to the L7 service: %v, want to_l7", i, x)
		}
	}
}
