package e2e

import (
	"bufio"
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ScaleRow is one measurement of the scale-out benchmark: requests a
// second through n gateways, and what the connection sync sent meanwhile.
type ScaleRow struct {
	Gateways      int
	Workload      string // "keep-alive" or "new connections"
	RequestsPerS  float64
	SyncRecords   float64 // records sent a second, all gateways together
	SyncDatagrams float64 // datagrams sent a second, likewise
	Drops         string  // the gateways' drops so far, by reason
}

var wrkRPS = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

// ECMPScale measures requests a second from the client through 1, 2 and 3
// gateways (vsgate on TUN behind the FRR routers, the demo's
// configuration), each workload for d, with wrk (2 threads, conns
// connections): keep-alive, and a new connection per request. The gateways
// join one by one in one lab, so every row shares the client, the routers
// and the real servers.
func ECMPScale(ctx context.Context, exe string, d time.Duration, conns int, report func(ScaleRow)) ([]ScaleRow, error) {
	e, err := StartECMP(ctx, exe, 1)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	url := "http://" + e.Lab.Topo.Plan.VIP4.String() + "/"
	var rows []ScaleRow
	for n := 1; n <= 3; n++ {
		if n > 1 {
			if err := e.StartGateway(ctx, n-1); err != nil {
				return rows, err
			}
		}
		if err := waitPaths(ctx, e, n); err != nil {
			return rows, err
		}
		for _, w := range []struct {
			name string
			args []string
		}{{"keep-alive", nil}, {"new connections", []string{"-H", "Connection: close"}}} {
			before, err := e.syncSent(ctx)
			if err != nil {
				return rows, err
			}
			start := time.Now()
			args := append([]string{"-t2", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", int(d.Seconds()))}, w.args...)
			out, err := e.client.Run(ctx, "wrk", append(args, url)...)
			if err != nil {
				return rows, err
			}
			took := time.Since(start).Seconds()
			m := wrkRPS.FindSubmatch(out)
			if m == nil {
				return rows, fmt.Errorf("wrk said no Requests/sec:\n%s", out)
			}
			rps, _ := strconv.ParseFloat(string(m[1]), 64)
			after, err := e.syncSent(ctx)
			if err != nil {
				return rows, err
			}
			r := ScaleRow{Gateways: n, Workload: w.name, RequestsPerS: rps,
				SyncRecords: (after[0] - before[0]) / took, SyncDatagrams: (after[1] - before[1]) / took, Drops: drops(ctx, e)}
			rows = append(rows, r)
			if report != nil {
				report(r)
			}
		}
	}
	return rows, nil
}

// syncSent sums the sync records and datagrams every running gateway has
// sent (vsgate_sync_records_total, vsgate_sync_datagrams_total).
func (e *ECMPEnv) syncSent(ctx context.Context) ([2]float64, error) {
	var sum [2]float64
	for i, g := range e.gws {
		if g == nil {
			continue
		}
		resp, err := g.host.HTTPClient(5 * time.Second).Get("http://127.0.0.1:9100/metrics")
		if err != nil {
			return sum, fmt.Errorf("gateway %d's metrics: %w", i+1, err)
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			l := sc.Text()
			for k, name := range []string{`vsgate_sync_records_total{direction="sent"} `, `vsgate_sync_datagrams_total{direction="sent"} `} {
				if v, ok := strings.CutPrefix(l, name); ok {
					f, _ := strconv.ParseFloat(v, 64)
					sum[k] += f
				}
			}
		}
		resp.Body.Close()
	}
	return sum, nil
}
