// Package bench measures the whole gateway the way a user would choose
// between vsgate and what they already run: end-to-end benchmarks in
// netlab, vsgate side by side with kernel nftables DNAT, HAProxy, nginx
// and Apache, in one run so that the ratios mean something on a small,
// noisy machine. `vsgate-lab bench` (make bench-e2e) is its command.
//
// # What one run does
//
// For each repetition, for each system in turn (interleaved: A B C A B C
// ...), Run builds a fresh netlab "basic" lab (fresh namespaces, so no
// TIME_WAIT socket or conntrack entry of one system meets the next),
// starts the Go HTTP test servers on the three backends and iperf3 -s on
// b1, starts the system in the gateway namespace, waits until the VIP
// answers through it, and runs the workloads of its layer from the client:
//
//	http-keepalive  wrk -t W -c C -d D --latency          req/s, p50/p99
//	http-close      the same with Connection: close        new conn/s
//	https-keepalive wrk over TLS to VIP:443 (L7 with TLS)  req/s
//	https-close     the same with Connection: close        new conn/s, a full handshake each
//	tcp-bulk        iperf3 -c VIP -P W -t D (L4 only)     Gbit/s
//	udp-64          iperf3 -u -l 64 -b 0 (L4 with UDP)     datagrams/s received
//
// Systems: L4 — kernel-dnat (baseline: netlab's KernelRef nftables DNAT),
// direct (the lab's ceiling: the kernel forwarding to one real server
// that holds the VIP, no NAT; the report gives every row's fraction of
// it), direct-xdp (direct with a pass-only XDP program on the gateway's
// interfaces, in vsgate-afxdp's lab: the ceiling of anything that needs
// XDP on these veths), direct-tc (direct with a TC program that redirects
// every packet to the other interface: the ceiling of a TC BPF data
// path), kernel-synproxy, vsgate-nat and vsgate-fullnat (`vsgate run` on TUN without offloads),
// vsgate-nat-gso (the same with device.offloads: true), vsgate-afpacket
// (`vsgate run` on AF_PACKET in netlab's "l2" topology), vsgate-afxdp
// (device.type: afxdp on "l2", its hosts sending whole checksums, so
// without TSO), haproxy-tcp, nginx-stream; L7 — nginx-http (baseline),
// haproxy-http, apache-proxy (mpm_event + ProxyPass balancer://),
// vsgate-l7 (the kernel's TCP, l7.stack's default) and vsgate-l7-netstack
// (gVisor's netstack); the L7 systems but Apache also serve HTTPS on
// VIP:443 with one throwaway ECDSA P-256 certificate (internal/testcert).
// Every daemon runs in the foreground with a config generated into a
// temp dir, with the same worker count (Config.Workers).
//
// Around each measurement it reads the CPU time of the gateway's process
// tree (/proc/PID/stat), the machine's busy time (/proc/stat) and the
// packets the gateway's interfaces received (netlink), for CPU cost per
// million packets and per thousand requests. Optionally it profiles
// with perf afterwards: vsgate-nat-gso (vsgate-nat when that is not
// selected) under every L4 workload, vsgate-afxdp under the request and
// small-UDP ones, and vsgate-l7 under the HTTP ones, each when it was
// run. The Report (JSON) holds every sample;
// Summarize gives medians with min–max and ratios to each layer's
// baseline; WriteOutputs writes the markdown section (e2e.md) and one
// PNG chart per layer (gonum/plot). SummarizeGoBench turns `go test
// -bench` output into markdown tables (vsgate-lab bench summarize).
//
// # What it must not do
//
// Send traffic anywhere but the namespaces it creates (addresses only in
// 198.18.0.0/15), run an unbounded load loop (every client command has a
// duration and a context deadline), signal a process it did not start
// (gateways, helpers and their children are stopped by PID; every child
// gets SIGKILL if this process dies), or leave a namespace, process or
// temp dir behind, on success, failure or Ctrl-C. It holds no
// package-level mutable state.
package bench
