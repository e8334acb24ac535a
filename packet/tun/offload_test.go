package tun

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/vsgate/vsgate/packet"
	"github.com/vsgate/vsgate/packet/device"
)

// The offload tests use the lab of lab_test.go with an *OffloadTUN: a
// train of packets is written to the TUN — TCP segments, TCP super-packets
// with a partial checksum (as the kernel hands them over), UDP datagrams
// that Write merges into UDP GSO super-packets — and the kernel forwards
// it straight back into the TUN, super-packets whole (TSO/USO on the TUN's
// transmit side). Every packet read back is split with Segments; the
// segments must carry exactly the bytes that went out, with valid IP and
// TCP/UDP checksums. The oracle for checksums is gVisor's header and
// checksum packages.

// trainFlow is one flow of a train: its packets, in order.
type trainFlow struct {
	src, dst netip.AddrPort
	tcp      bool
	super    bool     // TCP: send the payloads as one super-packet (all but the last of one size)
	seq      uint32   // first TCP sequence number
	payloads [][]byte // one per segment (TCP) or datagram (UDP)
}

// tcpSegment builds an IPv4 or IPv6 TCP segment (ACK, PSH if psh) with
// gopacket, checksums and lengths filled in.
func tcpSegment(tb testing.TB, src, dst netip.AddrPort, seq uint32, psh bool, payload []byte) []byte {
	tb.Helper()
	tcp := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()),
		Seq: seq, Ack: 1, ACK: true, PSH: psh, Window: 65535}
	var ip gopacket.SerializableLayer
	if src.Addr().Is4() {
		ip4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, Flags: layers.IPv4DontFragment,
			SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
		tcp.SetNetworkLayerForChecksum(ip4)
		ip = ip4
	} else {
		ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP,
			SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
		tcp.SetNetworkLayerForChecksum(ip6)
		ip = ip6
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ip, tcp, gopacket.Payload(payload)); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// packets returns the flow's packets, each behind its virtio-net header.
func (f *trainFlow) packets(tb testing.TB) [][]byte {
	var out [][]byte
	if f.super {
		return [][]byte{tcpSuperPacket(tb, f)}
	}
	seq := f.seq
	for i, p := range f.payloads {
		if f.tcp {
			out = append(out, withHdr(nil, tcpSegment(tb, f.src, f.dst, seq, i == len(f.payloads)-1, p)))
			seq += uint32(len(p))
		} else {
			out = append(out, withHdr(nil, udpPacket(tb, f.src, f.dst, p)))
		}
	}
	return out
}

// withHdr puts a virtio-net header (zeros for nil) in front of ip.
func withHdr(hdr packet.VNetHdr, ip []byte) []byte {
	return append(append(make([]byte, 0, packet.VNetHdrSize+len(ip)), append(hdr, make([]byte, packet.VNetHdrSize-len(hdr))...)...), ip...)
}

// tcpSuperPacket is f's payloads as one TCP super-packet, the way a
// sender's stack hands it to a device with TSO: a partial checksum (the
// pseudo-header sum) and a header that says how to cut it.
func tcpSuperPacket(tb testing.TB, f *trainFlow) []byte {
	ip := tcpSegment(tb, f.src, f.dst, f.seq, true, bytes.Join(f.payloads, nil))
	start, gso := packet.IPv4MinimumSize, uint8(packet.GSOTCPv4)
	if f.src.Addr().Is6() {
		start, gso = packet.IPv6HeaderSize, packet.GSOTCPv6
	}
	src, dst := f.src.Addr().AsSlice(), f.dst.Addr().AsSlice()
	binary.BigEndian.PutUint16(ip[start+16:], packet.PseudoHeaderSum(packet.ProtoTCP, src, dst, len(ip)-start))
	h := make(packet.VNetHdr, packet.VNetHdrSize)
	h[0], h[1] = packet.VNetNeedsCsum, gso
	binary.NativeEndian.PutUint16(h[2:], uint16(start+20))
	binary.NativeEndian.PutUint16(h[4:], uint16(len(f.payloads[0])))
	binary.NativeEndian.PutUint16(h[6:], uint16(start))
	binary.NativeEndian.PutUint16(h[8:], 16)
	return withHdr(h, ip)
}

