package packet_test

import (
	"bytes"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/ip4defrag"
	"github.com/gopacket/gopacket/layers"

	"github.com/vsgate/vsgate/packet"
)

// bigUDP is a UDP datagram of n payload bytes (a counting pattern), from
// 198.18.0.2 to 198.18.2.11 or their IPv6 counterparts, with DF as given.
func bigUDP(t *testing.T, v6, df bool, n int) []byte {
	t.Helper()
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	u := &layers.UDP{SrcPort: 40000, DstPort: 53}
	var ip gopacket.SerializableLayer
	if v6 {
		l := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: net.ParseIP("2001:db8::2"), DstIP: net.ParseIP("2001:db8:2::11")}
		u.SetNetworkLayerForChecksum(l)
		ip = l
	} else {
		l := &layers.IPv4{Version: 4, TTL: 64, Id: 4321, Protocol: layers.IPProtocolUDP, SrcIP: net.ParseIP("198.18.0.2").To4(), DstIP: net.ParseIP("198.18.2.11").To4()}
		if df {
			l.Flags = layers.IPv4DontFragment
		}
		u.SetNetworkLayerForChecksum(l)
		ip = l
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, u, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestMakeTooBig: the errors gopacket reads as fragmentation needed and
// packet too big, to the sender, with the MTU, checksums right, quoting
// the packet's start within the size limits.
func TestMakeTooBig(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		pkt := bigUDP(t, v6, true, 3000)
		var p packet.Parsed
		if r := packet.Parse(pkt, &p); r != packet.ReasonNone {
			t.Fatal(r)
		}
		var src [16]byte
		copy(src[:], net.ParseIP("2001:db8:2::1"))
		if !v6 {
			copy(src[12:], net.ParseIP("198.18.2.1").To4())
		}
		out := make([]byte, 2000)
		n, ok := packet.MakeTooBig(out, pkt, &p, src, 1500)
		if !ok {
			t.Fatal("no error made")
		}
		first := layers.LayerTypeIPv4
		if v6 {
			first = layers.LayerTypeIPv6
		}
		g := gopacket.NewPacket(out[:n], first, gopacket.Default)
		if v6 {
			ip := g.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
			icmp, _ := g.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
			if n != 1280 || icmp == nil || icmp.TypeCode.Type() != layers.ICMPv6TypePacketTooBig || ip.DstIP.String() != "2001:db8::2" {
				t.Fatalf("v6: %d bytes, %v", n, g)
			}
			if err := icmp.SetNetworkLayerForChecksum(ip); err != nil {
				t.Fatal(err)
			}
			if mtu := uint32(icmp.LayerPayload()[0])<<24 | uint32(icmp.LayerPayload()[1])<<16 | uint32(icmp.LayerPayload()[2])<<8 | uint32(icmp.LayerPayload()[3]); mtu != 1500 {
				t.Fatalf("v6 MTU %d", mtu)
			}
			if !bytes.Equal(out[48:n], pkt[:n-48]) {
				t.Fatal("v6 quote differs")
			}
		} else {
			ip := g.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			icmp, _ := g.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
			if n != 576 || icmp == nil || icmp.TypeCode != layers.CreateICMPv4TypeCode(3, 4) || ip.DstIP.String() != "198.18.0.2" || ip.SrcIP.String() != "198.18.2.1" {
				t.Fatalf("v4: %d bytes, %v", n, g)
			}
			if icmp.Seq != 1500 { // gopacket reads bytes 6-7, the next-hop MTU, as the sequence number
				t.Fatalf("v4 MTU %d", icmp.Seq)
			}
			if !bytes.Equal(out[28:n], pkt[:n-28]) {
				t.Fatal("v4 quote differs")
			}
		}
		checksumsOK(t, out[:n])
		// An ICMP error is never answered with one.
		var ep packet.Parsed
		packet.Parse(out[:n], &ep)
		if _, ok := packet.MakeTooBig(make([]byte, 2000), out[:n], &ep, src, 1280); ok {
			t.Fatal("an ICMP error was answered")
		}
	}
}

// checksumsOK verifies every checksum of b with gopacket.
func checksumsOK(t *testing.T, b []byte) {
	t.Helper()
	first := layers.LayerTypeIPv4
	if b[0]>>4 == 6 {
		first = layers.LayerTypeIPv6
	}
	g := gopacket.NewPacket(b, first, gopacket.Default)
	if ip, ok := g.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
		c := ip.Checksum
		h := append([]byte(nil), b[:ip.IHL*4]...)
		h[10], h[11] = 0, 0
		if ^packet.Sum(h, 0) != c {
			t.Fatalf("IPv4 header checksum %#x", c)
		}
	}
	var p packet.Parsed
	if packet.Parse(b, &p) == packet.ReasonNone && p.FragOff == 0 && !p.MoreFrags && !packet.TransportChecksumValid(b, &p) {
		t.Fatal("transport checksum wrong")
	}
}

// TestFragmentIPv4: a datagram without DF is cut into fragments of at
// most the MTU that gopacket's defragmenter puts back together as it was;
// a DF one is refused; later fragments keep only copied options.
func TestFragmentIPv4(t *testing.T) {
	pkt := bigUDP(t, false, false, 4000)
	bufs := make([][]byte, 8)
	for i := range bufs {
		bufs[i] = make([]byte, 1500)
	}
	n, ok := packet.FragmentIPv4(pkt, 1500, bufs)
	if !ok || n != 3 {
		t.Fatalf("%d fragments, %v", n, ok)
	}
	d := ip4defrag.NewIPv4Defragmenter()
	var whole []byte
	for i := range n {
		if len(bufs[i]) > 1500 {
			t.Fatalf("fragment %d: %d bytes", i, len(bufs[i]))
		}
		checksumsOK(t, bufs[i])
		ip := gopacket.NewPacket(bufs[i], layers.LayerTypeIPv4, gopacket.Default).Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		got, err := d.DefragIPv4(ip)
		if err != nil {
			t.Fatal(err)
		}
		if got != nil {
			whole = got.Payload
		}
	}
	if !bytes.Equal(whole, pkt[20:]) {
		t.Fatal("the fragments do not reassemble to the datagram")
	}
	if _, ok := packet.FragmentIPv4(bigUDP(t, false, true, 4000), 1500, bufs); ok {
		t.Fatal("a DF datagram was fragmented")
	}
	// Options: a copied one (0x94, router alert) stays in every fragment,
	// one that is not (0x07, record route) only in the first.
	withOpts := append([]byte(nil), pkt[:20]...)
	withOpts = append(withOpts, 0x94, 4, 0, 0, 0x07, 7, 4, 0, 0, 0, 0, 0)
	withOpts = append(withOpts, pkt[20:]...)
	withOpts[0] = 0x48
	withOpts[2], withOpts[3] = byte(len(withOpts)>>8), byte(len(withOpts))
	for i := range bufs {
		bufs[i] = bufs[i][:cap(bufs[i])]
	}
	n, ok = packet.FragmentIPv4(withOpts, 1500, bufs)
	if !ok || bufs[0][0] != 0x48 || bufs[1][0] != 0x46 || bufs[1][20] != 0x94 || n < 3 {
		t.Fatalf("options: %d fragments, %v, IHLs %#x %#x", n, ok, bufs[0][0], bufs[1][0])
	}
}
