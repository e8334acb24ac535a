package netlab

import (
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// TestSYNPacket: the flood's SYN is what gopacket reads as a SYN from the
// given source to the given destination, both checksums right.
func TestSYNPacket(t *testing.T) {
	var b [40]byte
	dst := netip.MustParseAddrPort("198.18.0.10:80")
	synPacket(&b, 0xc6120042, dst, 40000, 12345) // 198.18.0.66
	pkt := gopacket.NewPacket(b[:], layers.LayerTypeIPv4, gopacket.Default)
	ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if ip == nil || tcp == nil {
		t.Fatalf("not IPv4 TCP: %v", pkt)
	}
	if ip.SrcIP.String() != "198.18.0.66" || ip.DstIP.String() != "198.18.0.10" || !tcp.SYN || tcp.ACK || tcp.SrcPort != 40000 || tcp.DstPort != 80 || tcp.Seq != 12345 {
		t.Fatalf("%v %v", ip, tcp)
	}
	want := ip.Checksum
	ip.Checksum = 0
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, ip, tcp); err != nil {
		t.Fatal(err)
	}
	if got := buf.Bytes(); string(got) != string(b[:]) || want != ip.Checksum {
		t.Fatalf("checksums differ from gopacket's:\n%x\n%x", got, b)
	}
}
