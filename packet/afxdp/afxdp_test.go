package afxdp

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vsgate/vsgate/internal/netlab"
	"github.com/vsgate/vsgate/internal/netlab/labtest"
	"github.com/vsgate/vsgate/packet"
)

var (
	addrA  = netip.MustParsePrefix("198.18.0.2/24")
	addrB  = netip.MustParsePrefix("198.18.0.3/24")
	addrA6 = netip.MustParsePrefix("2001:db8::2/64")
	addrB6 = netip.MustParsePrefix("2001:db8::3/64")
	vip4   = netip.MustParseAddr("198.18.0.10")
	vip6   = netip.MustParseAddr("2001:db8::10")
)

// pairLab is two hosts on a veth pair, a and b, each with an address of
// its own in both families, and queues receive and transmit queues on
// each end; vsgate's side is b.
func pairLab(t *testing.T, queues int) *netlab.Lab {
	t.Helper()
	return labtest.PairQueues(t, "afxdp", queues, []netip.Prefix{addrA, addrA6}, []netip.Prefix{addrB, addrB6})
}

// vsgateSide loads the program for b's interface, tells it b's
// addresses, opens a socket for each of queues receive queues and
// registers them (on umem; nil for a UMEM each); attach says whether the
// program is attached too. Everything closes when the test ends.
func vsgateSide(t *testing.T, lab *netlab.Lab, attach bool, queues int, umem *UMEM) (*Program, []*Socket, packet.MAC) {
	t.Helper()
	var prog *Program
	var socks []*Socket
	var mac packet.MAC
	err := lab.MustHost("b").Do(func() error {
		ifi, err := net.InterfaceByName(lab.IfName("b"))
		if err != nil {
			return err
		}
		mac = packet.MAC(ifi.HardwareAddr)
		if prog, err = NewProgram(mac, queues); err != nil {
			return err
		}
		if err := prog.SetLocal([]netip.Addr{addrB.Addr(), addrB6.Addr()}); err != nil {
			return err
		}
		for q := range queues {
			sock, err := Open(Config{Interface: lab.IfName("b"), Queue: q, UMEM: umem})
			if err != nil {
				return err
			}
			socks = append(socks, sock)
			if err := prog.Register(sock); err != nil {
				return err
			}
		}
		if attach {
			return prog.Attach(ifi.Index)
		}
		return nil
	})
	if prog != nil {
		t.Cleanup(func() { prog.Close() })
	}
	for _, sock := range socks {
		t.Cleanup(func() { sock.Close() })
	}
	if err != nil {
		t.Fatal(err)
	}
	return prog, socks, mac
}

// udpFrame is an Ethernet frame to dstMAC carrying a UDP datagram from
// src to dst with marker as its one byte of payload (checksums left 0:
// no one here checks them).
func udpFrame(dstMAC, srcMAC packet.MAC, src, dst netip.Addr, marker byte) []byte {
	b := make([]byte, 128)
	n := packet.EthernetMinimumSize
	if dst.Is4() {
		packet.PutEthernet(b, dstMAC, srcMAC, packet.EtherTypeIPv4)
		ip := b[n:]
		ip[0], ip[3], ip[8], ip[9] = 0x45, 20+8+1, 64, packet.ProtoUDP
		copy(ip[12:16], src.AsSlice())
		copy(ip[16:20], dst.AsSlice())
		ip[20+5], ip[20+8] = 9, marker
		return b[:n+20+8+1]
	}
	packet.PutEthernet(b, dstMAC, srcMAC, packet.EtherTypeIPv6)
	ip := b[n:]
	ip[0], ip[5], ip[6], ip[7] = 0x60, 8+1, packet.ProtoUDP, 64
	copy(ip[8:24], src.AsSlice())
	copy(ip[24:40], dst.AsSlice())
	ip[40+5], ip[40+8] = 9, marker
	return b[:n+40+8+1]
}

