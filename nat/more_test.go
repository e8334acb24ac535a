package nat_test

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// TestICMPFragNeeded: a router between gateway and real server reports
// "fragmentation needed" for a reply the server sent; the client must get
// it from the VIP about its own connection (client <- VIP:80), so path-MTU
// discovery works through the gateway.
func TestICMPFragNeeded(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	b := tcp(client, vip, syn, 0)
	one(w, b)
	_, rip := endpoints(t, b)
	// The gateway forwarded client -> rip; a router on the way reports
	// "fragmentation needed" back to the client, quoting that packet.
	quote := tcp(client, rip, ack, 0)
	router := netip.MustParseAddr("198.18.2.1")
	ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 4), Seq: 1400}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4}
	ip.SrcIP, ip.DstIP = net.IP(router.AsSlice()), net.IP(client.Addr().AsSlice())
	buf := gopacket.NewSerializeBuffer()
	gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, ic, gopacket.Payload(quote))
	msg := buf.Bytes()
	if v := one(w, msg); v != nat.Forward {
		t.Fatalf("ICMP error verdict %v, drops %d", v, e.Drops(nat.DropICMPNoFlow))
	}
	checksumsValid(t, msg)
	var p, in packet.Parsed
	packet.Parse(msg, &p)
	if r := packet.ParseICMPError(msg, &p, &in); r != packet.ReasonNone {
		t.Fatal(r)
	}
	outerSrc := netip.AddrFrom16(p.Src).Unmap()
	innerDst := netip.AddrPortFrom(netip.AddrFrom16(in.Dst).Unmap(), in.DstPort)
	innerSrc := netip.AddrPortFrom(netip.AddrFrom16(in.Src).Unmap(), in.SrcPort)
	if outerSrc != vip.Addr() || innerDst != vip || innerSrc != client {
		t.Fatalf("ICMP error: outer from %v, quote %v > %v; want from %v, quote %v > %v", outerSrc, innerSrc, innerDst, vip.Addr(), client, vip)
	}
	// An error about nothing we track is dropped.
	quote = tcp(client, netip.MustParseAddrPort("198.18.2.99:1"), ack, 0)
	buf = gopacket.NewSerializeBuffer()
	gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, ic, gopacket.Payload(quote))
	if v := one(w, buf.Bytes()); v != nat.Drop || e.Drops(nat.DropICMPNoFlow) != 1 {
		t.Fatalf("stray ICMP error: verdict %v", v)
	}
}

// TestRoundTripProperty: for random flows, translating the client's packet
// in, then the server's answer out, gives the client exactly the packet it
// would get from the address it sent to, with valid checksums: TCP and
// UDP, IPv4 and IPv6, through NAT, FULLNAT and the masquerade.
func TestRoundTripProperty(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mode   nat.Mode
		dst    netip.AddrPort
		udp    bool
		client func(r *rand.Rand) netip.Addr
	}{
		{"nat/tcp", nat.ModeNAT, vip, false, randIn(198, 18, 1)},
		{"nat/udp", nat.ModeNAT, netip.AddrPortFrom(vip.Addr(), 53), true, randIn(198, 18, 1)},
		{"nat/tcp6", nat.ModeNAT, vip6, false, randIn6},
		{"fullnat/tcp", nat.ModeFullNAT, vip, false, randIn(198, 18, 1)},
		{"fullnat/udp", nat.ModeFullNAT, netip.AddrPortFrom(vip.Addr(), 53), true, randIn(198, 18, 1)},
		{"fullnat/tcp6", nat.ModeFullNAT, vip6, false, randIn6},
		{"masquerade/tcp", nat.ModeNAT, far, false, randIn(198, 18, 2)},
		{"masquerade/udp", nat.ModeNAT, far, true, randIn(198, 18, 2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := engine(t, tc.mode, 1<<12)
			w := e.NewWorker()
			r := rand.New(rand.NewPCG(42, uint64(len(tc.name))))
			mk := func(src, dst netip.AddrPort, first bool, n int) []byte {
				switch {
				case tc.udp:
					return udp(src, dst, n)
				case first:
					return tcp(src, dst, syn, n)
				}
				return tcp(src, dst, synack, n)
			}
			done := 0
			for range 1000 {
				c := netip.AddrPortFrom(tc.client(r), uint16(1024+r.IntN(60000)))
				n0 := r.IntN(100)
				if !tc.udp {
					n0 = 0 // the SYN-ACK mk makes answers a SYN without data
				}
				in := mk(c, tc.dst, true, n0)
				if one(w, in) != nat.Forward {
					continue // the same random client twice, or a real server's port
				}
				s, d := endpoints(t, in)
				checksumsValid(t, in)
				n := r.IntN(1200)
				out := mk(d, s, false, n)
				if v := one(w, out); v != nat.Forward {
					t.Fatalf("reply verdict %v", v)
				}
				if want := mk(tc.dst, c, false, n); string(out) != string(want) {
					t.Fatalf("client got\n%x\nwant\n%x", out, want)
				}
				done++
			}
			if done < 900 {
				t.Fatalf("only %d of 1000 random flows went through", done)
			}
		})
	}
}

