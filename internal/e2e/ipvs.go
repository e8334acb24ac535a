package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
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

// stepPortZero: a persistent service of port 0 on a VIP of its own
// (ipvsadm -A -t VIP -p 60, real servers without a port) serves every port
// its real servers serve — the line service (7) and HTTP (80) — each on
// the port asked for, one real server for one client across ports, and
// -L lists it as ipvsadm does.
func stepPortZero(ctx context.Context, e *Env) (string, error) {
	const vip = "198.18.0.14"
	if _, err := e.Adm(ctx, "-A", "-t", vip, "-s", "rr", "-p", "60"); err != nil {
		return "", err
	}
	defer func() { _, _ = e.Adm(context.WithoutCancel(ctx), "-D", "-t", vip+":0") }()
	for _, real := range []string{"198.18.2.11", "198.18.2.12"} {
		if _, err := e.Adm(ctx, "-a", "-t", vip, "-r", real, "-m"); err != nil {
			return "", err
		}
	}
	seen := map[string]int{}
	for i := range 3 {
		c, err := e.client.DialContext(ctx, "tcp", vip+":7")
		if err != nil {
			return "", fmt.Errorf("connection %d to port 7: %w", i, err)
		}
		who, err := (&session{c: c, r: bufio.NewReader(c)}).say(fmt.Sprintf("port zero %d", i))
		c.Close()
		if err != nil {
			return "", fmt.Errorf("connection %d to port 7: %w", i, err)
		}
		seen[who]++
		r, err := e.get(ctx, "http://"+vip+"/zero")
		if err != nil {
			return "", fmt.Errorf("request %d to port 80: %w", i, err)
		}
		seen[r.Backend]++
	}
	if len(seen) != 1 {
		return "", fmt.Errorf("one client's connections to ports 7 and 80 went to %v: the persistence of a port-0 service holds across ports", seen)
	}
	list, err := e.Adm(ctx, "-L", "-n", "-t", vip+":0")
	if err != nil {
		return "", err
	}
	if !strings.Contains(list, "TCP  198.18.0.14:0 rr persistent 60\n") || !strings.Contains(list, "  -> 198.18.2.11:0 ") {
		return "", fmt.Errorf("-L -n -t %s:0:\n%s", vip, list)
	}
	return fmt.Sprintf("-A -t %s -p 60: 3 connections to port 7 and 3 requests to port 80 all answered by %v", vip, seen), nil
}

// stepOnePacket: a one-packet UDP service (ipvsadm -o) sends each datagram
// of one client socket on its own — rr over two real servers alternates
// within the socket, where a flow would hold it to one — answers reach
// the socket from the VIP, and no flow is listed.
func stepOnePacket(ctx context.Context, e *Env) (string, error) {
	vip := netip.AddrPortFrom(e.Lab.Topo.Plan.VIP4, 56).String()
	// Echoes of their own, so that these real servers serve no other
	// service: their answers are translated by their source alone.
	for _, b := range []string{"b1", "b2"} {
		s, err := e.Lab.MustHost(b).StartUDPEcho(b, ":5354")
		if err != nil {
			return "", err
		}
		defer s.Close()
	}
	if _, err := e.Adm(ctx, "-A", "-u", vip, "-s", "rr", "-o"); err != nil {
		return "", err
	}
	defer func() { _, _ = e.Adm(context.WithoutCancel(ctx), "-D", "-u", vip) }()
	for _, real := range []string{"198.18.2.11:5354", "198.18.2.12:5354"} {
		if _, err := e.Adm(ctx, "-a", "-u", vip, "-r", real, "-m"); err != nil {
			return "", err
		}
	}
	c, err := e.client.DialContext(ctx, "udp", vip)
	if err != nil {
		return "", err
	}
	defer c.Close()
	var got []string
	buf := make([]byte, 1500)
	for i := range 4 {
		msg := fmt.Sprintf("datagram %d", i)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte(msg)); err != nil {
			return "", err
		}
		n, err := c.Read(buf)
		if err != nil {
			return strings.Join(got, ", "), fmt.Errorf("the answer to %q: %w", msg, err)
		}
		who, rest, ok := strings.Cut(string(buf[:n]), ": ")
		if !ok || rest != msg {
			return "", fmt.Errorf("answer %q to %q", buf[:n], msg)
		}
		got = append(got, who)
	}
	for i := 1; i < len(got); i++ {
		if got[i] == got[i-1] {
			return "", fmt.Errorf("one socket's datagrams went to %v: with -o and rr they alternate", got)
		}
	}
	if list, err := e.Adm(ctx, "-L", "-n", "-u", vip); err != nil || !strings.Contains(list, "UDP  "+vip+" rr ops\n") {
		return "", fmt.Errorf("-L -n -u %s: %v\n%s", vip, err, list)
	}
	if flows, err := e.Adm(ctx, "-L", "-n", "-c"); err != nil || strings.Contains(flows, " "+vip+" ") {
		return "", fmt.Errorf("-L -n -c lists a flow of the one-packet service (%v):\n%s", err, flows)
	}
	return fmt.Sprintf("4 datagrams of one socket answered by %v, from the VIP; no flow listed", got), nil
}

