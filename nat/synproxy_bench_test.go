package nat_test

import (
	"net/netip"
	"testing"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// handshakeBench builds the segments of one connection's handshake with
// packet.TCPSegment (cheap enough to build per iteration), the client's
// from client:port to the VIP.
type handshakeBench struct {
	w    *nat.Worker
	buf  [3][]byte
	pkts [][]byte
	v    []nat.Verdict
	p    packet.Parsed
}

func newHandshakeBench(e *nat.Engine) *handshakeBench {
	h := &handshakeBench{w: e.NewWorker(), pkts: make([][]byte, 1), v: make([]nat.Verdict, 1)}
	for i := range h.buf {
		h.buf[i] = make([]byte, 256)
	}
	return h
}

// one sends seg through the worker in buffer i and returns the verdict
// and what left (b[:n]).
func (h *handshakeBench) one(i int, seg *packet.TCPSegment) (nat.Verdict, []byte) {
	n, _ := seg.Write(h.buf[i])
	h.pkts[0] = h.buf[i][:n]
	h.w.Process(h.pkts, h.v)
	return h.v[0], h.pkts[0]
}

// connect opens one connection from client port port: SYN, the answer
// (vsgate's cookie SYN-ACK when proxied, else the real server's SYN-ACK
// to the forwarded SYN) and the client's ACK; when proxied, the real
// server's SYN-ACK to the SYN vsgate then sends. It reports whether the
// flow was made.
func (h *handshakeBench) connect(port uint16, proxied bool) bool {
	c16, v16 := client.Addr().As16(), vip.Addr().As16()
	opts := packet.TCPOptions{HasMSS: true, MSS: 1460, HasWScale: true, WScale: 7, SACKPermit: true, HasTimestamp: true, TSval: 1}
	syn := packet.TCPSegment{Src: c16, Dst: v16, SrcPort: port, DstPort: vip.Port(), Seq: 1000, Flags: syn, Window: 64240, Options: opts, V4: true}
	v, out := h.one(0, &syn)
	if v == nat.Drop {
		return false
	}
	packet.Parse(out, &h.p)
	t := packet.TCP(out[h.p.L4Off:h.p.End])
	if !proxied {
		// The real server answers the forwarded SYN; the client ACKs.
		sa := packet.TCPSegment{Src: h.p.Dst, Dst: h.p.Src, SrcPort: h.p.DstPort, DstPort: h.p.SrcPort, Seq: 5000, Ack: 1001,
			Flags: synack, Window: 65160, Options: opts, V4: true}
		h.one(1, &sa)
		a := packet.TCPSegment{Src: c16, Dst: v16, SrcPort: port, DstPort: vip.Port(), Seq: 1001, Ack: 5001, Flags: ack, Window: 502,
			Options: packet.TCPOptions{HasTimestamp: true, TSval: 2, TSecr: 1}, V4: true}
		v, _ = h.one(2, &a)
		return v == nat.Forward
	}
	o := t.Options()
	a := packet.TCPSegment{Src: c16, Dst: v16, SrcPort: port, DstPort: vip.Port(), Seq: 1001, Ack: t.Seq() + 1, Flags: ack, Window: 502,
		Options: packet.TCPOptions{HasTimestamp: true, TSval: 2, TSecr: o.TSval}, V4: true}
	v, out = h.one(1, &a)
	if v != nat.Reply {
		return false
	}
	packet.Parse(out, &h.p)
	sa := packet.TCPSegment{Src: h.p.Dst, Dst: h.p.Src, SrcPort: h.p.DstPort, DstPort: h.p.SrcPort, Seq: 5000, Ack: 1001,
		Flags: synack, Window: 65160, Options: opts, V4: true}
	v, _ = h.one(2, &sa)
	return v == nat.Reply
}

// BenchmarkSynProxy: what the SYN proxy costs. cookie: answering a SYN
// (what a flood costs per packet; its inverse is the SYN cookies one core
// makes a second). handshake: a whole connection's opening through the
// engine, proxied and not (the same segments built the same way, so the
// difference is the proxy's). established: a proxied flow's segments,
// both ways, against a plain flow's.
func BenchmarkSynProxy(b *testing.B) {
	b.Run("cookie", func(b *testing.B) {
		e := proxyEngine(b, nat.ModeNAT, nat.SynProxyOn, 0)
		h := newHandshakeBench(e)
		syn := packet.TCPSegment{Src: client.Addr().As16(), Dst: vip.Addr().As16(), SrcPort: 40000, DstPort: vip.Port(), Seq: 1000,
			Flags: syn, Window: 64240, V4: true,
			Options: packet.TCPOptions{HasMSS: true, MSS: 1460, HasWScale: true, WScale: 7, SACKPermit: true, HasTimestamp: true, TSval: 1}}
		n, _ := syn.Write(h.buf[0])
		tmpl := append([]byte(nil), h.buf[0][:n]...)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			h.pkts[0] = h.buf[0][:copy(h.buf[0], tmpl)]
			h.w.Process(h.pkts, h.v)
		}
		b.StopTimer()
		if h.v[0] != nat.Reply {
			b.Fatalf("verdict %v", h.v[0])
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cookies/s")
	})
	for _, c := range []struct {
		name string
		sp   nat.SynProxy
	}{{"handshake/proxied", nat.SynProxyOn}, {"handshake/plain", nat.SynProxyOff}} {
		b.Run(c.name, func(b *testing.B) {
			const capacity, ports = 1 << 16, 60000 // a fresh engine when the ports are used up
			var h *handshakeBench
			made := 0
			b.ReportAllocs()
			for i := range b.N {
				if h == nil || made == ports {
					b.StopTimer()
					h = newHandshakeBench(proxyEngineSized(b, nat.ModeNAT, c.sp, 0, capacity))
					made = 0
					b.StartTimer()
				}
				if !h.connect(uint16(1024+made), c.sp == nat.SynProxyOn) {
					b.Fatalf("connection %d not made", i)
				}
				made++
			}
		})
	}
	for _, c := range []struct {
		name string
		sp   nat.SynProxy
	}{{"established/proxied", nat.SynProxyOn}, {"established/plain", nat.SynProxyOff}} {
		b.Run(c.name, func(b *testing.B) {
			e := proxyEngine(b, nat.ModeNAT, c.sp, 0)
			h := newHandshakeBench(e)
			if !h.connect(40000, c.sp == nat.SynProxyOn) {
				b.Fatal("no connection")
			}
			var server netip.AddrPort
			for f := range e.AllFlows() {
				server = f.ReplySrc
			}
			ts := packet.TCPOptions{HasTimestamp: true, TSval: 3, TSecr: 1}
			in := packet.TCPSegment{Src: client.Addr().As16(), Dst: vip.Addr().As16(), SrcPort: 40000, DstPort: vip.Port(), Seq: 1001, Ack: 0,
				Flags: ack, Window: 502, Options: ts, V4: true}
			out := packet.TCPSegment{Src: server.Addr().As16(), Dst: client.Addr().As16(), SrcPort: server.Port(), DstPort: 40000, Seq: 5001, Ack: 1001,
				Flags: ack, Window: 502, Options: ts, V4: true}
			if c.sp == nat.SynProxyOn {
				// The client acknowledges in vsgate's space: find it by
				// sending the real server's segment once.
				_, got := h.one(0, &out)
				packet.Parse(got, &h.p)
				in.Ack = packet.TCP(got[h.p.L4Off:h.p.End]).Seq()
			} else {
				in.Ack = 5001
			}
			nIn, _ := in.Write(h.buf[1])
			nOut, _ := out.Write(h.buf[2])
			tIn, tOut := append([]byte(nil), h.buf[1][:nIn]...), append([]byte(nil), h.buf[2][:nOut]...)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				t := tIn
				if i&1 == 1 {
					t = tOut
				}
				h.pkts[0] = h.buf[0][:copy(h.buf[0], t)]
				h.w.Process(h.pkts, h.v)
				if h.v[0] != nat.Forward {
					b.Fatalf("segment %d: %v", i, h.v[0])
				}
			}
		})
	}
}
