package packet_test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vsgate/vsgate/packet"
)

// l2Kind is what a generated frame carries.
type l2Kind int

const (
	l2ARP l2Kind = iota
	l2IPv4
	l2NS
	l2NA
	numL2Kinds
)

// l2Spec is one generated frame: the gopacket layers that serialize it and
// what ParseEthernet, ValidARP and ParseND should find.
type l2Spec struct {
	kind     l2Kind
	dst, src packet.MAC
	vlans    []uint16
	target   netip.Addr // ND target
	linkAddr packet.MAC // ND link-layer option
	withLL   bool
	naFlags  uint8
	layers   []gopacket.SerializableLayer
}

func randMAC(r *rand.Rand) packet.MAC {
	var m packet.MAC
	for i := range m {
		m[i] = byte(r.UintN(256))
	}
	return m
}

// genL2 builds a random valid frame: random MACs, zero to two VLAN tags
// (802.1ad outside 802.1Q for two), then ARP, IPv4 UDP or an ND message.
func genL2(r *rand.Rand) *l2Spec {
	s := &l2Spec{kind: l2Kind(r.IntN(int(numL2Kinds))), dst: randMAC(r), src: randMAC(r)}
	for range r.IntN(3) {
		s.vlans = append(s.vlans, uint16(r.UintN(4096)))
	}
	var inner layers.EthernetType
	var payload []gopacket.SerializableLayer
	switch s.kind {
	case l2ARP:
		inner = layers.EthernetTypeARP
		sip, tip := randAddr4(r), randAddr4(r)
		tmac := randMAC(r)
		op := uint16(1 + r.IntN(2))
		payload = []gopacket.SerializableLayer{&layers.ARP{
			AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
			HwAddressSize: 6, ProtAddressSize: 4, Operation: op,
			SourceHwAddress: s.src[:], SourceProtAddress: sip.AsSlice(),
			DstHwAddress: tmac[:], DstProtAddress: tip.AsSlice(),
		}}
	case l2IPv4:
		inner = layers.EthernetTypeIPv4
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
			SrcIP: randAddr4(r).AsSlice(), DstIP: randAddr4(r).AsSlice()}
		udp := &layers.UDP{SrcPort: layers.UDPPort(r.UintN(65536)), DstPort: 53}
		udp.SetNetworkLayerForChecksum(ip)
		payload = []gopacket.SerializableLayer{ip, udp, gopacket.Payload(make([]byte, r.IntN(40)))}
	case l2NS, l2NA:
		inner = layers.EthernetTypeIPv6
		src := randAddr6(r)
		s.target = randAddr6(r)
		s.linkAddr, s.withLL = randMAC(r), r.IntN(4) != 0
		var opts layers.ICMPv6Options
		if r.IntN(3) == 0 { // an option vsgate does not read, before the one it does
			opts = append(opts, layers.ICMPv6Option{Type: layers.ICMPv6OptMTU, Data: []byte{0, 0, 0, 0, 5, 220}})
		}
		optType := layers.ICMPv6OptSourceAddress
		if s.kind == l2NA {
			optType = layers.ICMPv6OptTargetAddress
		}
		if s.withLL {
			opts = append(opts, layers.ICMPv6Option{Type: optType, Data: s.linkAddr[:]})
		}
		dst, _ := packet.SolicitedNode(s.target)
		typ := uint8(packet.ICMPv6NeighborSolicit)
		var msg gopacket.SerializableLayer = &layers.ICMPv6NeighborSolicitation{TargetAddress: s.target.AsSlice(), Options: opts}
		if s.kind == l2NA {
			typ = packet.ICMPv6NeighborAdvert
			s.naFlags = uint8(r.IntN(8)) << 5
			dst = randAddr6(r) // unicast: the solicited flag may be set
			msg = &layers.ICMPv6NeighborAdvertisement{Flags: s.naFlags, TargetAddress: s.target.AsSlice(), Options: opts}
		}
		ip := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
		icmp.SetNetworkLayerForChecksum(ip)
		payload = []gopacket.SerializableLayer{ip, icmp, msg}
	}
	eth := &layers.Ethernet{SrcMAC: s.src[:], DstMAC: s.dst[:], EthernetType: inner}
	s.layers = []gopacket.SerializableLayer{eth}
	switch len(s.vlans) {
	case 1:
		eth.EthernetType = layers.EthernetTypeDot1Q
		s.layers = append(s.layers, &layers.Dot1Q{VLANIdentifier: s.vlans[0], Priority: uint8(r.IntN(8)), Type: inner})
	case 2:
		eth.EthernetType = layers.EthernetTypeQinQ
		s.layers = append(s.layers,
			&layers.Dot1Q{VLANIdentifier: s.vlans[0], Type: layers.EthernetTypeDot1Q},
			&layers.Dot1Q{VLANIdentifier: s.vlans[1], DropEligible: true, Type: inner})
	}
	s.layers = append(s.layers, payload...)
	return s
}

