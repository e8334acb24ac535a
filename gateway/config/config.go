package config

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"time"

	"github.com/vsgate/vsgate/gateway/names"
	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
	"github.com/vsgate/vsgate/sched"
)

// Limits and defaults.
const (
	// MaxFileSize is the largest file Load reads.
	MaxFileSize = 16 << 20
	// DefaultTableSize is table.size when the file does not set it (the nat
	// engine's default: 65536 flows, about 8 MB).
	DefaultTableSize = 1 << 16
	// MaxTableSize bounds table.size: 2^26 flows are about 8 GB of table.
	MaxTableSize = 1 << 26
	// MaxQueues bounds device.queues (the kernel's MAX_TAP_QUEUES).
	MaxQueues = 256
	// MaxTimeout bounds every timeout and persistence: one year. Longer
	// values would overflow the engine's clock arithmetic.
	MaxTimeout = 365 * 24 * time.Hour
	// DefaultScheduler is ipvsadm's default scheduler.
	DefaultScheduler = "wlc"
	// DefaultSocket is control.socket when the file does not set it.
	DefaultSocket = "/run/vsgate/vsgate.sock"
	// DefaultUser is user when the file does not set it.
	DefaultUser = "nobody"
	// DefaultPcapDir is pcap.dir when the file does not set it.
	DefaultPcapDir = "/var/lib/vsgate/pcap"
	// DefaultMetrics is metrics.listen when the file does not set it.
	DefaultMetrics = "127.0.0.1:9100"
)

// Device types (Device.Type).
const (
	DeviceTUN      = "tun"      // a TUN interface; the kernel routes packets into it
	DeviceAFPacket = "afpacket" // AF_PACKET sockets on Ethernet interfaces; vsgate answers ARP/ND itself
	// DeviceAFXDP is afpacket with the frames through AF_XDP sockets, fed
	// by an XDP program (packet/afxdp); ARP/ND still through AF_PACKET.
	// An interface where XDP cannot attach falls back to AF_PACKET.
	DeviceAFXDP = "afxdp"
)

// Health check types (Health.Type).
const (
	HealthTCP  = "tcp"  // connect to the backend's port; success is a completed handshake
	HealthHTTP = "http" // GET Health.Path; success is status Health.Expect
)

// Config is one validated configuration. Parse returns it with every
// default filled in, so every field is explicit; Validate checks one built
// in code; the zero Config is not valid. It is a plain value with no
// methods that change it, safe to read from any goroutine: the gateway
// keeps the running one and, on reload, replaces it only with one that
// Parse accepted.
type Config struct {
	Device Device
	// TableSize is the maximum number of tracked flows (nat.Config.Capacity).
	TableSize int
	// PerSource limits what one source prefix may hold of the table.
	PerSource PerSource
	// SynProxy is when services with syn_proxy: auto proxy.
	SynProxy SynProxyAuto
	// Timeouts are the flow timeouts; a zero field means IPVS's default
	// (nat.DefaultTimeouts).
	Timeouts nat.Timeouts
	// DropUnmatched drops packets that match no flow, service or rule;
	// otherwise they pass unchanged (default: pass).
	DropUnmatched bool
	// ResetRemoved resets the flows of removed backends at their next
	// packet instead of letting them drain (removed_backends: reset).
	ResetRemoved bool
	// TCPLiberal turns the TCP window check off for every flow
	// (tcp_window_check: false; conntrack's be_liberal).
	TCPLiberal bool
	Services   []Service
	Masquerade []nat.Masquerade // To and Ports are always set
	// Marks give new flows firewall marks for the fwmark services (the
	// iptables mangle step; nat.Config.Marks).
	Marks []nat.Mark
	// MasqueradeTo is the address masquerade rules get when they do not
	// name one: the file's rules without "to", and the gateway's
	// ipchains rules (vsgate adm) without --to. Invalid (zero) if not set.
	MasqueradeTo netip.Addr
	// MasqueradeInside are addresses vsgate may take on the subnets
	// behind it: an inbound masquerade rule (into, ipchains -d) without
	// "to" gets the one that lies in its subnet, file and adm alike.
	MasqueradeInside []netip.Addr
	FullNAT          FullNAT
	// Resolved lists the host names the file gave and what each stood
	// for when it was read (vsgate check prints them).
	Resolved []Resolution
	Control  Control
	// User is who the gateway runs as once its device, sockets and routes
	// are set up (a name or a number from /etc/passwd, not root).
	User string
	// Seccomp confines the running gateway to the system calls it makes
	// (internal/privilege.Confine) once privileges are dropped.
	Seccomp bool
	Pcap    Pcap
	Metrics Metrics
	Log     Log
	// BGP is the embedded BGP speaker; nil when the file has no bgp:
	// block.
	BGP *BGP
	// Sync is the connection sync with peer gateways; nil when the file
	// has no sync: block.
	Sync *Sync
	// L7Stack is l7.stack: which TCP stack terminates the clients of L7
	// services, L7Kernel (the default) or L7Netstack.
	L7Stack string
	// L7MaxConnections is l7.max_connections: the client connections
	// each L7 service serves at once.
	L7MaxConnections int
}