// tcpFrame is an Ethernet frame to dstMAC carrying a TCP SYN from src to
// dst, with opts bytes of IPv4 options (a multiple of 4; IPv4 only).
func tcpFrame(dstMAC, srcMAC packet.MAC, src netip.Addr, dst netip.AddrPort, opts int) []byte {
	b := make([]byte, 128)
	n := packet.EthernetMinimumSize
	var l4 []byte
	if dst.Addr().Is4() {
		packet.PutEthernet(b, dstMAC, srcMAC, packet.EtherTypeIPv4)
		ip := b[n:]
		hl := 20 + opts
		ip[0], ip[3], ip[8], ip[9] = 0x40|byte(hl/4), byte(hl+20), 64, packet.ProtoTCP
		copy(ip[12:16], src.AsSlice())
		copy(ip[16:20], dst.Addr().AsSlice())
		l4 = ip[hl : hl+20]
		b = b[:n+hl+20]
	} else {
		packet.PutEthernet(b, dstMAC, srcMAC, packet.EtherTypeIPv6)
		ip := b[n:]
		ip[0], ip[5], ip[6], ip[7] = 0x60, 20, packet.ProtoTCP, 64
		copy(ip[8:24], src.AsSlice())
		copy(ip[24:40], dst.Addr().AsSlice())
		l4 = ip[40:60]
		b = b[:n+60]
	}
	l4[0], l4[1] = 0x9c, 0x40 // port 40000
	l4[2], l4[3] = byte(dst.Port()>>8), byte(dst.Port())
	l4[12], l4[13] = 5<<4, packet.TCPFlagSYN
	return b
}

// vip6x4 is an IPv4 address with no L7 service.
var vip6x4 = netip.MustParseAddr("198.18.0.11")

// v4Frag sets an IPv4 frame's flags and fragment offset field.
func v4Frag(frame []byte, field uint16) []byte {
	ip := frame[packet.EthernetMinimumSize:]
	ip[6], ip[7] = byte(field>>8), byte(field)
	return frame
}

// ext is an IPv6 extension header for v6Ext: its kind and its bytes
// (the first, its next header, is set as the chain is built).
type ext struct {
	kind byte
	b    []byte
}

var hopByHop = ext{0, []byte{0, 0, 1, 4, 0, 0, 0, 0}} // a PadN option

func destOpts(units int) ext {
	h := make([]byte, 8*(units+1))
	h[1], h[2], h[3] = byte(units), 1, byte(len(h)-4)
	return ext{60, h}
}

func fragHeader(offset uint16, more bool) ext {
	f := offset &^ 7
	if more {
		f |= 1
	}
	return ext{44, []byte{0, 0, byte(f >> 8), byte(f), 0, 0, 0, 7}}
}

// chain is n destination options headers.
func chain(n int) []ext {
	var hs []ext
	for range n {
		hs = append(hs, destOpts(0))
	}
	return hs
}

// v6Ext puts extension headers between an IPv6 frame's fixed header and
// its upper layer, in order, chaining the next headers and fixing the
// payload length.
func v6Ext(frame []byte, hs ...ext) []byte {
	const fixed = packet.EthernetMinimumSize + 40
	out := append([]byte(nil), frame[:fixed]...)
	upper := frame[packet.EthernetMinimumSize+6]
	prev := packet.EthernetMinimumSize + 6
	for _, h := range hs {
		out[prev] = h.kind
		prev = len(out)
		out = append(out, h.b...)
	}
	out[prev] = upper
	out = append(out, frame[fixed:]...)
	pl := len(out) - fixed
	out[packet.EthernetMinimumSize+4], out[packet.EthernetMinimumSize+5] = byte(pl>>8), byte(pl)
	return out
}

