package packet

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// superPacket describes a GSO super-packet as a veth hands it over, and
// builds it and its segments with gopacket, the oracle.
type superPacket struct {
	v6, udp bool
	payload []byte
	mss     int
	flags   uint8 // TCP flags of the super-packet (FIN, PSH, CWR, ACK)
	l2      int   // link header between the virtio-net header and IP: 0 (TUN) or 14 (AF_PACKET)
	// destOpts puts an IPv6 destination options header (8 bytes, a PadN
	// option) between the IPv6 and the transport header.
	destOpts bool
}

// transportStart is where the transport header starts.
func (sp superPacket) transportStart() int {
	switch {
	case !sp.v6:
		return IPv4MinimumSize
	case sp.destOpts:
		return IPv6HeaderSize + 8
	}
	return IPv6HeaderSize
}

// linkHeaders are the two devices' l2: a TUN's, an AF_PACKET socket's.
var linkHeaders = []int{0, EthernetMinimumSize}

const testFIN, testPSH, testACK, testCWR = 0x01, 0x08, 0x10, 0x80

// serialize builds one packet of the flow with gopacket: complete
// checksums, the given IPv4 ID, TCP sequence number and flags.
func (sp superPacket) serialize(t *testing.T, payload []byte, id uint16, seq uint32, flags uint8) []byte {
	t.Helper()
	var ls []gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	if sp.v6 {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, SrcIP: net.ParseIP("2001:db8::2"), DstIP: net.ParseIP("2001:db8:2::11"), NextHeader: layers.IPProtocolTCP}
		if sp.udp {
			ip.NextHeader = layers.IPProtocolUDP
		}
		nl = ip
		ls = append(ls, ip)
		if sp.destOpts {
			do := &layers.IPv6Destination{}
			do.NextHeader = ip.NextHeader
			do.Options = []*layers.IPv6DestinationOption{{OptionType: 1, OptionLength: 4, OptionData: make([]byte, 4)}}
			ip.NextHeader = layers.IPProtocolIPv6Destination
			ls = append(ls, do)
		}
	} else {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: id, Flags: layers.IPv4DontFragment, SrcIP: net.ParseIP("198.18.0.2").To4(), DstIP: net.ParseIP("198.18.2.11").To4(), Protocol: layers.IPProtocolTCP}
		if sp.udp {
			ip.Protocol = layers.IPProtocolUDP
		}
		nl = ip
		ls = append(ls, ip)
	}
	if sp.udp {
		u := &layers.UDP{SrcPort: 40000, DstPort: 53}
		_ = u.SetNetworkLayerForChecksum(nl)
		ls = append(ls, u)
	} else {
		tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: seq, Ack: 7, Window: 512, DataOffset: 8,
			FIN: flags&testFIN != 0, PSH: flags&testPSH != 0, ACK: flags&testACK != 0, CWR: flags&testCWR != 0,
			Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: make([]byte, 8)}}}
		_ = tcp.SetNetworkLayerForChecksum(nl)
		ls = append(ls, tcp)
	}
	ls = append(ls, gopacket.Payload(payload))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(buf.Bytes())
}

// build returns the super-packet with a partial checksum (the
// pseudo-header sum, as the sending stack leaves it) and its header.
func (sp superPacket) build(t *testing.T) (ip []byte, hdr VNetHdr) {
	ip = sp.serialize(t, sp.payload, 100, 1000, sp.flags)
	start := sp.transportStart()
	hdrLen, csumOff, gso := start+32, 16, uint8(GSOTCPv4)
	if sp.udp {
		hdrLen, csumOff, gso = start+8, 6, GSOUDPL4
	} else if sp.v6 {
		gso = GSOTCPv6
	}
	src, dst := ipAddrs(ip)
	proto := uint8(ProtoTCP)
	if sp.udp {
		proto = ProtoUDP
	}
	binary.BigEndian.PutUint16(ip[start+csumOff:], PseudoHeaderSum(proto, src, dst, len(ip)-start))
	hdr = make(VNetHdr, VNetHdrSize)
	hdr[0], hdr[1] = VNetNeedsCsum, gso
	binary.NativeEndian.PutUint16(hdr[2:], uint16(sp.l2+hdrLen))
	binary.NativeEndian.PutUint16(hdr[4:], uint16(sp.mss))
	binary.NativeEndian.PutUint16(hdr[6:], uint16(sp.l2+start))
	binary.NativeEndian.PutUint16(hdr[8:], uint16(csumOff))
	return ip, hdr
}

