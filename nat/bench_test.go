package nat_test

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// benchFlows builds n client SYNs to the VIP from distinct ports/addresses
// by rewriting one template (gopacket would take seconds for 1M).
func benchFlows(n int, net byte) [][]byte {
	// Acknowledgement 5001 (ignored in a SYN): the real server's SYN-ACK
	// (synAckOf) is sequence 5000, and toAck keeps the number, so the
	// handshake's ACK acknowledges it exactly, as the engine requires.
	return flowsOf(tcpSeq(client, vip, syn, 6, 1, 5001), n, net, packet.SetSrc)
}

// flowsOf is n copies of packet tpl, each with the distinct client address
// and port benchFlows gives flow i set by set (packet.SetSrc for the
// client's packets, packet.SetDst for the answers), in one backing array.
func flowsOf(tpl []byte, n int, net byte, set func([]byte, *packet.Parsed, [16]byte, uint16)) [][]byte {
	out := make([][]byte, n)
	backing := make([]byte, n*len(tpl)) // one array: a packet is one cache miss, not two
	var p packet.Parsed
	for i := range out {
		b := backing[i*len(tpl) : (i+1)*len(tpl) : (i+1)*len(tpl)]
		copy(b, tpl)
		packet.Parse(b, &p)
		a := netip.AddrFrom4([4]byte{198, net, byte(i >> 16), byte(i >> 8)}).As16()
		set(b, &p, a, uint16(1024+i&0xff))
		out[i] = b
	}
	return out
}

// toAcks turns SYNs into ACKs of the same flows, in one backing array.
func toAcks(syns [][]byte) [][]byte {
	backing := make([]byte, 0, len(syns)*len(syns[0]))
	out := make([][]byte, len(syns))
	for i, s := range syns {
		backing = append(backing, toAck(s)...)
		out[i] = backing[len(backing)-len(s) : len(backing) : len(backing)]
	}
	return out
}

// toAck turns a SYN into an ACK of the same flow (checksum fixed by
// incremental update: the flags sit in a checksummed word).
func toAck(b []byte) []byte {
	c := append([]byte(nil), b...)
	var p packet.Parsed
	packet.Parse(c, &p)
	off := p.L4Off + 12
	old := uint32(c[off])<<8 | uint32(c[off+1])
	c[off+1] = packet.TCPFlagACK
	nw := uint32(c[off])<<8 | uint32(c[off+1])
	cs := uint32(c[p.L4Off+16])<<8 | uint32(c[p.L4Off+17])
	s := (^cs & 0xffff) + (^old & 0xffff) + nw
	s = s&0xffff + s>>16
	s += s >> 16
	c[p.L4Off+16], c[p.L4Off+17] = byte(^s>>8), byte(^s)
	return c
}

// synAckOf is the real server's SYN-ACK to a SYN the engine translated
// (so it has the real server's address): addresses and ports swapped,
// sequence 5000, acknowledging the SYN and its payload.
func synAckOf(translated []byte) []byte {
	var p packet.Parsed
	if packet.Parse(translated, &p) != packet.ReasonNone {
		panic("synAckOf: not a packet")
	}
	th := packet.TCP(translated[p.L4Off:p.End])
	a := tcpSeq(netip.AddrPortFrom(netip.AddrFrom16(p.Dst).Unmap(), p.DstPort), netip.AddrPortFrom(netip.AddrFrom16(p.Src).Unmap(), p.SrcPort),
		synack, 0, 5000, th.Seq()+uint32(p.End-p.PayloadOff)+1)
	return a
}

// establish takes the flows of syns through the whole handshake in
// engine w: the client's SYN, the real server's SYN-ACK, the client's ACK.
func establish(w *nat.Worker, syns, acks [][]byte) {
	v := make([]nat.Verdict, 64)
	for i := 0; i < len(syns); i += 64 {
		in := cloneAll(syns[i:min(i+64, len(syns))])
		w.Process(in, v)
		answers := make([][]byte, len(in))
		for j := range in {
			answers[j] = synAckOf(in[j])
		}
		w.Process(answers, v)
		w.Process(cloneAll(acks[i:min(i+64, len(acks))]), v)
	}
}