// l7.stack's values.
const (
	// L7Kernel: the gateway namespace's own TCP stack, through listeners
	// on the VIPs that a routing rule per VIP and port delivers to.
	L7Kernel = "kernel"
	// L7Netstack: gVisor's netstack inside vsgate, fed from the device,
	// for a gateway whose kernel must own no route to the VIP.
	L7Netstack = "netstack"
)

// PerSource is table.per_source: limits on the flows one client prefix
// may hold (nat.Config.SourceFlows and friends). 0 limits mean none.
type PerSource struct {
	V4Prefix, V6Prefix int // prefix lengths that make one source: 1..32, 1..128 (32, 128)
	HalfOpen           int // half-open TCP flows per source; 0: no limit
	Flows              int // flows per source; 0: no limit
}

// SynProxyAuto is table.syn_proxy: syn_proxy: auto services answer new
// connections with SYN cookies while the table holds HalfOpen half-open
// TCP flows or more, or is Fill percent full or more
// (nat.Config.SynProxyHalfOpen, SynProxyFill).
type SynProxyAuto struct {
	HalfOpen int // 1..MaxTableSize (DefaultSynProxyHalfOpen)
	Fill     int // 1..100 (DefaultSynProxyFill)
}

// Defaults of table.syn_proxy.
const (
	DefaultSynProxyHalfOpen = 1024
	DefaultSynProxyFill     = 75
)

// Ethernet reports whether the device works on Ethernet interfaces
// (afpacket, afxdp) rather than a TUN.
func (d Device) Ethernet() bool { return d.Type == DeviceAFPacket || d.Type == DeviceAFXDP }

// Device is where packets come from and go to.
type Device struct {
	Type     string // DeviceTUN, DeviceAFPacket or DeviceAFXDP
	Name     string // TUN: interface name, at most 15 bytes
	Queues   int    // TUN queues, or AF_PACKET sockets per interface; one worker each: 1..MaxQueues
	Offloads bool   // TUN with the virtio-net header and TSO/USO (GSO/GRO); default true
	// AF_PACKET: the Ethernet interfaces vsgate owns, and the addresses it
	// answers ARP/ND for besides VIPs, masquerade and FULLNAT addresses
	// (the real servers' default gateway).
	Interfaces []string
	Addresses  []netip.Addr
}

