package tun

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vsgate/vsgate/packet"
)

func TestOpenRejects(t *testing.T) {
	for _, c := range []struct {
		name   string
		queues int
		want   string
	}{
		{"vsg00000tun0toolong", 1, "name longer"},
		{"vsgtun0", 0, "queues"},
		{"vsgtun0", MaxQueues + 1, "queues"},
	} {
		devs, err := Open(c.name, c.queues)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%q, %d) = %v, %v; want error with %q", c.name, c.queues, devs, err, c.want)
		}
	}
}

// TestRoundTrip sends UDP from a socket to an address routed into a
// 2-queue TUN, reads it on whichever queue the kernel picked, checks it
// with packet.Parse, writes a reply built with gopacket and receives it on
// the socket.
func TestRoundTrip(t *testing.T) {
	lt := openLabTUN(t, 2, true)
	if len(lt.devs) != 2 {
		t.Fatalf("Open gave %d devices, want 2", len(lt.devs))
	}
	for _, d := range lt.devs {
		mtu, err := d.MTU()
		if err != nil || mtu != 1500 {
			t.Errorf("%s MTU() = %d, %v; want 1500", d.Name(), mtu, err)
		}
	}
	in := collect(lt.devs)
	for _, c := range []struct {
		name       string
		local, far netip.Addr
	}{
		{"ipv4", tunAddr4, far4},
		{"ipv6", tunAddr6, far6},
	} {
		t.Run(c.name, func(t *testing.T) {
			pc, err := lt.host.ListenPacket("udp", netip.AddrPortFrom(c.local, 0).String())
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			local := pc.LocalAddr().(*net.UDPAddr).AddrPort()
			local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
			far := netip.AddrPortFrom(c.far, 4000)
			ping := []byte("ping " + c.name)
			if _, err := pc.WriteTo(ping, net.UDPAddrFromAddrPort(far)); err != nil {
				t.Fatal(err)
			}

			var p packet.Parsed
			deadline := time.After(5 * time.Second)
			for found := false; !found; {
				select {
				case b := <-in:
					if packet.Parse(b, &p) != packet.ReasonNone || !p.HasPorts() || p.DstPort != far.Port() {
						continue // IPv6 router solicitations, MLD reports
					}
					found = true
					if src := netip.AddrFrom16(p.Src).Unmap(); src != local.Addr() || p.SrcPort != local.Port() {
						t.Errorf("source %v:%d, want %v", src, p.SrcPort, local)
					}
					if dst := netip.AddrFrom16(p.Dst).Unmap(); dst != far.Addr() {
						t.Errorf("destination %v, want %v", dst, far.Addr())
					}
					if got := b[p.PayloadOff:p.End]; !bytes.Equal(got, ping) {
						t.Errorf("payload %q, want %q", got, ping)
					}
				case <-deadline:
					t.Fatal("no packet from the socket came out of the TUN")
				}
			}

			const headroom = 16
			pong := []byte("pong " + c.name)
			reply := udpPacket(t, far, local, pong)
			buf := append(make([]byte, headroom), reply...)
			if n, err := lt.devs[1].Write([][]byte{buf}, headroom); n != 1 || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
			pc.SetReadDeadline(time.Now().Add(5 * time.Second))
			got := make([]byte, 100)
			n, from, err := pc.ReadFrom(got)
			if err != nil {
				t.Fatal(err)
			}
			if fromAP := from.(*net.UDPAddr).AddrPort(); fromAP.Addr().Unmap() != far.Addr() || fromAP.Port() != far.Port() {
				t.Errorf("reply from %v, want %v", fromAP, far)
			}
			if !bytes.Equal(got[:n], pong) {
				t.Errorf("reply %q, want %q", got[:n], pong)
			}
		})
	}
}