// randomTrain makes 1..4 flows (IPv4 or IPv6, TCP or UDP) of up to 100
// packets in all, each flow's payloads of one size but the last, which
// may be shorter: what a sender's TSO/USO would make.
func randomTrain(rng *rand.Rand, base uint16) []*trainFlow {
	nflows := 1 + rng.IntN(4)
	budget := 100
	var flows []*trainFlow
	for i := range nflows {
		f := &trainFlow{tcp: rng.IntN(3) > 0, seq: rng.Uint32()}
		src, dst := netip.MustParseAddr("198.18.9.1"), far4
		if rng.IntN(2) == 0 {
			src, dst = netip.MustParseAddr("2001:db8:9::1"), far6
		}
		f.src, f.dst = netip.AddrPortFrom(src, base+uint16(i)), netip.AddrPortFrom(dst, 9)
		size := 1 + rng.IntN(1400)
		n := 1 + rng.IntN(max(1, budget/(nflows-i)))
		budget -= n
		// A TCP flow of a few segments may go as one super-packet (the
		// kernel wants segments of at least 64 bytes... and at most 64 KiB).
		f.super = f.tcp && n > 1 && size >= 64 && n*size < 60000 && rng.IntN(2) == 0
		for j := range n {
			s := size
			if j == n-1 {
				s = 1 + rng.IntN(size)
			}
			p := make([]byte, s)
			for k := range p {
				p[k] = byte(rng.Uint32())
			}
			f.payloads = append(f.payloads, p)
		}
		flows = append(flows, f)
	}
	return flows
}

// checkSegment parses pkt (as read from the TUN) and checks its IP and
// transport checksums with gVisor's header package. It returns the
// flow's source port, and the TCP sequence number and the payload.
func checkSegment(pkt []byte) (sport uint16, seq uint32, payload []byte, err error) {
	var src, dst tcpip.Address
	var proto uint8
	var l4 []byte
	switch pkt[0] >> 4 {
	case 4:
		ip := header.IPv4(pkt)
		if !ip.IsValid(len(pkt)) {
			return 0, 0, nil, errors.New("invalid IPv4 header")
		}
		if !ip.IsChecksumValid() {
			return 0, 0, nil, errors.New("bad IPv4 header checksum")
		}
		src, dst, proto, l4 = ip.SourceAddress(), ip.DestinationAddress(), ip.Protocol(), ip.Payload()
	case 6:
		ip := header.IPv6(pkt)
		if !ip.IsValid(len(pkt)) {
			return 0, 0, nil, errors.New("invalid IPv6 header")
		}
		src, dst, proto, l4 = ip.SourceAddress(), ip.DestinationAddress(), uint8(ip.NextHeader()), ip.Payload()
	default:
		return 0, 0, nil, fmt.Errorf("IP version %d", pkt[0]>>4)
	}
	xsum := header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(proto), src, dst, uint16(len(l4)))
	if checksum.Checksum(l4, xsum) != 0xffff {
		return 0, 0, nil, fmt.Errorf("bad protocol %d checksum (%d bytes)", proto, len(l4))
	}
	switch proto {
	case uint8(header.TCPProtocolNumber):
		t := header.TCP(l4)
		return t.SourcePort(), t.SequenceNumber(), t.Payload(), nil
	case uint8(header.UDPProtocolNumber):
		u := header.UDP(l4)
		if int(u.Length()) != len(l4) {
			return 0, 0, nil, fmt.Errorf("UDP length %d, packet has %d", u.Length(), len(l4))
		}
		return u.SourcePort(), 0, u.Payload(), nil
	}
	return 0, 0, nil, fmt.Errorf("protocol %d", proto)
}

// offloadLoop writes trains to an *OffloadTUN and reads them back, with
// buffers as the gateway has them.
type offloadLoop struct {
	d            device.Device
	superPackets [256]int // super-packets read back, by IP protocol
	store        [][]byte // each OffloadHeadroom+device.MaxPacket bytes
	wbufs        [][]byte
	rbufs        [][]byte
	sizes        []int
}

func newOffloadLoop(d device.Device) *offloadLoop {
	l := &offloadLoop{d: d, sizes: make([]int, d.BatchSize())}
	for range d.BatchSize() {
		l.store = append(l.store, make([]byte, OffloadHeadroom+device.MaxPacket))
		l.rbufs = append(l.rbufs, make([]byte, OffloadHeadroom+device.MaxPacket))
	}
	l.wbufs = make([][]byte, 0, d.BatchSize())
	return l
}