// Service is one virtual service: protocol, VIP and port to real servers.
type Service struct {
	Name  string         // optional label: letters, digits, '.', '_', '-'
	Proto uint8          // packet.ProtoTCP or packet.ProtoUDP; 0 for a fwmark service
	VIP   netip.AddrPort // the virtual address and port clients connect to
	// Fwmark makes a firewall-mark service (ipvsadm -f; fwmark: N, with
	// family: ipv6 for IPv6): it takes the TCP and UDP flows that the
	// marks give its mark, and VIP is its family's unspecified address
	// with port 0 (nat.Service.Fwmark).
	Fwmark    uint32
	Mode      nat.Mode     // ModeNAT, ModeFullNAT or ModeL7
	Scheduler string       // one of sched.Names()
	Sched     sched.Config // scheduler flags and table size
	// Persistence sends a client's new flows to the backend it used last
	// for this long after its last flow (ipvsadm -p); 0 means none.
	// PersistenceBits is the client prefix length that counts as one
	// client (ipvsadm -M); Parse sets 32 or 128 when not given.
	Persistence     time.Duration
	PersistenceBits int
	// Sloppy adopts flows first seen mid-stream (IPVS sloppy_tcp) and, in
	// NAT mode, from a real server's answer (nat.Service.Sloppy). On by
	// default when the file has a bgp: block (the gateway is one of
	// several behind ECMP).
	Sloppy bool
	// Announce is when the VIP is announced by BGP: AnnounceHealthy,
	// AnnounceAlways or AnnounceNever (default healthy).
	Announce string
	// TCPLiberal turns the TCP window check off for this service's flows
	// (tcp_window_check: false): for deployments where vsgate sees only
	// one direction.
	TCPLiberal bool
	// SynProxy is syn_proxy: auto (default), on or off (nat.SynProxy).
	SynProxy nat.SynProxy
	// OnePacket schedules every datagram on its own (one_packet: true,
	// ipvsadm -o): UDP services of mode nat or dr (nat.Service.OnePacket).
	OnePacket bool
	Health    *Health // nil: no health checks, backends are always up
	// FlowLog logs the service's flows as they end (flow_log:); nil:
	// none.
	FlowLog  *FlowLog
	Backends []Backend
	// L7 holds the Apache directives of an HTTP service (Mode ModeL7):
	// its real servers are the directives' ProxyPass and BalancerMember
	// URLs, so Backends is empty.
	L7 *L7
}

// FlowLog is a service's flow_log: one log line per finished flow, for
// one flow in Every, at most Rate lines a second (nat.FlowLog).
type FlowLog struct {
	Every uint32 // 1..MaxFlowLogEvery (DefaultFlowLogEvery)
	Rate  uint32 // 1..MaxFlowLogRate (DefaultFlowLogRate)
}

// flow_log's defaults and bounds.
const (
	DefaultFlowLogEvery = 1
	DefaultFlowLogRate  = 1000
	MaxFlowLogEvery     = 1 << 20
	MaxFlowLogRate      = 1_000_000
)

// L7 is an HTTP service's Apache 2.4 proxy directives, as written.
type L7 struct {
	// File is the directives file as given (inline directives: empty);
	// a relative path starts at the configuration file's directory.
	File string
	// Text is the directives. Parse checked them with
	// proxy.ParseDirectives; the gateway parses them again to build the
	// proxy.
	Text string
	// Source and FirstLine are where Text stands, for the proxy's
	// messages: the directives file, or the configuration file and the
	// line the inline text begins on.
	Source    string
	FirstLine int
}

// Backend is one real server.
type Backend struct {
	Addr   netip.AddrPort // same family as the VIP
	Weight uint32         // 0..sched.MaxWeight; 0 is quiescent
	// UThreshold and LThreshold are the connection thresholds (ipvsadm
	// -x, -y; 0: none), 0..MaxThreshold, LThreshold at most UThreshold:
	// see nat.Backend.
	UThreshold, LThreshold uint32
}

// MaxThreshold is the largest connection threshold, as ipvsadm accepts
// (INT_MAX).
const MaxThreshold = math.MaxInt32

// Health is a service's health check, run by the gateway against every
// backend. A backend is marked down after Fall failures in a row and up
// again after Rise successes.
type Health struct {
	Type     string        // HealthTCP or HealthHTTP
	Interval time.Duration // time between checks; more than Timeout
	Timeout  time.Duration // how long one check may take
	Rise     int           // successes in a row to come up: 1..1000
	Fall     int           // failures in a row to go down: 1..1000
	Port     uint16        // port to check; 0 means the backend's port
	Path     string        // HTTP only: request path, starting with '/'
	Expect   int           // HTTP only: expected status, 100..599
}

