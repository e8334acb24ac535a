package afpacket

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vsgate/vsgate/internal/netlab"
	"github.com/vsgate/vsgate/packet"
)

// TestResponderReply: requests for owned addresses get answers addressed
// to the asker; everything else gets none.
func TestResponderReply(t *testing.T) {
	peer4, peer6 := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("2001:db8::2")
	r := NewResponder(macB, []netip.Addr{vip4, vip6})
	out := make([]byte, ReplySize)
	var c Control
	reply := func(f []byte) int {
		ParseControl(f, &c)
		return r.Reply(&c, out)
	}
	arpFor := func(op uint16, sender, target netip.Addr) []byte {
		f := make([]byte, 64)
		return f[:packet.PutARP(f, op, macA, sender, packet.MAC{}, target)]
	}
	nsFor := func(src, target netip.Addr) []byte {
		f := make([]byte, packet.NDFrameSize)
		packet.PutNeighborSolicit(f, macA, src, target)
		return f
	}
	// answer parses a reply and returns its frame fields, or fails.
	answer := func(name string, f []byte) (packet.L2, packet.ND, []byte) {
		t.Helper()
		n := reply(f)
		if n == 0 {
			t.Fatalf("%s: no reply", name)
		}
		var rl packet.L2
		var rp packet.Parsed
		var rnd packet.ND
		if packet.ParseEthernet(out[:n], &rl) != packet.ReasonNone || rl.Src != macB {
			t.Fatalf("%s: reply frame %+v", name, rl)
		}
		if rl.EtherType == packet.EtherTypeIPv6 {
			if packet.Parse(out[rl.PayloadOff:n], &rp) != packet.ReasonNone || packet.ParseND(out[rl.PayloadOff:n], &rp, &rnd) != packet.ReasonNone {
				t.Fatalf("%s: reply is not a valid advertisement", name)
			}
		}
		return rl, rnd, out[rl.PayloadOff:n]
	}

	rl, _, body := answer("ARP request for the VIP", arpFor(packet.ARPRequest, peer4, vip4))
	a, _ := packet.ValidARP(body)
	if rl.Dst != macA || a.Op() != packet.ARPReply || a.SenderMAC() != macB || a.SenderIP() != vip4 || a.TargetMAC() != macA || a.TargetIP() != peer4 {
		t.Errorf("ARP reply to %v: op %d %v/%v > %v/%v", rl.Dst, a.Op(), a.SenderMAC(), a.SenderIP(), a.TargetMAC(), a.TargetIP())
	}

	ns := nsFor(peer6, vip6)
	rl, rnd, _ := answer("solicitation for the VIP", ns)
	if rl.Dst != macA || !rnd.Solicited || !rnd.Override || rnd.Target != vip6 || rnd.LinkAddr != macB {
		t.Errorf("advertisement to %v: %+v", rl.Dst, rnd)
	}
	// A solicitation without a source link-layer option (legal when the
	// source is unicast) is answered to the frame's source MAC. Dropping
	// the option means rewriting the lengths and checksum: build it by
	// hand from the one above.
	noLL := append([]byte(nil), ns[:len(ns)-8]...)
	noLL[packet.EthernetMinimumSize+5] = 24
	fixICMPv6Checksum(t, noLL)
	copy(noLL[6:12], []byte{0x02, 0, 0x5e, 0x10, 0, 9})
	rl, _, _ = answer("solicitation without a link-layer option", noLL)
	if rl.Dst != (packet.MAC{0x02, 0, 0x5e, 0x10, 0, 9}) {
		t.Errorf("advertisement to %v, want the frame's source", rl.Dst)
	}
	// Duplicate address detection of our VIP by someone else: defend it to
	// all nodes.
	dad := nsFor(netip.IPv6Unspecified(), vip6)
	dad = dad[:len(dad)-8]
	dad[packet.EthernetMinimumSize+5] = 24
	fixICMPv6Checksum(t, dad)
	rl, rnd, _ = answer("duplicate address detection", dad)
	if rl.Dst.String() != "33:33:00:00:00:01" || rnd.Solicited || rnd.Target != vip6 {
		t.Errorf("DAD defence to %v: %+v", rl.Dst, rnd)
	}

	for name, f := range map[string][]byte{
		"ARP request for another host": arpFor(packet.ARPRequest, peer4, other4),
		"ARP reply from the VIP":       arpFor(packet.ARPReply, peer4, vip4),
		"gratuitous ARP for the VIP":   arpFor(packet.ARPRequest, vip4, vip4),
		"solicitation for another":     nsFor(peer6, other6),
		"IPv4 packet to the VIP":       ipFrame(vip4, 1),
		"runt":                         make([]byte, 10),
	} {
		if n := reply(f); n != 0 {
			t.Errorf("%s: replied with %d bytes", name, n)
		}
	}

	req := arpFor(packet.ARPRequest, peer4, vip4)
	if allocs := testing.AllocsPerRun(1000, func() { reply(req) }); allocs != 0 {
		t.Errorf("ParseControl + Reply allocate %v times per request", allocs)
	}
}

