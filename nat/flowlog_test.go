package nat_test

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// flowRecords collects flow records, as a gateway's logger would queue
// them.
type flowRecords struct {
	mu  sync.Mutex
	got []nat.FlowEnd
}

func (r *flowRecords) LogFlow(f nat.FlowEnd) {
	r.mu.Lock()
	r.got = append(r.got, f)
	r.mu.Unlock()
}

func (r *flowRecords) take() []nat.FlowEnd {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

// fakeWall is a wall clock the test moves.
type fakeWall struct{ now time.Time }

func (c *fakeWall) Now() time.Time { return c.now }

// loggedEngine is an engine whose TCP and UDP services on vip (and the
// FULLNAT service on vip port 81) log every flow, at most rate records a
// second, with the records and the wall clock the test holds.
func loggedEngine(t testing.TB, capacity int, rate uint32, resetRemoved bool) (*nat.Engine, *flowRecords, *fakeWall, nat.Config) {
	t.Helper()
	recs := &flowRecords{}
	wall := &fakeWall{now: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	bs := []nat.Backend{{Addr: rips[0], Port: 8080, Weight: 1}}
	fl := nat.FlowLog{Every: 1, Rate: rate}
	cfg := nat.Config{
		Capacity: capacity, ShardBits: 2, FlowLogger: recs, WallClock: wall.Now, ResetRemoved: resetRemoved,
		Services: []nat.Service{
			{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: vip.Port(), Mode: nat.ModeNAT, Scheduler: "rr", Backends: bs, SynProxy: nat.SynProxyOff, FlowLog: fl},
			{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: 81, Mode: nat.ModeFullNAT, Scheduler: "rr", Backends: bs, SynProxy: nat.SynProxyOff, FlowLog: fl},
			{Proto: packet.ProtoUDP, VIP: vip.Addr(), Port: 53, Mode: nat.ModeNAT, Scheduler: "rr", Backends: bs, FlowLog: fl},
		},
		FullNATPool: []netip.Addr{lip},
	}
	e, err := nat.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e, recs, wall, cfg
}

// TestFlowLogRecord: a NAT connection's record carries its ends, its
// start and duration, its packets and bytes each way (the service's own
// counters' numbers), and why it ended; a FULLNAT one names vsgate's
// address as the real server's peer.
func TestFlowLogRecord(t *testing.T) {
	e, recs, wall, _ := loggedEngine(t, 64, 0, false)
	w := e.NewWorker()
	rip := netip.AddrPortFrom(rips[0], 8080)
	start := wall.now
	var sent [2]uint64
	send := func(d nat.Dir, b []byte) {
		sent[d] += uint64(len(b))
		if v := one(w, b); v != nat.Forward {
			t.Fatalf("packet %d of direction %d: verdict %v", len(b), d, v)
		}
	}
	send(nat.DirOriginal, tcp(client, vip, syn, 0))
	send(nat.DirReply, tcp(rip, client, synack, 0))
	send(nat.DirOriginal, tcp(client, vip, ack, 300))
	send(nat.DirReply, tcp(rip, client, ack, 1200))
	send(nat.DirReply, tcp(rip, client, ack, 1200))
	wall.now = start.Add(1500 * time.Millisecond)
	send(nat.DirOriginal, tcp(client, vip, finack, 0))
	send(nat.DirReply, tcp(rip, client, finack, 0))
	if got := recs.take(); len(got) != 0 {
		t.Fatalf("records before the flow ended: %+v", got)
	}
	e.Advance(3 * time.Minute) // past TIME_WAIT
	wall.now = start.Add(3 * time.Minute)
	if n := e.Expire(); n != 1 {
		t.Fatalf("Expire removed %d flows, want 1", n)
	}
	got := recs.take()
	if len(got) != 1 {
		t.Fatalf("%d records, want 1: %+v", len(got), got)
	}
	r := got[0]
	st, _ := e.ServiceStats("tcp 198.18.0.10:80")
	want := nat.FlowEnd{Service: "tcp 198.18.0.10:80", Proto: packet.ProtoTCP, Client: client, VIP: vip, RealServer: rip, Local: client,
		Start: start, End: start.Add(3 * time.Minute), Packets: [2]uint64{3, 4}, Bytes: sent, Reason: nat.EndFIN, State: "TIME_WAIT"}
	if r.Start.UnixNano() != want.Start.UnixNano() || r.End != want.End {
		t.Errorf("start %v end %v, want %v %v", r.Start, r.End, want.Start, want.End)
	}
	r.Start, r.End, want.Start, want.End = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if r != want {
		t.Errorf("record\n%+v\nwant\n%+v", r, want)
	}
	if r.Packets != [2]uint64{st.PacketsIn, st.PacketsOut} || r.Bytes != [2]uint64{st.BytesIn, st.BytesOut} {
		t.Errorf("record's counts %v %v; the service's: %+v", r.Packets, r.Bytes, st)
	}
	if fl := e.FlowLogs(); fl.Logged != 1 || fl.Suppressed != 0 {
		t.Errorf("FlowLogs %+v, want 1 logged", fl)
	}

	// FULLNAT: the real server's peer is the pool address.
	fvip := netip.AddrPortFrom(vip.Addr(), 81)
	b := tcp(client, fvip, syn, 0)
	one(w, b)
	local, _ := endpoints(t, b)
	if local.Addr() != lip {
		t.Fatalf("FULLNAT source %v, want the pool's %v", local, lip)
	}
	one(w, tcp(rip, local, rst, 0))
	e.Advance(10 * time.Minute)
	e.Expire()
	got = recs.take()
	if len(got) != 1 || got[0].Local != local || got[0].VIP != fvip || got[0].Reason != nat.EndRST || got[0].State != "CLOSE" {
		t.Errorf("FULLNAT record %+v, want local %v, VIP %v, reason rst in CLOSE", got, local, fvip)
	}
}

// TestFlowLogReasons: each way a flow ends gives its reason.
func TestFlowLogReasons(t *testing.T) {
	rip := netip.AddrPortFrom(rips[0], 8080)
	open := func(w *nat.Worker, c netip.AddrPort) {
		one(w, tcp(c, vip, syn, 0))
		one(w, tcp(rip, c, synack, 0))
		one(w, tcp(c, vip, ack, 0))
	}
	reasons := func(t *testing.T, recs *flowRecords) map[nat.EndReason]int {
		out := map[nat.EndReason]int{}
		for _, r := range recs.take() {
			out[r.Reason]++
		}
		return out
	}
	t.Run("timeout", func(t *testing.T) {
		e, recs, _, _ := loggedEngine(t, 64, 0, false)
		w := e.NewWorker()
		open(w, client)
		one(w, udp(client, netip.AddrPortFrom(vip.Addr(), 53), 10))
		e.Advance(16 * time.Minute)
		e.Expire()
		if got := reasons(t, recs); got[nat.EndTimeout] != 2 || len(got) != 1 {
			t.Errorf("reasons %v, want 2 timeouts (TCP established, UDP)", got)
		}
	})
	t.Run("evicted", func(t *testing.T) {
		e, recs, _, _ := loggedEngine(t, 16, 0, false)
		w := e.NewWorker()
		for i := range 200 {
			one(w, tcp(netip.AddrPortFrom(client.Addr(), uint16(2000+i)), vip, syn, 0))
		}
		ev := e.Evictions()
		if got := reasons(t, recs); ev == 0 || got[nat.EndEvicted] != int(ev) || len(got) != 1 {
			t.Errorf("reasons %v after %d evictions, want one evicted record each", got, ev)
		}
	})
	t.Run("replaced", func(t *testing.T) {
		// A client that reuses its port after a FIN close: the old
		// flow's record says fin, not replaced.
		e, recs, _, _ := loggedEngine(t, 64, 0, false)
		w := e.NewWorker()
		open(w, client)
		one(w, tcp(client, vip, finack, 0))
		one(w, tcp(rip, client, finack, 0))
		one(w, tcp(client, vip, ack, 0))
		one(w, tcpSeq(client, vip, syn, 0, 100000, 0))
		if got := reasons(t, recs); got[nat.EndFIN] != 1 || len(got) != 1 {
			t.Errorf("reasons %v, want one fin", got)
		}
	})
	t.Run("removed", func(t *testing.T) {
		e, recs, _, cfg := loggedEngine(t, 64, 0, true)
		w := e.NewWorker()
		open(w, client)
		cfg.Services[0].Backends = []nat.Backend{{Addr: rips[1], Port: 8080, Weight: 1}}
		if err := e.Update(cfg); err != nil {
			t.Fatal(err)
		}
		one(w, tcp(client, vip, ack, 10))
		if got := reasons(t, recs); got[nat.EndRemoved] != 1 || len(got) != 1 {
			t.Errorf("reasons %v, want one removed", got)
		}
	})
	t.Run("shutdown", func(t *testing.T) {
		e, recs, _, _ := loggedEngine(t, 64, 0, false)
		w := e.NewWorker()
		open(w, client)
		e.LogLiveFlows()
		if got := reasons(t, recs); got[nat.EndShutdown] != 1 || len(got) != 1 || e.Flows() != 1 {
			t.Errorf("reasons %v, %d flows left; want one shutdown, the flow kept", got, e.Flows())
		}
	})
}

// TestFlowLogRateLimit: a flood of flows ending at once gives a second's
// worth of records, and the rate after; the rest are counted, not given.
func TestFlowLogRateLimit(t *testing.T) {
	const rate, flood = 10, 500
	e, recs, wall, _ := loggedEngine(t, 1024, rate, false)
	w := e.NewWorker()
	spoofed := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), 1024)
	}
	for i := range flood {
		one(w, tcp(spoofed(i), vip, syn, 0))
	}
	e.Advance(2 * time.Minute) // past SYN_RECV's timeout
	if n := e.Expire(); n != flood {
		t.Fatalf("Expire removed %d, want %d", n, flood)
	}
	if got, fl := len(recs.take()), e.FlowLogs(); got != rate || fl.Logged != rate || fl.Suppressed != flood-rate {
		t.Fatalf("%d records, counters %+v; want %d given, %d suppressed", got, fl, rate, flood-rate)
	}
	// Half a second later, half a second's worth.
	for i := range flood {
		one(w, tcp(spoofed(i), vip, syn, 0))
	}
	wall.now = wall.now.Add(500 * time.Millisecond)
	e.Advance(4 * time.Minute)
	e.Expire()
	if got := len(recs.take()); got != rate/2 {
		t.Errorf("%d records half a second on, want %d", got, rate/2)
	}
}

