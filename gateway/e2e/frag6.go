package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/vsgate/vsgate/netlab"
)

// rawUDPFragments6 cuts a UDP datagram from src to dst into IPv6
// fragments (RFC 8200 §4.5) carrying at most size bytes of data each.
func rawUDPFragments6(src, dst netip.AddrPort, payload []byte, size int, id uint32) [][]byte {
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: net.IP(src.Addr().AsSlice()), DstIP: net.IP(dst.Addr().AsSlice())}
	u := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	_ = u.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, u, gopacket.Payload(payload)); err != nil {
		panic(err)
	}
	body := buf.Bytes()
	var out [][]byte
	for off := 0; off < len(body); off += size {
		end := min(off+size, len(body))
		fip := *ip
		fip.NextHeader = layers.IPProtocolIPv6Fragment
		fr := &layers.IPv6Fragment{NextHeader: layers.IPProtocolUDP, FragmentOffset: uint16(off / 8), MoreFragments: end < len(body), Identification: id}
		fb := gopacket.NewSerializeBuffer()
		_ = gopacket.SerializeLayers(fb, gopacket.SerializeOptions{FixLengths: true}, &fip, fr, gopacket.Payload(body[off:end]))
		out = append(out, append([]byte(nil), fb.Bytes()...))
	}
	return out
}

// rawSend6 writes IPv6 packets, headers included, from inside host h (an
// IPPROTO_RAW socket of AF_INET6 takes the header whole).
func rawSend6(h *netlab.Host, pkts [][]byte) error {
	return h.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		defer unix.Close(fd)
		for _, p := range pkts {
			var sa unix.SockaddrInet6
			copy(sa.Addr[:], p[24:40])
			if err := unix.Sendto(fd, p, 0, &sa); err != nil {
				return fmt.Errorf("raw send: %w", err)
			}
		}
		return nil
	})
}

// stepFragments6: the IPv6 half of stepFragments. A datagram whose
// fragments come last first is answered; a storm of 20,000 incomplete
// datagrams from 200 /64s with a real fragmented request in the middle:
// the request is answered within 1 s, and the real servers' IPv6
// reassembly (Ip6ReasmReqds) sees no fragment of the storm.
func stepFragments6(ctx context.Context, e *Env) (string, error) {
	vip := netip.AddrPortFrom(e.Lab.Topo.Plan.VIP6, 53)
	pc, err := e.client.ListenPacket("udp6", "[2001:db8::2]:0")
	if err != nil {
		return "", err
	}
	defer pc.Close()
	me := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	payload := strings.Repeat("r", 3000)
	f := rawUDPFragments6(me, vip, []byte(payload), 1200, 4242)
	slices.Reverse(f)
	took, err := e.udpAsk(ctx, pc, f, payload, 3*time.Second)
	if err != nil {
		return "", fmt.Errorf("reversed IPv6 fragments: %w", err)
	}
	detail := fmt.Sprintf("a 3000-byte IPv6 datagram in %d fragments, last first: answered in %v", len(f), took.Round(time.Millisecond))
	reasm := func(h *netlab.Host) (int, error) { return snmp6Counter(ctx, h, "Ip6ReasmReqds") }
	before := map[string]int{}
	for _, b := range e.Lab.Topo.Plan.Backends {
		if before[b], err = reasm(e.Lab.MustHost(b)); err != nil {
			return detail, err
		}
	}
	r := rand.New(rand.NewPCG(17, 19))
	var storm [][]byte
	for i := range 20000 {
		// From 200 /64s of the client side, each with 100 sources.
		src := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, byte(10 + i%200), 0, 0, 0, 0, 0, 0, 0, byte(1 + i/200%100)})
		storm = append(storm, rawUDPFragments6(netip.AddrPortFrom(src, uint16(20000+i%1000)), vip, []byte(strings.Repeat("s", 1000)), 600, r.Uint32())[0])
	}
	half := len(storm) / 2
	if err := rawSend6(e.client, storm[:half]); err != nil {
		return detail, err
	}
	legit := "in the storm " + strings.Repeat("x", 2500)
	took, err = e.udpAsk(ctx, pc, rawUDPFragments6(me, vip, []byte(legit), 1200, 777), legit, time.Second)
	if err != nil {
		return detail, fmt.Errorf("the real IPv6 request in the storm: %w", err)
	}
	if err := rawSend6(e.client, storm[half:]); err != nil {
		return detail, err
	}
	time.Sleep(100 * time.Millisecond)
	var seen []string
	for _, b := range e.Lab.Topo.Plan.Backends {
		n, err := reasm(e.Lab.MustHost(b))
		if err != nil {
			return detail, err
		}
		seen = append(seen, fmt.Sprintf("%s +%d", b, n-before[b]))
		if n-before[b] > 2*3 {
			return detail, fmt.Errorf("%s reassembled %d IPv6 fragments during the storm", b, n-before[b])
		}
	}
	detail += fmt.Sprintf("\n20,000 incomplete IPv6 datagrams from 200 /64s, a real fragmented request in the middle: answered in %v; real servers' IPv6 reassembly during the storm: %s",
		took.Round(time.Millisecond), strings.Join(seen, ", "))
	return detail, nil
}

// snmp6Counter reads counter name from host h's /proc/net/snmp6.
func snmp6Counter(ctx context.Context, h *netlab.Host, name string) (int, error) {
	out, err := h.Run(ctx, "cat", "/proc/net/snmp6")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			var v int
			_, err := fmt.Sscan(f[1], &v)
			return v, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/net/snmp6", name)
}
