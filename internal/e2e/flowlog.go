package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// flowLogPort is the demo's service with flow logs (flow_log:), on the
// IPv4 VIP: a service of its own, so that its counters count only the
// step's flow.
const flowLogPort = 84

// flowLogBytes is what stepFlowLog downloads.
const flowLogBytes = 8 << 20

// stepFlowLog: a download through the flow-logged service, ended by the
// client with a reset, is logged once with the client's address and port,
// the VIP, a real server, reason rst, and the packets and bytes each way
// that the service's own counters (ipvsadm --stats) grew by, the bytes at
// least the payload that crossed.
func stepFlowLog(ctx context.Context, e *Env) (string, error) {
	vip := netip.AddrPortFrom(e.Lab.Topo.Plan.VIP4, flowLogPort)
	service := "TCP " + vip.String()
	counters := func() ([4]float64, error) {
		var out [4]float64
		for i, s := range []string{
			`vsgate_service_packets_total{direction="in",service="` + service + `"}`,
			`vsgate_service_packets_total{direction="out",service="` + service + `"}`,
			`vsgate_service_bytes_total{direction="in",service="` + service + `"}`,
			`vsgate_service_bytes_total{direction="out",service="` + service + `"}`,
		} {
			v, err := e.metricValue(ctx, s)
			if err != nil {
				return out, err
			}
			out[i] = v
		}
		return out, nil
	}
	before, err := counters()
	if err != nil {
		return "", err
	}
	c, err := e.client.DialContext(ctx, "tcp", vip.String())
	if err != nil {
		return "", err
	}
	client := c.LocalAddr().String()
	req := fmt.Sprintf("GET /big?bytes=%d HTTP/1.1\r\nHost: %s\r\n\r\n", flowLogBytes, vip)
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return "", err
	}
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		c.Close()
		return "", err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != flowLogBytes {
		c.Close()
		return "", fmt.Errorf("downloaded %d bytes (%v), want %d", n, err, flowLogBytes)
	}
	// A reset ends the flow (CLOSE, 10 s), sooner than a FIN's
	// TIME_WAIT would.
	_ = c.(*net.TCPConn).SetLinger(0)
	c.Close()

	var line map[string]string
	deadline := time.Now().Add(40 * time.Second)
	for line == nil {
		for _, l := range flowLines(e.Log()) {
			if l["vip"] == vip.String() && l["client"] == client {
				if line != nil {
					return "", fmt.Errorf("the flow was logged twice:\n%v\n%v", line, l)
				}
				line = l
			}
		}
		if line == nil {
			if time.Now().After(deadline) {
				return "", fmt.Errorf("no flow line for %s -> %s in vsgate's log after 40 s", client, vip)
			}
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	after, err := counters()
	if err != nil {
		return "", err
	}
	detail := fmt.Sprintf("logged: %s", formatFlowLine(line))
	for i, k := range []string{"packets_in", "packets_out", "bytes_in", "bytes_out"} {
		got, err := strconv.ParseUint(line[k], 10, 64)
		if err != nil {
			return detail, fmt.Errorf("%s %q: %v", k, line[k], err)
		}
		if want := uint64(after[i] - before[i]); got != want {
			return detail, fmt.Errorf("%s %d, but the service counted %d", k, got, want)
		}
	}
	if out, _ := strconv.ParseUint(line["bytes_out"], 10, 64); out < flowLogBytes {
		return detail, fmt.Errorf("bytes_out %d: less than the %d bytes of payload", out, flowLogBytes)
	}
	switch {
	case line["reason"] != "rst" || line["state"] != "CLOSE":
		return detail, fmt.Errorf("reason %s in %s, want rst in CLOSE", line["reason"], line["state"])
	case !strings.HasPrefix(line["real_server"], "198.18.2.") || !strings.HasSuffix(line["real_server"], ":80"):
		return detail, fmt.Errorf("real server %s: not one of the demo's", line["real_server"])
	case line["service"] != "tcp "+vip.String():
		return detail, fmt.Errorf("service %q", line["service"])
	}
	return detail, nil
}

// logField is one key=value of slog's text format: the value bare, or
// quoted as strconv.Quote writes it.
var logField = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S*)`)

// flowLines returns the flow lines (msg=flow) of a log in slog's text
// format, as their fields.
func flowLines(log string) []map[string]string {
	var out []map[string]string
	for l := range strings.Lines(log) {
		if !strings.Contains(l, " msg=flow ") {
			continue
		}
		m := map[string]string{}
		for _, f := range logField.FindAllStringSubmatch(l, -1) {
			v := f[2]
			if u, err := strconv.Unquote(v); err == nil {
				v = u
			}
			m[f[1]] = v
		}
		out = append(out, m)
	}
	return out
}

// formatFlowLine shows a flow line's main fields.
func formatFlowLine(l map[string]string) string {
	var parts []string
	for _, k := range []string{"client", "vip", "real_server", "duration", "packets_in", "packets_out", "bytes_in", "bytes_out", "reason"} {
		parts = append(parts, k+"="+l[k])
	}
	return strings.Join(parts, " ")
}