// randIn returns a generator of random addresses a.b.c.x.
func randIn(a, b, c byte) func(r *rand.Rand) netip.Addr {
	return func(r *rand.Rand) netip.Addr { return netip.AddrFrom4([4]byte{a, b, c, byte(r.IntN(256))}) }
}

// randIn6 is a random address in 2001:db8:1::/64.
func randIn6(r *rand.Rand) netip.Addr {
	a := netip.MustParseAddr("2001:db8:1::").As16()
	for i := 8; i < 16; i++ {
		a[i] = byte(r.IntN(256))
	}
	return netip.AddrFrom16(a)
}

// TestNoAllocs: an established flow's packet, and a new flow once the
// table is warm, allocate nothing.
func TestNoAllocs(t *testing.T) {
	e := engine(t, nat.ModeNAT, 1<<12)
	w := e.NewWorker()
	b := tcp(client, vip, syn, 0)
	one(w, b)
	_, rip := endpoints(t, b)
	pkts := [][]byte{tcp(client, vip, ack, 10), tcp(rip, client, ack, 10)}
	verdicts := make([]nat.Verdict, 2)
	if n := testing.AllocsPerRun(1000, func() {
		// alternate directions: each translation undoes the other's view
		w.Process(pkts[:1], verdicts)
		w.Process(pkts[1:], verdicts)
	}); n != 0 {
		t.Errorf("established: %v allocs per packet pair", n)
	}
	port := uint16(1000)
	syns := make([][]byte, 600)
	for i := range syns {
		syns[i] = tcp(netip.AddrPortFrom(client.Addr(), port+uint16(i)), vip, syn, 0)
	}
	i := 0
	if n := testing.AllocsPerRun(500, func() {
		w.Process(syns[i:i+1], verdicts)
		i++
	}); n != 0 {
		t.Errorf("new flow: %v allocs", n)
	}
}

// TestConcurrent races two workers, the expirer and config updates under
// -race; afterwards the backends' connection counts equal the flows left.
func TestConcurrent(t *testing.T) {
	e := engine(t, nat.ModeNAT, 1<<12)
	wait := runWorkers(e, 2, func(w *nat.Worker, g int) {
		v := make([]nat.Verdict, 1)
		for i := range 3000 {
			c := netip.AddrPortFrom(client.Addr(), uint16(1000+g*10000+i%500))
			b := tcp(c, vip, syn, 0)
			w.Process([][]byte{b}, v)
			if v[0] == nat.Forward {
				_, d := endpoints(t, b)
				w.Process([][]byte{tcp(d, c, synack, 0)}, v)
				w.Process([][]byte{tcp(c, vip, ack, 0)}, v)
			}
		}
	})
	for i := range 50 {
		e.Advance(time.Duration(i) * time.Minute)
		e.Expire()
	}
	wait()
	if err := e.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
	e.Advance(24 * time.Hour)
	e.Expire()
	if e.Flows() != 0 {
		t.Fatalf("%d flows after expiring everything", e.Flows())
	}
	if err := e.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
	if a, i := e.BackendConns(vip, packet.ProtoTCP); a != 0 || i != 0 {
		t.Fatalf("after every flow expired the backends count %d active, %d inactive", a, i)
	}
}