// FullNAT is the gateway-owned source of FULLNAT flows.
type FullNAT struct {
	Pool  []netip.Addr // at most one address per family (the engine uses one)
	Ports [2]uint16    // inclusive source port range
	// Takeover are the FULLNAT pool addresses of the peer gateways
	// (sync:), whose flows this one continues when they are gone
	// (nat.Config.FullNATTakeover).
	Takeover []netip.Addr
}

// Control is the control API (vsgate adm).
type Control struct {
	Socket string // absolute path of the Unix socket; the gateway creates it mode 0600
}

// Pcap is where captures go.
type Pcap struct {
	// Dir is the only directory captures are written to (vsgate run
	// --pcap and vsgate adm pcap start name a file in it). The gateway
	// creates it mode 0700 for User.
	Dir string
}

// Metrics is the Prometheus endpoint.
type Metrics struct {
	// Listen is the address to serve /metrics on; the zero value means
	// off. It must be a loopback address unless Public is set.
	Listen netip.AddrPort
	Public bool
	// Pprof also serves Go's profiles (net/http/pprof) under
	// /debug/pprof/ on the same listener: for finding where a running
	// gateway's time goes. Off by default.
	Pprof bool
}

// Log is how the gateway logs (log/slog).
type Log struct {
	Level  slog.Level // slog.LevelDebug, LevelInfo, LevelWarn or LevelError
	Format string     // "text" or "json"
}

// Parse reads a configuration from data and validates it. filename is used
// only in error messages. On success every default is filled in. On
// failure it returns nil and an Errors holding every problem found, each
// naming its line and the fix. Unknown keys are reported together with
// problems with values; other problems with the file's shape (YAML
// syntax, a list where a value belongs, a tag) are reported alone, since
// values cannot be read until the shape is right. Parse has no side
// effects.
func Parse(data []byte, filename string) (*Config, error) {
	return ParseNames(context.Background(), data, filename, nil)
}

// ParseNames is Parse with host names: where the file gives a host name
// for an address (vip, backends, masquerade_to, masquerade[].to,
// masquerade_inside), res resolves it, once, now (see resolveNames), and
// Config.Resolved records what it became. A nil res resolves nothing.
// Its only side effects are res's lookups.
func ParseNames(ctx context.Context, data []byte, filename string, res names.Resolver) (*Config, error) {
	f, r, err := readFile(data, filename)
	if err != nil {
		return nil, err
	}
	resolved := f.resolveNames(ctx, res, r)
	c := f.convert(r)
	c.Resolved = resolved
	validate(c, r)
	for _, e := range r.errs {
		if e.File == "" { // not placed in another file already (failAt)
			e.File, e.Line = filename, f.line(e.Path)
		}
	}
	if err := r.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// Load reads the file at path and Parses it, naming it path in messages.
// Read errors are returned as they are, not as Errors.
func Load(path string) (*Config, error) {
	data, err := Read(path)
	if err != nil {
		return nil, err
	}
	return ParseNames(context.Background(), data, path, &names.System{})
}

// Read reads a configuration file: at most MaxFileSize bytes.
func Read(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("config: %s: larger than %d bytes", path, MaxFileSize)
	}
	return data, nil
}

// Validate checks a Config built in code (or changed after Parse) by the
// same rules Parse applies to values. Problems are reported by path, not
// line. It returns nil or an Errors.
func (c *Config) Validate() error {
	r := &report{}
	validate(c, r)
	return r.err()
}

// Counts returns the number of services, backends (over all services) and
// masquerade rules.
func (c *Config) Counts() (services, backends, masquerade int) {
	for _, s := range c.Services {
		backends += len(s.Backends)
	}
	return len(c.Services), backends, len(c.Masquerade)
}

// ReplyAdoption says of one sloppy NAT service whether a gateway that did not see a client's packets (another one
// behind ECMP did) translates its real servers' answers: only when each of
// its backends serves no other service, so that an answer's source names
// the VIP. SharedBy names a backend and the other service it serves when
// not.
type ReplyAdoption struct {
	Service  string // "tcp VIP:port" (and the name, if any)
	SharedBy string // "" if every backend is the service's alone
}