// TestSegmentsMatchGopacket splits TCP and UDP super-packets, IPv4 and
// IPv6, and compares every segment byte for byte with the packet gopacket
// builds for it: headers, lengths, IDs, sequence numbers, flags and
// complete checksums.
func TestSegmentsMatchGopacket(t *testing.T) {
	payload := make([]byte, 3500)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	for _, sp := range []superPacket{
		{payload: payload, mss: 1448, flags: testACK | testPSH | testFIN | testCWR},
		{v6: true, payload: payload, mss: 1428, flags: testACK | testPSH},
		{payload: payload[:2896], mss: 1448, flags: testACK}, // an exact multiple
		{udp: true, payload: payload[:3000], mss: 1000},
		{udp: true, v6: true, payload: payload[:2500], mss: 1200},
		{payload: payload, mss: 1448, flags: testACK, l2: EthernetMinimumSize},
		{udp: true, v6: true, payload: payload[:2500], mss: 1200, l2: EthernetMinimumSize},
		{v6: true, destOpts: true, payload: payload, mss: 1420, flags: testACK | testPSH},
		{udp: true, v6: true, destOpts: true, payload: payload[:2500], mss: 1200, l2: EthernetMinimumSize},
	} {
		ip, hdr := sp.build(t)
		// hdr_len is skb_headlen, a hint that may reach into the payload:
		// the split must take the headers' length from the
		binary.NativeEndian.PutUint16(hdr[2:], uint16(hdr.HdrLen()+100))
		var got [][]byte
		if n := hdr.SegmentCount(ip, sp.l2); n != (len(sp.payload)+sp.mss-1)/sp.mss {
			t.Errorf("v6=%v udp=%v destOpts=%v l2=%d: SegmentCount %d", sp.v6, sp.udp, sp.destOpts, sp.l2, n)
		}
		if !hdr.Segments(ip, make([]byte, 65536), sp.l2, func(b []byte) { got = append(got, bytes.Clone(b)) }) {
			t.Fatalf("v6=%v udp=%v destOpts=%v l2=%d: segments refused the header", sp.v6, sp.udp, sp.destOpts, sp.l2)
		}
		n := (len(sp.payload) + sp.mss - 1) / sp.mss
		if len(got) != n {
			t.Fatalf("v6=%v udp=%v: %d segments, want %d", sp.v6, sp.udp, len(got), n)
		}
		for i, seg := range got {
			end := min((i+1)*sp.mss, len(sp.payload))
			flags := sp.flags
			if end != len(sp.payload) {
				flags &^= testFIN | testPSH
			}
			if i > 0 {
				flags &^= testCWR
			}
			want := sp.serialize(t, sp.payload[i*sp.mss:end], 100+uint16(i), 1000+uint32(i*sp.mss), flags)
			if !bytes.Equal(seg, want) {
				t.Errorf("v6=%v udp=%v segment %d:\n got %x\nwant %x", sp.v6, sp.udp, i, seg, want)
			}
		}
	}
}

