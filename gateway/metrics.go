package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vsgate/vsgate/gateway/adm"
	"github.com/vsgate/vsgate/nat"
)

// Prometheus metrics are read from the engine when scraped: nothing on the
// packet path feeds them. Service and backend counters follow ipvsadm -Z
// (a reset shows as a counter reset, which Prometheus handles).

var (
	descSvcConns   = prometheus.NewDesc("vsgate_service_connections_total", "Connections scheduled by the virtual service.", []string{"service"}, nil)
	descSvcPackets = prometheus.NewDesc("vsgate_service_packets_total", "Packets of the virtual service by direction (in: client to server).", []string{"service", "direction"}, nil)
	descSvcBytes   = prometheus.NewDesc("vsgate_service_bytes_total", "Bytes of the virtual service by direction.", []string{"service", "direction"}, nil)
	descBeConns    = prometheus.NewDesc("vsgate_backend_connections_total", "Connections scheduled to the real server.", []string{"service", "backend"}, nil)
	descBePackets  = prometheus.NewDesc("vsgate_backend_packets_total", "Packets of the real server by direction.", []string{"service", "backend", "direction"}, nil)
	descBeBytes    = prometheus.NewDesc("vsgate_backend_bytes_total", "Bytes of the real server by direction.", []string{"service", "backend", "direction"}, nil)
	descBeActive   = prometheus.NewDesc("vsgate_backend_active_connections", "ESTABLISHED connections to the real server (ipvsadm ActiveConn).", []string{"service", "backend"}, nil)
	descBeInactive = prometheus.NewDesc("vsgate_backend_inactive_connections", "Other tracked connections to the real server (ipvsadm InActConn).", []string{"service", "backend"}, nil)
	descBeUp       = prometheus.NewDesc("vsgate_backend_up", "1 if the real server takes new connections (health check up and weight > 0).", []string{"service", "backend"}, nil)
	descBeWeight   = prometheus.NewDesc("vsgate_backend_weight", "The real server's weight.", []string{"service", "backend"}, nil)
	descDrops      = prometheus.NewDesc("vsgate_drops_total", "Packets dropped, by reason.", []string{"reason"}, nil)
	descFlows      = prometheus.NewDesc("vsgate_flows", "Tracked flows.", nil, nil)
	descCapacity   = prometheus.NewDesc("vsgate_flow_table_capacity", "Size of the flow table.", nil, nil)
	descTableBytes = prometheus.NewDesc("vsgate_flow_table_bytes", "Memory of the flow table (slab and index; with flow logs, their counts), allocated in full at start (the counts when a service first logs).", nil, nil)
	descEvictions  = prometheus.NewDesc("vsgate_flow_evictions_total", "Flows evicted to admit new ones.", nil, nil)
	descExpired    = prometheus.NewDesc("vsgate_flows_expired_total", "Flows that timed out.", nil, nil)
	descHalfOpen   = prometheus.NewDesc("vsgate_flows_half_open", "Half-open TCP flows (what syn_proxy: auto watches).", nil, nil)
	descPMTU       = prometheus.NewDesc("vsgate_path_mtu_total", "Packets larger than the link they would leave on: fragmented (IPv4 without DF), answered with ICMP fragmentation needed / packet too big (too_big), dropped without an answer over the rate limit (rate_limited) or for want of a buffer (dropped).", []string{"event"}, nil)
	descFlowLogs   = prometheus.NewDesc("vsgate_flow_logs_total", "Flow logs: records of finished flows written (written), held back by their service's flow_log rate (rate_limited), dropped because the writer fell behind (queue_full), and lost to a failed write (write_failed).", []string{"result"}, nil)
	descCookies    = prometheus.NewDesc("vsgate_syn_proxy_cookies_total", "SYN proxy: SYN cookies sent in SYN-ACKs (sent), returned valid in ACKs (valid: each a proxied flow), and SYNs to a real server sent again because a client segment came before the real server answered (server_syn_resent).", []string{"event"}, nil)
	descWorkerPkts = prometheus.NewDesc("vsgate_worker_packets_total", "Packets read by the worker.", []string{"worker"}, nil)
	descWorkerDrop = prometheus.NewDesc("vsgate_worker_dropped_total", "Packets the worker dropped.", []string{"worker"}, nil)
	descWorkerL7   = prometheus.NewDesc("vsgate_worker_l7_total", "Packets handed to the L7 proxy (HTTP services' netstack).", []string{"worker"}, nil)
	descDevDrops   = prometheus.NewDesc("vsgate_device_drops_total", "Packets lost at the device, before vsgate read them or after it wrote them: TUN link statistics (tx: kernel to vsgate), AF_PACKET ring_full (PACKET_STATISTICS tp_drops).", []string{"device", "counter"}, nil)
	descHealthUp   = prometheus.NewDesc("vsgate_health_check_up", "1 if the health check has the target up, 0 if down: every target the checker probes now, and nothing else.", []string{"target", "addr"}, nil)
	descHealthRuns = prometheus.NewDesc("vsgate_health_checks_total", "Health check probes of the target, by result, since it was last set.", []string{"target", "result"}, nil)
	descHealthLast = prometheus.NewDesc("vsgate_health_check_last_timestamp_seconds", "When the target's last probe finished (Unix time; absent before the first).", []string{"target"}, nil)
	descL7Conns    = prometheus.NewDesc("vsgate_l7_connections", "Client connections open on the L7 service.", []string{"service"}, nil)
	descL7Waiting  = prometheus.NewDesc("vsgate_l7_connections_waiting", "Client connections of the L7 service waiting for a request (idle keep-alive, or a head not yet whole).", []string{"service"}, nil)
	descL7Accepted = prometheus.NewDesc("vsgate_l7_connections_accepted_total", "Client connections the L7 service accepted.", []string{"service"}, nil)
	descL7Paused   = prometheus.NewDesc("vsgate_l7_accept_paused_total", "Times the L7 service stopped accepting because l7.max_connections were open (new clients wait in the kernel's listen queue).", []string{"service"}, nil)
	descL7Loop     = prometheus.NewDesc("vsgate_l7_event_loop_requests_total", "Requests the L7 service's event loops served themselves (plain HTTP/1.1 without a body, a response of known length up to 64 KiB).", []string{"service"}, nil)
	descL7Handed   = prometheus.NewDesc("vsgate_l7_handovers_total", "Client connections the L7 service's event loops handed to a goroutine of their own (a request body, Upgrade, Expect, TLS, a refused or partial head, a chunked or large response).", []string{"service"}, nil)
	descL7Latency  = prometheus.NewDesc("vsgate_l7_request_duration_seconds", "How long the L7 service's requests took, from the request head read whole to the response's last byte handed to the client's socket (also for the proxy's own answers; HTTP/2 streams each).", []string{"service"}, nil)
	descL7Resp     = prometheus.NewDesc("vsgate_l7_responses_total", "Final responses the L7 service sent, by status code and by who made them: backend (the real server's) or proxy (vsgate's own answer: a refused request, a limit reached, no real server reachable).", []string{"service", "code", "source"}, nil)
	descL7MemReqs  = prometheus.NewDesc("vsgate_l7_member_requests_total", "Requests sent to the L7 real server (since the last reload).", []string{"service", "balancer", "member"}, nil)
	descL7MemFails = prometheus.NewDesc("vsgate_l7_member_failures_total", "Failed connections to the L7 real server (since the last reload).", []string{"service", "balancer", "member"}, nil)
	descL7MemBusy  = prometheus.NewDesc("vsgate_l7_member_busy", "Requests in flight to the L7 real server.", []string{"service", "balancer", "member"}, nil)
	descL7MemUp    = prometheus.NewDesc("vsgate_l7_member_up", "1 if the L7 real server takes requests (not down by its health check, not resting after a failure).", []string{"service", "balancer", "member"}, nil)
	descDataPath   = prometheus.NewDesc("vsgate_device_data_path", "1 for how each owned interface carries the frames (AF_PACKET device): afpacket, afxdp-zerocopy (AF_XDP, the driver's zero-copy mode) or afxdp-copy (AF_XDP in copy mode).", []string{"interface", "path"}, nil)
	descCopied     = prometheus.NewDesc("vsgate_device_frames_copied_total", "AF_XDP device: frames copied into the UMEM to be sent, by interface: what vsgate made itself (replies, the segments of a super-packet). A forwarded frame leaves from the chunk it arrived in and is not counted.", []string{"interface"}, nil)
	descLink       = prometheus.NewDesc("vsgate_link_events_total", "AF_PACKET device: ARP/ND answers and requests sent, and packets dropped by the link layer, by event.", []string{"event"}, nil)
)

