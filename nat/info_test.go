package nat_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// TestListings: Services reports configuration, connection counts and
// counters as ipvsadm -L --stats would; ZeroStats resets the counters but
// not the connections; AllFlows lists the flow with its state and expiry;
// Update changes timeouts for new packets (ipvsadm --set).
func TestListings(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	rip := handshake(t, w, 100)
	one(w, tcp(client, vip, ack, 0))

	svcs := e.Services()
	if len(svcs) != 3 || svcs[0].VIP != vip.Addr() || svcs[0].Stats.Conns != 1 || svcs[0].Stats.PacketsIn != 2 {
		t.Fatalf("services %+v", svcs)
	}
	var found bool
	for _, bi := range svcs[0].Backends {
		if bi.Addr == rip.Addr() {
			found = true
			if bi.ActiveConns != 1 || bi.InactiveConns != 0 || bi.Stats.PacketsOut != 1 || bi.Stats.BytesIn == 0 {
				t.Fatalf("backend %+v", bi)
			}
		}
	}
	if !found {
		t.Fatalf("backend %v not listed", rip)
	}
	// ZeroService: that service's counters only; an unknown one is said.
	other := e.Services()[1]
	if e.ZeroService(other.Proto, other.VIP, other.Port+1000) {
		t.Fatal("ZeroService found a service that is not there")
	}
	if !e.ZeroService(other.Proto, other.VIP, other.Port) {
		t.Fatal("ZeroService did not find a listed service")
	}
	if s := e.Services()[0]; s.Stats.Conns != 1 || s.Stats.PacketsIn != 2 {
		t.Fatalf("ZeroService of another service zeroed this one: %+v", s)
	}
	if !e.ZeroService(svcs[0].Proto, svcs[0].VIP, svcs[0].Port) {
		t.Fatal("ZeroService did not find the first service")
	}
	if s := e.Services()[0]; s.Stats.Conns != 0 || s.Stats.PacketsIn != 0 || s.Backends[0].Stats.PacketsOut != 0 || s.Backends[0].ActiveConns != 1 {
		t.Fatalf("after ZeroService: %+v", s)
	}
	e.ZeroStats()
	if s := e.Services()[0]; s.Stats.Conns != 0 || s.Stats.PacketsIn != 0 || s.Backends[0].ActiveConns != 1 {
		t.Fatalf("after ZeroStats: %+v", s)
	}
	var flows []nat.FlowInfo
	for f := range e.AllFlows() {
		flows = append(flows, f)
	}
	if len(flows) != 1 || flows[0].State != "ESTABLISHED" || flows[0].Expires != 15*time.Minute ||
		flows[0].OrigSrc != client || flows[0].OrigDst != vip || flows[0].ReplySrc != rip || flows[0].Proto != packet.ProtoTCP {
		t.Fatalf("flows %+v", flows)
	}
	cfg := e.Config()
	cfg.Timeouts.TCPEstablished = time.Minute
	if err := e.Update(cfg); err != nil {
		t.Fatal(err)
	}
	one(w, tcp(client, vip, ack, 0))
	for f := range e.AllFlows() {
		if f.Expires != time.Minute {
			t.Fatalf("after --set tcp 60: expires in %v", f.Expires)
		}
	}
}

// TestSchedulerChangeKeepsCounts: changing a service's scheduler (ipvsadm
// -E -s) keeps each backend's connection counts and counters, and flows
// that end afterwards are taken off the right count.
func TestSchedulerChangeKeepsCounts(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	for i := range 3 {
		c := netip.AddrPortFrom(client.Addr(), uint16(7000+i))
		b := tcp(c, vip, syn, 0)
		one(w, b)
		_, d := endpoints(t, b)
		one(w, tcp(d, c, synack, 0))
		one(w, tcp(c, vip, ack, 0))
	}
	cfg := e.Config()
	cfg.Services[0].Scheduler = "wlc"
	if err := e.Update(cfg); err != nil {
		t.Fatal(err)
	}
	s := e.Services()[0]
	for _, b := range s.Backends {
		if b.ActiveConns != 1 || b.Stats.Conns != 1 {
			t.Fatalf("after the scheduler change %v has %d active, %d conns; want 1, 1", b.Addr, b.ActiveConns, b.Stats.Conns)
		}
	}
	e.Advance(time.Hour)
	e.Expire()
	if a, i := e.BackendConns(vip, packet.ProtoTCP); a != 0 || i != 0 {
		t.Fatalf("after expiry %d/%d", a, i)
	}
}

// TestTableBytes: the table's memory is the 128-byte flow slot (96 of
// keys and state, 32 of TCP window tracking: two cache lines), 8 bytes of
// SYN proxy shifts beside it, 32 bytes of index (a 64-byte bucket per
// four nodes, two nodes per flow), 4 of the flow's place in its shard's
// live list and 5 of the lists (4 bytes an entry, room for a quarter more
// than a shard's share): 177 bytes per flow, plus the shards' fixed few
// kilobytes, and nothing that grows with traffic. With flow logs on (the
// test engine's services log), 64 bytes of counts more: 241.
func TestTableBytes(t *testing.T) {
	plain, err := nat.New(nat.Config{Capacity: 1 << 14, ShardBits: 2})
	if err != nil {
		t.Fatal(err)
	}
	if per := float64(plain.TableBytes()) / float64(plain.Capacity()); per < 177 || per > 177.5 {
		t.Fatalf("table memory %d bytes for %d flows = %.1f per flow, want 177 (128 slab + 8 proxy shifts + 32 index + 9 live lists)", plain.TableBytes(), plain.Capacity(), per)
	}
	e := engine(t, nat.ModeNAT, 1<<14)
	per := float64(e.TableBytes()) / float64(e.Capacity())
	if per < 241 || per > 241.5 {
		t.Fatalf("table memory with flow logs %d bytes for %d flows = %.1f per flow, want 241 (177 + 64 of flow counts)", e.TableBytes(), e.Capacity(), per)
	}
	w := e.NewWorker()
	v := make([]nat.Verdict, 1)
	before := e.TableBytes()
	for i := range 1000 {
		w.Process([][]byte{tcp(netip.AddrPortFrom(client.Addr(), uint16(1024+i)), vip, syn, 0)}, v)
	}
	if e.Flows() != 1000 || e.TableBytes() != before {
		t.Fatalf("after 1000 new flows: %d flows, %d bytes (was %d)", e.Flows(), e.TableBytes(), before)
	}
}
