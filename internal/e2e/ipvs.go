package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// stepThresholds: a service whose two real servers have -x 2 -y 1 takes
// two connections on each, refuses a fifth (no real server: the SYN is
// dropped and counted), and, once one server's closed connections have
// expired below its lower threshold, sends the next one there.
func stepThresholds(ctx context.Context, e *Env) (string, error) {
	vip := netip.AddrPortFrom(e.Lab.Topo.Plan.VIP4, 17).String()
	reals := []struct{ name, addr string }{{"b1", "198.18.2.11:7"}, {"b2", "198.18.2.12:7"}}
	if _, err := e.Adm(ctx, "-A", "-t", vip, "-s", "rr"); err != nil {
		return "", err
	}
	defer func() { _, _ = e.Adm(context.WithoutCancel(ctx), "-D", "-t", vip) }()
	for _, r := range reals {
		if _, err := e.Adm(ctx, "-a", "-t", vip, "-r", r.addr, "-m", "-x", "2", "-y", "1"); err != nil {
			return "", err
		}
	}
	open := func(ctx context.Context, i int) (*session, string, error) {
		c, err := e.client.DialContext(ctx, "tcp", vip)
		if err != nil {
			return nil, "", err
		}
		s := &session{c: c, r: bufio.NewReader(c)}
		who, err := s.say(fmt.Sprintf("connection %d", i))
		if err != nil {
			c.Close()
			return nil, "", err
		}
		return s, who, nil
	}
	byServer := map[string][]*session{}
	defer func() {
		for _, ss := range byServer {
			for _, s := range ss {
				s.c.Close()
			}
		}
	}()
	for i := range 4 {
		s, who, err := open(ctx, i)
		if err != nil {
			return "", fmt.Errorf("connection %d: %w", i, err)
		}
		byServer[who] = append(byServer[who], s)
	}
	if len(byServer["b1"]) != 2 || len(byServer["b2"]) != 2 {
		return "", fmt.Errorf("4 connections under -x 2 went %d to b1, %d to b2; want 2 each", len(byServer["b1"]), len(byServer["b2"]))
	}
	list, err := e.Adm(ctx, "-L", "-n", "--thresholds", "-t", vip)
	if err != nil {
		return "", err
	}
	for _, r := range reals {
		if u, l, a, in, ok := thresholdRow(list, r.addr); !ok || u != 2 || l != 1 || a != 2 || in != 0 {
			return "", fmt.Errorf("-L -n --thresholds for %s: want 2 1 2 0 (upper, lower, active, inactive):\n%s", r.addr, list)
		}
	}

	before, err := e.metricSum(ctx, "vsgate_drops_total{", `reason="no_backend"`)
	if err != nil {
		return "", err
	}
	dialCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	s, who, err := open(dialCtx, 4)
	cancel()
	if err == nil {
		s.c.Close()
		return "", fmt.Errorf("a fifth connection went to %s with both real servers at their upper threshold", who)
	}
	after, err := e.metricSum(ctx, "vsgate_drops_total{", `reason="no_backend"`)
	if err != nil {
		return "", err
	}
	if after <= before {
		return "", fmt.Errorf("the fifth connection failed, but no_backend drops stayed at %.0f", before)
	}

	// b1's connections end with a reset (their flows expire from CLOSE);
	// below -y 1, that is at 0, b1 takes connections again, b2 not yet.
	for _, s := range byServer["b1"] {
		if tc, ok := s.c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		s.c.Close()
	}
	byServer["b1"] = nil
	deadline := time.Now().Add(60 * time.Second) // the CLOSE timeout is 10 s
	for {
		list, err = e.Adm(ctx, "-L", "-n", "--thresholds", "-t", vip)
		if err != nil {
			return "", err
		}
		if _, _, a, in, ok := thresholdRow(list, reals[0].addr); ok && a == 0 && in == 0 {
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("b1's reset connections were still counted after 60 s:\n%s", list)
		}
		time.Sleep(500 * time.Millisecond)
	}
	s, who, err = open(ctx, 5)
	if err != nil {
		return "", fmt.Errorf("a connection after b1 fell below its lower threshold: %w", err)
	}
	byServer[who] = append(byServer[who], s)
	if who != "b1" {
		return "", fmt.Errorf("with b2 still at its upper threshold, the new connection went to %s", who)
	}
	return fmt.Sprintf("-x 2 -y 1 on b1 and b2: 4 connections 2/2, the fifth dropped (no_backend +%.0f), after b1's reset connections expired the next went to b1", after-before), nil
}

// thresholdRow reads a real server's row of `-L -n --thresholds`.
func thresholdRow(list, real string) (upper, lower, active, inactive int, ok bool) {
	for line := range strings.Lines(list) {
		f := strings.Fields(line)
		if len(f) == 6 && f[0] == "->" && f[1] == real {
			_, err := fmt.Sscan(strings.Join(f[2:], " "), &upper, &lower, &active, &inactive)
			return upper, lower, active, inactive, err == nil
		}
	}
	return 0, 0, 0, 0, false
}