// TestFlowLogSample: Every 4 logs about a quarter of the flows, the same
// ones each time, and counts only those.
func TestFlowLogSample(t *testing.T) {
	e, recs, _, cfg := loggedEngine(t, 1024, 0, false)
	cfg.Services[2].FlowLog.Every = 4
	if err := e.Update(cfg); err != nil {
		t.Fatal(err)
	}
	w := e.NewWorker()
	dns := netip.AddrPortFrom(vip.Addr(), 53)
	now := time.Duration(0)
	run := func() map[netip.AddrPort]bool {
		for i := range 400 {
			one(w, udp(netip.AddrPortFrom(client.Addr(), uint16(3000+i)), dns, 20))
		}
		now += time.Hour
		e.Advance(now)
		e.Expire()
		out := map[netip.AddrPort]bool{}
		for _, r := range recs.take() {
			if r.Packets != [2]uint64{1, 0} || r.Bytes[0] != 48 {
				t.Errorf("record %+v: want one 48-byte packet in", r)
			}
			out[r.Client] = true
		}
		return out
	}
	first, second := run(), run()
	if len(first) < 60 || len(first) > 140 {
		t.Errorf("%d of 400 flows logged with Every 4, want about 100", len(first))
	}
	for c := range first {
		if !second[c] {
			t.Errorf("flow from %v logged once, not the second time", c)
		}
	}
}

