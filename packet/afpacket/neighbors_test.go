package afpacket

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vsgate/vsgate/packet"
)

func TestNeighborsLearn(t *testing.T) {
	n := NewNeighbors()
	peer4, peer6 := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("2001:db8::2")
	if _, ok := n.Lookup(peer4); ok {
		t.Fatal("empty table knows a neighbour")
	}
	n.Learn(netip.AddrFrom16(peer4.As16()), macA) // IPv4-mapped, as Parsed holds it
	if m, ok := n.Lookup(peer4); !ok || m != macA {
		t.Errorf("Lookup(%v) = %v, %v after learning it mapped", peer4, m, ok)
	}
	n.Learn(peer4, macB)
	if m, _ := n.Lookup(peer4); m != macB {
		t.Errorf("a changed MAC was not learned: %v", m)
	}
	for name, learn := range map[string]func(){
		"multicast MAC":       func() { n.Learn(peer6, packet.MAC{0x33, 0x33, 0, 0, 0, 1}) },
		"zero MAC":            func() { n.Learn(peer6, packet.MAC{}) },
		"unspecified address": func() { n.Learn(netip.IPv6Unspecified(), macA) },
	} {
		learn()
		if _, ok := n.Lookup(peer6); ok {
			t.Errorf("%s learned", name)
		}
		if _, ok := n.Lookup(netip.IPv6Unspecified()); ok {
			t.Errorf("%s learned for ::", name)
		}
	}

	var c Control
	learn := func(f []byte) {
		if !ParseControl(f, &c) {
			t.Fatalf("not a control frame: %x", f)
		}
		n.LearnFrom(&c)
	}
	f := make([]byte, packet.NDFrameSize)
	learn(f[:packet.PutARP(f, packet.ARPReply, macA, netip.MustParseAddr("198.18.0.3"), macB, vip4)])
	packet.PutNeighborSolicit(f, macA, netip.MustParseAddr("2001:db8::3"), vip6)
	learn(f)
	packet.PutNeighborAdvert(f, macB, macA, netip.MustParseAddr("2001:db8::4"), vip6, netip.MustParseAddr("2001:db8::4"), true)
	learn(f)
	for addr, want := range map[string]packet.MAC{"198.18.0.3": macA, "2001:db8::3": macA, "2001:db8::4": macB} {
		if m, ok := n.Lookup(netip.MustParseAddr(addr)); !ok || m != want {
			t.Errorf("from frames: %s at %v (%v), want %v", addr, m, ok, want)
		}
	}

	if allocs := testing.AllocsPerRun(1000, func() { n.Lookup(peer4) }); allocs != 0 {
		t.Errorf("Lookup allocates %v times", allocs)
	}
}

// TestNeighborsFromLinux: a Socket's Request gets a real Linux host to
// answer with its MAC (ARP and ND), which LearnFrom records; LoadKernel
// copies an entry from the kernel's table.
//
//	+------------------------+   <prefix>a   <prefix>b   +---------------------+
//	| host "a" (Linux)       +---------------------------+ host "b": Socket,   |
//	| 198.18.0.2/24          |                           | no addresses;       |
//	| 2001:db8::2/64         |                           | asks as .10 / ::10  |
//	+------------------------+                           +---------------------+
func TestNeighborsFromLinux(t *testing.T) {
	peer4, peer6 := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("2001:db8::2")
	lab := pairLab(t, "afpn", []netip.Prefix{netip.PrefixFrom(peer4, 24), netip.PrefixFrom(peer6, 64)})
	a, b := lab.MustHost("a"), lab.MustHost("b")
	aLink, err := a.Netlink().LinkByName(lab.IfName("a"))
	if err != nil {
		t.Fatal(err)
	}
	bLink, err := b.Netlink().LinkByName(lab.IfName("b"))
	if err != nil {
		t.Fatal(err)
	}
	aMAC, bMAC := packet.MAC(aLink.Attrs().HardwareAddr), packet.MAC(bLink.Attrs().HardwareAddr)
	s := openSocket(t, lab, "b", Config{Filter: &FilterSpec{MAC: bMAC}})
	watchdog := time.AfterFunc(20*time.Second, func() { s.Close() })
	defer watchdog.Stop()

	n := NewNeighbors()
	out, buf := make([]byte, ReplySize), make([]byte, 2048)
	var ctl Control
	for _, c := range []struct{ src, peer netip.Addr }{{vip4, peer4}, {vip6, peer6}} {
		if err := s.Write(out[:Request(out, bMAC, c.src, c.peer)]); err != nil {
			t.Fatal(err)
		}
		for {
			if _, ok := n.Lookup(c.peer); ok {
				break
			}
			m, err := s.Read(buf)
			if err != nil {
				t.Fatalf("waiting for %v to answer: %v", c.peer, err)
			}
			if ParseControl(buf[:m], &ctl) {
				n.LearnFrom(&ctl)
			}
		}
		if m, _ := n.Lookup(c.peer); m != aMAC {
			t.Errorf("%v answered from %v, its interface is %v", c.peer, m, aMAC)
		}
	}

	router := netip.MustParseAddr("198.18.0.1")
	routerMAC := net.HardwareAddr{0x02, 0, 0x5e, 0x10, 0, 0x77}
	if err := b.Netlink().NeighAdd(&netlink.Neigh{LinkIndex: bLink.Attrs().Index, Family: netlink.FAMILY_V4,
		State: netlink.NUD_PERMANENT, IP: router.AsSlice(), HardwareAddr: routerMAC}); err != nil {
		t.Fatal(err)
	}
	if err := n.LoadKernel(b.Netlink(), bLink.Attrs().Index); err != nil {
		t.Fatal(err)
	}
	if m, ok := n.Lookup(router); !ok || m != packet.MAC(routerMAC) {
		t.Errorf("LoadKernel: %v at %v (%v), want %v", router, m, ok, routerMAC)
	}
}
