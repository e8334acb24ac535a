package packet_test

import (
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vsgate/vsgate/packet"
)

// TestMakeTCPReset checks the reset against RFC 9293's rules with gopacket
// decoding it and verifying its checksums, for v4 with options and v6 with
// extension headers, for segments with and without ACK.
func TestMakeTCPReset(t *testing.T) {
	for _, tc := range []struct {
		name     string
		s        *spec
		wantSeq  uint32
		wantAck  uint32
		wantAckF bool
	}{
		{"v4 data with ACK", func() *spec { s := tcpSpec(false, 100); s.seq, s.ack = 1000, 5000; return s }(), 5000, 0, false},
		{"v4 SYN with options", func() *spec {
			s := tcpSpec(false, 0)
			s.tcpFlags, s.seq, s.ack = packet.TCPFlagSYN, 7, 0
			s.v4opts = []layers.IPv4Option{{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}}
			return s
		}(), 0, 8, true},
		{"v6 FIN without ACK, extension headers", func() *spec {
			s := tcpSpec(true, 10)
			s.tcpFlags, s.seq, s.hbh, s.destOpts = packet.TCPFlagFIN, 100, true, true
			return s
		}(), 0, 111, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.s.serialize()
			var p packet.Parsed
			if r := packet.Parse(b, &p); r != packet.ReasonNone {
				t.Fatal(r)
			}
			n, ok := packet.MakeTCPReset(b, &p)
			if !ok {
				t.Fatal("no reset made")
			}
			first := layers.LayerTypeIPv4
			if tc.s.v6 {
				first = layers.LayerTypeIPv6
			}
			pkt := gopacket.NewPacket(b[:n], first, gopacket.Default)
			tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
			if tcp == nil {
				t.Fatalf("no TCP in the reset: %v", pkt)
			}
			tcp.SetNetworkLayerForChecksum(pkt.NetworkLayer())
			if _, v := tcp.VerifyChecksum(); !v.Valid {
				t.Errorf("TCP checksum invalid")
			}
			if ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
				if _, v := ip.VerifyChecksum(); !v.Valid || ip.IHL != 5 || int(ip.Length) != n {
					t.Errorf("IPv4 header: %+v", ip)
				}
			}
			src, dst := pkt.NetworkLayer().NetworkFlow().Endpoints()
			if src.String() != tc.s.dst.String() || dst.String() != tc.s.src.String() {
				t.Errorf("reset %v > %v, want %v > %v", src, dst, tc.s.dst, tc.s.src)
			}
			if uint16(tcp.SrcPort) != tc.s.dport || uint16(tcp.DstPort) != tc.s.sport || !tcp.RST || tcp.SYN || tcp.FIN ||
				tcp.ACK != tc.wantAckF || tcp.Seq != tc.wantSeq || tcp.Ack != tc.wantAck || len(tcp.Payload) != 0 {
				t.Errorf("reset segment %+v", tcp)
			}
			var again packet.Parsed
			if packet.Parse(b[:n], &again) != packet.ReasonNone || again.TCPFlags&packet.TCPFlagRST == 0 {
				t.Errorf("reset does not re-parse as a RST")
			}
			if _, ok := packet.MakeTCPReset(b[:n], &again); ok {
				t.Errorf("a reset was answered with a reset")
			}
		})
	}
}