// fixICMPv6Checksum recomputes the ICMPv6 checksum of a frame whose IPv6
// payload length was changed by hand.
func fixICMPv6Checksum(t *testing.T, f []byte) {
	t.Helper()
	ip := f[packet.EthernetMinimumSize:]
	var p packet.Parsed
	if packet.Parse(ip, &p) != packet.ReasonNone {
		t.Fatal("hand-built frame does not parse")
	}
	c, _ := packet.L4Checksum(ip, &p)
	ip[p.L4Off+2], ip[p.L4Off+3] = byte(c>>8), byte(c)
}

// TestKernelResolvesThroughResponder: a Linux host next to the Socket
// resolves the VIPs (ARP and neighbour discovery) to the Socket's
// interface MAC, though that interface has no address at all; with
// arp_accept on, the gratuitous ARP sent on start alone puts an
// announced address in its neighbour table.
//
//	+-------------------------+   <prefix>a   <prefix>b   +--------------------+
//	| host "a" (a Linux host) +--------------------------+ host "b"            |
//	| 198.18.0.2/24           |                          | no addresses;       |
//	| 2001:db8::2/64          |                          | Socket + Responder  |
//	| arp_accept=1            |                          | for .10, .11, ::10  |
//	+-------------------------+                          +--------------------+
func TestKernelResolvesThroughResponder(t *testing.T) {
	announced := netip.MustParseAddr("198.18.0.11")
	lab := pairLab(t, "afpr", []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24"), netip.MustParsePrefix("2001:db8::2/64")},
		netlab.Sysctl{Key: "net.ipv4.conf.all.arp_accept", Value: "1"})
	a, b := lab.MustHost("a"), lab.MustHost("b")
	bLink, err := b.Netlink().LinkByName(lab.IfName("b"))
	if err != nil {
		t.Fatal(err)
	}
	mac := packet.MAC(bLink.Attrs().HardwareAddr)
	owned := []netip.Addr{vip4, announced, vip6}
	s := openSocket(t, lab, "b", Config{Filter: &FilterSpec{MAC: mac}})
	r := NewResponder(mac, owned)
	out := make([]byte, ReplySize)
	if err := s.Write(out[:r.Announce(out, announced)]); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() {
		buf, reply := make([]byte, 2048), make([]byte, ReplySize)
		var c Control
		for {
			n, err := s.Read(buf)
			if err != nil {
				served <- err
				return
			}
			if !ParseControl(buf[:n], &c) {
				continue
			}
			if m := r.Reply(&c, reply); m > 0 {
				if err := s.Write(reply[:m]); err != nil {
					served <- err
					return
				}
			}
		}
	}()
	t.Cleanup(func() {
		s.Close()
		if err := <-served; !errors.Is(err, net.ErrClosed) {
			t.Errorf("responder loop: %v", err)
		}
	})

	aLink, err := a.Netlink().LinkByName(lab.IfName("a"))
	if err != nil {
		t.Fatal(err)
	}
	// neighbour waits for host a's kernel to hold a complete entry for
	// addr and returns its MAC.
	neighbour := func(addr netip.Addr) packet.MAC {
		t.Helper()
		fam := netlink.FAMILY_V4
		if addr.Is6() {
			fam = netlink.FAMILY_V6
		}
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			ns, err := a.Netlink().NeighList(aLink.Attrs().Index, fam)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range ns {
				if ip, _ := netip.AddrFromSlice(n.IP); ip.Unmap() == addr && len(n.HardwareAddr) == 6 &&
					n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE) != 0 {
					return packet.MAC(n.HardwareAddr)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("host a has no neighbour entry for %v", addr)
		return packet.MAC{}
	}

	if got := neighbour(announced); got != mac {
		t.Errorf("gratuitous ARP: host a maps %v to %v, want %v", announced, got, mac)
	}
	for _, vip := range []netip.Addr{vip4, vip6} {
		// Any packet to the VIP makes host a resolve it first.
		if err := a.Do(func() error {
			c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(vip, 9)))
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte("resolve"))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if got := neighbour(vip); got != mac {
			t.Errorf("host a resolves %v to %v, want %v", vip, got, mac)
		}
	}
}
