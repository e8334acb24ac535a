package nat_test

import (
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// Addresses from the benchmark range (RFC 2544) and the documentation
// prefix: bytes in buffers only, nothing is sent.
var (
	client  = netip.MustParseAddrPort("198.18.0.2:40000")
	vip     = netip.MustParseAddrPort("198.18.0.10:80")
	rips    = []netip.Addr{netip.MustParseAddr("198.18.2.11"), netip.MustParseAddr("198.18.2.12"), netip.MustParseAddr("198.18.2.13")}
	lip     = netip.MustParseAddr("198.18.0.30") // FULLNAT pool
	masqTo  = netip.MustParseAddr("198.18.0.20")
	outside = netip.MustParseAddrPort("198.18.0.2:7")
	client6 = netip.MustParseAddrPort("[2001:db8::2]:40000")
	vip6    = netip.MustParseAddrPort("[2001:db8::10]:80")
	rip6    = netip.MustParseAddr("2001:db8:2::11")
	far     = netip.MustParseAddrPort("198.19.7.7:80") // a server beyond the masquerade
)

const (
	syn    = packet.TCPFlagSYN
	synack = packet.TCPFlagSYN | packet.TCPFlagACK
	ack    = packet.TCPFlagACK
	finack = packet.TCPFlagFIN | packet.TCPFlagACK
	rst    = packet.TCPFlagRST
)

// tcp builds a TCP packet with gopacket, checksums computed, numbered as
// a connection whose two sides start at sequence number 1 numbers its
// first segments: a SYN is sequence 1; a SYN-ACK is sequence 1 and
// acknowledges 2; any other segment is sequence 2 and acknowledges 2.
func tcp(src, dst netip.AddrPort, flags uint8, payload int) []byte {
	seq, ackNum := uint32(2), uint32(2)
	if flags&syn != 0 {
		seq, ackNum = 1, 0
		if flags&ack != 0 {
			ackNum = 2
		}
	}
	return tcpSeq(src, dst, flags, payload, seq, ackNum)
}

// tcpSeq is tcp with the sequence and acknowledgement numbers given.
func tcpSeq(src, dst netip.AddrPort, flags uint8, payload int, seq, ackNum uint32) []byte {
	t := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: seq, Ack: ackNum, Window: 65535,
		SYN: flags&syn != 0, ACK: flags&ack != 0, FIN: flags&packet.TCPFlagFIN != 0, RST: flags&rst != 0}
	return build(src.Addr(), dst.Addr(), layers.IPProtocolTCP, t, payload)
}

// tcpOpts is a SYN or SYN-ACK with a window scale option of shift scale.
func tcpOpts(src, dst netip.AddrPort, flags uint8, seq, ackNum uint32, scale uint8) []byte {
	t := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: seq, Ack: ackNum, Window: 65535,
		SYN: flags&syn != 0, ACK: flags&ack != 0,
		Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{scale}}}}
	return build(src.Addr(), dst.Addr(), layers.IPProtocolTCP, t, 0)
}

// udp builds a UDP packet.
func udp(src, dst netip.AddrPort, payload int) []byte {
	u := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	return build(src.Addr(), dst.Addr(), layers.IPProtocolUDP, u, payload)
}

type checksummed interface {
	gopacket.SerializableLayer
	SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
}

func build(src, dst netip.Addr, proto layers.IPProtocol, l4 checksummed, payload int) []byte {
	var ip interface {
		gopacket.SerializableLayer
		gopacket.NetworkLayer
	}
	if src.Is4() {
		ip = &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
	} else {
		ip = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
	}
	l4.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		ip, l4, gopacket.Payload(make([]byte, payload))); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// endpoints parses a packet and returns its source and destination.
func endpoints(t testing.TB, b []byte) (src, dst netip.AddrPort) {
	t.Helper()
	var p packet.Parsed
	if r := packet.Parse(b, &p); r != packet.ReasonNone {
		t.Fatalf("translated packet does not parse: %v", r)
	}
	return netip.AddrPortFrom(netip.AddrFrom16(p.Src).Unmap(), p.SrcPort),
		netip.AddrPortFrom(netip.AddrFrom16(p.Dst).Unmap(), p.DstPort)
}