// TestExpireUnderTraffic: workers keep touching flows (their deadline
// stores take no lock) while Expire frees them and the workers make them
// again, many times over; the table stays whole. (The race it is about,
// a store into a flow freed under the worker, is rare here;
// TestStoreIntoFreeFlow makes it happen deterministically.)
func TestExpireUnderTraffic(t *testing.T) {
	bs := []nat.Backend{{Addr: rips[0], Port: 53, Weight: 1}}
	e, err := nat.New(nat.Config{Capacity: 256, ShardBits: 2, Timeouts: nat.Timeouts{UDP: time.Second},
		Services: []nat.Service{{Proto: packet.ProtoUDP, VIP: vip.Addr(), Port: 53, Scheduler: "rr", Backends: bs}}})
	if err != nil {
		t.Fatal(err)
	}
	now := 1_000_000 * time.Second
	e.Advance(now)
	var pkts [][]byte
	for i := range 200 {
		pkts = append(pkts, udp(netip.AddrPortFrom(client.Addr(), uint16(1000+i)), netip.AddrPortFrom(vip.Addr(), 53), 8))
	}
	const packets = 400_000 // each worker's, so that both overlap many expiries
	var done atomic.Int32
	wait := runWorkers(e, 2, func(w *nat.Worker, _ int) {
		defer done.Add(1)
		for i := range packets {
			process(w, pkts[i%len(pkts)])
		}
	})
	for done.Load() < 2 {
		now += time.Second
		e.Advance(now)
		e.Expire()
	}
	wait()
	if err := e.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
}

// TestUpdateUnderTraffic: a worker opens flows while Update adds a backend
// at a time, keeping the scheduler. The worker may pick a backend before
// its snapshot has the backend's owner (dropped, counted as no_backend),
// but nothing crashes, no map is written while read, and every flow
// counts against a backend that exists.
func TestUpdateUnderTraffic(t *testing.T) {
	cfg := nat.Config{Capacity: 1 << 12, ShardBits: 2,
		Services: []nat.Service{{Proto: packet.ProtoUDP, VIP: vip.Addr(), Port: 53, Scheduler: "rr",
			Backends: []nat.Backend{{Addr: rips[0], Port: 53, Weight: 1}}}}}
	e, err := nat.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := udpTraffic(e, 1, 3000)
	for i := range 40 {
		cfg.Services[0].Backends = append(cfg.Services[0].Backends,
			nat.Backend{Addr: netip.AddrFrom4([4]byte{198, 18, 3, byte(i)}), Port: 53, Weight: 1})
		if err := e.Update(cfg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	stop()
	if err := e.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
	st, _ := e.ServiceStats("udp 198.18.0.10:53")
	var perBackend uint64
	for _, s := range e.Services() {
		for _, b := range s.Backends {
			perBackend += b.Stats.Conns
		}
	}
	if st.Conns == 0 || perBackend != st.Conns {
		t.Fatalf("service counts %d connections, its backends %d together", st.Conns, perBackend)
	}
}

// TestSchedulerChangeUnderTraffic: workers open UDP flows while Update
// keeps changing the service's scheduler (ipvsadm -E -s rr, then wrr, ...),
// each change handing the backends' connection counts to new Dests while
// workers may still be counting on the old ones. Once every flow expired
// the backends count no connections: nothing was lost in a hand-over (it
// drifted by tens before owners kept their stale Dests to drain).
func TestSchedulerChangeUnderTraffic(t *testing.T) {
	var bs []nat.Backend
	for _, r := range rips {
		bs = append(bs, nat.Backend{Addr: r, Port: 53, Weight: 1})
	}
	cfg := nat.Config{Capacity: 1 << 12, ShardBits: 2, Timeouts: nat.Timeouts{UDP: time.Second},
		Services: []nat.Service{{Proto: packet.ProtoUDP, VIP: vip.Addr(), Port: 53, Scheduler: "rr", Backends: bs}}}
	e, err := nat.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := udpTraffic(e, 2, 1500)
	now := time.Duration(0)
	for i := range 800 {
		cfg.Services[0].Scheduler = []string{"rr", "wrr"}[i%2]
		if err := e.Update(cfg); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			now += time.Second
			e.Advance(now)
			e.Expire()
		}
	}
	stop()
	e.Advance(now + time.Hour)
	e.Expire()
	if a, in := e.BackendConns(netip.AddrPortFrom(vip.Addr(), 53), packet.ProtoUDP); e.Flows() != 0 || a != 0 || in != 0 {
		t.Fatalf("%d flows left; the backends count %d active, %d inactive, want 0, 0", e.Flows(), a, in)
	}
}

// runWorkers runs body on n workers of e at once (g = 0..n-1), each in
// its own goroutine with its own Worker; wait waits for them.
func runWorkers(e *nat.Engine, n int, body func(w *nat.Worker, g int)) (wait func()) {
	var wg sync.WaitGroup
	for g := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body(e.NewWorker(), g)
		}()
	}
	return wg.Wait
}