// TestProgramVerdicts runs the XDP program in the kernel (its test run)
// on the frames vsgate handles and on the host's: the first are
// redirected to the socket, the rest passed; and every redirected frame,
// one field changed to make it the host's, is passed.
func TestProgramVerdicts(t *testing.T) {
	lab := pairLab(t, 1)
	prog, _, mac := vsgateSide(t, lab, false, 1, nil)
	peer := packet.MAC{0x02, 0, 0x5e, 0x10, 0, 1}
	broadcast := packet.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	a4, a6 := addrA.Addr(), addrA6.Addr()
	arp := make([]byte, 64)
	arp = arp[:packet.PutARP(arp, packet.ARPRequest, peer, a4, packet.MAC{}, vip4)]
	ns := make([]byte, packet.NDFrameSize)
	ns = ns[:packet.PutNeighborSolicit(ns, peer, a6, vip6)]
	na := make([]byte, packet.NDFrameSize)
	na = na[:packet.PutNeighborAdvert(na, peer, mac, a6, vip6, a6, true)]
	lldp := append(udpFrame(mac, peer, a4, vip4, 0)[:12:12], 0x88, 0xcc, 0, 0)
	routed4 := udpFrame(mac, peer, netip.MustParseAddr("198.18.2.11"), netip.MustParseAddr("198.19.7.7"), 1)
	for _, c := range []struct {
		name  string
		frame []byte
		want  uint32
	}{
		{"IPv4 to a VIP", udpFrame(mac, peer, a4, vip4, 1), xdpRedirect},
		{"IPv6 to a VIP", udpFrame(mac, peer, a6, vip6, 1), xdpRedirect},
		{"IPv4 routed through (a real server's reply)", routed4, xdpRedirect},
		{"IPv4 to the kernel's address", udpFrame(mac, peer, a4, addrB.Addr(), 1), xdpPass},
		{"IPv6 to the kernel's address", udpFrame(mac, peer, a6, addrB6.Addr(), 1), xdpPass},
		{"IPv4 to another MAC", udpFrame(peer, peer, a4, vip4, 1), xdpPass},
		{"IPv4 broadcast", udpFrame(broadcast, peer, a4, vip4, 1), xdpPass},
		{"ARP", arp, xdpPass},
		{"neighbour solicitation", ns, xdpPass},
		{"neighbour advertisement", na, xdpPass},
		{"LLDP", lldp, xdpPass},
		{"IPv4 cut short", udpFrame(mac, peer, a4, vip4, 1)[:packet.EthernetMinimumSize+19], xdpPass},
		{"IPv6 cut short", udpFrame(mac, peer, a6, vip6, 1)[:packet.EthernetMinimumSize+39], xdpPass},
	} {
		got, err := prog.Run(c.frame)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got != c.want {
			t.Errorf("%s: verdict %d, want %d", c.name, got, c.want)
		}
		if c.want != xdpRedirect {
			continue
		}
		// Each field the program reads, changed, hands the frame back
		// to the kernel.
		v6 := c.frame[12] == 0x86
		dstOff := packet.EthernetMinimumSize + 16
		local := addrB.Addr().AsSlice()
		if v6 {
			dstOff, local = packet.EthernetMinimumSize+24, addrB6.Addr().AsSlice()
		}
		for _, m := range []struct {
			what   string
			mutate func(f []byte)
		}{
			{"first MAC byte", func(f []byte) { f[0] ^= 0x80 }},
			{"last MAC byte", func(f []byte) { f[5] ^= 1 }},
			{"ethertype", func(f []byte) { f[13] ^= 1 }},
			{"destination a kernel address", func(f []byte) { copy(f[dstOff:], local) }},
		} {
			f := append([]byte(nil), c.frame...)
			m.mutate(f)
			if got, err := prog.Run(f); err != nil || got != xdpPass {
				t.Errorf("%s with its %s changed: verdict %d (%v), want %d", c.name, m.what, got, err, xdpPass)
			}
		}
	}
	// TCP to an L7 service's address and port is the kernel's (its
	// listeners are vsgate's); other ports, UDP, are redirected.
	if err := prog.SetL7([]netip.AddrPort{netip.AddrPortFrom(vip4, 80), netip.AddrPortFrom(vip6, 443)}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		frame []byte
		want  uint32
	}{
		{"TCP to an L7 service", tcpFrame(mac, peer, a4, netip.AddrPortFrom(vip4, 80), 0), xdpPass},
		{"TCP with IPv4 options to an L7 service", tcpFrame(mac, peer, a4, netip.AddrPortFrom(vip4, 80), 8), xdpPass},
		{"TCP to an L7 service's address, another port", tcpFrame(mac, peer, a4, netip.AddrPortFrom(vip4, 81), 0), xdpRedirect},
		{"UDP to an L7 service's address", udpFrame(mac, peer, a4, vip4, 1), xdpRedirect},
		{"TCP over IPv6 to an L7 service", tcpFrame(mac, peer, a6, netip.AddrPortFrom(vip6, 443), 0), xdpPass},
		{"TCP over IPv6 to another port", tcpFrame(mac, peer, a6, netip.AddrPortFrom(vip6, 80), 0), xdpRedirect},
		{"TCP to an L7 service, cut short", tcpFrame(mac, peer, a4, netip.AddrPortFrom(vip4, 80), 0)[:packet.EthernetMinimumSize+22], xdpRedirect},
		{"TCP with DF to an L7 service's address, another port", v4Frag(tcpFrame(mac, peer, a4, netip.AddrPortFrom(vip4, 81), 0), 0x4000), xdpRedirect},
		{"a first TCP fragment to an L7 service's address, another port", v4Frag(tcpFrame(mac, peer, a4, netip.AddrPortFrom(vip4, 81), 0), 0x2000), xdpPass},
		{"a later TCP fragment to an L7 service's address", v4Frag(tcpFrame(mac, peer, a4, netip.AddrPortFrom(vip4, 81), 0), 3), xdpPass},
		{"a later TCP fragment to another address", v4Frag(tcpFrame(mac, peer, a4, netip.AddrPortFrom(vip6x4, 80), 0), 3), xdpRedirect},
		{"TCP over IPv6 after hop-by-hop and destination options, to an L7 service", v6Ext(tcpFrame(mac, peer, a6, netip.AddrPortFrom(vip6, 443), 0), hopByHop, destOpts(2)), xdpPass},
		{"the same to another port", v6Ext(tcpFrame(mac, peer, a6, netip.AddrPortFrom(vip6, 80), 0), hopByHop, destOpts(2)), xdpRedirect},
		{"TCP over IPv6 after an atomic fragment header, to an L7 service", v6Ext(tcpFrame(mac, peer, a6, netip.AddrPortFrom(vip6, 443), 0), fragHeader(0, false)), xdpPass},
		{"a first IPv6 TCP fragment to an L7 service's address, another port", v6Ext(tcpFrame(mac, peer, a6, netip.AddrPortFrom(vip6, 80), 0), fragHeader(0, true)), xdpPass},
		{"a later IPv6 TCP fragment to an L7 service's address", v6Ext(tcpFrame(mac, peer, a6, netip.AddrPortFrom(vip6, 80), 0), destOpts(0), fragHeader(16, false)), xdpPass},
		{"an IPv6 UDP fragment to an L7 service's address", v6Ext(udpFrame(mac, peer, a6, vip6, 1), fragHeader(16, true)), xdpRedirect},
		{"TCP over IPv6 to an L7 service after the longest chain", v6Ext(tcpFrame(mac, peer, a6, netip.AddrPortFrom(vip6, 443), 0), chain(packet.MaxIPv6ExtHeaders)...), xdpPass},
		{"TCP over IPv6 to an L7 service after a chain too long", v6Ext(tcpFrame(mac, peer, a6, netip.AddrPortFrom(vip6, 443), 0), chain(packet.MaxIPv6ExtHeaders+1)...), xdpRedirect},
		{"TCP over IPv6 to an L7 service, an extension header cut short", v6Ext(tcpFrame(mac, peer, a6, netip.AddrPortFrom(vip6, 443), 0), destOpts(2))[:packet.EthernetMinimumSize+40+20], xdpRedirect},
	} {
		if got, err := prog.Run(c.frame); err != nil || got != c.want {
			t.Errorf("%s: verdict %d (%v), want %d", c.name, got, err, c.want)
		}
	}
	if err := prog.SetL7(nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := prog.Run(tcpFrame(mac, peer, a4, netip.AddrPortFrom(vip4, 80), 0)); got != xdpRedirect {
		t.Errorf("TCP to a removed L7 service: verdict %d, want redirect", got)
	}

	// The kernel's addresses change while the program runs.
	if err := prog.SetLocal([]netip.Addr{vip4}); err != nil {
		t.Fatal(err)
	}
	if got, _ := prog.Run(udpFrame(mac, peer, a4, vip4, 1)); got != xdpPass {
		t.Errorf("to an address made the kernel's: verdict %d, want pass", got)
	}
	if got, _ := prog.Run(udpFrame(mac, peer, a4, addrB.Addr(), 1)); got != xdpRedirect {
		t.Errorf("to an address no longer the kernel's: verdict %d, want redirect", got)
	}
}

// TestQueuesKeepFlowsTogether: on a veth of two queues, with a socket
// per queue, the program hands each frame to its receive queue's socket:
// every frame of a flow reaches the same socket (a flow's frames leave a
// by one transmit queue, chosen by their hash, and arrive on that
// queue), and the flows spread over both.
func TestQueuesKeepFlowsTogether(t *testing.T) {
	const queues, flows, perFlow = 2, 64, 3
	lab := pairLab(t, queues)
	_, socks, mac := vsgateSide(t, lab, true, queues, nil)
	tx := openRaw(t, lab, "a")
	ifa, err := lab.MustHost("a").Netlink().LinkByName(lab.IfName("a"))
	if err != nil {
		t.Fatal(err)
	}
	peer := packet.MAC(ifa.Attrs().HardwareAddr)
	got := make(chan labtest.Arrival, flows*perFlow)
	for i, sock := range socks {
		go func() {
			bufs := make([][]byte, MaxBatch)
			for j := range bufs {
				bufs[j] = make([]byte, 2048)
			}
			sizes := make([]int, MaxBatch)
			for {
				n, err := sock.ReadBatch(bufs, sizes, 0)
				if err != nil {
					return
				}
				for j := range n {
					f := bufs[j][:sizes[j]]
					got <- labtest.Arrival{Flow: int(f[packet.EthernetMinimumSize+20+1]), Socket: i} // the flow: the source port's low byte
				}
			}
		}()
	}
	for range perFlow {
		for flow := range flows {
			f := udpFrame(mac, peer, addrA.Addr(), vip4, 1)
			f[packet.EthernetMinimumSize+20], f[packet.EthernetMinimumSize+20+1] = 0x40, byte(flow)
			tx.send(t, f)
		}
	}
	labtest.FlowsTogether(t, got, flows*perFlow, queues)
}

// TestSendInPlace: two sockets on one UMEM (b's two queues), each
// sending back to a what it reads out of the other: every frame comes
// back, none was copied, and both sockets carried frames. Three times as
// many frames as the UMEM has chunks go through, so every chunk sent
// found its way back to a fill ring (a chunk lost on the way would leave
// the kernel nothing to receive into, and a round would never finish).
func TestSendInPlace(t *testing.T) {
	const queues, round = 2, 128
	lab := pairLab(t, queues)
	umem := NewUMEM(queues)
	_, socks, mac := vsgateSide(t, lab, true, queues, umem)
	tx := openRaw(t, lab, "a")
	ifa, err := lab.MustHost("a").Netlink().LinkByName(lab.IfName("a"))
	if err != nil {
		t.Fatal(err)
	}
	peer := packet.MAC(ifa.Attrs().HardwareAddr)
	var read [queues]atomic.Uint64
	for i, sock := range socks {
		other := socks[len(socks)-1-i]
		go func() {
			bufs, sizes := make([][]byte, MaxBatch), make([]int, MaxBatch)
			out := make([][]byte, 0, MaxBatch)
			for {
				n, err := sock.ReadBatch(bufs, sizes, 0)
				if err != nil {
					return
				}
				read[i].Add(uint64(n))
				out = out[:0]
				for j := range n {
					f := bufs[j][:sizes[j]]
					packet.PutEthernet(f, peer, mac, packet.Ethernet(f).Type())
					out = append(out, f)
				}
				if _, err := other.WriteBatch(out); err != nil {
					return
				}
			}
		}()
	}
	buf := make([]byte, 2048)
	frames := 3 * umem.Chunks()
	for sent := 0; sent < frames; sent += round {
		for k := range round {
			f := udpFrame(mac, peer, addrA.Addr(), vip4, byte(k))
			f[packet.EthernetMinimumSize+20+1] = byte(k % 16) // 16 flows: both queues get some
			tx.send(t, f)
		}
		var back [round]bool
		for seen := 0; seen < round; {
			n := tx.recv(t, buf)
			f := buf[:n]
			if n < packet.EthernetMinimumSize+20+8+1 || packet.Ethernet(f).Dst() != peer {
				continue // what a sent, or the host's own
			}
			if k := f[packet.EthernetMinimumSize+20+8]; !back[k] {
				back[k] = true
				seen++
			}
		}
	}
	for i, sock := range socks {
		if read[i].Load() == 0 {
			t.Errorf("socket %d read nothing: the test did not send across the UMEM both ways", i)
		}
		if c := sock.Copied.Load(); c != 0 {
			t.Errorf("socket %d copied %d frames to send them, want 0", i, c)
		}
		if tr, rf := sock.Truncated.Load(), sock.Refused.Load(); tr+rf != 0 {
			t.Errorf("socket %d: %d truncated, %d refused", i, tr, rf)
		}
	}
}

// TestSocketOnVeth: with the program attached to b's end, frames a sends
// to vsgate's addresses reach the socket, in order and whole, and the
// kernel never sees them; the host's own traffic (ping, with the ARP it
// needs) is untouched; frames the socket sends reach a; Close unblocks a
// waiting ReadBatch.
func TestSocketOnVeth(t *testing.T) {
	lab := pairLab(t, 1)
	_, socks, mac := vsgateSide(t, lab, true, 1, nil)
	sock := socks[0]
	// Bound without a mode, the kernel chose: a veth has no zero-copy
	// AF_XDP of its own, so copy mode.
	if sock.ZeroCopy() {
		t.Error("the socket on a veth says it is bound in zero-copy mode")
	}
	tx := openRaw(t, lab, "a")
	ifa, err := lab.MustHost("a").Netlink().LinkByName(lab.IfName("a"))
	if err != nil {
		t.Fatal(err)
	}
	peer := packet.MAC(ifa.Attrs().HardwareAddr)

	var frames [][]byte
	for i := range 20 {
		if i%2 == 0 {
			frames = append(frames, udpFrame(mac, peer, addrA.Addr(), vip4, byte(i)))
		} else {
			frames = append(frames, udpFrame(mac, peer, addrA6.Addr(), vip6, byte(i)))
		}
	}
	kernelBefore := ipReceives(t, lab)
	for _, f := range frames {
		tx.send(t, f)
	}
	bufs := make([][]byte, MaxBatch)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	sizes := make([]int, MaxBatch)
	var got [][]byte
	for len(got) < len(frames) {
		n, err := sock.ReadBatch(bufs, sizes, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			got = append(got, append([]byte(nil), bufs[i][:sizes[i]]...))
		}
	}
	for i, f := range frames {
		if string(got[i]) != string(f) {
			t.Fatalf("frame %d arrived as % x, want % x", i, got[i], f)
		}
	}

	if after := ipReceives(t, lab); after != kernelBefore {
		t.Errorf("b's kernel received IP packets meanwhile: %v, then %v", kernelBefore, after)
	}

	// The host's own traffic stays the kernel's: a connects to b's
	// addresses (ARP and neighbour discovery first) and b's kernel
	// answers.
	for _, addr := range []netip.Addr{addrB.Addr(), addrB6.Addr()} {
		ln, err := lab.MustHost("b").Listen("tcp", netip.AddrPortFrom(addr, 0).String())
		if err != nil {
			t.Fatal(err)
		}
		accepted := make(chan error, 1)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				_, err = c.Write([]byte("host"))
				c.Close()
			}
			accepted <- err
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := lab.MustHost("a").DialContext(ctx, "tcp", ln.Addr().String())
		cancel()
		if err != nil {
			ln.Close()
			t.Fatalf("a to b's own %v through the program: %v", addr, err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		c.Close()
		ln.Close()
		if err != nil || string(got) != "host" || <-accepted != nil {
			t.Fatalf("a to b's own %v: read %q, %v", addr, got, err)
		}
	}

	if after := ipReceives(t, lab); after[0] == kernelBefore[0] || after[1] == kernelBefore[1] {
		t.Errorf("b's kernel counters did not move with its own traffic: %v, then %v", kernelBefore, after)
	}

	// The socket sends: a reads what it sent.
	back := udpFrame(peer, mac, vip4, addrA.Addr(), 0xee)
	if n, err := sock.WriteBatch([][]byte{back}); n != 1 || err != nil {
		t.Fatalf("socket sent %d: %v", n, err)
	}
	buf := make([]byte, 2048)
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := tx.recv(t, buf)
		if string(buf[:n]) == string(back) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a never received the socket's frame")
		}
	}
	// Sending and receiving a batch allocate nothing.
	batch := [][]byte{back}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := sock.WriteBatch(batch); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("WriteBatch: %v allocations, want 0", n)
	}
	for range 11 { // AllocsPerRun runs once more than it counts
		tx.send(t, frames[0])
	}
	if n := testing.AllocsPerRun(10, func() {
		if _, err := sock.ReadBatch(bufs[:1], sizes, 0); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("ReadBatch: %v allocations, want 0", n)
	}
	if st, err := sock.Stats(); err != nil || st.RxDropped != 0 || st.InvalidDescs != 0 {
		t.Errorf("socket statistics %+v, %v: want no drops", st, err)
	}

	done := make(chan error, 1)
	go func() {
		_, err := sock.ReadBatch(bufs, sizes, 0)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	sock.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("ReadBatch after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock ReadBatch")
	}
}