type impl interface {
	process(pkts [][]byte, v []nat.Verdict)
}

type vsgateImpl struct{ w *nat.Worker }

func (i vsgateImpl) process(pkts [][]byte, v []nat.Verdict) { i.w.Process(pkts, v) }

// naiveImpl is the textbook gateway: gopacket decodes, a map under a mutex
// holds the flows, gopacket serializes with checksums computed in full.
type naiveImpl struct {
	mu    sync.Mutex
	flows map[nat.Tuple]netip.AddrPort
	next  int
	ip4   layers.IPv4
	tcp   layers.TCP
	pl    gopacket.Payload
	dec   *gopacket.DecodingLayerParser
	types []gopacket.LayerType
	buf   gopacket.SerializeBuffer
}

func newNaive() *naiveImpl {
	n := &naiveImpl{flows: map[nat.Tuple]netip.AddrPort{}, buf: gopacket.NewSerializeBuffer()}
	n.dec = gopacket.NewDecodingLayerParser(layers.LayerTypeIPv4, &n.ip4, &n.tcp, &n.pl)
	return n
}

func (n *naiveImpl) process(pkts [][]byte, v []nat.Verdict) {
	for i, b := range pkts {
		if err := n.dec.DecodeLayers(b, &n.types); err != nil {
			v[i] = nat.Drop
			continue
		}
		k := nat.Tuple{Src: netip.AddrFrom4([4]byte(n.ip4.SrcIP.To4())).As16(), Dst: netip.AddrFrom4([4]byte(n.ip4.DstIP.To4())).As16(),
			SrcPort: uint16(n.tcp.SrcPort), DstPort: uint16(n.tcp.DstPort), Proto: 6}
		n.mu.Lock()
		dst, ok := n.flows[k]
		if !ok {
			dst = netip.AddrPortFrom(rips[n.next%len(rips)], 8080)
			n.next++
			n.flows[k] = dst
		}
		n.mu.Unlock()
		n.ip4.DstIP = net.IP(dst.Addr().AsSlice())
		n.tcp.DstPort = layers.TCPPort(dst.Port())
		n.tcp.SetNetworkLayerForChecksum(&n.ip4)
		gopacket.SerializeLayers(n.buf, gopacket.SerializeOptions{ComputeChecksums: true}, &n.ip4, &n.tcp, n.pl)
		copy(b, n.buf.Bytes())
		v[i] = nat.Forward
	}
}

// BenchmarkEngine: per-packet cost with F flows tracked, random access
// order (not one hot flow), in batches of 64. established: ACKs of known
// flows; newflow: SYNs of new flows (the table is emptied between rounds);
// mixed: 90% established, 10% new. vsgate-logged is vsgate with every
// flow logged (Service.FlowLog) to a FlowLogger that drops the records:
// the cost of the counts and of the records. naive is the map+mutex+gopacket
// reference on the same packets; harness does nothing but what the
// benchmark itself does per packet (pick, copy: the floor under both).
func BenchmarkEngine(b *testing.B) {
	fresh := benchFlows(1<<20, 19) // a stream of new flows, never warmed
	for _, fl := range []struct {
		name string
		n    int
	}{{"1K", 1 << 10}, {"1M", 1 << 20}} {
		syns := benchFlows(fl.n, 18)
		acks := toAcks(syns)
		stream := inOrder(acks, permutation(fl.n))
		for _, kind := range []string{"established", "newflow", "mixed"} {
			for _, implName := range []string{"vsgate", "vsgate-logged", "naive", "harness"} {
				if implName == "naive" && fl.n > 1<<10 && testing.Short() {
					continue
				}
				b.Run(kind+"/flows="+fl.name+"/"+implName, func(b *testing.B) {
					benchEngine(b, implName, kind, syns, stream, fresh)
				})
			}
		}
	}
}