func randAddr4(r *rand.Rand) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18 + byte(r.IntN(2)), byte(r.UintN(256)), byte(r.UintN(256))})
}

func randAddr6(r *rand.Rand) netip.Addr {
	a := [16]byte{0x20, 0x01, 0x0d, 0xb8}
	for i := 4; i < 16; i++ {
		a[i] = byte(r.UintN(256))
	}
	return netip.AddrFrom16(a)
}

func (s *l2Spec) serialize() []byte {
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, s.layers...); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// TestParseEthernetAgreesWithGopacket parses random valid frames and checks
// the Ethernet, VLAN, ARP and ND fields against gopacket's decoding.
func TestParseEthernetAgreesWithGopacket(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 10))
	var l packet.L2
	var p packet.Parsed
	var nd packet.ND
	seen := map[string]int{}
	for i := range oracleCount(t) / 10 {
		s := genL2(r)
		b := s.serialize()
		if reason := packet.ParseEthernet(b, &l); reason != packet.ReasonNone {
			t.Fatalf("frame %d: ParseEthernet = %v\n%x", i, reason, b)
		}
		seen[fmt.Sprintf("kind%d/vlans%d", s.kind, len(s.vlans))]++
		if err := checkL2(b, &l, &p, &nd); err != nil {
			t.Fatalf("frame %d: %v\n%x", i, err, b)
		}
		if s.kind == l2NS || s.kind == l2NA {
			if nd.Target != s.target || nd.HasLinkAddr != s.withLL || (s.withLL && nd.LinkAddr != s.linkAddr) {
				t.Fatalf("frame %d: ND %+v, generated target %v link %v (%v)", i, nd, s.target, s.linkAddr, s.withLL)
			}
		}
	}
	for k := range numL2Kinds {
		for v := range 3 {
			if n := seen[fmt.Sprintf("kind%d/vlans%d", k, v)]; n < oracleCount(t)/1000 {
				t.Errorf("generator made only %d frames of kind %d with %d VLAN tags", n, k, v)
			}
		}
	}
}