// ipReceives is what b's kernel counts as unicast IP packets received:
// IPv4's InReceives, and IPv6's Ip6InReceives less Ip6InMcastPkts (the
// kernel's own MLD reports, looped back, come and go on their own; what
// the test sends is unicast), read from its namespace.
func ipReceives(t *testing.T, lab *netlab.Lab) [2]int {
	t.Helper()
	var out [2]int
	found := 0
	err := lab.MustHost("b").Do(func() error {
		for i, f := range []string{"/proc/thread-self/net/snmp", "/proc/thread-self/net/snmp6"} {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			lines := strings.Split(string(b), "\n")
			for j, l := range lines {
				// "Ip: Forwarding DefaultTTL InReceives ...", then the values.
				if i == 0 && strings.HasPrefix(l, "Ip: Forwarding") && j+1 < len(lines) {
					out[0], _ = strconv.Atoi(strings.Fields(lines[j+1])[3])
					found++
				}
				if f := strings.Fields(l); i == 1 && len(f) == 2 && (f[0] == "Ip6InReceives" || f[0] == "Ip6InMcastPkts") {
					v, _ := strconv.Atoi(f[1])
					if f[0] == "Ip6InMcastPkts" {
						v = -v
					}
					out[1] += v
					found++
				}
			}
		}
		return nil
	})
	if err != nil || found != 3 {
		t.Fatalf("reading b's IP counters: %v (found %d of 3)", err, found)
	}
	return out
}