// TestFlowLogOff: a service whose logs are turned off while its flows run
// gives no records for them; logs need a FlowLogger.
func TestFlowLogOff(t *testing.T) {
	e, recs, _, cfg := loggedEngine(t, 64, 0, false)
	w := e.NewWorker()
	one(w, udp(client, netip.AddrPortFrom(vip.Addr(), 53), 10))
	cfg.Services[2].FlowLog = nat.FlowLog{}
	if err := e.Update(cfg); err != nil {
		t.Fatal(err)
	}
	e.Advance(time.Hour)
	e.Expire()
	if got := recs.take(); len(got) != 0 {
		t.Errorf("records after logs were turned off: %+v", got)
	}
	cfg.FlowLogger = nil
	for i := range cfg.Services {
		cfg.Services[i].FlowLog = nat.FlowLog{}
	}
	if _, err := nat.New(cfg); err != nil {
		t.Errorf("New without logs: %v", err)
	}
	cfg.Services[0].FlowLog.Every = 1
	if _, err := nat.New(cfg); err == nil {
		t.Error("New accepted flow logs without a FlowLogger")
	}
}

// TestFlowLogNoAllocs: a logged flow's packets allocate nothing.
func TestFlowLogNoAllocs(t *testing.T) {
	e, _, _, _ := loggedEngine(t, 64, 0, false)
	w := e.NewWorker()
	rip := netip.AddrPortFrom(rips[0], 8080)
	one(w, tcp(client, vip, syn, 0))
	one(w, tcp(rip, client, synack, 0))
	pkts := [][]byte{tcp(client, vip, ack, 10), tcp(rip, client, ack, 10)}
	verdicts := make([]nat.Verdict, 1)
	if n := testing.AllocsPerRun(1000, func() {
		w.Process(pkts[:1], verdicts)
		w.Process(pkts[1:], verdicts)
	}); n != 0 {
		t.Errorf("logged flow: %v allocs per packet pair", n)
	}
}
