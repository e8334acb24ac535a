package afpacket

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/time/rate"

	"github.com/vsgate/vsgate/internal/netlab/labtest"
	"github.com/vsgate/vsgate/packet"
)

var (
	vip4   = netip.MustParseAddr("198.18.0.10")
	vip6   = netip.MustParseAddr("2001:db8::10")
	other4 = netip.MustParseAddr("198.18.0.99")
	other6 = netip.MustParseAddr("2001:db8::99")
	macA   = packet.MAC{0x02, 0, 0x5e, 0x10, 0, 1}
	macB   = packet.MAC{0x02, 0, 0x5e, 0x10, 0, 2}
)

// ipFrame returns an Ethernet frame carrying a minimal IPv4 or IPv6 UDP
// packet to dst, with marker as its payload.
func ipFrame(dst netip.Addr, marker byte) []byte {
	b := make([]byte, 128)
	n := packet.EthernetMinimumSize
	if dst.Is4() {
		packet.PutEthernet(b, macB, macA, packet.EtherTypeIPv4)
		ip := b[n:]
		ip[0], ip[3], ip[8], ip[9] = 0x45, 20+8+1, 64, packet.ProtoUDP
		copy(ip[12:16], netip.MustParseAddr("198.18.0.2").AsSlice())
		copy(ip[16:20], dst.AsSlice())
		ip[20+5], ip[20+8] = 9, marker
		return b[:n+20+8+1]
	}
	packet.PutEthernet(b, macB, macA, packet.EtherTypeIPv6)
	ip := b[n:]
	ip[0], ip[5], ip[6], ip[7] = 0x60, 8+1, packet.ProtoUDP, 64
	copy(ip[8:24], netip.MustParseAddr("2001:db8::2").AsSlice())
	copy(ip[24:40], dst.AsSlice())
	ip[40+5], ip[40+8] = 9, marker
	return b[:n+40+8+1]
}

