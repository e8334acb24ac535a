package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Workload is one kind of load the client puts through the gateway.
// Plain data; the zero value is unusable.
type Workload struct {
	Name   string
	Title  string
	Unit   string
	Layers []Layer
	UDP    bool // needs a system that forwards UDP
	TLS    bool // HTTPS: needs a system that terminates TLS
	HTTP   bool // HTTP through the VIP (every system of its layer takes these)
	// Flood is the spoofed-source SYNs a second the client sends at the
	// VIP's HTTP port while the workload runs (System.SynFlood systems
	// only); 0: none.
	Flood int
	// args returns the client command (program first).
	args func(c Config) []string
	// parse reads the client's output into the sample's value and
	// counters.
	parse func(out []byte, s *Sample) error
}

// Workloads returns the workloads in report order.
func Workloads() []Workload {
	url := fmt.Sprintf("http://%s:%d/", vip4(), httpPort)
	tlsURL := fmt.Sprintf("https://%s:%d/", vip4(), httpsPort)
	wrkTo := func(url string, c Config, extra ...string) []string {
		a := []string{"wrk", "-t", strconv.Itoa(c.Workers), "-c", strconv.Itoa(c.Conns),
			"-d", durArg(c.Duration), "--timeout", "2s", "--latency"}
		return append(append(a, extra...), url)
	}
	wrk := func(c Config, extra ...string) []string { return wrkTo(url, c, extra...) }
	iperf := func(c Config, extra ...string) []string {
		a := []string{"iperf3", "-c", vip4().String(), "-p", strconv.Itoa(iperfPort), "-J",
			"-t", durArg(c.Duration), "--connect-timeout", "3000"}
		return append(a, extra...)
	}
	return []Workload{
		{Name: "http-keepalive", Title: "HTTP keep-alive", Unit: "req/s", Layers: []Layer{L4, L7}, HTTP: true,
			args:  func(c Config) []string { return wrk(c) },
			parse: parseWrk},
		{Name: "http-close", Title: "new connections (HTTP, Connection: close)", Unit: "conn/s", Layers: []Layer{L4, L7}, HTTP: true,
			args:  func(c Config) []string { return wrk(c, "-H", "Connection: close") },
			parse: parseWrk},
		{Name: "https-keepalive", Title: "HTTPS keep-alive", Unit: "req/s", Layers: []Layer{L7}, HTTP: true, TLS: true,
			args:  func(c Config) []string { return wrkTo(tlsURL, c) },
			parse: parseWrk},
		{Name: "https-close", Title: "HTTPS new connections (a full TLS handshake each)", Unit: "conn/s", Layers: []Layer{L7}, HTTP: true, TLS: true,
			args:  func(c Config) []string { return wrkTo(tlsURL, c, "-H", "Connection: close") },
			parse: parseWrk},
		{Name: "syn-flood-keepalive", Title: fmt.Sprintf("HTTP keep-alive during a SYN flood (%d SYNs/s from spoofed sources)", floodRate),
			Unit: "req/s", Layers: []Layer{L4}, HTTP: true, Flood: floodRate,
			args:  func(c Config) []string { return wrk(c) },
			parse: parseWrk},
		{Name: "syn-flood-close", Title: fmt.Sprintf("new connections during a SYN flood (%d SYNs/s from spoofed sources)", floodRate),
			Unit: "conn/s", Layers: []Layer{L4}, HTTP: true, Flood: floodRate,
			args:  func(c Config) []string { return wrk(c, "-H", "Connection: close") },
			parse: parseWrk},
		{Name: "tcp-bulk", Title: "bulk TCP (iperf3, 2 streams)", Unit: "Gbit/s", Layers: []Layer{L4},
			args:  func(c Config) []string { return iperf(c, "-P", strconv.Itoa(c.Workers)) },
			parse: parseIperfTCP},
		{Name: "udp-64", Title: "small UDP (iperf3 -u -l 64, unlimited rate)", Unit: "pkt/s", Layers: []Layer{L4}, UDP: true,
			args:  func(c Config) []string { return iperf(c, "-u", "-l", "64", "-b", "0") },
			parse: parseIperfUDP},
	}
}

// floodRate is the SYN flood workloads' rate, and floodNet where their
// sources are drawn from: a /26 of the client's network (hping3
// --rand-source would draw from all of IPv4; the lab keeps to the
// benchmarking range).
const (
	floodRate = 20000
	floodNet  = "198.18.0.64/26"
)

// has reports whether w applies to layer l.
func (w Workload) has(l Layer) bool {
	for _, x := range w.Layers {
		if x == l {
			return true
		}
	}
	return false
}

