package nat_test

import (
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// proxyEngine is an engine whose TCP services (v4 and v6, in mode) run the
// SYN proxy in the given mode.
func proxyEngine(t testing.TB, mode nat.Mode, sp nat.SynProxy, halfOpen int) *nat.Engine {
	t.Helper()
	return proxyEngineSized(t, mode, sp, halfOpen, 1024)
}

// proxyEngineSized is proxyEngine with a table of capacity flows.
func proxyEngineSized(t testing.TB, mode nat.Mode, sp nat.SynProxy, halfOpen, capacity int) *nat.Engine {
	t.Helper()
	e, err := nat.New(nat.Config{
		Capacity: capacity, ShardBits: 2, SynProxyHalfOpen: halfOpen,
		Services: []nat.Service{
			{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: vip.Port(), Mode: mode, Scheduler: "rr", SynProxy: sp,
				Backends: []nat.Backend{{Addr: rips[0], Port: 8080, Weight: 1}}},
			{Proto: packet.ProtoTCP, VIP: vip6.Addr(), Port: vip6.Port(), Mode: mode, Scheduler: "rr", SynProxy: sp,
				Backends: []nat.Backend{{Addr: rip6, Port: 8080, Weight: 1}}},
		},
		FullNATPool: []netip.Addr{lip, netip.MustParseAddr("2001:db8::30")},
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// seg is a TCP segment with options, in a buffer with room to be
// answered in place (as device buffers have).
type seg struct {
	flags        uint8
	seq, ack     uint32
	win          uint16
	payload      int
	mss          uint16
	scale        int // -1: no window scale option
	sackOK       bool
	tsval, tsecr uint32
	ts           bool
	sack         [][2]uint32
}

func (s seg) build(src, dst netip.AddrPort) []byte {
	t := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: s.seq, Ack: s.ack, Window: s.win,
		SYN: s.flags&syn != 0, ACK: s.flags&ack != 0, RST: s.flags&rst != 0, FIN: s.flags&packet.TCPFlagFIN != 0}
	if s.mss != 0 {
		t.Options = append(t.Options, layers.TCPOption{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{byte(s.mss >> 8), byte(s.mss)}})
	}
	if s.sackOK {
		t.Options = append(t.Options, layers.TCPOption{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2})
	}
	if s.ts {
		d := make([]byte, 8)
		put32(d, s.tsval)
		put32(d[4:], s.tsecr)
		t.Options = append(t.Options, layers.TCPOption{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: d})
	}
	if len(s.sack) > 0 {
		d := make([]byte, 0, 8*len(s.sack))
		for _, blk := range s.sack {
			d = append(d, byte(blk[0]>>24), byte(blk[0]>>16), byte(blk[0]>>8), byte(blk[0]), byte(blk[1]>>24), byte(blk[1]>>16), byte(blk[1]>>8), byte(blk[1]))
		}
		t.Options = append(t.Options, layers.TCPOption{OptionType: layers.TCPOptionKindSACK, OptionLength: uint8(2 + len(d)), OptionData: d})
	}
	if s.scale >= 0 && s.flags&syn != 0 {
		t.Options = append(t.Options, layers.TCPOption{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{byte(s.scale)}})
	}
	b := build(src.Addr(), dst.Addr(), layers.IPProtocolTCP, t, s.payload)
	return append(make([]byte, 0, 1600), b...)
}

func put32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}

// decoded is what gopacket reads of a segment vsgate sent.
type decoded struct {
	src, dst netip.AddrPort
	tcp      *layers.TCP
	tsval    uint32
	tsecr    uint32
	ts       bool
	scale    int
	mss      uint16
	sackOK   bool
	sack     [][2]uint32
}

func decode(t *testing.T, b []byte) decoded {
	t.Helper()
	checksumsValid(t, b)
	first := layers.LayerTypeIPv4
	if b[0]>>4 == 6 {
		first = layers.LayerTypeIPv6
	}
	pkt := gopacket.NewPacket(b, first, gopacket.Default)
	tl, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if tl == nil {
		t.Fatalf("not TCP: %v", pkt)
	}
	d := decoded{tcp: tl, scale: -1}
	d.src, d.dst = endpoints(t, b)
	be := func(x []byte) uint32 { return uint32(x[0])<<24 | uint32(x[1])<<16 | uint32(x[2])<<8 | uint32(x[3]) }
	for _, o := range tl.Options {
		switch o.OptionType {
		case layers.TCPOptionKindTimestamps:
			d.ts, d.tsval, d.tsecr = true, be(o.OptionData), be(o.OptionData[4:])
		case layers.TCPOptionKindWindowScale:
			d.scale = int(o.OptionData[0])
		case layers.TCPOptionKindMSS:
			d.mss = uint16(o.OptionData[0])<<8 | uint16(o.OptionData[1])
		case layers.TCPOptionKindSACKPermitted:
			d.sackOK = true
		case layers.TCPOptionKindSACK:
			for x := o.OptionData; len(x) >= 8; x = x[8:] {
				d.sack = append(d.sack, [2]uint32{be(x), be(x[4:])})
			}
		}
	}
	return d
}

// run processes one packet and returns what leaves: it, if not dropped,
// then what the call released.
func run(w *nat.Worker, b []byte) ([][]byte, []nat.Verdict) {
	return through(w, [][]byte{b})
}

// TestSynProxyHandshake walks a proxied connection, v4 and v6, NAT and
// FULLNAT: the cookie SYN-ACK (no flow yet), the SYN the real server
// gets, the ACKs that join the two, and data both ways moved between the
// sequence spaces: sequence and acknowledgement numbers, SACK blocks,
// timestamps, and a window the real server scales differently.
func TestSynProxyHandshake(t *testing.T) {
	for _, mode := range []nat.Mode{nat.ModeNAT, nat.ModeFullNAT} {
		for _, c := range []struct {
			name        string
			client, vip netip.AddrPort
			mss         uint16
		}{{"v4", client, vip, 1460}, {"v6", client6, vip6, 1440}} {
			t.Run(map[nat.Mode]string{nat.ModeNAT: "nat", nat.ModeFullNAT: "fullnat"}[mode]+"/"+c.name, func(t *testing.T) {
				proxiedHandshake(t, proxyEngine(t, mode, nat.SynProxyOn, 0), mode, c.client, c.vip, c.mss)
			})
		}
	}
}

func proxiedHandshake(t *testing.T, e *nat.Engine, mode nat.Mode, cl, vp netip.AddrPort, mss uint16) {
	w := e.NewWorker()
	const x, y = 1000, 7_000_000 // the client's and the real server's ISNs
	const t1, t2, t3, s1, s2 = 500, 510, 520, 90_000, 90_100
	out, v := run(w, seg{flags: syn, seq: x, win: 64240, mss: mss, scale: 7, sackOK: true, ts: true, tsval: t1}.build(cl, vp))
	if len(out) != 1 || v[0] != nat.Reply {
		t.Fatalf("SYN: %v", v)
	}
	sa := decode(t, out[0])
	if sa.src != vp || sa.dst != cl || !sa.tcp.SYN || !sa.tcp.ACK || sa.tcp.Ack != x+1 || sa.tcp.Window != sa.mss {
		t.Fatalf("SYN-ACK %v -> %v syn %v ack %v %d window %d", sa.src, sa.dst, sa.tcp.SYN, sa.tcp.ACK, sa.tcp.Ack, sa.tcp.Window)
	}
	if !sa.ts || sa.tsecr != t1 || sa.scale != 7 || !sa.sackOK || sa.mss == 0 {
		t.Fatalf("SYN-ACK options: %+v", sa)
	}
	if e.Flows() != 0 {
		t.Fatalf("%d flows after a SYN", e.Flows())
	}
	cookie := sa.tcp.Seq

	// A client segment with a bad cookie makes nothing.
	if _, v := run(w, seg{flags: ack, seq: x + 1, ack: cookie + 100, win: 502, ts: true, tsval: t2, tsecr: sa.tsval}.build(cl, vp)); len(v) != 0 || e.Drops(nat.DropSynProxyCookie) != 1 {
		t.Fatalf("bad cookie: %v, %d drops", v, e.Drops(nat.DropSynProxyCookie))
	}

	out, v = run(w, seg{flags: ack, seq: x + 1, ack: cookie + 1, win: 502, ts: true, tsval: t2, tsecr: sa.tsval}.build(cl, vp))
	if len(out) != 1 || v[0] != nat.Reply {
		t.Fatalf("cookie ACK: %v", v)
	}
	sy := decode(t, out[0])
	if !sy.tcp.SYN || sy.tcp.ACK || sy.tcp.Seq != x || sy.mss != mss || sy.scale != 7 || !sy.sackOK || !sy.ts || sy.tsval != t2 {
		t.Fatalf("SYN to the real server: %+v", sy)
	}
	server, gw := sy.dst, sy.src
	if (mode == nat.ModeNAT) != (gw == cl) {
		t.Fatalf("SYN to the real server from %v", gw)
	}
	if e.Flows() != 1 {
		t.Fatalf("%d flows after the cookie", e.Flows())
	}

	// Before the real server answers, the client's data waits; a bare
	// ACK is dropped.
	if _, v := run(w, seg{flags: ack, seq: x + 1, ack: cookie + 1, win: 502, payload: 10, ts: true, tsval: t2, tsecr: sa.tsval}.build(cl, vp)); len(v) != 0 {
		t.Fatalf("early data: %v", v)
	}
	if _, v := run(w, seg{flags: ack, seq: x + 1, ack: cookie + 1, win: 502, ts: true, tsval: t2, tsecr: sa.tsval}.build(cl, vp)); len(v) != 0 || e.Drops(nat.DropSynProxyEarly) != 1 {
		t.Fatalf("early bare ACK: %v", v)
	}

	// The real server's SYN-ACK: a different window scale (9).
	out, v = run(w, seg{flags: synack, seq: y, ack: x + 1, win: 65160, mss: 1400, scale: 9, sackOK: true, ts: true, tsval: s1, tsecr: t2}.build(server, gw))
	if len(out) != 3 || v[0] != nat.Reply || v[1] != nat.Reply || v[2] != nat.Forward {
		t.Fatalf("SYN-ACK: %d packets, %v", len(out), v)
	}
	if held := decode(t, out[2]); held.dst != server || held.tcp.Seq != x+1 || held.tcp.Ack != y+1 || len(held.tcp.Payload) != 10 || held.tsecr != s1 {
		t.Fatalf("the held data to the real server: %+v", held)
	}
	a := decode(t, out[0])
	if a.src != gw || a.dst != server || a.tcp.SYN || !a.tcp.ACK || a.tcp.Seq != x+1 || a.tcp.Ack != y+1 || a.tsval != t2 || a.tsecr != s1 {
		t.Fatalf("ACK to the real server: %+v", a)
	}
	open := decode(t, out[1])
	if open.src != vp || open.dst != cl || !open.tcp.ACK || open.tcp.Seq != cookie+1 || open.tcp.Ack != x+1 || open.tcp.Window != 65160>>7 || open.tsval != sa.tsval || open.tsecr != t2 {
		t.Fatalf("window update to the client: %+v (window %d)", open, open.tcp.Window)
	}
	var fi nat.FlowInfo
	for f := range e.AllFlows() {
		fi = f
	}
	if fi.State != "ESTABLISHED" || !fi.Proxied {
		t.Fatalf("flow %+v", fi)
	}

	// Client data with a SACK block: the acknowledgements move into the
	// real server's space, the timestamp echo into its clock.
	out, v = run(w, seg{flags: ack, seq: x + 1, ack: cookie + 1, win: 502, payload: 100, ts: true, tsval: t3, tsecr: sa.tsval,
		sack: [][2]uint32{{cookie + 1001, cookie + 2001}}}.build(cl, vp))
	if len(out) != 1 || v[0] != nat.Forward {
		t.Fatalf("client data: %v", v)
	}
	d := decode(t, out[0])
	if d.dst != server || d.tcp.Seq != x+1 || d.tcp.Ack != y+1 || d.tsval != t3 || d.tsecr != s1 || d.tcp.Window != 502 ||
		len(d.sack) != 1 || d.sack[0] != [2]uint32{y + 1001, y + 2001} {
		t.Fatalf("client data to the real server: %+v", d)
	}

	// Server data: its sequence numbers and clock move into the client's
	// space, its window from scale 9 to the 7 the client was offered.
	out, v = run(w, seg{flags: ack, seq: y + 1, ack: x + 101, win: 100, payload: 1000, ts: true, tsval: s2, tsecr: t3}.build(server, gw))
	if len(out) != 1 || v[0] != nat.Forward {
		t.Fatalf("server data: %v", v)
	}
	d = decode(t, out[0])
	if d.src != vp || d.dst != cl || d.tcp.Seq != cookie+1 || d.tcp.Ack != x+101 || d.tsval != sa.tsval+(s2-s1) || d.tsecr != t3 || d.tcp.Window != 100<<9>>7 {
		t.Fatalf("server data to the client: seq %d ack %d tsval %d tsecr %d window %d", d.tcp.Seq, d.tcp.Ack, d.tsval, d.tsecr, d.tcp.Window)
	}

	// The real server's SYN-ACK again (as if the ACK was lost): answered
	// with the ACK again, nothing to the client.
	out, v = run(w, seg{flags: synack, seq: y, ack: x + 1, win: 65160, mss: 1400, scale: 9, sackOK: true, ts: true, tsval: s1, tsecr: t2}.build(server, gw))
	if len(out) != 1 || v[0] != nat.Reply {
		t.Fatalf("SYN-ACK again: %v", v)
	}
	if a := decode(t, out[0]); a.dst != server || a.tcp.Seq != x+1 || a.tcp.Ack != y+1 {
		t.Fatalf("ACK again: %+v", a)
	}

	if err := e.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
	if s := e.SynProxy(); s.CookiesSent != 1 || s.CookiesValid != 1 {
		t.Fatalf("counters %+v", s)
	}
}

// TestSynProxyNoTimestamps: a client without timestamps gets a SYN-ACK
// without window scaling or SACK (nothing can carry them back), and the
// real server a SYN without them.
func TestSynProxyNoTimestamps(t *testing.T) {
	e := proxyEngine(t, nat.ModeNAT, nat.SynProxyOn, 0)
	w := e.NewWorker()
	out, _ := run(w, seg{flags: syn, seq: 5, win: 64240, mss: 1300, scale: 7, sackOK: true}.build(client, vip))
	sa := decode(t, out[0])
	if sa.ts || sa.scale >= 0 || sa.sackOK {
		t.Fatalf("SYN-ACK to a client without timestamps: %+v", sa)
	}
	out, v := run(w, seg{flags: ack, seq: 6, ack: sa.tcp.Seq + 1, win: 64240}.build(client, vip))
	if len(v) != 1 || v[0] != nat.Reply {
		t.Fatalf("cookie ACK: %v", v)
	}
	if sy := decode(t, out[0]); sy.ts || sy.scale >= 0 || sy.sackOK || sy.mss != 1300 || sy.tcp.Window != 64240 {
		t.Fatalf("SYN to the real server: %+v", sy)
	}
}

// TestSynProxyAuto: an auto service makes flows as usual until the
// table's half-open flows reach the threshold, then answers with cookies.
func TestSynProxyAuto(t *testing.T) {
	e := proxyEngine(t, nat.ModeNAT, nat.SynProxyAuto, 4)
	w := e.NewWorker()
	for i := range 4 {
		if v := one(w, tcp(netip.AddrPortFrom(client.Addr(), uint16(10000+i)), vip, syn, 0)); v != nat.Forward {
			t.Fatalf("SYN %d: %v", i, v)
		}
	}
	if e.HalfOpen() != 4 {
		t.Fatalf("%d half-open", e.HalfOpen())
	}
	b := seg{flags: syn, seq: 5, win: 64240, mss: 1460, scale: -1}.build(netip.AddrPortFrom(client.Addr(), 20000), vip)
	if v := one(w, b); v != nat.Reply || e.Flows() != 4 {
		t.Fatalf("SYN past the threshold: %v, %d flows", v, e.Flows())
	}
}

// TestSynProxyRefusedByServer: a real server that refuses the connection
// resets it; the client gets the reset in its own space. Before that, a
// reset that does not acknowledge the SYN (a blind guess at the real
// server's 4-tuple) is dropped and changes nothing.
func TestSynProxyRefusedByServer(t *testing.T) {
	e := proxyEngine(t, nat.ModeNAT, nat.SynProxyOn, 0)
	w := e.NewWorker()
	out, _ := run(w, seg{flags: syn, seq: 5, win: 64240, mss: 1460, scale: -1}.build(client, vip))
	cookie := decode(t, out[0]).tcp.Seq
	out, _ = run(w, seg{flags: ack, seq: 6, ack: cookie + 1, win: 64240}.build(client, vip))
	sy := decode(t, out[0])
	for _, blind := range []seg{{flags: rst, seq: 0, scale: -1}, {flags: rst | ack, seq: 0, ack: 7, scale: -1}, {flags: rst | ack, seq: 0, ack: 5, scale: -1}} {
		if _, v := run(w, blind.build(sy.dst, sy.src)); len(v) != 0 {
			t.Fatalf("RST with ack %d (flags %#x): %v, want dropped", blind.ack, blind.flags, v)
		}
	}
	if st := flowState(e, client); st != "SYN_RECV" || e.Drops(nat.DropTCPOutOfWindow) != 3 {
		t.Fatalf("after blind RSTs: state %q, %d out-of-window drops", st, e.Drops(nat.DropTCPOutOfWindow))
	}
	out, v := run(w, seg{flags: rst | ack, seq: 0, ack: 6, scale: -1}.build(sy.dst, sy.src))
	if len(v) != 1 || v[0] != nat.Forward {
		t.Fatalf("RST: %v", v)
	}
	if r := decode(t, out[0]); !r.tcp.RST || r.tcp.Seq != cookie+1 || r.dst != client {
		t.Fatalf("RST to the client: seq %d (want %d) to %v", r.tcp.Seq, cookie+1, r.dst)
	}
}

// TestSynProxyServerSynLost: the SYN to the real server is lost. The
// client's first data is held; its retransmission becomes the same SYN
// again (sequence number, MSS, window scale, SACK, to the same real
// server, with the held data's timestamp), counted; a RST from the client
// then is dropped. The real server's answer to the SYN sent again settles
// the flow and the held data goes on.
func TestSynProxyServerSynLost(t *testing.T) {
	for _, mode := range []nat.Mode{nat.ModeNAT, nat.ModeFullNAT} {
		e := proxyEngine(t, mode, nat.SynProxyOn, 0)
		w := e.NewWorker()
		out, _ := run(w, seg{flags: syn, seq: 5, win: 64240, mss: 1460, scale: 7, sackOK: true, ts: true, tsval: 1000}.build(client, vip))
		sa := decode(t, out[0])
		cookie := sa.tcp.Seq
		out, _ = run(w, seg{flags: ack, seq: 6, ack: cookie + 1, win: 502, ts: true, tsval: 1001, tsecr: sa.tsval}.build(client, vip))
		first := decode(t, out[0]) // lost on its way
		if _, v := run(w, seg{flags: ack, seq: 6, ack: cookie + 1, win: 502, payload: 100, ts: true, tsval: 1002, tsecr: sa.tsval}.build(client, vip)); len(v) != 0 {
			t.Fatalf("%v: the first data before the real server answered: %v, want held", mode, v)
		}
		out, v := run(w, seg{flags: ack, seq: 6, ack: cookie + 1, win: 502, payload: 100, ts: true, tsval: 1203, tsecr: sa.tsval}.build(client, vip))
		if len(v) != 1 || v[0] != nat.Reply {
			t.Fatalf("%v: the client's retransmission: %v, want the SYN again (Reply)", mode, v)
		}
		again := decode(t, out[0])
		if !again.tcp.SYN || again.tcp.ACK || again.src != first.src || again.dst != first.dst || again.tcp.Seq != first.tcp.Seq ||
			again.mss != first.mss || again.scale != first.scale || again.sackOK != first.sackOK || !again.ts || again.tsval != 1002 || len(again.tcp.Payload) != 0 {
			t.Fatalf("%v: the SYN sent again %v -> %v seq %d (mss %d scale %d sack %v ts %v/%d), want the first one's %v -> %v seq %d (mss %d scale %d sack %v)",
				mode, again.src, again.dst, again.tcp.Seq, again.mss, again.scale, again.sackOK, again.ts, again.tsval,
				first.src, first.dst, first.tcp.Seq, first.mss, first.scale, first.sackOK)
		}
		if n := e.SynProxy().ServerSynResent; n != 1 {
			t.Fatalf("%v: server_syn_resent %d, want 1", mode, n)
		}
		if _, v := run(w, seg{flags: rst, seq: 6}.build(client, vip)); len(v) != 0 {
			t.Fatalf("%v: a RST before the real server answered: %v, want dropped", mode, v)
		}
		// The real server answers the SYN sent again.
		out, v = run(w, seg{flags: synack, seq: 90000, ack: again.tcp.Seq + 1, win: 65535, mss: 1460, scale: 7, sackOK: true, ts: true, tsval: 7, tsecr: again.tsval}.build(again.dst, again.src))
		var data bool
		for i, b := range out {
			d := decode(t, b)
			if v[i] == nat.Forward && d.dst == again.dst && len(d.tcp.Payload) == 100 {
				data = true
			}
		}
		if !data {
			t.Fatalf("%v: after the SYN-ACK the held data did not go to the real server: %v", mode, v)
		}
		if err := e.CheckInvariants(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSynProxyServerSynLostTimestamps: the client's ACK of the cookie is
// lost, its first data proves the cookie and is held, and the SYN that
// data became is lost too; the data sent again, with a later timestamp,
// sends the SYN again. What reaches the real server then — that SYN, the
// ACK that answers its SYN-ACK, the held data — must pass its PAWS check
// (RFC 7323 §5.3: a segment older than the last one taken is dropped),
// or the request waits for the client's next retransmission, each twice
// as late as the one before.
func TestSynProxyServerSynLostTimestamps(t *testing.T) {
	for _, mode := range []nat.Mode{nat.ModeNAT, nat.ModeFullNAT} {
		e := proxyEngine(t, mode, nat.SynProxyOn, 0)
		w := e.NewWorker()
		out, _ := run(w, seg{flags: syn, seq: 5, win: 64240, mss: 1460, scale: 7, sackOK: true, ts: true, tsval: 1000}.build(client, vip))
		sa := decode(t, out[0])
		data := func(tsval uint32) []byte {
			return seg{flags: ack, seq: 6, ack: sa.tcp.Seq + 1, win: 502, payload: 44, ts: true, tsval: tsval, tsecr: sa.tsval}.build(client, vip)
		}
		if _, v := run(w, data(1001)); len(v) != 1 || v[0] != nat.Reply {
			t.Fatalf("%v: the first data without the ACK: %v, want the SYN (Reply)", mode, v)
		}
		out, v := run(w, data(1201)) // 200 ms later: the SYN it became was lost
		if len(v) != 1 || v[0] != nat.Reply {
			t.Fatalf("%v: the data sent again: %v, want the SYN again (Reply)", mode, v)
		}
		sy := decode(t, out[0])
		if !sy.tcp.SYN || !sy.ts {
			t.Fatalf("%v: the SYN sent again: %+v", mode, sy)
		}
		out, v = run(w, seg{flags: synack, seq: 90000, ack: 6, win: 65160, mss: 1460, scale: 7, sackOK: true, ts: true, tsval: 7, tsecr: sy.tsval}.build(sy.dst, sy.src))
		// The real server's PAWS check over what it gets, in order.
		recent, data44 := sy.tsval, false
		for i, b := range out {
			d := decode(t, b)
			if d.dst != sy.dst {
				continue
			}
			if !d.ts || int32(d.tsval-recent) < 0 {
				t.Fatalf("%v: %v segment %d (%d bytes) to the real server with timestamp %d (%v), older than the %d it took before: dropped (PAWS)",
					mode, v[i], i, len(d.tcp.Payload), d.tsval, d.ts, recent)
			}
			recent, data44 = d.tsval, data44 || len(d.tcp.Payload) == 44
		}
		if !data44 {
			t.Fatalf("%v: after the SYN-ACK the held data did not go to the real server: %v", mode, v)
		}
	}
}

// TestSynProxyNoAlloc: a proxied flow's segments, both ways, allocate
// nothing.
func TestSynProxyNoAlloc(t *testing.T) {
	e := proxyEngine(t, nat.ModeNAT, nat.SynProxyOn, 0)
	w := e.NewWorker()
	out, _ := run(w, seg{flags: syn, seq: 5, win: 64240, mss: 1460, scale: 7, sackOK: true, ts: true, tsval: 1}.build(client, vip))
	sa := decode(t, out[0])
	out, _ = run(w, seg{flags: ack, seq: 6, ack: sa.tcp.Seq + 1, win: 502, ts: true, tsval: 2, tsecr: sa.tsval}.build(client, vip))
	sy := decode(t, out[0])
	run(w, seg{flags: synack, seq: 100, ack: 6, win: 65160, mss: 1460, scale: 9, sackOK: true, ts: true, tsval: 50, tsecr: 2}.build(sy.dst, sy.src))
	in := seg{flags: ack, seq: 6, ack: sa.tcp.Seq + 1, win: 502, ts: true, tsval: 3, tsecr: sa.tsval, sack: [][2]uint32{{sa.tcp.Seq + 1, sa.tcp.Seq + 2}}}.build(client, vip)
	back := seg{flags: ack, seq: 101, ack: 6, win: 100, ts: true, tsval: 51, tsecr: 3}.build(sy.dst, sy.src)
	pin, pback := append([]byte(nil), in...), append([]byte(nil), back...)
	v := make([]nat.Verdict, 1)
	pkts := [][]byte{nil}
	allocs := testing.AllocsPerRun(200, func() {
		copy(in, pin)
		copy(back, pback)
		pkts[0] = in
		w.Process(pkts, v)
		if v[0] != nat.Forward {
			t.Fatalf("client segment: %v", v[0])
		}
		pkts[0] = back
		w.Process(pkts, v)
		if v[0] != nat.Forward {
			t.Fatalf("server segment: %v", v[0])
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per round trip", allocs)
	}
}

// FuzzSynProxy: segments of any flags, numbers and options, both ways, at
// a proxied flow: no panic; the flow's state stays a state; every
// forwarded segment is moved by exactly the flow's shift (client
// acknowledgements up by it, real server sequence numbers down by it);
// the table's invariants hold.
func FuzzSynProxy(f *testing.F) {
	f.Add([]byte{0x10, 0, 0, 0, 1, 0, 0, 0, 1, 0x90, 0, 0, 0, 1, 0, 0, 0, 1})
	f.Add([]byte{0x44, 0, 0, 0, 1, 0, 0, 0, 1, 0x91, 0, 0, 0, 2, 0, 0, 0, 1, 0x14, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		e := proxyEngine(t, nat.ModeNAT, nat.SynProxyOn, 0)
		w := e.NewWorker()
		const x, y = 1000, 7_000_000
		out, _ := run(w, seg{flags: syn, seq: x, win: 64240, mss: 1460, scale: 7, sackOK: true, ts: true, tsval: 1}.build(client, vip))
		sa := decode(t, out[0])
		cookie := sa.tcp.Seq
		out, _ = run(w, seg{flags: ack, seq: x + 1, ack: cookie + 1, win: 502, ts: true, tsval: 2, tsecr: sa.tsval}.build(client, vip))
		sy := decode(t, out[0])
		server := sy.dst
		run(w, seg{flags: synack, seq: y, ack: x + 1, win: 65160, mss: 1460, scale: 9, sackOK: true, ts: true, tsval: 50, tsecr: 2}.build(server, client))
		shift := uint32(y) - cookie
		// A SYN on the flow's ports once it is closed replaces it, and a
		// new flow has shifts of its own: checked only until then.
		replaced := false
		for len(in) >= 9 {
			flags := in[0] & (syn | ack | rst | packet.TCPFlagFIN)
			fromServer := in[0]&0x80 != 0
			dseq := uint32(in[1])<<24 | uint32(in[2])<<16 | uint32(in[3])<<8 | uint32(in[4])
			dack := uint32(in[5])<<24 | uint32(in[6])<<16 | uint32(in[7])<<8 | uint32(in[8])
			in = in[9:]
			sg := seg{flags: flags, win: 100, payload: int(in0(in) & 0x3f), scale: -1, ts: in0(in)&0x40 != 0, tsval: dseq, tsecr: dack}
			var b []byte
			if fromServer {
				sg.seq, sg.ack = y+1+dseq, x+1+dack
				if in0(in)&0x80 != 0 {
					sg.sack = [][2]uint32{{x + 1 + dack, x + 2 + dack}}
				}
				b = sg.build(server, client)
			} else {
				sg.seq, sg.ack = x+1+dseq, cookie+1+dack
				if in0(in)&0x80 != 0 {
					sg.sack = [][2]uint32{{cookie + 1 + dack, cookie + 2 + dack}}
				}
				b = sg.build(client, vip)
			}
			out, v := run(w, b)
			for i, o := range out {
				if v[i] != nat.Forward || replaced {
					continue
				}
				d := decode(t, o)
				switch {
				case fromServer && sg.seq-d.tcp.Seq != shift:
					t.Fatalf("server seq %d left as %d: shift %d", sg.seq, d.tcp.Seq, sg.seq-d.tcp.Seq)
				case !fromServer && flags&ack != 0 && d.tcp.Ack-sg.ack != shift:
					t.Fatalf("client ack %d left as %d", sg.ack, d.tcp.Ack)
				case !fromServer && flags&ack != 0 && len(d.sack) == 1 && d.sack[0][0]-sg.sack[0][0] != shift:
					t.Fatalf("client SACK %v left as %v", sg.sack, d.sack)
				}
			}
			st := flowState(e, client)
			replaced = replaced || st == ""
			switch st {
			case "", "ESTABLISHED", "SYN_RECV", "SYNACK", "FIN_WAIT", "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "SYN_SENT":
			default:
				t.Fatalf("state %q", st)
			}
		}
		if err := e.CheckInvariants(); err != nil {
			t.Fatal(err)
		}
	})
}

// in0 is the first byte of in, or 0.
func in0(in []byte) byte {
	if len(in) == 0 {
		return 0
	}
	return in[0]
}

// TestSynCookieNoAlloc: answering a SYN with a cookie allocates nothing
// (a flood costs no memory).
func TestSynCookieNoAlloc(t *testing.T) {
	e := proxyEngine(t, nat.ModeNAT, nat.SynProxyOn, 0)
	w := e.NewWorker()
	in := seg{flags: syn, seq: 5, win: 64240, mss: 1460, scale: 7, sackOK: true, ts: true, tsval: 1}.build(client, vip)
	orig := append([]byte(nil), in...)
	v := make([]nat.Verdict, 1)
	pkts := [][]byte{nil}
	allocs := testing.AllocsPerRun(1000, func() {
		pkts[0] = in[:len(orig)]
		copy(pkts[0], orig)
		w.Process(pkts, v)
		if v[0] != nat.Reply {
			t.Fatalf("SYN: %v", v[0])
		}
	})
	if allocs != 0 || e.Flows() != 0 {
		t.Fatalf("%.1f allocations per SYN, %d flows", allocs, e.Flows())
	}
}

// TestSynProxyLostAck: a client whose ACK was lost sends its first data;
// that proves the cookie as well, makes the flow, and the data reaches
// the real server once it has answered.
func TestSynProxyLostAck(t *testing.T) {
	e := proxyEngine(t, nat.ModeNAT, nat.SynProxyOn, 0)
	w := e.NewWorker()
	out, _ := run(w, seg{flags: syn, seq: 5, win: 64240, mss: 1460, scale: 7, sackOK: true, ts: true, tsval: 1}.build(client, vip))
	sa := decode(t, out[0])
	out, v := run(w, seg{flags: ack, seq: 6, ack: sa.tcp.Seq + 1, win: 502, payload: 20, ts: true, tsval: 2, tsecr: sa.tsval}.build(client, vip))
	if len(v) != 1 || v[0] != nat.Reply {
		t.Fatalf("first data without the ACK: %v", v)
	}
	sy := decode(t, out[0])
	if !sy.tcp.SYN || sy.tcp.Seq != 5 {
		t.Fatalf("SYN to the real server: %+v", sy)
	}
	out, v = run(w, seg{flags: synack, seq: 900, ack: 6, win: 65160, mss: 1460, scale: 7, sackOK: true, ts: true, tsval: 70, tsecr: 2}.build(sy.dst, sy.src))
	if len(out) != 3 || v[2] != nat.Forward {
		t.Fatalf("SYN-ACK: %v", v)
	}
	if d := decode(t, out[2]); d.dst != sy.dst || d.tcp.Seq != 6 || d.tcp.Ack != 901 || len(d.tcp.Payload) != 20 {
		t.Fatalf("the data to the real server: %+v", d)
	}
}