// ReplyAdoptions lists the sloppy NAT services, in file order.
func (c *Config) ReplyAdoptions() []ReplyAdoption {
	type key struct {
		addr  netip.AddrPort
		proto uint8
	}
	label := func(s Service) string {
		l := protoName(s.Proto) + " " + s.VIP.String()
		if s.Name != "" {
			l += " (" + s.Name + ")"
		}
		return l
	}
	serving := map[key][]string{}
	for _, s := range c.Services {
		for _, b := range s.Backends {
			k := key{b.Addr, s.Proto}
			serving[k] = append(serving[k], label(s))
		}
	}
	var out []ReplyAdoption
	for _, s := range c.Services {
		if s.Mode != nat.ModeNAT || !s.Sloppy {
			continue
		}
		r := ReplyAdoption{Service: label(s)}
		for _, b := range s.Backends {
			if others := serving[key{b.Addr, s.Proto}]; len(others) > 1 {
				for _, o := range others {
					if o != r.Service {
						r.SharedBy = b.Addr.String() + " also serves " + o
						break
					}
				}
				break
			}
		}
		out = append(out, r)
	}
	return out
}

// NAT returns the nat engine's configuration: services, masquerade rules,
// the FULLNAT pool, timeouts, table size and the default verdict. It
// validates c first and returns its Errors if it is not valid.
//
// Health checks, device, control and metrics are for the gateway itself.
func (c *Config) NAT() (nat.Config, error) {
	if err := c.Validate(); err != nil {
		return nat.Config{}, err
	}
	n := nat.Config{
		Capacity:         c.TableSize,
		SourceBits4:      c.PerSource.V4Prefix,
		SourceBits6:      c.PerSource.V6Prefix,
		SourceHalfOpen:   c.PerSource.HalfOpen,
		SourceFlows:      c.PerSource.Flows,
		SynProxyHalfOpen: c.SynProxy.HalfOpen,
		SynProxyFill:     c.SynProxy.Fill,
		Timeouts:         c.Timeouts,
		DropUnmatched:    c.DropUnmatched,
		ResetRemoved:     c.ResetRemoved,
		TCPLiberal:       c.TCPLiberal,
		Masquerade:       append([]nat.Masquerade(nil), c.Masquerade...),
		Marks:            append([]nat.Mark(nil), c.Marks...),
		FullNATPool:      append([]netip.Addr(nil), c.FullNAT.Pool...),
		FullNATPorts:     c.FullNAT.Ports,
		FullNATTakeover:  append([]netip.Addr(nil), c.FullNAT.Takeover...),
	}
	for _, s := range c.Services {
		ns := nat.Service{
			Proto:      s.Proto,
			VIP:        s.VIP.Addr(),
			Port:       s.VIP.Port(),
			Mode:       s.Mode,
			Scheduler:  s.Scheduler,
			Sched:      s.Sched,
			Sloppy:     s.Sloppy,
			TCPLiberal: s.TCPLiberal,
			SynProxy:   s.SynProxy,
			OnePacket:  s.OnePacket,
			FlowLog:    flowLogOf(s.FlowLog),
			Fwmark:     s.Fwmark,
			Backends:   make([]nat.Backend, len(s.Backends)),

			Persistence: s.Persistence,
			PersistMask: s.PersistenceBits,
		}
		for i, b := range s.Backends {
			ns.Backends[i] = nat.Backend{Addr: b.Addr.Addr(), Port: b.Addr.Port(), Weight: b.Weight, Upper: b.UThreshold, Lower: b.LThreshold}
		}
		n.Services = append(n.Services, ns)
	}
	return n, nil
}

// flowLogOf is the engine's flow logging for a service's flow_log.
func flowLogOf(f *FlowLog) nat.FlowLog {
	if f == nil {
		return nat.FlowLog{}
	}
	return nat.FlowLog{Every: f.Every, Rate: f.Rate}
}

// protoName is the file's name of a service protocol.
func protoName(p uint8) string {
	switch p {
	case packet.ProtoTCP:
		return "tcp"
	case packet.ProtoUDP:
		return "udp"
	}
	return fmt.Sprintf("protocol %d", p)
}