// TestCompleteAndRefresh: a partial checksum, refreshed after the
// engine rewrote the addresses and ports and then completed, is the
// checksum gopacket computes for the rewritten
func TestCompleteAndRefresh(t *testing.T) {
	for i := range 6 {
		v6, l2 := i&1 == 1 || i >= 4, linkHeaders[i/2%2]
		sp := superPacket{v6: v6, destOpts: i >= 4, payload: []byte("GET / HTTP/1.1\r\n\r\n"), mss: 1448, flags: testACK | testPSH, l2: l2}
		ip, hdr := sp.build(t)
		hdr.SetGSOType(GSONone)
		// What NAT does: a new destination address and port. The partial
		// field is left as the engine's incremental update leaves it:
		// wrong, until refreshed.
		start := sp.transportStart()
		dstAt := 16
		if v6 {
			dstAt = 24
		}
		ip[dstAt+len(ip[dstAt:dstAt+4])-1]++ // 198.18.2.11 -> .12, or 2001:db8:2::11 -> 2001:db8:2:0:100::11 (any change will do)
		binary.BigEndian.PutUint16(ip[start+2:], 8080)
		if !v6 { // the engine keeps the IPv4 header checksum right itself
			ip[10], ip[11] = 0, 0
			binary.BigEndian.PutUint16(ip[10:], ^Sum(ip[:start], 0))
		}
		hdr.RefreshPartial(ip, l2)
		hdr.CompletePartial(ip, l2)
		if hdr.Partial() {
			t.Error("complete left the NEEDS_CSUM flag")
		}
		// gopacket decodes and re-serializes the rewritten packet with
		// fresh checksums: the bytes must not change.
		first := layers.LayerTypeIPv4
		if v6 {
			first = layers.LayerTypeIPv6
		}
		p := gopacket.NewPacket(ip, first, gopacket.Default)
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tcp == nil {
			t.Fatalf("v6=%v: gopacket finds no TCP: %v", v6, p.ErrorLayer())
		}
		_ = tcp.SetNetworkLayerForChecksum(p.NetworkLayer())
		buf := gopacket.NewSerializeBuffer()
		var ls []gopacket.SerializableLayer
		for _, l := range p.Layers() {
			if s, ok := l.(gopacket.SerializableLayer); ok {
				ls = append(ls, s)
			}
		}
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, ls...); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), ip) {
			t.Errorf("v6=%v: checksum %x, gopacket computes %x", v6, ip[start+16:start+18], buf.Bytes()[start+16:start+18])
		}
	}
}

// FuzzSegments: any header and packet — the kernel's header is trusted,
// but a wrong one must cost a dropped packet, never a crash or a write
// past the scratch buffer.
func FuzzSegments(f *testing.F) {
	t := &testing.T{}
	ip, hdr := superPacket{payload: make([]byte, 3000), mss: 1448, flags: testACK}.build(t)
	f.Add([]byte(hdr), ip)
	ip, hdr = superPacket{v6: true, udp: true, payload: make([]byte, 100), mss: 40}.build(t)
	f.Add([]byte(hdr), ip)
	f.Fuzz(func(t *testing.T, h, ip []byte) {
		l2 := linkHeaders[len(ip)%2]
		if len(h) < VNetHdrSize || len(ip) < IPv4MinimumSize {
			return
		}
		hdr := VNetHdr(bytes.Clone(h[:VNetHdrSize]))
		seg := make([]byte, 2048)
		split := hdr.GSOType() != GSONone
		hdr.SegmentCount(ip, l2)
		hdr.Segments(ip, seg, l2, func(b []byte) {
			if split && len(b) > len(seg) {
				t.Fatalf("segment of %d bytes from a %d-byte scratch", len(b), len(seg))
			}
		})
		hdr.RefreshPartial(ip, l2)
	})
}

// TestRefreshPartialOnlyOwnHeader: a partial checksum the header places
// anywhere but right behind the IP header of the packet's own protocol —
// the inner packet of a tunnel, say — is left alone: NAT rewrote the outer
// addresses, not the inner.
func TestRefreshPartialOnlyOwnHeader(t *testing.T) {
	inner := superPacket{payload: []byte("tunnelled"), mss: 1448, flags: testACK}
	ip, hdr := inner.build(t)
	// IPIP: a 20-byte outer header in front, protocol 4.
	outer := append(make([]byte, IPv4MinimumSize), ip...)
	outer[0], outer[9] = 0x45, 4
	copy(outer[12:20], []byte{198, 18, 0, 1, 198, 18, 0, 99})
	binary.NativeEndian.PutUint16(hdr[6:], uint16(2*IPv4MinimumSize)) // csum_start: the inner TCP header
	before := bytes.Clone(outer)
	hdr.RefreshPartial(outer, 0)
	if !bytes.Equal(outer, before) {
		t.Error("RefreshPartial rewrote the inner packet's checksum of a tunnelled packet")
	}
	if hdr.SegmentCount(outer, 0) != 1 {
		t.Error("SegmentCount counted a tunnelled packet's segments by its inner header")
	}
}
