package packet_test

import (
	"net"
	"strconv"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vsgate/vsgate/packet"
)

// benchPackets are the packets the benchmarks use; names are kept stable so
// runs can be compared over time (docs/BENCHMARKS.md).
func benchPackets() []struct {
	name string
	b    []byte
} {
	ip4, tcp4 := 20, 20 // header sizes: a 64-byte packet has 24 payload bytes
	return []struct {
		name string
		b    []byte
	}{
		{"v4tcp64", tcpSpec(false, 64-ip4-tcp4).serialize()},
		{"v4tcp1500", tcpSpec(false, 1500-ip4-tcp4).serialize()},
		{"v6tcp64", tcpSpec(true, 4).serialize()},
		{"v6udp512", udpSpec(true, 512-40-8).serialize()},
	}
}

// BenchmarkParse compares Parse with gopacket's DecodingLayerParser (the
// fastest way gopacket decodes, no allocation per packet) on the same bytes.
func BenchmarkParse(b *testing.B) {
	for _, pk := range benchPackets() {
		b.Run(pk.name+"/vsgate", func(b *testing.B) {
			var p packet.Parsed
			b.ReportAllocs()
			b.SetBytes(int64(len(pk.b)))
			for b.Loop() {
				packet.Parse(pk.b, &p)
			}
		})
		b.Run(pk.name+"/gopacket", func(b *testing.B) {
			var (
				ip4     layers.IPv4
				ip6     layers.IPv6
				tcp     layers.TCP
				udp     layers.UDP
				payload gopacket.Payload
			)
			first := layers.LayerTypeIPv4
			if pk.b[0]>>4 == 6 {
				first = layers.LayerTypeIPv6
			}
			parser := gopacket.NewDecodingLayerParser(first, &ip4, &ip6, &tcp, &udp, &payload)
			parser.IgnoreUnsupported = true // UDP port 53 would ask for a DNS decoder
			decoded := make([]gopacket.LayerType, 0, 8)
			b.ReportAllocs()
			b.SetBytes(int64(len(pk.b)))
			for b.Loop() {
				if err := parser.DecodeLayers(pk.b, &decoded); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkChecksum measures Sum; BenchmarkChecksumNaive is the
// word-at-a-time reference on the same sizes, in the same run.
func BenchmarkChecksum(b *testing.B) {
	for _, n := range []int{64, 512, 1500} {
		buf := make([]byte, n)
		for i := range buf {
			buf[i] = byte(i * 7)
		}
		b.Run(itoa(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				packet.Sum(buf, 0)
			}
		})
	}
}

func BenchmarkChecksumNaive(b *testing.B) {
	for _, n := range []int{64, 512, 1500} {
		buf := make([]byte, n)
		b.Run(itoa(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				sumSlow(buf, 0)
			}
		})
	}
}

// BenchmarkRewriteDst is the per-packet work of a NAT hop: Parse, then
// SetDst with incremental checksum updates. It alternates between two
// destinations so every iteration really changes the packet.
func BenchmarkRewriteDst(b *testing.B) {
	for _, pk := range benchPackets() {
		if pk.name != "v4tcp64" && pk.name != "v6tcp64" {
			continue
		}
		dsts := [2][16]byte{to16(net.IP{198, 18, 2, 11}), to16(net.IP{198, 18, 0, 10})}
		if pk.b[0]>>4 == 6 {
			dsts = [2][16]byte{to16(net.ParseIP("2001:db8:2::11")), to16(testVIP6)}
		}
		b.Run(pk.name, func(b *testing.B) {
			var p packet.Parsed
			buf := append([]byte(nil), pk.b...)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				packet.Parse(buf, &p)
				packet.SetDst(buf, &p, dsts[i&1], uint16(8080+i&1))
				i++
			}
		})
	}
}

// BenchmarkRewriteDstNaive is the same job done the textbook way: gopacket
// decodes, the fields are changed, gopacket serializes with checksums
// computed in full.
func BenchmarkRewriteDstNaive(b *testing.B) {
	for _, pk := range benchPackets() {
		if pk.name != "v4tcp64" && pk.name != "v6tcp64" {
			continue
		}
		b.Run(pk.name, func(b *testing.B) {
			var (
				ip4     layers.IPv4
				ip6     layers.IPv6
				tcp     layers.TCP
				payload gopacket.Payload
			)
			v6 := pk.b[0]>>4 == 6
			first := layers.LayerTypeIPv4
			if v6 {
				first = layers.LayerTypeIPv6
			}
			parser := gopacket.NewDecodingLayerParser(first, &ip4, &ip6, &tcp, &payload)
			decoded := make([]gopacket.LayerType, 0, 8)
			out := gopacket.NewSerializeBuffer()
			opts := gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}
			dst := net.IP{198, 18, 2, 11}
			if v6 {
				dst = net.ParseIP("2001:db8:2::11")
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := parser.DecodeLayers(pk.b, &decoded); err != nil {
					b.Fatal(err)
				}
				var ip gopacket.SerializableLayer = &ip4
				if v6 {
					ip6.DstIP = dst
					ip = &ip6
					tcp.SetNetworkLayerForChecksum(&ip6)
				} else {
					ip4.DstIP = dst
					tcp.SetNetworkLayerForChecksum(&ip4)
				}
				tcp.DstPort = 8080
				if err := gopacket.SerializeLayers(out, opts, ip, &tcp, payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// BenchmarkParseEthernet compares ParseEthernet (plus Parse of the IP
// payload) with gopacket's DecodingLayerParser on an 802.1Q-tagged 64-byte
// TCP frame, the AF_PACKET receive path's first two steps.
func BenchmarkParseEthernet(b *testing.B) {
	ipPkt := tcpSpec(false, 64-20-20).serialize()
	frame := append([]byte{0x02, 0, 0x5e, 0, 0, 1, 0x02, 0, 0x5e, 0, 0, 2, 0x81, 0x00, 0, 42, 0x08, 0x00}, ipPkt...)
	b.Run("vsgate", func(b *testing.B) {
		var l packet.L2
		var p packet.Parsed
		b.ReportAllocs()
		for b.Loop() {
			if packet.ParseEthernet(frame, &l) != packet.ReasonNone || packet.Parse(frame[l.PayloadOff:], &p) != packet.ReasonNone {
				b.Fatal("frame did not parse")
			}
		}
	})
	b.Run("gopacket", func(b *testing.B) {
		var eth layers.Ethernet
		var q layers.Dot1Q
		var ip4 layers.IPv4
		var tcp layers.TCP
		dlp := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &q, &ip4, &tcp)
		dlp.IgnoreUnsupported = true
		decoded := make([]gopacket.LayerType, 0, 4)
		b.ReportAllocs()
		for b.Loop() {
			if err := dlp.DecodeLayers(frame, &decoded); err != nil || len(decoded) != 4 {
				b.Fatalf("gopacket decoded %v: %v", decoded, err)
			}
		}
	})
}