// checkL2 compares one parsed frame with gopacket's decoding of it, and
// for ARP and ND the message fields too.
func checkL2(b []byte, l *packet.L2, p *packet.Parsed, nd *packet.ND) error {
	pkt := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if eth == nil {
		return fmt.Errorf("gopacket found no Ethernet layer: %v", pkt.ErrorLayer())
	}
	if l.Dst != packet.MAC(eth.DstMAC) || l.Src != packet.MAC(eth.SrcMAC) {
		return fmt.Errorf("MACs %v > %v, gopacket %v > %v", l.Src, l.Dst, eth.SrcMAC, eth.DstMAC)
	}
	off := len(eth.Contents)
	typ := eth.EthernetType
	var tags []uint16
	for _, ly := range pkt.Layers() {
		if q, ok := ly.(*layers.Dot1Q); ok {
			tags = append(tags, q.VLANIdentifier)
			off += len(q.Contents)
			typ = q.Type
		}
	}
	if int(l.NumVLANs) != len(tags) {
		return fmt.Errorf("%d VLAN tags, gopacket %d", l.NumVLANs, len(tags))
	}
	for i, v := range tags {
		if l.VLANs[i] != v {
			return fmt.Errorf("VLAN %d = %d, gopacket %d", i, l.VLANs[i], v)
		}
	}
	if l.EtherType != uint16(typ) || l.PayloadOff != off {
		return fmt.Errorf("type %#x at %d, gopacket %#x at %d", l.EtherType, l.PayloadOff, uint16(typ), off)
	}
	payload := b[l.PayloadOff:]
	switch l.EtherType {
	case packet.EtherTypeARP:
		ga, _ := pkt.Layer(layers.LayerTypeARP).(*layers.ARP)
		a, reason := packet.ValidARP(payload)
		if ga == nil || reason != packet.ReasonNone {
			return fmt.Errorf("ARP: ValidARP %v, gopacket layer %v", reason, ga != nil)
		}
		if a.Op() != ga.Operation || a.SenderMAC() != packet.MAC(ga.SourceHwAddress) || a.TargetMAC() != packet.MAC(ga.DstHwAddress) ||
			a.SenderIP() != netip.AddrFrom4([4]byte(ga.SourceProtAddress)) || a.TargetIP() != netip.AddrFrom4([4]byte(ga.DstProtAddress)) {
			return fmt.Errorf("ARP op %d %v/%v > %v/%v, gopacket %+v", a.Op(), a.SenderMAC(), a.SenderIP(), a.TargetMAC(), a.TargetIP(), ga)
		}
	case packet.EtherTypeIPv4, packet.EtherTypeIPv6:
		if reason := packet.Parse(payload, p); reason != packet.ReasonNone {
			return fmt.Errorf("IP payload: Parse = %v", reason)
		}
		if l.EtherType == packet.EtherTypeIPv6 {
			return checkND(pkt, payload, p, nd)
		}
	default:
		return fmt.Errorf("unexpected EtherType %#x", l.EtherType)
	}
	return nil
}

// checkND runs ParseND and compares it with gopacket's NS or NA layer,
// whose checksum gopacket verifies too.
func checkND(pkt gopacket.Packet, ip []byte, p *packet.Parsed, nd *packet.ND) error {
	if reason := packet.ParseND(ip, p, nd); reason != packet.ReasonNone {
		return fmt.Errorf("ParseND = %v", reason)
	}
	icmp, _ := pkt.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	if icmp == nil {
		return fmt.Errorf("gopacket found no ICMPv6 layer")
	}
	icmp.SetNetworkLayerForChecksum(pkt.NetworkLayer())
	if err, v := icmp.VerifyChecksum(); err != nil || !v.Valid {
		return fmt.Errorf("gopacket says the checksum is wrong (%v, %+v)", err, v)
	}
	var target net.IP
	var opts layers.ICMPv6Options
	want := layers.ICMPv6OptSourceAddress
	if ns, ok := pkt.Layer(layers.LayerTypeICMPv6NeighborSolicitation).(*layers.ICMPv6NeighborSolicitation); ok {
		target, opts = ns.TargetAddress, ns.Options
		if nd.Type != packet.ICMPv6NeighborSolicit {
			return fmt.Errorf("ND type %d, gopacket a solicitation", nd.Type)
		}
	} else if na, ok := pkt.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement); ok {
		target, opts, want = na.TargetAddress, na.Options, layers.ICMPv6OptTargetAddress
		if nd.Type != packet.ICMPv6NeighborAdvert || nd.Router != na.Router() || nd.Solicited != na.Solicited() || nd.Override != na.Override() {
			return fmt.Errorf("ND %+v, gopacket flags %#x", *nd, na.Flags)
		}
	} else {
		return fmt.Errorf("gopacket found no ND layer")
	}
	if nd.Target != netip.AddrFrom16([16]byte(target)) {
		return fmt.Errorf("target %v, gopacket %v", nd.Target, target)
	}
	var ll []byte
	for _, o := range opts {
		if o.Type == want {
			ll = o.Data
		}
	}
	if nd.HasLinkAddr != (ll != nil) || (ll != nil && nd.LinkAddr != packet.MAC(ll)) {
		return fmt.Errorf("link address %v (%v), gopacket %x", nd.LinkAddr, nd.HasLinkAddr, ll)
	}
	return nil
}