// rawSocket is a plain AF_PACKET socket on one end of the lab's pair
// (this package's own test tool: package afpacket builds on this one).
type rawSocket struct {
	fd, ifindex int
}

// openRaw opens a rawSocket on host's end, in its namespace, with a
// receive timeout of 5 s; it closes when the test ends.
func openRaw(t *testing.T, lab *netlab.Lab, host string) *rawSocket {
	t.Helper()
	r := &rawSocket{}
	err := lab.MustHost(host).Do(func() error {
		ifi, err := net.InterfaceByName(lab.IfName(host))
		if err != nil {
			return err
		}
		r.ifindex = ifi.Index
		if r.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL))); err != nil {
			return err
		}
		if err := unix.Bind(r.fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			return err
		}
		tv := unix.NsecToTimeval((5 * time.Second).Nanoseconds())
		return unix.SetsockoptTimeval(r.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if r.fd > 0 {
		t.Cleanup(func() { unix.Close(r.fd) })
	}
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (r *rawSocket) send(t *testing.T, frame []byte) {
	t.Helper()
	if err := unix.Sendto(r.fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: r.ifindex}); err != nil {
		t.Fatal(err)
	}
}

// recv reads one frame (sent or received on the interface).
func (r *rawSocket) recv(t *testing.T, buf []byte) int {
	t.Helper()
	n, _, err := unix.Recvfrom(r.fd, buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
