package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vsgate/vsgate/internal/netlab"
)

// serverMTU is the MTU stepPathMTU gives the real servers' side: smaller
// than the clients' 1500, as behind a tunnel.
const serverMTU = 1400

// setServerMTU sets mtu on every link of the real servers' side: the
// gateway's inside interface, the switch and the real servers.
func (e *Env) setServerMTU(ctx context.Context, mtu int) error {
	p := e.Lab.Topo.Plan
	set := func(h *netlab.Host, only string) error {
		links, err := h.Netlink().LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			a := l.Attrs()
			if a.Name == "lo" || (only != "" && a.Name != only) {
				continue
			}
			if err := h.Netlink().LinkSetMTU(l, mtu); err != nil {
				return fmt.Errorf("%s: mtu %d on %s: %w", h.Name, mtu, a.Name, err)
			}
		}
		return nil
	}
	if err := set(e.gw, e.Lab.IfName(p.GatewayIn)); err != nil {
		return err
	}
	for _, h := range e.Lab.Hosts() {
		if h.Name == netlab.HostClient || h == e.gw {
			continue
		}
		if err := set(h, ""); err != nil {
			return err
		}
	}
	return nil
}

// pathMTUOf sends a payload-byte datagram to vip from a client UDP socket
// with path MTU discovery on (DF) and returns the path MTU the client's
// kernel learnt for vip, waiting for it to change from the link's.
func (e *Env) pathMTUOf(ctx context.Context, vip netip.AddrPort, payload int) (int, error) {
	network := "udp4"
	if vip.Addr().Is6() {
		network = "udp6"
	}
	c, err := e.client.DialContext(ctx, network, vip.String())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	raw, err := c.(*net.UDPConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	level, opt, mtuOpt, do := unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_MTU, unix.IP_PMTUDISC_DO
	if vip.Addr().Is6() {
		level, opt, mtuOpt, do = unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_MTU, unix.IPV6_PMTUDISC_DO
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, do) }); err != nil || serr != nil {
		return 0, errors.Join(err, serr)
	}
	mtu := func() (int, error) {
		var m int
		var gerr error
		if err := raw.Control(func(fd uintptr) { m, gerr = unix.GetsockoptInt(int(fd), level, mtuOpt) }); err != nil {
			return 0, err
		}
		return m, gerr
	}
	buf := make([]byte, payload)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := c.Write(buf); err != nil && !errors.Is(err, unix.EMSGSIZE) {
			return 0, err
		}
		time.Sleep(100 * time.Millisecond)
		m, err := mtu()
		if err != nil {
			return 0, err
		}
		if m < 1500 {
			return m, nil
		}
	}
	m, err := mtu()
	return m, errors.Join(err, fmt.Errorf("the client's path MTU to %v stayed %d", vip, m))
}

// echoNoDF sends a payload-byte datagram without DF to vip (the UDP echo
// service) and reads the echo.
func (e *Env) echoNoDF(ctx context.Context, vip netip.AddrPort, payload int) error {
	c, err := e.client.DialContext(ctx, "udp4", vip.String())
	if err != nil {
		return err
	}
	defer c.Close()
	raw, err := c.(*net.UDPConn).SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT)
	}); err != nil || serr != nil {
		return errors.Join(err, serr)
	}
	msg := []byte(strings.Repeat("f", payload))
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, 9000)
	for {
		n, err := c.Read(got)
		if err != nil {
			return fmt.Errorf("no echo of a %d-byte datagram: %w", payload, err)
		}
		if strings.HasSuffix(string(got[:n]), string(msg)) {
			return nil
		}
	}
}

// stepPathMTU: with the real servers' side at 1400 bytes, a DF IPv4
// datagram and an IPv6 one of 1500 bytes to a VIP get ICMP fragmentation
// needed / packet too big with 1400, which the client's kernel matches
// to its socket (its path MTU to the VIP becomes 1400); a 1500-byte
// datagram without DF is fragmented and echoed whole.
func stepPathMTU(ctx context.Context, e *Env) (string, error) {
	if err := e.setServerMTU(ctx, serverMTU); err != nil {
		return "", err
	}
	defer func() {
		_ = e.setServerMTU(context.Background(), 1500)
		// The client's kernel keeps the path MTU it learnt: let later
		// steps start afresh.
		_, _ = e.client.Run(context.Background(), "ip", "route", "flush", "cache")
		_, _ = e.client.Run(context.Background(), "ip", "-6", "route", "flush", "cache")
	}()
	time.Sleep(1200 * time.Millisecond) // the gateway rereads MTUs every second
	p := e.Lab.Topo.Plan
	var lines []string
	// Without DF first: once the client has learnt the path MTU, its
	// kernel fragments such a datagram itself.
	if err := e.echoNoDF(ctx, netip.AddrPortFrom(p.VIP4, 53), 1500-28); err != nil {
		return "", err
	}
	for _, c := range []struct {
		vip     netip.AddrPort
		payload int
	}{{netip.AddrPortFrom(p.VIP4, 53), 1500 - 28}, {netip.AddrPortFrom(p.VIP6, 53), 1500 - 48}} {
		m, err := e.pathMTUOf(ctx, c.vip, c.payload)
		if err != nil {
			return strings.Join(lines, "\n"), err
		}
		lines = append(lines, fmt.Sprintf("%v: a 1500-byte datagram with DF: the client's path MTU became %d", c.vip, m))
		if m != serverMTU {
			return strings.Join(lines, "\n"), fmt.Errorf("path MTU %d, want %d", m, serverMTU)
		}
	}
	tooBig, _ := e.metricValue(ctx, `vsgate_path_mtu_total{event="too_big"}`)
	frag, _ := e.metricValue(ctx, `vsgate_path_mtu_total{event="fragmented"}`)
	lines = append(lines, fmt.Sprintf("a 1500-byte datagram without DF: fragmented to %d and echoed whole; vsgate_path_mtu_total too_big %v, fragmented %v", serverMTU, tooBig, frag))
	if tooBig < 2 || frag < 1 {
		return strings.Join(lines, "\n"), errors.New("the path MTU counters do not show the errors and the fragmenting")
	}
	return strings.Join(lines, "\n"), nil
}