// TestPutFramesAgreeWithGopacket builds ARP and ND frames with the Put
// functions and decodes them with gopacket: every field where it belongs,
// every checksum right.
func TestPutFramesAgreeWithGopacket(t *testing.T) {
	mac := packet.MAC{0x02, 0, 0x5e, 0x10, 0, 1}
	peer := packet.MAC{0x02, 0, 0x5e, 0x10, 0, 2}
	vip4, peer4 := netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("198.18.0.2")
	vip6, peer6 := netip.MustParseAddr("2001:db8::10"), netip.MustParseAddr("2001:db8::2")
	allNodes := netip.MustParseAddr("ff02::1")
	b := make([]byte, 128)
	var l packet.L2
	var p packet.Parsed
	var nd packet.ND

	cases := []struct {
		name  string
		put   func() int
		check func(l *packet.L2) error
	}{
		{"arp request", func() int { return packet.PutARP(b, packet.ARPRequest, mac, vip4, peer, peer4) }, func(l *packet.L2) error {
			a, _ := packet.ValidARP(b[l.PayloadOff:])
			if l.Dst != packet.BroadcastMAC() || a.TargetMAC() != (packet.MAC{}) || a.TargetIP() != peer4 || a.IsGratuitous() {
				return fmt.Errorf("request to %v, target %v/%v", l.Dst, a.TargetMAC(), a.TargetIP())
			}
			return nil
		}},
		{"arp reply", func() int { return packet.PutARP(b, packet.ARPReply, mac, vip4, peer, peer4) }, func(l *packet.L2) error {
			a, _ := packet.ValidARP(b[l.PayloadOff:])
			if l.Dst != peer || a.Op() != packet.ARPReply || a.SenderMAC() != mac || a.SenderIP() != vip4 || a.TargetMAC() != peer {
				return fmt.Errorf("reply to %v: op %d %v/%v", l.Dst, a.Op(), a.SenderMAC(), a.SenderIP())
			}
			return nil
		}},
		{"gratuitous arp", func() int { return packet.PutARP(b, packet.ARPRequest, mac, vip4, packet.MAC{}, vip4) }, func(l *packet.L2) error {
			a, _ := packet.ValidARP(b[l.PayloadOff:])
			if l.Dst != packet.BroadcastMAC() || !a.IsGratuitous() {
				return fmt.Errorf("announcement to %v, gratuitous %v", l.Dst, a.IsGratuitous())
			}
			return nil
		}},
		{"neighbor solicitation", func() int { return packet.PutNeighborSolicit(b, mac, vip6, peer6) }, func(l *packet.L2) error {
			group, groupMAC := packet.SolicitedNode(peer6)
			if l.Dst != groupMAC || group.String() != "ff02::1:ff00:2" || groupMAC.String() != "33:33:ff:00:00:02" {
				return fmt.Errorf("solicitation to %v (%v)", l.Dst, group)
			}
			if nd.Type != packet.ICMPv6NeighborSolicit || nd.Target != peer6 || nd.LinkAddr != mac {
				return fmt.Errorf("solicitation %+v", nd)
			}
			return nil
		}},
		{"solicited advertisement", func() int { return packet.PutNeighborAdvert(b, mac, peer, vip6, peer6, vip6, true) }, func(l *packet.L2) error {
			if l.Dst != peer || nd.Type != packet.ICMPv6NeighborAdvert || !nd.Solicited || !nd.Override || nd.Router || nd.Target != vip6 || nd.LinkAddr != mac {
				return fmt.Errorf("advertisement to %v: %+v", l.Dst, nd)
			}
			return nil
		}},
		{"unsolicited advertisement", func() int {
			return packet.PutNeighborAdvert(b, mac, packet.MulticastMAC(allNodes), vip6, allNodes, vip6, false)
		}, func(l *packet.L2) error {
			if l.Dst.String() != "33:33:00:00:00:01" || nd.Solicited || !nd.Override {
				return fmt.Errorf("announcement to %v: %+v", l.Dst, nd)
			}
			return nil
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clear(b)
			n := c.put()
			frame := b[:n]
			if reason := packet.ParseEthernet(frame, &l); reason != packet.ReasonNone || l.Src != mac {
				t.Fatalf("ParseEthernet = %v, source %v", reason, l.Src)
			}
			if err := checkL2(frame, &l, &p, &nd); err != nil {
				t.Fatal(err)
			}
			if err := c.check(&l); err != nil {
				t.Fatal(err)
			}
		})
	}
	if n := packet.PutNeighborAdvert(b, mac, peer, vip6, peer6, vip6, true); n != packet.NDFrameSize {
		t.Errorf("advertisement is %d bytes, NDFrameSize %d", n, packet.NDFrameSize)
	}
}