// durArg formats d for wrk and iperf3: whole seconds, at least 1.
func durArg(d time.Duration) string {
	return strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second)))
}

var (
	reWrkRPS     = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	reWrkReqs    = regexp.MustCompile(`(?m)^\s*([0-9]+) requests in ([0-9.]+)(m?s|m)`)
	reWrkSockErr = regexp.MustCompile(`Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)`)
	reWrkNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses: ([0-9]+)`)
	reWrkPct     = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
)

// parseWrk reads wrk's text output: requests/s, requests, errors and the
// 50th and 99th latency percentiles (--latency).
func parseWrk(out []byte, s *Sample) error {
	m := reWrkRPS.FindSubmatch(out)
	if m == nil {
		return fmt.Errorf("bench: no Requests/sec in wrk output: %q", tail(out))
	}
	s.Value, _ = strconv.ParseFloat(string(m[1]), 64)
	if m := reWrkReqs.FindSubmatch(out); m != nil {
		s.Requests, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	if m := reWrkSockErr.FindSubmatch(out); m != nil {
		for _, g := range m[1:] {
			v, _ := strconv.ParseFloat(string(g), 64)
			s.Errors += v
		}
	}
	if m := reWrkNon2xx.FindSubmatch(out); m != nil {
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		s.Errors += v
	}
	for _, m := range reWrkPct.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(string(m[2]), 64)
		switch string(m[3]) {
		case "us":
			v /= 1000
		case "s":
			v *= 1000
		}
		if string(m[1]) == "50" {
			s.P50ms = v
		} else {
			s.P99ms = v
		}
	}
	if s.Requests == 0 {
		return errors.New("bench: wrk completed no request")
	}
	return nil
}

// iperfResult is the part of iperf3 -J output the benchmark reads.
type iperfResult struct {
	End struct {
		SumReceived struct {
			Seconds       float64 `json:"seconds"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
		Sum struct {
			Seconds     float64 `json:"seconds"`
			Packets     float64 `json:"packets"`
			LostPackets float64 `json:"lost_packets"`
		} `json:"sum"`
	} `json:"end"`
	Error string `json:"error"`
}

// parseIperf decodes iperf3 -J output.
func parseIperf(out []byte) (iperfResult, error) {
	var r iperfResult
	if err := json.Unmarshal(out, &r); err != nil {
		return r, fmt.Errorf("bench: iperf3 output: %w: %q", err, tail(out))
	}
	if r.Error != "" {
		return r, fmt.Errorf("bench: iperf3: %s", r.Error)
	}
	return r, nil
}

// parseIperfTCP reads the receiver's throughput in Gbit/s.
func parseIperfTCP(out []byte, s *Sample) error {
	r, err := parseIperf(out)
	if err != nil {
		return err
	}
	if r.End.SumReceived.BitsPerSecond <= 0 {
		return errors.New("bench: iperf3 received nothing")
	}
	s.Value = r.End.SumReceived.BitsPerSecond / 1e9
	return nil
}

// parseIperfUDP reads the datagrams that arrived at the receiver per
// second (sent minus lost); the lost ones are counted as errors.
func parseIperfUDP(out []byte, s *Sample) error {
	r, err := parseIperf(out)
	if err != nil {
		return err
	}
	sum := r.End.Sum
	if sum.Seconds <= 0 || sum.Packets <= sum.LostPackets {
		return errors.New("bench: iperf3 -u: nothing arrived")
	}
	s.Value = (sum.Packets - sum.LostPackets) / sum.Seconds
	s.Errors = sum.LostPackets
	return nil
}

// tail returns the end of a command's output for error messages.
func tail(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 500 {
		s = "..." + s[len(s)-500:]
	}
	return s
}

// runClient runs the workload's client command in the client namespace,
// bounded by the measurement time plus a margin.
func runClient(ctx context.Context, e *sysEnv, w Workload, c Config) ([]byte, error) {
	args := w.args(c)
	ctx, cancel := context.WithTimeout(ctx, c.Duration+20*time.Second)
	defer cancel()
	out, err := e.client.Command(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil && ctx.Err() != nil {
		return out, fmt.Errorf("bench: %s: %w", strings.Join(args, " "), ctx.Err())
	}
	// iperf3 exits 1 with its JSON error; wrk exits 0 even with errors.
	if err != nil && len(out) == 0 {
		return out, fmt.Errorf("bench: %s: %w", strings.Join(args, " "), err)
	}
	return out, nil
}