// TestFilter runs the program Filter assembles in x/net/bpf's VM: what
// vsgate needs passes whole, everything else is refused.
func TestFilter(t *testing.T) {
	local4, local6 := netip.MustParseAddr("198.18.0.3"), netip.MustParseAddr("2001:db8::3")
	prog, err := Filter(FilterSpec{MAC: macB, Local: []netip.Addr{local4, local6, netip.MustParseAddr("198.19.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	insns := make([]bpf.Instruction, len(prog))
	for i, r := range prog {
		insns[i] = r.Disassemble()
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatal(err)
	}
	arp := make([]byte, 64)
	arp = arp[:packet.PutARP(arp, packet.ARPRequest, macA, netip.MustParseAddr("198.18.0.2"), packet.MAC{}, vip4)]
	ownARP := make([]byte, 64)
	ownARP = ownARP[:packet.PutARP(ownARP, packet.ARPRequest, macB, vip4, packet.MAC{}, vip4)]
	ns := make([]byte, packet.NDFrameSize)
	packet.PutNeighborSolicit(ns, macA, netip.MustParseAddr("2001:db8::2"), vip6)
	na := make([]byte, packet.NDFrameSize)
	packet.PutNeighborAdvert(na, macA, macB, netip.MustParseAddr("2001:db8::2"), vip6, netip.MustParseAddr("2001:db8::2"), true)
	lldp := append(ipFrame(vip4, 0)[:12:12], 0x88, 0xcc, 0, 0)
	toMAC := func(f []byte, m packet.MAC) []byte { copy(f[0:6], m[:]); return f }
	fromMAC := func(f []byte, m packet.MAC) []byte { copy(f[6:12], m[:]); return f }
	for _, c := range []struct {
		name  string
		frame []byte
		pass  bool
	}{
		{"ARP", arp, true},
		{"neighbour solicitation", ns, true},
		{"neighbour advertisement", na, true},
		{"IPv4 to the VIP", ipFrame(vip4, 1), true},
		{"IPv6 to the VIP", ipFrame(vip6, 1), true},
		{"IPv4 routed through vsgate", ipFrame(other4, 1), true},
		{"IPv6 routed through vsgate", ipFrame(other6, 1), true},
		{"IPv4 to the host's own address", ipFrame(local4, 1), false},
		{"IPv4 to the host's second IPv4 address", ipFrame(netip.MustParseAddr("198.19.0.1"), 1), false},
		{"IPv6 to the host's own address", ipFrame(local6, 1), false},
		{"IPv6 differing from it in the last word", ipFrame(netip.MustParseAddr("2001:db8::4"), 1), true},
		{"IPv4 to another MAC", toMAC(ipFrame(vip4, 1), macA), false},
		{"IPv6 to another MAC (last byte)", toMAC(ipFrame(vip6, 1), packet.MAC{0x02, 0, 0x5e, 0x10, 0, 3}), false},
		{"IPv4 broadcast", toMAC(ipFrame(vip4, 1), packet.BroadcastMAC()), false},
		{"IPv4 sent by vsgate itself", fromMAC(toMAC(ipFrame(vip4, 1), macA), macB), false},
		{"ARP sent by vsgate itself", ownARP, false},
		{"LLDP", lldp, false},
	} {
		n, err := vm.Run(c.frame)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		// The VM returns the program's verdict: 0 drops the frame, a
		// snap length at least the frame's keeps all of it.
		if got := n >= len(c.frame); got != c.pass || (!c.pass && n != 0) {
			t.Errorf("%s: filter verdict %d for %d bytes, want pass=%v", c.name, n, len(c.frame), c.pass)
		}
	}
	if _, err := Filter(FilterSpec{Local: make([]netip.Addr, maxFilterAddrs+1)}); err == nil {
		t.Error("Filter accepted more addresses than fit")
	}

	// ControlOnly (beside AF_XDP sockets): ARP and ND alone.
	prog, err = Filter(FilterSpec{MAC: macB, Local: []netip.Addr{local4}, ControlOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	insns = insns[:0]
	for _, r := range prog {
		insns = append(insns, r.Disassemble())
	}
	if vm, err = bpf.NewVM(insns); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		frame []byte
		pass  bool
	}{
		{"ARP", arp, true}, {"neighbour solicitation", ns, true}, {"neighbour advertisement", na, true},
		{"IPv4 to the VIP", ipFrame(vip4, 1), false}, {"IPv6 to the VIP", ipFrame(vip6, 1), false},
		{"IPv4 routed through vsgate", ipFrame(other4, 1), false}, {"ARP sent by vsgate itself", ownARP, false},
	} {
		n, err := vm.Run(c.frame)
		if err != nil {
			t.Fatalf("control only, %s: %v", c.name, err)
		}
		if got := n >= len(c.frame); got != c.pass || (!c.pass && n != 0) {
			t.Errorf("control only, %s: filter verdict %d for %d bytes, want pass=%v", c.name, n, len(c.frame), c.pass)
		}
	}
}

// TestSocketInNamespaces: frames written raw by an unfiltered socket in
// host "a" (to the VIPs, to the host's own addresses, ARP) reach a
// filtered socket in host "b" exactly when they are for vsgate. No addresses: nothing here
// depends on the kernel's IP stack.
func TestSocketInNamespaces(t *testing.T) {
	lab := pairLab(t, "afp", nil)
	tx := openSocket(t, lab, "a", Config{})
	rx := openSocket(t, lab, "b", Config{Filter: &FilterSpec{MAC: macB, Local: []netip.Addr{other4, other6}}, FanoutGroup: 7})
	// A Read that never returns fails the test instead of hanging it.
	watchdog := time.AfterFunc(20*time.Second, func() { rx.Close() })
	defer watchdog.Stop()

	arp := make([]byte, 64)
	arp = arp[:packet.PutARP(arp, packet.ARPRequest, macA, netip.MustParseAddr("198.18.0.2"), packet.MAC{}, vip4)]
	sent := [][]byte{ipFrame(other4, 1), ipFrame(other6, 2), ipFrame(vip4, 3), arp, ipFrame(vip6, 4)}
	want := [][]byte{sent[2], sent[3], sent[4]}
	for _, f := range sent {
		if err := tx.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 2048)
	for len(want) > 0 {
		n, err := rx.Read(buf)
		if err != nil {
			t.Fatalf("read, still waiting for %d frames: %v", len(want), err)
		}
		got := buf[:n]
		if bytes.Equal(got, sent[0]) || bytes.Equal(got, sent[1]) {
			t.Fatalf("the filter let through a frame for the host's own address: %x", got)
		}
		if packet.Ethernet(got).Src() != macA {
			continue // the kernel's own frames (router solicitations, DAD) pass as ND
		}
		if !bytes.Equal(got, want[0]) {
			t.Fatalf("read %x, want %x", got, want[0])
		}
		want = want[1:]
	}

	if err := rx.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := rx.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v, want net.ErrClosed", err)
	}
	if err := rx.Write(arp); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v, want net.ErrClosed", err)
	}
}

// TestFanoutKeepsFlowsTogether: two sockets in one fanout group split the
// flows between them, and every packet of a flow reaches the same socket.
func TestFanoutKeepsFlowsTogether(t *testing.T) {
	lab := pairLab(t, "afpf", nil)
	tx := openSocket(t, lab, "a", Config{})
	rx := make([]*Socket, 2)
	for i := range rx {
		rx[i] = openSocket(t, lab, "b", Config{Filter: &FilterSpec{MAC: macB}, FanoutGroup: 9})
	}
	const flows, perFlow = 64, 3
	got := make(chan labtest.Arrival, flows*perFlow)
	for i, s := range rx {
		go func() {
			buf := make([]byte, 2048)
			for {
				n, err := s.Read(buf)
				if err != nil {
					return
				}
				if f := buf[:n]; n == 14+20+8+1 && packet.Ethernet(f).Src() == macA {
					got <- labtest.Arrival{Flow: int(f[14+20+1]), Socket: i} // the flow number is the low byte of the source port
				}
			}
		}()
	}
	for range perFlow {
		for flow := range flows {
			f := ipFrame(vip4, 0)
			f[14+20+0], f[14+20+1] = 0x40, byte(flow)
			if err := tx.Write(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	labtest.FlowsTogether(t, got, flows*perFlow, len(rx))
}

// TestCloseUnblocksRead: Close while a Read waits on an idle ring makes the
// Read return net.ErrClosed rather than touch an unmapped ring.
func TestCloseUnblocksRead(t *testing.T) {
	lab := pairLab(t, "afpc", nil)
	s := openSocket(t, lab, "b", Config{Filter: &FilterSpec{MAC: macB}})
	done := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 2048))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the Read reach its poll; correctness does not depend on it
	s.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read returned %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read did not return after Close")
	}
}

// TestBatchNoAllocs: sending a batch with sendmmsg and reading it back
// from the ring allocate nothing.
func TestBatchNoAllocs(t *testing.T) {
	lab := pairLab(t, "afpa", nil)
	tx := openSocket(t, lab, "a", Config{})
	rx := openSocket(t, lab, "b", Config{Filter: &FilterSpec{MAC: macB}})
	frames := [][]byte{ipFrame(vip4, 1), ipFrame(vip4, 2), ipFrame(vip6, 3), ipFrame(vip4, 4)}
	bufs := make([][]byte, 8)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	sizes := make([]int, len(bufs))
	watchdog := time.AfterFunc(20*time.Second, func() { rx.Close() })
	defer watchdog.Stop()
	var failed error
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := tx.WriteBatch(frames); err != nil {
			failed = err
			return
		}
		for got := 0; got < len(frames); {
			n, err := rx.ReadBatch(bufs, sizes, 0)
			if err != nil {
				failed = err
				return
			}
			got += n
		}
	})
	if failed != nil {
		t.Fatal(failed)
	}
	if allocs != 0 {
		t.Errorf("a batch of %d frames out and back: %v allocations, want 0", len(frames), allocs)
	}
}

// TestPortWriteNoAllocs: the transmit path of a Port — route lookup,
// neighbour lookup, partial checksum refresh, Ethernet header, sendmmsg —
// allocates nothing.
func TestPortWriteNoAllocs(t *testing.T) {
	lab := pairLab(t, "afpw", nil)
	tx := openSocket(t, lab, "a", Config{VNetHdr: true})
	l := &Link{neigh: NewNeighbors(), icmp: rate.NewLimiter(icmpPerSecond, icmpBurst)}
	l.ifs = []*linkIface{{name: "a", mac: macA, socks: []*Socket{tx}, data: []dataSocket{tx}}}
	l.state.Store(&linkState{owned: map[netip.Addr]bool{}, routes: []route{
		{dst: netip.MustParsePrefix("198.18.0.0/15"), iface: 0},
		{dst: netip.MustParsePrefix("2001:db8::/32"), iface: 0},
	}})
	l.neigh.Learn(vip4, macB)
	l.neigh.Learn(vip6, macB)
	p := &Port{link: l, sock: tx}
	bufs := make([][]byte, 2)
	for i, dst := range []netip.Addr{vip4, vip6} {
		f := ipFrame(dst, byte(i))
		bufs[i] = append(make([]byte, packet.VNetHdrSize), f...)
		bufs[i][0] = packet.VNetNeedsCsum // a partial checksum, refreshed on the way out
		binary.NativeEndian.PutUint16(bufs[i][6:], uint16(packet.EthernetMinimumSize+map[bool]int{true: 20, false: 40}[dst.Is4()]))
		binary.NativeEndian.PutUint16(bufs[i][8:], 6)
	}
	var failed error
	allocs := testing.AllocsPerRun(100, func() {
		if n, err := p.Write(bufs, portHeadroom); err != nil || n != len(bufs) {
			failed = fmt.Errorf("Write = %d, %v", n, err)
		}
	})
	if failed != nil {
		t.Fatal(failed)
	}
	if allocs != 0 {
		t.Errorf("Port.Write of %d packets: %v allocations, want 0", len(bufs), allocs)
	}
	if got := l.Stats().NoRoute.Load() + l.Stats().Unresolved.Load(); got != 0 {
		t.Errorf("%d packets dropped on the way out", got)
	}
}
