package netlab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// The scenarios of a virtual server, run from the plan's first client
// against a standard topology whose backends run StartBackends. Each
// returns nil when the system under test in the gateway (the kernel
// reference, vsgate) behaves, or an error that says what it saw. They pass
// against the kernel reference first (scenario_test.go), so a failure
// against vsgate is vsgate's.

// ErrScenario is wrapped by every scenario failure (as opposed to errors
// setting the scenario up).
var ErrScenario = errors.New("netlab: scenario failed")

// scenarioTimeout bounds each request of a scenario.
const scenarioTimeout = 5 * time.Second

// deadline is scenarioTimeout from now, or ctx's deadline if earlier.
func deadline(ctx context.Context) time.Time {
	d := time.Now().Add(scenarioTimeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		return cd
	}
	return d
}

// clientAddr returns the first client and its address of vip's family.
func (l *Lab) clientAddr(vip netip.Addr) (*Host, netip.Addr, error) {
	if len(l.Topo.Plan.Clients) == 0 {
		return nil, netip.Addr{}, fmt.Errorf("netlab: topology %s has no client", l.Topo.Name)
	}
	c := l.MustHost(l.Topo.Plan.Clients[0])
	addrs, err := c.Addrs()
	if err != nil {
		return nil, netip.Addr{}, err
	}
	for _, a := range addrs {
		if a.Is4() == vip.Is4() {
			return c, a, nil
		}
	}
	return nil, netip.Addr{}, fmt.Errorf("netlab: client %s has no address of %v's family", c.Name, vip)
}

// getJSON fetches url from host h and decodes an HTTPReply.
func getJSON(ctx context.Context, h *Host, url string) (HTTPReply, error) {
	var rep HTTPReply
	req, err := httpRequest(ctx, url)
	if err != nil {
		return rep, err
	}
	resp, err := h.HTTPClient(scenarioTimeout).Do(req)
	if err != nil {
		return rep, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return rep, fmt.Errorf("%s: status %s", url, resp.Status)
	}
	return rep, json.NewDecoder(resp.Body).Decode(&rep)
}

// httpRequest is a GET of url bound to ctx.
func httpRequest(ctx context.Context, url string) (*http.Request, error) {
	return http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
}

// ScenarioHTTPRoundRobin sends perBackend*len(backends) HTTP requests to
// vip:80 from the client, each on a new connection, and wants exactly
// perBackend on each backend, each backend seeing the client's own address
// (NAT mode keeps the source), the path and the Host header. It returns
// the counts per backend.
func (l *Lab) ScenarioHTTPRoundRobin(ctx context.Context, vip netip.Addr, perBackend int) (map[string]int, error) {
	client, caddr, err := l.clientAddr(vip)
	if err != nil {
		return nil, err
	}
	host := netip.AddrPortFrom(vip, 80).String()
	backends := l.Topo.Plan.Backends
	counts := map[string]int{}
	for i := range perBackend * len(backends) {
		rep, err := getJSON(ctx, client, "http://"+host+"/sales/item")
		if err != nil {
			return counts, fmt.Errorf("%w: request %d: %v", ErrScenario, i, err)
		}
		if rep.Path != "/sales/item" || rep.Host != host {
			return counts, fmt.Errorf("%w: request %d: backend %s saw path %q host %q", ErrScenario, i, rep.Backend, rep.Path, rep.Host)
		}
		if ap, err := netip.ParseAddrPort(rep.Remote); err != nil || ap.Addr().Unmap() != caddr {
			return counts, fmt.Errorf("%w: request %d: backend %s saw source %q, want the client %v", ErrScenario, i, rep.Backend, rep.Remote, caddr)
		}
		counts[rep.Backend]++
	}
	for _, b := range backends {
		if counts[b] != perBackend {
			return counts, fmt.Errorf("%w: spread %v, want %d on each of %v", ErrScenario, counts, perBackend, backends)
		}
	}
	return counts, nil
}

// ScenarioUDP sends a datagram to vip:53 from the client and wants the
// answer "<backend>: <payload>" from one of the backends.
func (l *Lab) ScenarioUDP(ctx context.Context, vip netip.Addr) error {
	client, _, err := l.clientAddr(vip)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, scenarioTimeout)
	defer cancel()
	c, err := client.DialContext(ctx, "udp", netip.AddrPortFrom(vip, 53).String())
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(deadline(ctx))
	if _, err := c.Write([]byte("ping")); err != nil {
		return fmt.Errorf("%w: udp send: %v", ErrScenario, err)
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return fmt.Errorf("%w: udp answer: %v", ErrScenario, err)
	}
	if got := string(buf[:n]); !l.fromBackend(got, "ping") {
		return fmt.Errorf("%w: udp answer %q, want \"<backend>: ping\"", ErrScenario, got)
	}
	return nil
}

// ScenarioTCPEcho sends a line to vip:7 from the client and wants it back
// as "<backend>: <line>" (the telnet-style line service).
func (l *Lab) ScenarioTCPEcho(ctx context.Context, vip netip.Addr) error {
	client, _, err := l.clientAddr(vip)
	if err != nil {
		return err
	}
	got, err := echoLine(ctx, client, netip.AddrPortFrom(vip, 7).String(), "hello")
	if err != nil {
		return fmt.Errorf("%w: tcp echo: %v", ErrScenario, err)
	}
	if !l.fromBackend(got, "hello") {
		return fmt.Errorf("%w: tcp echo answer %q, want \"<backend>: hello\"", ErrScenario, got)
	}
	return nil
}

// ScenarioMasquerade starts an HTTP server on the client (port 8080, on its
// address of masq's family) and has every backend fetch from it; the
// client must see masq as the source.
func (l *Lab) ScenarioMasquerade(ctx context.Context, masq netip.Addr) error {
	client, caddr, err := l.clientAddr(masq)
	if err != nil {
		return err
	}
	srv, err := client.StartHTTP(client.Name, net.JoinHostPort(caddr.String(), "8080"))
	if err != nil {
		return err
	}
	defer srv.Close()
	url := "http://" + netip.AddrPortFrom(caddr, 8080).String() + "/from-backend"
	for _, b := range l.Topo.Plan.Backends {
		rep, err := getJSON(ctx, l.MustHost(b), url)
		if err != nil {
			return fmt.Errorf("%w: %s to the client: %v", ErrScenario, b, err)
		}
		if ap, err := netip.ParseAddrPort(rep.Remote); err != nil || ap.Addr().Unmap() != masq {
			return fmt.Errorf("%w: %s: the client saw source %q, want the masquerade address %v", ErrScenario, b, rep.Remote, masq)
		}
	}
	return nil
}

// fromBackend reports whether s is "<one of the backends>: payload".
func (l *Lab) fromBackend(s, payload string) bool {
	for _, b := range l.Topo.Plan.Backends {
		if s == b+": "+payload {
			return true
		}
	}
	return false
}

// echoLine sends one line to a TCP echo server from host h and returns the
// answer without its newline.
func echoLine(ctx context.Context, h *Host, addr, line string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, scenarioTimeout)
	defer cancel()
	c, err := h.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(deadline(ctx))
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSuffix(got, "\n"), err
}