// write writes pkts (in this order, each behind its virtio-net header)
// in one batch.
func (l *offloadLoop) write(pkts [][]byte) error {
	l.wbufs = l.wbufs[:0]
	const at = OffloadHeadroom - packet.VNetHdrSize
	for i, p := range pkts {
		l.wbufs = append(l.wbufs, l.store[i][:at+copy(l.store[i][at:], p)])
	}
	_, err := l.d.Write(l.wbufs, OffloadHeadroom)
	return err
}

// checkTrain writes the train (flows interleaved at random, each in
// order) in one batch and checks what comes back: per flow the same
// payloads in the same order (TCP: the same byte stream at the right
// sequence numbers), every segment with valid checksums.
func checkTrain(t *testing.T, l *offloadLoop, rng *rand.Rand, flows []*trainFlow) {
	t.Helper()
	var queues [][][]byte
	var pkts [][]byte
	want := map[uint16]*trainFlow{}
	for _, f := range flows {
		queues = append(queues, f.packets(t))
		want[f.src.Port()] = f
	}
	for {
		var live []int
		for i, q := range queues {
			if len(q) > 0 {
				live = append(live, i)
			}
		}
		if len(live) == 0 {
			break
		}
		i := live[rng.IntN(len(live))]
		for k := 1 + rng.IntN(8); k > 0 && len(queues[i]) > 0; k-- { // runs of one flow
			pkts, queues[i] = append(pkts, queues[i][0]), queues[i][1:]
		}
	}
	if err := l.write(pkts); err != nil {
		t.Fatalf("write %d packets: %v", len(pkts), err)
	}
	got := map[uint16][][]byte{}
	seqs := map[uint16]uint32{}
	remaining := 0 // in segments: what went out, however it was merged
	for _, f := range flows {
		remaining += len(f.payloads)
	}
	sent := remaining
	deadline := time.Now().Add(5 * time.Second)
	for remaining > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d segments did not come back", remaining, sent)
		}
		n, err := l.d.Read(l.rbufs, l.sizes, OffloadHeadroom)
		for i := range n {
			pkt := l.rbufs[i][OffloadHeadroom : OffloadHeadroom+l.sizes[i]]
			if v := pkt[0] >> 4; v == 6 && !bytes.Equal(pkt[24:40], far6.AsSlice()) || v == 4 && !bytes.Equal(pkt[16:20], far4.AsSlice()) {
				continue // router solicitation, MLD
			}
			// A run the device merged comes back as one super-packet:
			// its segments must be the packets that went out.
			segs := l.d.(*OffloadTUN).SegmentCount(l.rbufs[i], OffloadHeadroom, l.sizes[i])
			if segs > 1 {
				proto := pkt[9]
				if pkt[0]>>4 == 6 {
					proto = pkt[6]
				}
				l.superPackets[proto]++
			}
			l.d.(*OffloadTUN).Segments(l.rbufs[i], OffloadHeadroom, l.sizes[i], func(pkt []byte) {
				segs--
				sport, seq, payload, err := checkSegment(pkt)
				if err != nil {
					t.Fatalf("segment of %d bytes: %v\n% x", len(pkt), err, pkt[:min(len(pkt), 64)])
				}
				f, ok := want[sport]
				if !ok {
					t.Fatalf("segment of an unknown flow (port %d)", sport)
				}
				if f.tcp {
					if s, ok := seqs[sport]; ok && s != seq {
						t.Fatalf("flow %d: sequence %d, want %d", sport, seq, s)
					}
					seqs[sport] = seq + uint32(len(payload))
				}
				got[sport] = append(got[sport], append([]byte(nil), payload...))
				remaining--
			})
			if segs != 0 {
				t.Fatalf("SegmentCount said %d more segments than Segments gave", segs)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for port, f := range want {
		g := got[port]
		if f.tcp {
			if !bytes.Equal(bytes.Join(g, nil), bytes.Join(f.payloads, nil)) {
				t.Errorf("TCP flow %d (%v): the byte stream differs", port, f.src.Addr())
			}
			if f.seq != seqs[port]-uint32(len(bytes.Join(f.payloads, nil))) {
				t.Errorf("TCP flow %d: stream starts at the wrong sequence number", port)
			}
			continue
		}
		if len(g) != len(f.payloads) {
			t.Errorf("UDP flow %d: %d datagrams, want %d", port, len(g), len(f.payloads))
			continue
		}
		for i := range g {
			if !bytes.Equal(g[i], f.payloads[i]) {
				t.Errorf("UDP flow %d: datagram %d differs", port, i)
			}
		}
	}
}

func openOffloadLab(tb testing.TB) *labTUN {
	tb.Helper()
	lt := openLabTUNWith(tb, 1, true, OpenOffload)
	if lt.devs[0].Headroom() != OffloadHeadroom {
		tb.Fatalf("Headroom %d, want %d", lt.devs[0].Headroom(), OffloadHeadroom)
	}
	return lt
}

// TestOffloadTrains writes random trains (seed 42) through the kernel
// and back.
func TestOffloadTrains(t *testing.T) {
	lt := openOffloadLab(t)
	l := newOffloadLoop(lt.devs[0])
	rng := rand.New(rand.NewPCG(42, 42))
	for i := range 100 {
		checkTrain(t, l, rng, randomTrain(rng, uint16(10000+i*8)))
		if t.Failed() {
			t.Fatalf("train %d failed", i)
		}
	}
	// Super-packets crossed the kernel and came back whole: TCP ones as
	// written, UDP ones as Write merged them.
	if l.superPackets[packet.ProtoTCP] == 0 || l.superPackets[packet.ProtoUDP] == 0 {
		t.Errorf("super-packets read back: %d TCP, %d UDP; want some of each", l.superPackets[packet.ProtoTCP], l.superPackets[packet.ProtoUDP])
	}
	t.Logf("super-packets read back: %d TCP, %d UDP", l.superPackets[packet.ProtoTCP], l.superPackets[packet.ProtoUDP])
}

// FuzzOffloadTrain is TestOffloadTrains on trains made from the fuzzer's
// seed: no panic, every segment re-parses with valid checksums and the
// bytes arrive as sent. Seeds: a lone small packet's train (1), mixed
// flows (42), a long one-flow train (7).
func FuzzOffloadTrain(f *testing.F) {
	for _, s := range []uint64{1, 42, 7} {
		f.Add(s, s)
	}
	lt := openOffloadLab(f)
	l := newOffloadLoop(lt.devs[0])
	port := uint16(20000)
	f.Fuzz(func(t *testing.T, a, b uint64) {
		rng := rand.New(rand.NewPCG(a, b))
		port += 8
		if port > 60000 {
			port = 20000
		}
		checkTrain(t, l, rng, randomTrain(rng, port))
	})
}

// TestOffloadNoAllocs: writing a TCP super-packet of 40 segments and a
// run of 20 UDP datagrams (merged into one), and reading both back, does
// not allocate.
func TestOffloadNoAllocs(t *testing.T) {
	lt := openOffloadLab(t)
	l := newOffloadLoop(lt.devs[0])
	f := &trainFlow{tcp: true, super: true, src: netip.AddrPortFrom(netip.MustParseAddr("198.18.9.1"), 5000), dst: netip.AddrPortFrom(far4, 9)}
	u := &trainFlow{src: netip.AddrPortFrom(netip.MustParseAddr("198.18.9.1"), 5001), dst: netip.AddrPortFrom(far4, 9)}
	for i := range 40 {
		f.payloads = append(f.payloads, bytes.Repeat([]byte{'x'}, 1000))
		if i < 20 {
			u.payloads = append(u.payloads, bytes.Repeat([]byte{'y'}, 100))
		}
	}
	pkts := append(f.packets(t), u.packets(t)...)
	var err error
	allocs := testing.AllocsPerRun(50, func() {
		if err != nil {
			return
		}
		if err = l.write(pkts); err != nil {
			return
		}
		for got := 0; got < 2 && err == nil; { // the two super-packets
			var n int
			n, err = l.d.Read(l.rbufs, l.sizes, OffloadHeadroom)
			got += n
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if allocs != 0 {
		t.Errorf("%v allocations per train, want 0", allocs)
	}
}

// TestOffloadClose: Close unblocks a pending Read with os.ErrClosed.
func TestOffloadClose(t *testing.T) {
	lt := openOffloadLab(t)
	d := lt.devs[0]
	done := make(chan error, 1)
	go func() {
		bufs := [][]byte{make([]byte, OffloadHeadroom+device.MaxPacket)}
		for { // router solicitations may come first
			if _, err := d.Read(bufs, make([]int, 1), OffloadHeadroom); err != nil {
				done <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	d.Close()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("Read after Close: %v, want os.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
}