// TestReadBatches checks that one Read returns every packet that is
// already queued, and no more than len(bufs).
func TestReadBatches(t *testing.T) {
	lt := openLabTUN(t, 1, false)
	d := lt.devs[0]
	pc, err := lt.host.ListenPacket("udp", netip.AddrPortFrom(tunAddr4, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	const sent = 20
	far := net.UDPAddrFromAddrPort(netip.AddrPortFrom(far4, 4000))
	for i := range sent {
		if _, err := pc.WriteTo([]byte{byte(i)}, far); err != nil {
			t.Fatal(err)
		}
	}
	// The socket hands each datagram to the TUN inside sendto, so all of
	// them are queued by now.
	bufs := make([][]byte, 8)
	sizes := make([]int, len(bufs))
	for i := range bufs {
		bufs[i] = make([]byte, 4+1500)
	}
	var got []int
	for total := 0; total < sent; {
		n, err := d.Read(bufs, sizes, 4)
		if n < 1 || n > len(bufs) {
			t.Fatalf("after %v: Read returned %d packets (%v), want 1..%d", got, n, err, len(bufs))
		}
		got = append(got, n)
		total += n
		for i := range n {
			var p packet.Parsed
			b := bufs[i][4 : 4+sizes[i]]
			if r := packet.Parse(b, &p); r != packet.ReasonNone || p.DstPort != 4000 {
				t.Fatalf("packet %d: %v, port %d", i, r, p.DstPort)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if got[0] != len(bufs) {
		t.Errorf("Read batches %v: the first should be full (%d)", got, len(bufs))
	}
	t.Logf("batches: %v", got)
}

// TestWritePartial checks that a packet the kernel rejects is skipped and
// reported while the rest of the batch goes out.
func TestWritePartial(t *testing.T) {
	lt := openLabTUN(t, 1, false)
	d := lt.devs[0]
	in := collect(lt.devs)
	good := udpPacket(t, netip.AddrPortFrom(netip.MustParseAddr("198.18.9.1"), 1), netip.AddrPortFrom(far4, 2), []byte("good"))
	bad := []byte{0x00, 1, 2, 3} // IP version 0: EINVAL
	n, err := d.Write([][]byte{bad, good}, 0)
	if n != 1 || err == nil || !strings.Contains(err.Error(), "packet 0 of 2") {
		t.Fatalf("Write(bad, good) = %d, %v; want 1 and an error about packet 0", n, err)
	}
	t.Log(err)
	select {
	case b := <-in: // forwarded back: TTL one less
		if len(b) != len(good) || !bytes.Equal(b[20:], good[20:]) {
			t.Errorf("forwarded %x, want %x", b, good)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the good packet did not come back")
	}
}

// TestReadShortBuffer shows what the kernel does with a packet longer than
// the buffer: it is cut to the buffer.
func TestReadShortBuffer(t *testing.T) {
	lt := openLabTUN(t, 1, false)
	d := lt.devs[0]
	pkt := udpPacket(t, netip.AddrPortFrom(netip.MustParseAddr("198.18.9.1"), 1), netip.AddrPortFrom(far4, 2), make([]byte, 100))
	if n, err := d.Write([][]byte{pkt}, 0); n != 1 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	bufs := [][]byte{make([]byte, 40)}
	sizes := []int{0}
	n, err := d.Read(bufs, sizes, 0)
	t.Logf("Read of a %d-byte packet into 40 bytes: n=%d size=%d err=%v", len(pkt), n, sizes[0], err)
	if n != 1 || sizes[0] > 40 {
		t.Errorf("n=%d size=%d; want 1 packet of at most 40 bytes", n, sizes[0])
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	lt := openLabTUN(t, 2, false)
	d := lt.devs[0]
	done := make(chan error, 1)
	go func() {
		bufs := [][]byte{make([]byte, 1500)}
		n, err := d.Read(bufs, make([]int, 1), 0)
		if n != 0 {
			err = errors.Join(err, errors.New("read a packet"))
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Read returned before Close: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Read after Close: %v, want os.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
	if n, err := d.Write([][]byte{make([]byte, 20)}, 0); n != 0 || !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close = %d, %v; want os.ErrClosed", n, err)
	}
	if n, err := d.Read([][]byte{make([]byte, 20)}, []int{0}, 0); n != 0 || !errors.Is(err, os.ErrClosed) {
		t.Errorf("Read after Close = %d, %v; want os.ErrClosed", n, err)
	}
	if _, err := d.MTU(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("MTU after Close: %v; want os.ErrClosed", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// The other queue still works.
	if mtu, err := lt.devs[1].MTU(); err != nil || mtu != 1500 {
		t.Errorf("queue 1 MTU() = %d, %v", mtu, err)
	}
}

// TestNoAllocs: a Write and a Read of preallocated buffers allocate
// nothing. The packet goes out to 198.18.9.9 and the kernel forwards it
// straight back into the TUN.
func TestNoAllocs(t *testing.T) {
	lt := openLabTUN(t, 1, false)
	d := lt.devs[0]
	pkt := udpPacket(t, netip.AddrPortFrom(netip.MustParseAddr("198.18.9.1"), 1), netip.AddrPortFrom(far4, 2), make([]byte, 36))
	wbufs := [][]byte{append(make([]byte, 16), pkt...)}
	rbufs := make([][]byte, d.BatchSize())
	for i := range rbufs {
		rbufs[i] = make([]byte, 16+1500)
	}
	sizes := make([]int, len(rbufs))
	var err error
	allocs := testing.AllocsPerRun(1000, func() {
		var n int
		if n, err = d.Write(wbufs, 16); n != 1 || err != nil {
			return
		}
		_, err = d.Read(rbufs, sizes, 16)
	})
	if err != nil {
		t.Fatal(err)
	}
	if allocs != 0 {
		t.Errorf("Write+Read: %v allocations, want 0", allocs)
	}
}