// stepFwmark: the LVS way to group addresses and ports into one service:
// iptables' mangle table marks flows to 198.18.0.16/30 on ports 80 and 7,
// a firewall-mark service takes them (ipvsadm -A -f 5 -p 60), so one
// client's HTTP requests and line sessions to any of the four addresses
// go to one real server; -L and iptables -L list it all, -L -c the flows.
func stepFwmark(ctx context.Context, e *Env) (string, error) {
	for _, cmd := range [][]string{
		{"iptables", "-t", "mangle", "-A", "PREROUTING", "-d", "198.18.0.16/30", "-p", "tcp", "--dport", "80", "-j", "MARK", "--set-mark", "5"},
		{"iptables", "-t", "mangle", "-A", "PREROUTING", "-d", "198.18.0.16/30", "-p", "tcp", "--dport", "7", "-j", "MARK", "--set-mark", "5"},
		{"-A", "-f", "5", "-s", "rr", "-p", "60"},
		{"-a", "-f", "5", "-r", "198.18.2.12", "-m"},
		{"-a", "-f", "5", "-r", "198.18.2.13", "-m"},
	} {
		if out, err := e.Adm(ctx, cmd...); err != nil {
			return out, err
		}
	}
	defer func() {
		bg := context.WithoutCancel(ctx)
		_, _ = e.Adm(bg, "-D", "-f", "5")
		_, _ = e.Adm(bg, "iptables", "-t", "mangle", "-F")
	}()
	seen := map[string]int{}
	for i, a := range []string{"198.18.0.16", "198.18.0.17", "198.18.0.18", "198.18.0.19"} {
		r, err := e.get(ctx, "http://"+a+"/fwmark")
		if err != nil {
			return "", fmt.Errorf("GET http://%s/: %w", a, err)
		}
		seen[r.Backend]++
		c, err := e.client.DialContext(ctx, "tcp", a+":7")
		if err != nil {
			return "", fmt.Errorf("%s:7: %w", a, err)
		}
		who, err := (&session{c: c, r: bufio.NewReader(c)}).say(fmt.Sprintf("mark %d", i))
		c.Close()
		if err != nil {
			return "", fmt.Errorf("%s:7: %w", a, err)
		}
		seen[who]++
	}
	if len(seen) != 1 || seen["b1"] != 0 {
		return "", fmt.Errorf("one client's connections to the mark's addresses and ports went to %v: want one of b2 and b3 (persistence of the mark)", seen)
	}
	list, err := e.Adm(ctx, "-L", "-n")
	if err != nil || !strings.Contains(list, "FWM  5 rr persistent 60\n") || !strings.Contains(list, "  -> 198.18.2.12:0 ") {
		return "", fmt.Errorf("-L -n (%v):\n%s", err, list)
	}
	marks, err := e.Adm(ctx, "iptables", "-t", "mangle", "-L", "PREROUTING", "-n")
	if err != nil || !strings.Contains(marks, "MARK       tcp  --  0.0.0.0/0            198.18.0.16/30       tcp dpt:80 MARK set 0x5\n") {
		return "", fmt.Errorf("iptables -t mangle -L PREROUTING -n (%v):\n%s", err, marks)
	}
	return fmt.Sprintf("ports 80 and 7 of 198.18.0.16-19 marked 5: 8 connections of one client all answered by %v", seen), nil
}

// stepDashboard: every metric the Grafana dashboard (docs/grafana) queries
// is on the running gateway's /metrics, each with every label the
// dashboard groups it by.
func stepDashboard(ctx context.Context, e *Env) (string, error) {
	file, err := dashboardFile()
	if err != nil {
		return "", err
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		return "", fmt.Errorf("%s: %w", file, err)
	}
	m, err := e.metrics(ctx)
	if err != nil {
		return "", err
	}
	metricRE := regexp.MustCompile(`vsgate_[a-z0-9_]+`)
	byRE := regexp.MustCompile(`by \(([^)]*)\)`)
	checked := map[string]bool{}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			var labels []string
			for _, g := range byRE.FindAllStringSubmatch(tg.Expr, -1) {
				for l := range strings.SplitSeq(g[1], ",") {
					labels = append(labels, strings.TrimSpace(l))
				}
			}
			for _, name := range metricRE.FindAllString(tg.Expr, -1) {
				var sample string
				for line := range strings.Lines(m) {
					if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
						sample = line
						break
					}
				}
				if sample == "" {
					return "", fmt.Errorf("panel %q queries %s, which the gateway's /metrics does not have", p.Title, name)
				}
				for _, l := range labels {
					if !strings.Contains(sample, l+"=") {
						return "", fmt.Errorf("panel %q groups %s by %q, which its samples lack: %s", p.Title, name, l, strings.TrimSpace(sample))
					}
				}
				checked[name] = true
			}
		}
	}
	if len(checked) < 20 {
		return "", fmt.Errorf("only %d metrics found in the dashboard's queries", len(checked))
	}
	return fmt.Sprintf("%d panels, %d metrics, all on /metrics with the labels the panels group by", len(dash.Panels), len(checked)), nil
}

// dashboardFile finds docs/grafana/vsgate.json from the working directory
// (the repository, or a package directory under it).
func dashboardFile() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		f := filepath.Join(dir, "docs", "grafana", "vsgate.json")
		if _, err := os.Stat(f); err == nil {
			return f, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("docs/grafana/vsgate.json not found above the working directory")
		}
		dir = parent
	}
}
