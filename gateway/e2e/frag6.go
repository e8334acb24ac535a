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

	"github.com/vsgate/vsgate/netlab"
)

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
	f := rawUDPFragments(me, vip, []byte(payload), 1200, 4242)
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
		storm = append(storm, rawUDPFragments(netip.AddrPortFrom(src, uint16(20000+i%1000)), vip, []byte(strings.Repeat("s", 1000)), 600, r.Uint32())[0])
	}
	half := len(storm) / 2
	if err := rawSend(e.client, storm[:half]); err != nil {
		return detail, err
	}
	// The storm's first half is in vsgate's fragment store, not queued in
	// front of the real request: the raw sender writes faster than a
	// device queue drains (an AF_PACKET ring holds 128 frames), and what
	// is measured is the store, not the queue.
	time.Sleep(100 * time.Millisecond)
	legit := "in the storm " + strings.Repeat("x", 2500)
	took, err = e.udpAsk(ctx, pc, rawUDPFragments(me, vip, []byte(legit), 1200, 777), legit, time.Second)
	if err != nil {
		return detail, fmt.Errorf("the real IPv6 request in the storm: %w", err)
	}
	if err := rawSend(e.client, storm[half:]); err != nil {
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