// collector reads a gateway for Prometheus.
type collector struct{ g *Gateway }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSvcConns, descSvcPackets, descSvcBytes, descBeConns, descBePackets, descBeBytes,
		descBeActive, descBeInactive, descBeUp, descBeWeight, descDrops, descFlows, descCapacity, descTableBytes, descEvictions, descExpired,
		descHalfOpen, descCookies, descFlowLogs, descPMTU, descWorkerPkts, descWorkerDrop, descWorkerL7, descLink, descDataPath, descCopied, descDevDrops,
		descHealthUp, descHealthRuns, descHealthLast,
		descL7Conns, descL7Waiting, descL7Accepted, descL7Paused, descL7Loop, descL7Handed, descL7Latency, descL7Resp, descL7MemReqs, descL7MemFails, descL7MemBusy, descL7MemUp} {
		ch <- d
	}
	for _, d := range syncDescs {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	g := c.g
	e := g.engine
	g.collectSync(ch)
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, s := range e.Services() {
		svc := adm.ServiceKey(s.Service)
		counter(descSvcConns, s.Stats.Conns, svc)
		counter(descSvcPackets, s.Stats.PacketsIn, svc, "in")
		counter(descSvcPackets, s.Stats.PacketsOut, svc, "out")
		counter(descSvcBytes, s.Stats.BytesIn, svc, "in")
		counter(descSvcBytes, s.Stats.BytesOut, svc, "out")
		for _, b := range s.Backends {
			be := b.Addr.String() + ":" + strconv.Itoa(int(b.Port))
			if b.Addr.Is6() {
				be = "[" + b.Addr.String() + "]:" + strconv.Itoa(int(b.Port))
			}
			counter(descBeConns, b.Stats.Conns, svc, be)
			counter(descBePackets, b.Stats.PacketsIn, svc, be, "in")
			counter(descBePackets, b.Stats.PacketsOut, svc, be, "out")
			counter(descBeBytes, b.Stats.BytesIn, svc, be, "in")
			counter(descBeBytes, b.Stats.BytesOut, svc, be, "out")
			gauge(descBeActive, float64(b.ActiveConns), svc, be)
			gauge(descBeInactive, float64(b.InactiveConns), svc, be)
			up := 0.0
			if !b.Down && b.Weight > 0 {
				up = 1
			}
			gauge(descBeUp, up, svc, be)
			gauge(descBeWeight, float64(b.Weight), svc, be)
		}
	}
	for r := range nat.DropReason(nat.NumDropReasons) {
		counter(descDrops, e.Drops(r), r.String())
	}
	gauge(descFlows, float64(e.Flows()))
	gauge(descCapacity, float64(e.Capacity()))
	gauge(descTableBytes, float64(e.TableBytes()))
	counter(descEvictions, e.Evictions())
	counter(descExpired, e.Expired())
	gauge(descHalfOpen, float64(e.HalfOpen()))
	sp := e.SynProxy()
	counter(descCookies, sp.CookiesSent, "sent")
	counter(descCookies, sp.CookiesValid, "valid")
	counter(descCookies, sp.ServerSynResent, "server_syn_resent")
	fl := e.FlowLogs()
	counter(descFlowLogs, fl.Suppressed, "rate_limited")
	if g.flows != nil {
		counter(descFlowLogs, g.flows.written.Load(), "written")
		counter(descFlowLogs, g.flows.queueFull.Load(), "queue_full")
		counter(descFlowLogs, g.flows.failed.Load(), "write_failed")
	}
	counter(descPMTU, g.pmtu.fragmented.Load(), "fragmented")
	counter(descPMTU, g.pmtu.tooBig.Load(), "too_big")
	counter(descPMTU, g.pmtu.rateLimited.Load(), "rate_limited")
	counter(descPMTU, g.pmtu.dropped.Load(), "dropped")
	for i := range g.counts {
		w := strconv.Itoa(i)
		counter(descWorkerPkts, g.counts[i].packets.Load(), w)
		counter(descWorkerDrop, g.counts[i].dropped.Load(), w)
		counter(descWorkerL7, g.counts[i].toL7.Load(), w)
	}
	for _, h := range g.checker.States() {
		up := 0.0
		if h.Up {
			up = 1
		}
		gauge(descHealthUp, up, h.Key, h.Addr.String())
		counter(descHealthRuns, h.Passed, h.Key, "passed")
		counter(descHealthRuns, h.Fail, h.Key, "failed")
		if !h.LastAt.IsZero() {
			gauge(descHealthLast, float64(h.LastAt.UnixNano())/1e9, h.Key)
		}
	}
	for _, l := range g.L7Stats() {
		svc := "TCP " + l.VIP.String()
		gauge(descL7Conns, float64(l.Front.Connections), svc)
		gauge(descL7Waiting, float64(l.Front.Waiting), svc)
		counter(descL7Accepted, l.Front.Accepted, svc)
		counter(descL7Paused, l.Front.Paused, svc)
		counter(descL7Loop, l.Front.LoopRequests, svc)
		counter(descL7Handed, l.Front.HandedOver, svc)
		d := l.Front.Durations
		buckets := make(map[float64]uint64, len(d.Bounds))
		for i, b := range d.Bounds {
			buckets[b.Seconds()] = d.Counts[i]
		}
		ch <- prometheus.MustNewConstHistogram(descL7Latency, d.Count, d.Sum.Seconds(), buckets, svc)
		for _, r := range l.Front.Responses {
			source := "backend"
			if r.FromProxy {
				source = "proxy"
			}
			counter(descL7Resp, r.Count, svc, strconv.Itoa(r.Status), source)
		}
		seen := map[[2]string]bool{}
		for _, m := range l.Members {
			// A worker is listed once per balancer (or once outside
			// any): Prometheus refuses a label set twice.
			key := [2]string{m.Balancer, m.URL}
			if seen[key] {
				continue
			}
			seen[key] = true
			counter(descL7MemReqs, m.Requests, svc, m.Balancer, m.URL)
			counter(descL7MemFails, m.Failures, svc, m.Balancer, m.URL)
			gauge(descL7MemBusy, float64(m.Busy), svc, m.Balancer, m.URL)
			up := 1.0
			if m.Down || m.InError {
				up = 0
			}
			gauge(descL7MemUp, up, svc, m.Balancer, m.URL)
		}
	}
	for _, d := range g.DeviceDrops() {
		counter(descDevDrops, d.Value, d.Device, d.Counter)
	}
	if g.link != nil {
		st := g.link.Stats()
		counter(descLink, st.Replies.Load(), "reply_sent")
		counter(descLink, st.Requests.Load(), "request_sent")
		counter(descLink, st.NoRoute.Load(), "drop_no_route")
		counter(descLink, st.ToSelf.Load(), "drop_to_self")
		counter(descLink, st.Unresolved.Load(), "drop_unresolved")
		counter(descLink, st.Short.Load(), "drop_short")
		counter(descLink, st.TTL.Load(), "drop_ttl")
		counter(descLink, st.TimeExceeded.Load(), "time_exceeded_sent")
		truncated, tagged, refused := g.link.SocketDrops()
		counter(descLink, truncated, "drop_truncated")
		counter(descLink, tagged, "drop_vlan_tagged")
		counter(descLink, refused, "drop_refused_by_kernel")
		for ifc, path := range g.link.DataPaths() {
			gauge(descDataPath, 1, ifc, path)
		}
		for ifc, n := range g.link.CopiedFrames() {
			counter(descCopied, n, ifc)
		}
	}
}