// TestMalformedL2 checks that each kind of bad frame or message is
// refused with its own reason.
func TestMalformedL2(t *testing.T) {
	mac := packet.MAC{0x02, 0, 0x5e, 0x10, 0, 1}
	vip6, peer6 := netip.MustParseAddr("2001:db8::10"), netip.MustParseAddr("2001:db8::2")
	tagged := func(tpids ...uint16) []byte {
		b := make([]byte, 12, 64)
		for _, tp := range tpids {
			b = append(b, byte(tp>>8), byte(tp), 0, 7)
		}
		return append(b, 0x08, 0x00, 0x45)
	}
	var l packet.L2
	for _, c := range []struct {
		name  string
		frame []byte
		want  packet.Reason
	}{
		{"empty", nil, packet.ReasonTruncatedEthernet},
		{"13 bytes", make([]byte, 13), packet.ReasonTruncatedEthernet},
		{"tag cut short", tagged(packet.EtherTypeVLAN)[:17], packet.ReasonTruncatedEthernet},
		{"three tags", tagged(packet.EtherTypeQinQ, packet.EtherTypeVLAN, packet.EtherTypeVLAN), packet.ReasonTooManyVLANs},
		{"802.3 length", append(make([]byte, 12), 0x05, 0xdc, 0xaa), packet.ReasonNotEthernetII},
		{"0x9100 outer tag", tagged(packet.EtherTypeQinQv1, packet.EtherTypeVLAN), packet.ReasonNone},
	} {
		if got := packet.ParseEthernet(c.frame, &l); got != c.want || got != l.Reason {
			t.Errorf("%s: ParseEthernet = %v (L2.Reason %v), want %v", c.name, got, l.Reason, c.want)
		}
		if c.want != packet.ReasonNone && (l.EtherType != 0 || l.PayloadOff != 0) {
			t.Errorf("%s: failed parse left %+v", c.name, l)
		}
	}
	if l.NumVLANs != 2 || l.VLANs != [2]uint16{7, 7} || l.EtherType != packet.EtherTypeIPv4 || l.PayloadOff != 22 {
		t.Errorf("Q-in-Q with 0x9100: %+v", l)
	}

	arp := make([]byte, 64)
	n := packet.PutARP(arp, packet.ARPRequest, mac, netip.MustParseAddr("198.18.0.1"), packet.MAC{}, netip.MustParseAddr("198.18.0.2"))
	body := arp[packet.EthernetMinimumSize:n]
	for name, mutate := range map[string]func(b []byte){
		"short":      func(b []byte) {},
		"hlen 8":     func(b []byte) { b[4] = 8 },
		"ptype IPv6": func(b []byte) { b[2], b[3] = 0x86, 0xdd },
		"op 3":       func(b []byte) { b[7] = 3 },
	} {
		b := append([]byte(nil), body...)
		mutate(b)
		if name == "short" {
			b = b[:packet.ARPSize-1]
		}
		if _, reason := packet.ValidARP(b); reason != packet.ReasonBadARP {
			t.Errorf("ARP %s: reason %v, want bad_arp", name, reason)
		}
	}

	// ND: start from a valid solicitation and break one rule at a time.
	var p packet.Parsed
	var nd packet.ND
	frame := make([]byte, packet.NDFrameSize)
	const ip, icmp = packet.EthernetMinimumSize, packet.EthernetMinimumSize + packet.IPv6HeaderSize
	fixChecksum := func(b []byte) {
		b[icmp+2], b[icmp+3] = 0, 0
		var q packet.Parsed
		packet.Parse(b[ip:], &q)
		c, _ := packet.L4Checksum(b[ip:], &q)
		b[icmp+2], b[icmp+3] = byte(c>>8), byte(c)
	}
	for _, c := range []struct {
		name   string
		mutate func(b []byte)
		fix    bool // recompute the checksum after mutating
	}{
		{"hop limit 254", func(b []byte) { b[ip+7] = 254 }, false},
		{"bad checksum", func(b []byte) { b[icmp+2] ^= 1 }, false},
		{"code 1", func(b []byte) { b[icmp+1] = 1 }, true},
		{"zero-length option", func(b []byte) { b[icmp+25] = 0 }, true},
		{"option past the end", func(b []byte) { b[icmp+25] = 2 }, true},
		{"multicast target", func(b []byte) { b[icmp+8] = 0xff }, true},
		{"DAD with a source link-layer option", func(b []byte) { clear(b[ip+8 : ip+24]) }, true},
		{"DAD to a unicast address", func(b []byte) {
			clear(b[ip+8 : ip+24])
			copy(b[ip+24:ip+40], vip6.AsSlice())
			b[icmp+24] = 14 // not an option vsgate reads
		}, true},
		{"solicited advertisement to a group", func(b []byte) {
			b[icmp], b[icmp+4] = packet.ICMPv6NeighborAdvert, 0x40
		}, true},
	} {
		packet.PutNeighborSolicit(frame, mac, vip6, peer6)
		c.mutate(frame)
		if c.fix {
			fixChecksum(frame)
		}
		packet.Parse(frame[ip:], &p)
		if reason := packet.ParseND(frame[ip:], &p, &nd); reason != packet.ReasonBadND || nd != (packet.ND{}) {
			t.Errorf("ND %s: reason %v, nd %+v; want bad_nd and nothing filled", c.name, reason, nd)
		}
	}
	// The unmutated message passes, and so does one whose reserved bytes
	// were changed and checksum recomputed by fixChecksum: each refusal
	// above is for its rule, not for a checksum the test got wrong.
	packet.PutNeighborSolicit(frame, mac, vip6, peer6)
	packet.Parse(frame[ip:], &p)
	if reason := packet.ParseND(frame[ip:], &p, &nd); reason != packet.ReasonNone {
		t.Errorf("valid solicitation: %v", reason)
	}
	frame[icmp+5] = 0x5a
	fixChecksum(frame)
	packet.Parse(frame[ip:], &p)
	if reason := packet.ParseND(frame[ip:], &p, &nd); reason != packet.ReasonNone {
		t.Errorf("solicitation with reserved bytes set, checksum fixed: %v", reason)
	}
	packet.Parse(frame[ip:ip+packet.IPv6HeaderSize+8], &p) // an echo-sized ICMPv6 message is not ND
	if reason := packet.ParseND(frame[ip:], &p, &nd); reason != packet.ReasonBadND {
		t.Errorf("truncated ND: %v", reason)
	}
}

