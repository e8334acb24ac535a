package nat_test

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

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
