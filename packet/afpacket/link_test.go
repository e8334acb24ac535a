package afpacket

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/vsgate/vsgate/packet"
)

// TestLinkResolvesAndDelivers runs a Link in host "b" against a Linux
// host "a" on one link:
//
//	+---------------------+                 +------------------------------+
//	| host "a" (Linux)    +-----------------+ host "b": kernel 198.18.0.3  |
//	| 198.18.0.2/24       |                 | Link owns VIP 198.18.0.10;   |
//	| UDP listener :9     |                 | a worker reads its one Port  |
//	+---------------------+                 +------------------------------+
//
// A packet written to a Port for 198.18.0.2, whose MAC nobody knows yet,
// waits while the Link asks for it, and reaches a's socket once a
// answers; a datagram a sends to the VIP is resolved (the Link answers
// ARP for it) and comes out of the Port's Read. The same with the frames
// through AF_XDP (LinkConfig.XDP), ARP through the control socket.
func TestLinkResolvesAndDelivers(t *testing.T) {
	t.Run("afpacket", func(t *testing.T) { testLinkResolvesAndDelivers(t, false) })
	t.Run("afxdp", func(t *testing.T) { testLinkResolvesAndDelivers(t, true) })
}

func testLinkResolvesAndDelivers(t *testing.T, xdp bool) {
	peer, vip := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.10")
	lab := pairLab(t, "afpl", []netip.Prefix{netip.PrefixFrom(peer, 24)})
	a, b := lab.MustHost("a"), lab.MustHost("b")
	if _, err := b.Run(context.Background(), "ip", "addr", "add", "198.18.0.3/24", "dev", lab.IfName("b")); err != nil {
		t.Fatal(err)
	}
	var l *Link
	if err := b.Do(func() (err error) {
		l, err = OpenLink(LinkConfig{Interfaces: []string{lab.IfName("b")}, Owned: []netip.Addr{vip}, XDP: xdp})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if onXDP := l.ifs[0].prog != nil; onXDP != xdp {
		t.Fatalf("frames through AF_XDP: %v, want %v", onXDP, xdp)
	}
	if want := map[bool]string{false: "afpacket", true: "afxdp-copy"}[xdp]; l.DataPaths()[lab.IfName("b")] != want {
		t.Fatalf("DataPaths %v, want %s for %s", l.DataPaths(), want, lab.IfName("b"))
	}
	port := l.Ports()[0]
	watchdog := time.AfterFunc(20*time.Second, func() { l.Close() })
	defer watchdog.Stop()

	// A worker reads the Port all along, as the gateway's do: ARP and ND
	// frames are handled inside Read.
	arrived := make(chan []byte, 16)
	go func() {
		bufs, sizes := [][]byte{make([]byte, portHeadroom+MaxPacketLen)}, make([]int, 1)
		for {
			k, err := port.Read(bufs, sizes, portHeadroom)
			if err != nil {
				close(arrived)
				return
			}
			if k == 1 {
				arrived <- append([]byte(nil), bufs[0][portHeadroom:portHeadroom+sizes[0]]...)
			}
		}
	}()

	ln, err := a.ListenPacket("udp", "198.18.0.2:9")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_ = ln.SetDeadline(time.Now().Add(10 * time.Second))

	// Out: a UDP datagram from the VIP to a, through Port.Write.
	buf := make([]byte, portHeadroom+MaxPacketLen)
	ip := buf[portHeadroom:]
	n := udp4(ip, vip, peer, 4000, 9, []byte("from the link"))
	if _, err := port.Write([][]byte{buf[:portHeadroom+n]}, portHeadroom); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 64)
	m, from, err := ln.ReadFrom(got)
	if err != nil {
		t.Fatalf("the packet that waited for a's MAC: %v (link stats: %d requests, %d unresolved)", err, l.Stats().Requests.Load(), l.Stats().Unresolved.Load())
	}
	if string(got[:m]) != "from the link" || from.(*net.UDPAddr).AddrPort() != netip.AddrPortFrom(vip, 4000) {
		t.Errorf("a got %q from %v", got[:m], from)
	}
	if l.Stats().Requests.Load() == 0 {
		t.Error("the Link sent no ARP request for a")
	}

	// In: a datagram a sends to the VIP comes out of Read.
	if _, err := ln.WriteTo([]byte("to the vip"), net.UDPAddrFromAddrPort(netip.AddrPortFrom(vip, 4000))); err != nil {
		t.Fatal(err)
	}
	found := false
	for p := range arrived {
		if len(p) > 28 && netip.AddrFrom4([4]byte(p[16:20])) == vip && string(p[28:]) == "to the vip" {
			found = true
			break
		}
	}
	if !found {
		t.Fatal("nothing to the VIP arrived before the Link closed")
	}
	// With AF_XDP another goroutine answers ARP, and may count its
	// answer after a has used it.
	for deadline := time.Now().Add(5 * time.Second); l.Stats().Replies.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Error("a reached the VIP without the Link answering its ARP request")
			break
		}
	}

	// A datagram with TTL 1 gets an ICMP time exceeded from b's address.
	icmp, err := a.ListenPacket("ip4:icmp", "198.18.0.2")
	if err != nil {
		t.Fatal(err)
	}
	defer icmp.Close()
	if err := a.Do(func() error {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(vip, 4000)))
		if err != nil {
			return err
		}
		defer c.Close()
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TTL, 1) }); err != nil {
			return err
		}
		if serr != nil {
			return serr
		}
		_, err = c.Write([]byte("expires"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	_ = icmp.SetDeadline(time.Now().Add(5 * time.Second))
	msg := make([]byte, 1500)
	for {
		m, from, err := icmp.ReadFrom(msg)
		if err != nil {
			t.Fatalf("no ICMP time exceeded for a datagram with TTL 1: %v (dropped %d, sent %d)", err, l.Stats().TTL.Load(), l.Stats().TimeExceeded.Load())
		}
		// The raw socket gives the ICMP message; its quote holds the
		// datagram as it arrived.
		if m >= 8+28+7 && msg[0] == packet.ICMPv4TimeExceeded && string(msg[8+28:8+28+7]) == "expires" {
			if from.String() != "198.18.0.3" {
				t.Errorf("time exceeded from %v, want b's address 198.18.0.3", from)
			}
			if packet.Sum(msg[:m], 0) != 0xffff {
				t.Error("the ICMP checksum is wrong")
			}
			break
		}
	}
}

// MaxPacketLen is the buffer room the test gives a packet.
const MaxPacketLen = 2048

// udp4 writes an IPv4 UDP datagram with complete checksums into b and
// returns its length.
func udp4(b []byte, src, dst netip.Addr, sport, dport uint16, payload []byte) int {
	n := 20 + 8 + len(payload)
	clear(b[:28])
	b[0], b[8], b[9] = 0x45, 64, packet.ProtoUDP
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	copy(b[12:16], src.AsSlice())
	copy(b[16:20], dst.AsSlice())
	binary.BigEndian.PutUint16(b[10:], ^packet.Sum(b[:20], 0))
	binary.BigEndian.PutUint16(b[20:], sport)
	binary.BigEndian.PutUint16(b[22:], dport)
	binary.BigEndian.PutUint16(b[24:], uint16(8+len(payload)))
	copy(b[28:], payload)
	binary.BigEndian.PutUint16(b[26:], ^packet.Sum(b[20:n], packet.PseudoHeaderSum(packet.ProtoUDP, b[12:16], b[16:20], 8+len(payload))))
	return n
}

// TestDecrementTTL: the TTL goes down by one with the IPv4 header
// checksum still right (checked by summing the header, for every TTL and
// many checksums), the hop limit likewise; 1 and 0 are dropped.
func TestDecrementTTL(t *testing.T) {
	p := &Port{link: &Link{}}
	ip := make([]byte, 20)
	dropped := uint64(0)
	for ttl := 0; ttl < 256; ttl++ {
		for id := 0; id < 65536; id += 257 {
			clear(ip)
			ip[0], ip[8], ip[9] = 0x45, byte(ttl), packet.ProtoUDP
			binary.BigEndian.PutUint16(ip[4:], uint16(id))
			binary.BigEndian.PutUint16(ip[10:], ^packet.Sum(ip, 0))
			goesOn := p.decrementTTL(ip)
			if goesOn != (ttl > 1) {
				t.Fatalf("TTL %d: goes on = %v", ttl, goesOn)
			}
			if !goesOn {
				dropped++
				continue
			}
			if int(ip[8]) != ttl-1 {
				t.Fatalf("TTL %d became %d", ttl, ip[8])
			}
			if s := packet.Sum(ip, 0); s != 0xffff && s != 0 {
				t.Fatalf("TTL %d, ID %d: header sums to %#x after the decrement", ttl, id, s)
			}
		}
	}
	ip6 := make([]byte, 40)
	ip6[0], ip6[7] = 0x60, 2
	if !p.decrementTTL(ip6) || ip6[7] != 1 || p.decrementTTL(ip6) {
		t.Errorf("hop limit 2 -> %d; a hop limit of 1 must be dropped", ip6[7])
	}
	if p.link.stats.TTL.Load() != dropped+1 {
		t.Errorf("%d drops counted", p.link.stats.TTL.Load())
	}
}

// FuzzTimeExceeded: any packet that arrives with no TTL left is answered
// or ignored without a panic; what is built parses and fits the limits.
func FuzzTimeExceeded(f *testing.F) {
	b := make([]byte, 64)
	f.Add(b[:udp4(b, netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.10"), 1, 2, []byte("x"))])
	v6 := make([]byte, 48)
	v6[0], v6[6], v6[8], v6[9] = 0x60, packet.ProtoUDP, 0x20, 0x01
	f.Add(v6)
	f.Fuzz(func(t *testing.T, ip []byte) {
		if len(ip) == 0 || (ip[0]>>4 != 4 && ip[0]>>4 != 6) {
			return
		}
		l := &Link{neigh: NewNeighbors(), icmp: rate.NewLimiter(icmpPerSecond, icmpBurst)}
		l.state.Store(&linkState{owned: map[netip.Addr]bool{}, src: [][2]netip.Addr{{netip.MustParseAddr("198.18.0.3"), netip.MustParseAddr("2001:db8::3")}}})
		p := &Port{link: l}
		p.timeExceeded(ip) // no routes: built, then dropped as NoRoute
		if l.stats.NoRoute.Load() == 1 {
			out := p.icmp[portHeadroom:]
			var parsed packet.Parsed
			n := int(binary.BigEndian.Uint16(out[2:]))
			if out[0]>>4 == 6 {
				n = packet.IPv6HeaderSize + int(binary.BigEndian.Uint16(out[4:]))
			}
			if n > packet.MaxICMPErrorSize || packet.Parse(out[:n], &parsed) != packet.ReasonNone {
				t.Fatalf("a %d-byte time exceeded that does not parse", n)
			}
		}
	})
}

// TestLinkXDPFallback: where XDP cannot attach (here: the peer's MTU is
// too large for XDP on a veth) the interface runs on AF_PACKET sockets,
// and the Link works as without XDP.
func TestLinkXDPFallback(t *testing.T) {
	vip := netip.MustParseAddr("198.18.0.10")
	lab := pairLab(t, "afpx", []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24")})
	a, b := lab.MustHost("a"), lab.MustHost("b")
	if out, err := a.Run(context.Background(), "ip", "link", "set", "dev", lab.IfName("a"), "mtu", "9000"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var l *Link
	if err := b.Do(func() (err error) {
		l, err = OpenLink(LinkConfig{Interfaces: []string{lab.IfName("b")}, Owned: []netip.Addr{vip}, XDP: true})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.ifs[0].prog != nil {
		t.Fatal("XDP attached to a veth whose peer has MTU 9000")
	}
	if _, ok := l.ifs[0].data[0].(*Socket); !ok || len(l.Ports()) != 1 {
		t.Fatalf("after the fallback: data socket %T, %d ports; want one AF_PACKET socket", l.ifs[0].data[0], len(l.Ports()))
	}
	// a reaches the VIP: ARP answered, the datagram read from the Port.
	go func() {
		c, err := a.ListenPacket("udp", "198.18.0.2:9")
		if err != nil {
			return
		}
		defer c.Close()
		for range 20 {
			_, _ = c.WriteTo([]byte("to the vip"), net.UDPAddrFromAddrPort(netip.AddrPortFrom(vip, 4000)))
			time.Sleep(100 * time.Millisecond)
		}
	}()
	watchdog := time.AfterFunc(10*time.Second, func() { l.Close() })
	defer watchdog.Stop()
	bufs, sizes := [][]byte{make([]byte, portHeadroom+MaxPacketLen)}, make([]int, 1)
	for {
		k, err := l.Ports()[0].Read(bufs, sizes, portHeadroom)
		if err != nil {
			t.Fatalf("nothing to the VIP arrived: %v", err)
		}
		p := bufs[0][portHeadroom : portHeadroom+sizes[0]]
		if k == 1 && len(p) > 28 && netip.AddrFrom4([4]byte(p[16:20])) == vip && string(p[28:]) == "to the vip" {
			return
		}
	}
}