// benchEngine runs one case. stream is the established flows' packets in
// the (random) order they are sent; fresh is new flows' SYNs.
func benchEngine(b *testing.B, implName, kind string, syns, stream, fresh [][]byte) {
	const batch = 64
	// New flows between flushes: as many as the flows tracked (at least
	// 1K, at most 64K), so that the table holds F to 2F flows as the
	// benchmark's name says (64K at every F would put the new flows of
	// flows=1K through a 64K-flow slab, out of cache).
	headroom := min(max(len(syns), 1<<10), 1<<16)
	var im impl
	var e *nat.Engine
	if implName == "naive" {
		im = newNaive()
	} else if implName == "harness" {
		im = harnessOnly{}
	} else {
		// Half-open flows time out after one tick, established ones after
		// 15 min: a flush (two ticks, then Expire) drops the benchmark's
		// new flows and keeps the warm established ones.
		var logged nat.FlowLog
		if implName == "vsgate-logged" {
			logged.Every = 1
		}
		var err error
		e, err = nat.New(nat.Config{Capacity: len(syns) + 2*headroom, Timeouts: nat.Timeouts{TCPSynRecv: time.Second}, FlowLogger: discardFlows{},
			// The SYN proxy off: the benchmark's floods of new flows would
			// turn auto on (BenchmarkSynProxy measures the proxy).
			Services: []nat.Service{{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: vip.Port(), Scheduler: "rr", SynProxy: nat.SynProxyOff,
				FlowLog: logged, Backends: []nat.Backend{{Addr: rips[0], Port: 8080, Weight: 1}, {Addr: rips[1], Port: 8080, Weight: 1}}}}})
		if err != nil {
			b.Fatal(err)
		}
		im = vsgateImpl{e.NewWorker()}
	}
	var now time.Duration
	flush := func() {
		if e == nil {
			return
		}
		now += 2 * time.Second
		e.Advance(now)
		e.Expire()
	}
	v := make([]nat.Verdict, batch)
	pkts := make([][]byte, batch)
	// Warm: every flow ESTABLISHED (SYN, the real server's SYN-ACK, ACK);
	// the naive gateway keeps no state, so its SYN and ACK are enough.
	switch {
	case kind == "newflow":
	case e != nil:
		establish(im.(vsgateImpl).w, syns, toAcks(syns))
	default:
		for _, pkts := range [][][]byte{syns, stream} {
			for i := 0; i < len(pkts); i += batch {
				im.process(cloneAll(pkts[i:min(i+batch, len(pkts))]), v)
			}
		}
	}
	newSeen := 0
	// Packets are translated in place, so each round works on copies of
	// the originals (a 60-byte copy, the same for both implementations).
	scratch := make([][]byte, batch)
	for j := range scratch {
		scratch[j] = make([]byte, len(syns[0]))
	}
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i += batch {
		for j := range pkts {
			src := stream[(i+j)%len(stream)]
			switch {
			case kind == "newflow":
				src = fresh[(i+j)%len(fresh)]
			case kind == "mixed" && j%10 == 0:
				src = fresh[(i/10+j/10)%len(fresh)]
			}
			if src[33] == packet.TCPFlagSYN {
				newSeen++
			}
			pkts[j] = scratch[j][:copy(scratch[j], src)]
		}
		im.process(pkts, v)
		if v[batch-1] != nat.Forward {
			var why []string
			for r := range nat.DropReason(nat.NumDropReasons) {
				if e != nil && e.Drops(r) > 0 {
					why = append(why, fmt.Sprintf("%v=%d", r, e.Drops(r)))
				}
			}
			b.Fatalf("verdict %v (drops %v, flows %d): the benchmark is not measuring translation", v[batch-1], why, e.Flows())
		}
		n += batch
		if newSeen >= headroom-batch {
			b.StopTimer()
			flush()
			newSeen = 0
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds()/1e6, "Mpps")
	if e != nil {
		b.ReportMetric(float64(e.TableBytes())/float64(e.Capacity()), "B/flow")
	}
}

func cloneAll(in [][]byte) [][]byte {
	out := make([][]byte, len(in))
	for i := range in {
		out[i] = append([]byte(nil), in[i]...)
	}
	return out
}

// inOrder lays pkts out in one backing array in the given order: the
// stream of packets a device hands the engine, where which flow comes next
// is random but the packet itself arrives in a buffer the device has just
// filled, read front to back. (Picking each packet from a pool of a million
// at random instead cost the harness ~90 ns of cache misses per packet
// that no device read has.)
func inOrder(pkts [][]byte, order []int) [][]byte {
	size := 0
	for _, i := range order {
		size += len(pkts[i])
	}
	backing := make([]byte, 0, size)
	out := make([][]byte, len(order))
	for k, i := range order {
		backing = append(backing, pkts[i]...)
		out[k] = backing[len(backing)-len(pkts[i]) : len(backing) : len(backing)]
	}
	return out
}

// permutation is a fixed pseudo-random order of 0..n-1.
func permutation(n int) []int {
	p := make([]int, n)
	x := uint64(42)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		x = x*6364136223846793005 + 1442695040888963407
		j := int(x>>33) % (i + 1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// BenchmarkEngineParallel: established-flow packets at 1M flows from
// GOMAXPROCS workers at once (b.RunParallel), each with its own Worker,
// batches of 64 in random order. Compare ns/op with
// BenchmarkEngine/established/flows=1M/vsgate for the scaling factor.
func BenchmarkEngineParallel(b *testing.B) {
	b.Run("flows=1M", func(b *testing.B) {
		n := 1 << 20
		if testing.Short() {
			n = 1 << 12
		}
		syns := benchFlows(n, 18)
		acks := toAcks(syns)
		e := engine(b, nat.ModeNAT, n+1024)
		establish(e.NewWorker(), syns, acks)
		stream := inOrder(acks, permutation(n))
		var seed atomic.Uint64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			w := e.NewWorker()
			const batch = 64
			scratch := make([][]byte, batch)
			for j := range scratch {
				scratch[j] = make([]byte, len(acks[0]))
			}
			pkts := make([][]byte, batch)
			verdicts := make([]nat.Verdict, batch)
			i := int(seed.Add(1) * 7919)
			for {
				for j := range pkts {
					if !pb.Next() {
						w.Process(pkts[:j], verdicts)
						return
					}
					pkts[j] = scratch[j][:copy(scratch[j], stream[i%n])]
					i++
				}
				w.Process(pkts, verdicts)
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mpps")
	})
}

// BenchmarkNewFlowsParallel: new flows from GOMAXPROCS workers at once,
// each on 64K clients of its own, 16 at a time: their SYNs, the real
// servers' SYN-ACKs, the clients' ACKs, then their exact RSTs
// (conntrack's and IPVS's state machines close only an established flow
// on a client's RST). A SYN on a closed flow's ports replaces it (a
// remove and an insert, as for a client reusing its port), so every round
// frees a slot and takes one. The service spreads flows over 16 real
// servers by source hash (mh), so that what the workers share is the
// engine's own state (free slots, flow counts), not one real server's
// connection counts or rr's position. ns/op is per packet; compare -cpu 1
// with -cpu 2.
func BenchmarkNewFlowsParallel(b *testing.B) {
	const perWorker, group = 1 << 16, 16
	procs := runtime.GOMAXPROCS(0)
	var rounds [4][][]byte
	for i, tpl := range [][]byte{tcpSeq(client, vip, syn, 0, 1, 0), tcpSeq(netip.AddrPortFrom(rips[0], 8080), client, synack, 0, 5000, 2),
		tcpSeq(client, vip, ack, 0, 2, 5001), tcpSeq(client, vip, rst, 0, 2, 0)} {
		set := packet.SetSrc
		if i == 1 {
			set = packet.SetDst
		}
		rounds[i] = flowsOf(tpl, procs*perWorker, 18, set)
	}
	var backends []nat.Backend
	for i := range 16 {
		backends = append(backends, nat.Backend{Addr: rips[0], Port: uint16(8080 + i), Weight: 1})
	}
	e, err := nat.New(nat.Config{Capacity: procs*perWorker + 1024,
		Services: []nat.Service{{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: vip.Port(), Scheduler: "mh", SynProxy: nat.SynProxyOff, Backends: backends}}})
	if err != nil {
		b.Fatal(err)
	}
	var workers, refused, sent atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		first := (int(workers.Add(1)-1) % procs) * perWorker
		w := e.NewWorker()
		var scratch [4][group][]byte
		for r := range scratch {
			for j := range scratch[r] {
				scratch[r][j] = make([]byte, len(rounds[0][0]))
			}
		}
		var p packet.Parsed
		verdicts := make([]nat.Verdict, group)
		for i := 0; ; i += group {
			for r := range scratch {
				pkts := scratch[r][:]
				n := 0
				for n < group && pb.Next() {
					k := first + (i+n)%perWorker
					pkts[n] = pkts[n][:copy(pkts[n][:cap(pkts[n])], rounds[r][k])]
					if r == 1 {
						// The answer comes from the real server the SYN
						// went to.
						packet.Parse(scratch[0][n], &p)
						dst, port := p.Dst, p.DstPort
						packet.Parse(pkts[n], &p)
						packet.SetSrc(pkts[n], &p, dst, port)
					}
					n++
				}
				w.Process(pkts[:n], verdicts)
				if r == 0 {
					sent.Add(int64(n))
				}
				for _, v := range verdicts[:n] {
					if v != nat.Forward {
						refused.Add(1)
					}
				}
				if n < group {
					return
				}
			}
		}
	})
	b.StopTimer()
	if n := refused.Load(); n > 0 {
		b.Fatalf("%d packets not forwarded (of %d)", n, b.N)
	}
	// A SYN that met its flow still open would have made no new one.
	if st, _ := e.ServiceStats("tcp " + vip.String()); st.Conns != uint64(sent.Load()) {
		b.Fatalf("%d SYNs made %d flows", sent.Load(), st.Conns)
	}
	b.ReportMetric(float64(b.N)/4/b.Elapsed().Seconds()/1e6, "Mflows/s")
}

// harnessOnly measures the benchmark's own per-packet work.
type harnessOnly struct{}

func (harnessOnly) process(pkts [][]byte, v []nat.Verdict) {
	for i := range pkts {
		v[i] = nat.Forward
	}
}

// BenchmarkExpire is one Expire pass over a table of the given capacity
// holding 10K live flows, none of them due: what the gateway's expirer
// pays every tick. It should cost the live flows, not the capacity.
func BenchmarkExpire(b *testing.B) {
	for _, c := range []struct {
		name     string
		capacity int
	}{{"64K", 1 << 16}, {"16M", 1 << 24}} {
		capacity := c.capacity
		b.Run("capacity="+c.name+"/live=10K", func(b *testing.B) {
			var bs []nat.Backend
			for _, r := range rips {
				bs = append(bs, nat.Backend{Addr: r, Port: 53, Weight: 1})
			}
			e, err := nat.New(nat.Config{Capacity: capacity, Services: []nat.Service{
				{Proto: packet.ProtoUDP, VIP: vip.Addr(), Port: 53, Scheduler: "rr", Backends: bs}}})
			if err != nil {
				b.Fatal(err)
			}
			w := e.NewWorker()
			for i := range 10_000 {
				src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 40000)
				if v := one(w, udp(src, netip.AddrPortFrom(vip.Addr(), 53), 8)); v != nat.Forward {
					b.Fatalf("flow %d: %v", i, v)
				}
			}
			b.ResetTimer()
			for b.Loop() {
				if n := e.Expire(); n != 0 {
					b.Fatalf("%d flows expired", n)
				}
			}
			b.StopTimer()
			if e.Flows() != 10_000 {
				b.Fatalf("%d flows, want 10K", e.Flows())
			}
		})
	}
}