// setClientMTU sets mtu on the client's link and the gateway's interface
// towards it.
func (e *Env) setClientMTU(mtu int) error {
	for _, hl := range []struct {
		h    *netlab.Host
		only string
	}{{e.gw, e.Lab.IfName(e.Lab.Topo.Plan.GatewayOut)}, {e.client, ""}} {
		links, err := hl.h.Netlink().LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			if a := l.Attrs(); a.Name != "lo" && (hl.only == "" || a.Name == hl.only) {
				if err := hl.h.Netlink().LinkSetMTU(l, mtu); err != nil {
					return fmt.Errorf("%s: mtu %d on %s: %w", hl.h.Name, mtu, a.Name, err)
				}
			}
		}
	}
	return nil
}

// gsoDatagrams is how many datagrams of gsoSize the burst sends in one
// UDP GSO write.
const (
	gsoSize      = 8000
	gsoDatagrams = 8
)

// stepGSOBurst: with the clients' side at MTU 9000 and the real servers'
// at 1500, a UDP GSO burst of 8000-byte datagrams without DF (one write
// of 8) to the UDP service is cut to the real servers' MTU: every
// datagram is echoed whole, and captures on every real server's link
// show no frame above 1500 bytes of IP.
func stepGSOBurst(ctx context.Context, e *Env) (string, error) {
	if err := e.setClientMTU(9000); err != nil {
		return "", err
	}
	defer func() {
		_ = e.setClientMTU(1500)
		_, _ = e.client.Run(context.Background(), "ip", "route", "flush", "cache")
	}()
	time.Sleep(1200 * time.Millisecond) // the gateway rereads MTUs every second
	caps, err := e.captureBackends(ctx, "udp or (ip[6:2] & 0x3fff != 0)")
	if err != nil {
		return "", err
	}
	defer caps.stop()
	vip := netip.AddrPortFrom(e.Lab.Topo.Plan.VIP4, 53)
	c, err := e.client.DialContext(ctx, "udp4", vip.String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	raw, err := c.(*net.UDPConn).SyscallConn()
	if err != nil {
		return "", err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = errors.Join(unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT),
			unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT, gsoSize))
	}); err != nil || serr != nil {
		return "", errors.Join(err, serr)
	}
	// UDP may lose a datagram on the way (a burst of 48 fragments each
	// way can overrun a queue): what was not echoed is sent again, in up
	// to three bursts.
	got := map[int]bool{}
	buf := make([]byte, 65536)
	rounds := 0
	for ; rounds < 3 && len(got) < gsoDatagrams; rounds++ {
		var burst []byte
		for i := range gsoDatagrams {
			if !got[i] {
				d := make([]byte, gsoSize)
				copy(d, fmt.Sprintf("datagram %d ", i))
				burst = append(burst, d...)
			}
		}
		if _, err := c.Write(burst); err != nil {
			return "", fmt.Errorf("UDP GSO write: %w", err)
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		for len(got) < gsoDatagrams {
			n, err := c.Read(buf)
			if err != nil {
				break
			}
			// The echo server puts its name in front of what it echoes.
			if n >= gsoSize {
				var i int
				if _, err := fmt.Sscanf(string(buf[n-gsoSize:n-gsoSize+16]), "datagram %d ", &i); err == nil {
					got[i] = true
				}
			}
		}
	}
	if len(got) < gsoDatagrams {
		return "", fmt.Errorf("%d of %d datagrams echoed in %d bursts", len(got), gsoDatagrams, rounds)
	}
	time.Sleep(200 * time.Millisecond)
	captured, err := caps.stop()
	if err != nil {
		return "", err
	}
	largest, frames := 0, 0
	for _, pkts := range captured {
		for _, pkt := range pkts {
			frames++
			largest = max(largest, pkt.Length)
		}
	}
	detail := fmt.Sprintf("%d datagrams of %d bytes in UDP GSO writes (%d) from a 9000-byte link, without DF: all echoed whole; %d packets captured on the real servers' links, the largest %d bytes of IP",
		gsoDatagrams, gsoSize, rounds, frames, largest)
	switch {
	case frames == 0:
		return detail, errors.New("the captures are empty")
	case largest > 1500:
		return detail, fmt.Errorf("a %d-byte packet reached a real server's 1500-byte link", largest)
	}
	return detail, nil
}
