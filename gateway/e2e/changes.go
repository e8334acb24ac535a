package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// stepRefusedChanges: changes vsgate must refuse — a VIP on loopback, a
// VIP that is the gateway's own address — are refused whole: vsgate adm
// -S is byte for byte what it was, the VIPs still answer, and the next
// valid change (a new service, then its removal) works.
func stepRefusedChanges(ctx context.Context, e *Env) (string, error) {
	before, err := e.Adm(ctx, "-S", "-n")
	if err != nil {
		return "", err
	}
	p := e.Lab.Topo.Plan
	var lines []string
	for _, bad := range [][]string{
		{"-A", "-t", "[::1]:80", "-s", "rr"},
		{"-A", "-t", "127.0.0.1:80", "-s", "rr"},
		{"-A", "-t", "[fe80::1]:80", "-s", "rr"},
		{"-A", "-t", "198.18.0.1:80", "-s", "rr"}, // the gateway's own client-side address
	} {
		out, err := e.Adm(ctx, bad...)
		if err == nil {
			return out, fmt.Errorf("vsgate adm %s was accepted", strings.Join(bad, " "))
		}
		after, aerr := e.Adm(ctx, "-S", "-n")
		if aerr != nil {
			return "", aerr
		}
		if after != before {
			return after, fmt.Errorf("vsgate adm %s was refused, but -S changed:\n%s\nwas:\n%s", strings.Join(bad, " "), after, before)
		}
		if _, err := e.get(ctx, fmt.Sprintf("http://%s/after-refused", netip.AddrPortFrom(p.VIP4, 80))); err != nil {
			return "", fmt.Errorf("after vsgate adm %s was refused, the VIP does not answer: %w", strings.Join(bad, " "), err)
		}
		lines = append(lines, fmt.Sprintf("vsgate adm %s: refused (%s); -S unchanged; the VIP answers", strings.Join(bad, " "), firstLine(err.Error())))
	}
	// The next valid change works, and so does undoing it.
	next := netip.AddrPortFrom(netip.MustParseAddr("198.18.0.11"), 80)
	if out, err := e.Adm(ctx, "-A", "-t", next.String(), "-s", "rr"); err != nil {
		return out, err
	}
	if out, err := e.Adm(ctx, "-a", "-t", next.String(), "-r", "198.18.2.11:80", "-m"); err != nil {
		return out, err
	}
	rep, err := e.get(ctx, fmt.Sprintf("http://%s/new-service", next))
	if err != nil {
		return "", fmt.Errorf("the valid change after the refused ones: %w", err)
	}
	if out, err := e.Adm(ctx, "-D", "-t", next.String()); err != nil {
		return out, err
	}
	if after, _ := e.Adm(ctx, "-S", "-n"); after != before {
		return after, errors.New("adding a service and deleting it again did not give -S back")
	}
	if _, err := e.get(ctx, fmt.Sprintf("http://%s/after", netip.AddrPortFrom(p.VIP4, 80))); err != nil {
		return "", err
	}
	lines = append(lines, fmt.Sprintf("then vsgate adm -A -t %v (answered by %s) and -D: -S as before, the VIP answers", next, rep.Backend))
	return strings.Join(lines, "\n"), nil
}

// firstLine is s up to its first newline.
func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// stepClosedToOutside: from the client, straight to the real servers'
// addresses (not a VIP): a TCP connection to their HTTP port and a UDP
// datagram to a port one of them listens on. Nothing reaches them — the
// gateway's kernel would forward it on a TUN (forwarding is on for
// vsgate's wiring), and vsgate's nftables guard drops it; on AF_PACKET
// vsgate sees it and drops it (inbound_unsolicited) — and the counter, in
// vsgate adm drops and /metrics, shows it.
func stepClosedToOutside(ctx context.Context, e *Env) (string, error) {
	p := e.Lab.Topo.Plan
	var lines []string
	for _, rs := range []string{"198.18.2.11:80", "[2001:db8:2::11]:80"} {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := e.client.DialContext(cctx, "tcp", rs)
		cancel()
		if err == nil {
			c.Close()
			return strings.Join(lines, "\n"), fmt.Errorf("the client connected to real server %s directly", rs)
		}
		lines = append(lines, fmt.Sprintf("TCP to %s from the client: %v", rs, firstLine(err.Error())))
	}
	b1 := e.Lab.MustHost(p.Backends[0])
	pc, err := b1.ListenPacket("udp", ":1161")
	if err != nil {
		return "", err
	}
	defer pc.Close()
	for _, rs := range []string{"198.18.2.11:1161", "[2001:db8:2::11]:1161"} {
		c, err := e.client.DialContext(ctx, "udp", rs)
		if err != nil {
			return "", err
		}
		_, _ = c.Write([]byte("from outside"))
		c.Close()
	}
	_ = pc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	buf := make([]byte, 100)
	if n, from, err := pc.ReadFrom(buf); err == nil {
		return strings.Join(lines, "\n"), fmt.Errorf("real server b1 received %q from %v, straight from the outside", buf[:n], from)
	}
	lines = append(lines, "UDP to 198.18.2.11:1161 and [2001:db8:2::11]:1161 (b1 listening): nothing arrived")
	series := `vsgate_device_drops_total{counter="forward_guard",device="kernel"}`
	if e.opts.AFPacket {
		series = `vsgate_drops_total{reason="inbound_unsolicited"}`
	}
	n, err := e.metricValue(ctx, series)
	if err != nil {
		return strings.Join(lines, "\n"), err
	}
	lines = append(lines, fmt.Sprintf("%s %v", series, n))
	if n < 4 {
		return strings.Join(lines, "\n"), fmt.Errorf("the guard counted %v packets, want at least the 4 sent", n)
	}
	return strings.Join(lines, "\n"), nil
}