// TestL2ParsersDoNotAllocate proves ParseEthernet, ValidARP and ParseND
// allocate nothing, as everything on the receive path must not.
func TestL2ParsersDoNotAllocate(t *testing.T) {
	mac := packet.MAC{0x02, 0, 0x5e, 0x10, 0, 1}
	ndFrame := make([]byte, packet.NDFrameSize)
	packet.PutNeighborSolicit(ndFrame, mac, netip.MustParseAddr("2001:db8::10"), netip.MustParseAddr("2001:db8::2"))
	arpFrame := make([]byte, 64)
	packet.PutARP(arpFrame, packet.ARPRequest, mac, netip.MustParseAddr("198.18.0.1"), packet.MAC{}, netip.MustParseAddr("198.18.0.2"))
	var l packet.L2
	var p packet.Parsed
	var nd packet.ND
	allocs := testing.AllocsPerRun(1000, func() {
		packet.ParseEthernet(ndFrame, &l)
		packet.Parse(ndFrame[l.PayloadOff:], &p)
		if packet.ParseND(ndFrame[l.PayloadOff:], &p, &nd) != packet.ReasonNone {
			panic("ND did not parse")
		}
		packet.ParseEthernet(arpFrame, &l)
		if a, _ := packet.ValidARP(arpFrame[l.PayloadOff:]); a.TargetIP() != netip.MustParseAddr("198.18.0.2") {
			panic("ARP did not parse")
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per frame pair, want 0", allocs)
	}
}