// udpTraffic has n workers send UDP datagrams to VIP port 53 from
// 198.18.1.<worker>, source ports cycling through ports of them, until the
// returned stop is called; stop returns when they have stopped.
func udpTraffic(e *nat.Engine, n, ports int) (stop func()) {
	var done atomic.Bool
	wait := runWorkers(e, n, func(w *nat.Worker, g int) {
		for i := 0; !done.Load(); i++ {
			src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 1, byte(g)}), uint16(1000+i%ports))
			process(w, udp(src, netip.AddrPortFrom(vip.Addr(), 53), 8))
		}
	})
	return func() { done.Store(true); wait() }
}

// process runs a copy of packet b through w (Process rewrites it) and
// returns the verdict.
func process(w *nat.Worker, b []byte) nat.Verdict {
	return one(w, append([]byte(nil), b...))
}

// FuzzEngine feeds random packet sequences (a byte string cut into
// packets) to the engine: no panic, and every verdict is a known one.
func FuzzEngine(f *testing.F) {
	f.Add(tcp(client, vip, syn, 0), tcp(netip.MustParseAddrPort("198.18.2.11:8080"), client, synack, 0))
	f.Add(udp(netip.AddrPortFrom(rips[0], 4000), outside, 3), udp(outside, netip.AddrPortFrom(masqTo, 4000), 3))
	f.Add([]byte{0x45, 0, 0, 20}, []byte{0x60})
	f.Add(tcp(client, vip, syn, 0), tcp(netip.AddrPortFrom(rips[0], 8080), netip.AddrPortFrom(insideTo, 20000), synack, 0))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		for _, e := range []*nat.Engine{engine(t, nat.ModeNAT, 16), intoEngine(t, false)} {
			// Process translates in place: each engine gets the input as given.
			fuzzPair(t, e, append([]byte(nil), a...), append([]byte(nil), b...))
		}
	})
}

// fuzzPair is one FuzzEngine run on e.
func fuzzPair(t *testing.T, e *nat.Engine, a, b []byte) {
	w := e.NewWorker()
	v := make([]nat.Verdict, 3)
	w.Process([][]byte{a, b, append([]byte(nil), a...)}, v)
	for _, x := range v {
		if x > nat.Held {
			t.Fatalf("verdict %d", x)
		}
	}
	if err := e.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
	e.Advance(time.Hour)
	e.Expire()
	if e.Flows() != 0 {
		t.Fatalf("%d flows survive an hour", e.Flows())
	}
	if err := e.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
}