// checksumsValid verifies every checksum with gopacket.
func checksumsValid(t testing.TB, b []byte) {
	t.Helper()
	first := layers.LayerTypeIPv4
	if b[0]>>4 == 6 {
		first = layers.LayerTypeIPv6
	}
	pkt := gopacket.NewPacket(b, first, gopacket.Default)
	for _, l := range pkt.Layers() {
		if c, ok := l.(interface {
			SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
		}); ok {
			c.SetNetworkLayerForChecksum(pkt.NetworkLayer())
		}
		if c, ok := l.(interface {
			VerifyChecksum() (error, gopacket.ChecksumVerificationResult)
		}); ok {
			if err, v := c.VerifyChecksum(); err != nil || !v.Valid {
				t.Fatalf("%v checksum invalid: %v %+v\n%x", l.LayerType(), err, v, b)
			}
		}
	}
}

// engine builds an engine with TCP and UDP services on vip over rips, rr,
// and a TCP service on vip6, whose services do not SYN-proxy
// (synproxy_test.go tests the proxy), so that small tables fill as these
// tests expect. The IPv4 services log some of their flows to nowhere, so
// that every test runs through flow logging too (flowlog_test.go tests
// the records).
func engine(t testing.TB, mode nat.Mode, capacity int) *nat.Engine {
	t.Helper()
	var bs []nat.Backend
	for _, r := range rips {
		bs = append(bs, nat.Backend{Addr: r, Port: 8080, Weight: 1})
	}
	e, err := nat.New(nat.Config{
		Capacity: capacity, ShardBits: 2,
		Services: []nat.Service{
			{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: vip.Port(), Mode: mode, Scheduler: "rr", Backends: bs, SynProxy: nat.SynProxyOff,
				FlowLog: nat.FlowLog{Every: 3, Rate: 100}},
			{Proto: packet.ProtoUDP, VIP: vip.Addr(), Port: 53, Mode: mode, Scheduler: "rr", Backends: bs, FlowLog: nat.FlowLog{Every: 2}},
			{Proto: packet.ProtoTCP, VIP: vip6.Addr(), Port: vip6.Port(), Mode: mode, Scheduler: "rr",
				Backends: []nat.Backend{{Addr: rip6, Port: 8080, Weight: 1}}, SynProxy: nat.SynProxyOff},
		},
		Masquerade:  []nat.Masquerade{{From: netip.MustParsePrefix("198.18.2.0/24"), To: masqTo}},
		FullNATPool: []netip.Addr{lip, netip.MustParseAddr("2001:db8::30")},
		FlowLogger:  discardFlows{},
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// discardFlows takes flow records and drops them.
type discardFlows struct{}

func (discardFlows) LogFlow(nat.FlowEnd) {}

// through runs pkts through w as one batch and returns what leaves, as a
// device would send it: the packets neither held nor dropped, then the
// ones released
// (the fragments of datagrams the batch completed), each with its
// verdict, copied out of the engine's pool.
func through(w *nat.Worker, pkts [][]byte) ([][]byte, []nat.Verdict) {
	v := make([]nat.Verdict, len(pkts))
	w.Process(pkts, v)
	var out [][]byte
	var vs []nat.Verdict
	for i, x := range v {
		if x != nat.Held && x != nat.Drop {
			out, vs = append(out, pkts[i]), append(vs, x)
		}
	}
	rel, rv := w.Released()
	for i := range rel {
		out, vs = append(out, append([]byte(nil), rel[i]...)), append(vs, rv[i])
	}
	return out, vs
}

// one runs a single packet through a worker.
func one(w *nat.Worker, b []byte) nat.Verdict {
	v := []nat.Verdict{0}
	w.Process([][]byte{b}, v)
	return v[0]
}

// handshake opens a flow from client to the VIP (SYN, then the real
// server's SYN-ACK) and returns the real server it was scheduled to. The
// SYN carries n bytes of payload.
func handshake(t *testing.T, w *nat.Worker, n int) netip.AddrPort {
	t.Helper()
	b := tcp(client, vip, syn, n)
	one(w, b)
	_, rip := endpoints(t, b)
	one(w, tcpSeq(rip, client, synack, 0, 1, uint32(2+n)))
	return rip
}

// process runs a copy of packet b through w (Process rewrites it) and
// returns the verdict.
func process(w *nat.Worker, b []byte) nat.Verdict {
	return one(w, append([]byte(nil), b...))
}