// maxProfileSeconds bounds the seconds a profile or trace may run: a
// request for more is refused rather than left to hold a CPU profile (one
// at a time per process) or a trace buffer for hours.
const maxProfileSeconds = 60

// capSeconds refuses requests whose seconds parameter is not a whole
// number in 1..maxProfileSeconds.
func capSeconds(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s := r.FormValue("seconds"); s != "" {
			if n, err := strconv.Atoi(s); err != nil || n < 1 || n > maxProfileSeconds {
				http.Error(w, fmt.Sprintf("seconds=%q: a whole number of seconds from 1 to %d", s, maxProfileSeconds), http.StatusBadRequest)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// serveMetrics starts the metrics endpoint on addr (/metrics), and with
// profiles Go's profiling endpoints (/debug/pprof/, on this mux only: not
// on http.DefaultServeMux, which other listeners might serve).
func (g *Gateway) serveMetrics(addr string, profiles bool) (*http.Server, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collector{g}); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	g.statusHandlers(mux)
	if profiles {
		mux.Handle("/debug/pprof/", capSeconds(http.HandlerFunc(pprof.Index)))
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.Handle("/debug/pprof/profile", capSeconds(http.HandlerFunc(pprof.Profile)))
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.Handle("/debug/pprof/trace", capSeconds(http.HandlerFunc(pprof.Trace)))
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	g.metricsAddr = ln.Addr()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.log.Error("metrics server", "err", err)
		}
	}()
	return srv, nil
}

// MetricsAddr is the address metrics are served on ("" if none): useful
// with port 0.
func (g *Gateway) MetricsAddr() string {
	if g.metricsAddr == nil {
		return ""
	}
	return g.metricsAddr.String()
}
