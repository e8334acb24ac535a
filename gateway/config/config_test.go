package config

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
	"github.com/vsgate/vsgate/proxy"
	"github.com/vsgate/vsgate/sched"
)

const example = "testdata/vsgate.yaml"

// newEngine builds a nat engine from c with a small table, as a check that
// the engine accepts what the config accepted.
func newEngine(tb testing.TB, c *Config) {
	tb.Helper()
	n, err := c.NAT()
	if err != nil {
		tb.Fatalf("NAT: %v", err)
	}
	n.Capacity = 64
	n.FlowLogger = discardFlows{} // the gateway's
	if _, err := nat.New(n); err != nil {
		tb.Fatalf("nat.New rejects an accepted config: %v\n%s", err, c.YAML())
	}
}

// discardFlows takes flow records and drops them.
type discardFlows struct{}

func (discardFlows) LogFlow(nat.FlowEnd) {}

func TestExample(t *testing.T) {
	c, err := Load(example)
	if err != nil {
		t.Fatal(err)
	}
	if s, b, m := c.Counts(); s != 3 || b != 7 || m != 4 {
		t.Errorf("counts = %d services, %d backends, %d masquerade; want 3, 7, 4", s, b, m)
	}
	if m := c.Masquerade[3]; m != (nat.Masquerade{Into: netip.MustParsePrefix("198.18.3.0/24"),
		To: netip.MustParseAddr("198.18.3.254"), Ports: [2]uint16{1024, 65535}}) || !slices.Equal(c.MasqueradeInside, []netip.Addr{netip.MustParseAddr("198.18.3.254")}) {
		t.Errorf("masquerade[3] (ipchains -d, to from masquerade_inside) = %+v", m)
	}
	want := Service{
		Name: "dns", Proto: packet.ProtoUDP, VIP: netip.MustParseAddrPort("198.18.0.10:53"), Mode: nat.ModeNAT,
		Scheduler: "sh", Sched: sched.Config{Port: true, TableSize: 65537}, PersistenceBits: 32, Announce: AnnounceHealthy,
		Backends: []Backend{
			{Addr: netip.MustParseAddrPort("198.18.2.11:53"), Weight: 1},
			{Addr: netip.MustParseAddrPort("198.18.2.12:53"), Weight: 1},
		},
	}
	if !reflect.DeepEqual(c.Services[1], want) {
		t.Errorf("services[1] = %+v\nwant %+v", c.Services[1], want)
	}
	if fl := c.Services[0].FlowLog; fl == nil || *fl != (FlowLog{Every: 1, Rate: 1000}) {
		t.Errorf("services[0].flow_log = %+v", fl)
	}
	web6 := c.Services[2]
	if web6.Mode != nat.ModeFullNAT || web6.PersistenceBits != 64 || web6.Persistence != 5*time.Minute ||
		web6.Backends[0].Addr != netip.MustParseAddrPort("[2001:db8:2::11]:443") {
		t.Errorf("services[2] = %+v", web6)
	}
	if h := c.Services[0].Health; h == nil || *h != (Health{Type: HealthHTTP, Interval: 2 * time.Second, Timeout: time.Second,
		Rise: 2, Fall: 3, Port: 8080, Path: "/health", Expect: 200}) {
		t.Errorf("services[0].health = %+v", h)
	}
	if m := c.Masquerade[1]; m != (nat.Masquerade{From: netip.MustParsePrefix("198.18.3.0/24"),
		To: netip.MustParseAddr("198.18.0.20"), Ports: [2]uint16{1024, 65535}}) {
		t.Errorf("masquerade[1] (ipchains form) = %+v", m)
	}
	if c.Timeouts != nat.DefaultTimeouts() {
		t.Errorf("timeouts = %+v, want IPVS's defaults as written", c.Timeouts)
	}
	if !reflect.DeepEqual(c.Device, Device{Type: "tun", Name: "vsg0", Queues: 2, Offloads: true}) || c.TableSize != 1<<20 ||
		c.Metrics.Listen != netip.MustParseAddrPort("127.0.0.1:9100") || c.Log.Level != slog.LevelInfo {
		t.Errorf("device/table/metrics/log = %+v %d %+v %+v", c.Device, c.TableSize, c.Metrics, c.Log)
	}

	n, err := c.NAT()
	if err != nil {
		t.Fatal(err)
	}
	if n.Capacity != 1<<20 || len(n.Services) != 3 || len(n.Masquerade) != 4 || len(n.FullNATPool) != 2 ||
		n.Services[0].Backends[0] != (nat.Backend{Addr: netip.MustParseAddr("198.18.2.11"), Port: 8080, Weight: 3}) ||
		n.Services[2].VIP != netip.MustParseAddr("2001:db8::10") || n.Services[2].Port != 443 {
		t.Errorf("NAT() = %+v", n)
	}
	newEngine(t, c)
	roundTrip(t, c)
}

// placeless returns a copy of services whose L7 directives do not say
// where they stand.
func placeless(services []Service) []Service {
	out := slices.Clone(services)
	for i, s := range out {
		if s.L7 != nil {
			l7 := *s.L7
			l7.Source, l7.FirstLine = "", 0
			out[i].L7 = &l7
		}
	}
	return out
}

// roundTrip checks that c.YAML() parses back to c.
func roundTrip(tb testing.TB, c *Config) {
	tb.Helper()
	out := c.YAML()
	c2, err := Parse(out, "roundtrip.yaml")
	if err != nil {
		tb.Fatalf("YAML() output does not parse: %v\n%s", err, out)
	}
	a, b := *c, *c2
	a.Resolved = nil // the written file holds the addresses the names became
	// Where inline directives stand (file and line) is the file's, not
	// the configuration's.
	a.Services, b.Services = placeless(a.Services), placeless(b.Services)
	if !reflect.DeepEqual(a, b) {
		tb.Fatalf("round trip differs:\n%+v\n%+v\n%s", a, b, out)
	}
}

func TestDefaults(t *testing.T) {
	for _, src := range []string{"", "# nothing\n", "---\n", "services: []\n", "device: {}\n"} {
		c, err := Parse([]byte(src), "empty.yaml")
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		want := Config{
			Device:    Device{Type: "tun", Name: "vsg0", Queues: 1, Offloads: true},
			TableSize: DefaultTableSize,
			PerSource: PerSource{V4Prefix: 32, V6Prefix: 128},
			SynProxy:  SynProxyAuto{HalfOpen: DefaultSynProxyHalfOpen, Fill: DefaultSynProxyFill},
			Timeouts:  nat.DefaultTimeouts(),
			FullNAT:   FullNAT{Ports: [2]uint16{1024, 65535}},
			Control:   Control{Socket: DefaultSocket}, User: DefaultUser, Seccomp: true, Pcap: Pcap{Dir: DefaultPcapDir}, L7Stack: L7Kernel, L7MaxConnections: proxy.DefaultMaxConnections,
			Metrics:    Metrics{Listen: netip.MustParseAddrPort(DefaultMetrics)},
			Log:        Log{Level: slog.LevelInfo, Format: "text"},
			Services:   c.Services, // nil or empty
			Masquerade: c.Masquerade,
		}
		if !reflect.DeepEqual(*c, want) || len(c.Services) != 0 {
			t.Errorf("%q: %+v\nwant %+v", src, *c, want)
		}
		newEngine(t, c)
	}
}

func TestAccepted(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		check     func(*Config) bool
	}{
		{"plain seconds and case", "timeouts: {tcp: 900, udp: 1m30s}\ndefault: DROP\nlog: {level: Debug, format: json}\n",
			func(c *Config) bool {
				return c.Timeouts.TCPEstablished == 900*time.Second && c.Timeouts.UDP == 90*time.Second &&
					c.DropUnmatched && c.Log.Level == slog.LevelDebug && c.Log.Format == "json"
			}},
		{"metrics off", "metrics: {listen: off}\n", func(c *Config) bool { return !c.Metrics.Listen.IsValid() }},
		{"afxdp", "device: {type: afxdp, interfaces: [out, in]}\nservices:\n  - {proto: tcp, vip: 198.18.0.10:80, mode: dr, backends: [{addr: 198.18.2.11}]}\n",
			func(c *Config) bool {
				again, err := Parse(c.YAML(), "again.yaml")
				return c.Device.Type == DeviceAFXDP && c.Device.Ethernet() && err == nil && again.Device.Type == DeviceAFXDP
			}},
		{"afpacket", "device: {type: AFPacket, interfaces: [out, in], queues: 2, addresses: [198.18.2.1, \"2001:db8:2::1\"]}\n",
			func(c *Config) bool {
				return c.Device.Type == DeviceAFPacket && slices.Equal(c.Device.Interfaces, []string{"out", "in"}) && c.Device.Queues == 2 &&
					slices.Equal(c.Device.Addresses, []netip.Addr{netip.MustParseAddr("198.18.2.1"), netip.MustParseAddr("2001:db8:2::1")})
			}},
		{"metrics public", "metrics: {listen: \"[2001:db8::1]:9100\", public: true}\n",
			func(c *Config) bool { return c.Metrics.Listen.Port() == 9100 && c.Metrics.Public }},
		{"metrics pprof", "metrics: {pprof: true}\n",
			func(c *Config) bool { return c.Metrics.Pprof && !c.Metrics.Public }},
		{"seccomp off", "seccomp: false\n", func(c *Config) bool { return !c.Seccomp }},
		{"l7 on netstack", "l7: {stack: netstack}\n", func(c *Config) bool { return c.L7Stack == L7Netstack }},
		{"netmask dotted", "services:\n  - {proto: tcp, vip: 198.18.0.10:22, persistence: 60, persistence_netmask: 255.255.255.0}\n",
			func(c *Config) bool {
				return c.Services[0].PersistenceBits == 24 && c.Services[0].Persistence == time.Minute
			}},
		{"ipv4-mapped unmapped", "services:\n  - {proto: udp, vip: \"[::ffff:198.18.0.10]:53\", backends: [{addr: 198.18.2.1}]}\n",
			func(c *Config) bool {
				return c.Services[0].VIP.Addr().Is4() && c.Services[0].Backends[0].Addr.Port() == 53
			}},
		{"single port range", "fullnat: {pool: [198.18.0.30], ports: 2000}\n",
			func(c *Config) bool { return c.FullNAT.Ports == [2]uint16{2000, 2000} }},
		{"anchors and aliases", "x-health: &h {type: tcp, interval: 3s}\n" +
			"services:\n  - {proto: tcp, vip: 198.18.0.10:80, health: *h}\n  - {proto: tcp, vip: 198.18.0.11:80, health: *h}\n", nil},
		{"sh fallback, dh fallback", "services:\n  - {proto: tcp, vip: 198.18.0.10:80, scheduler: sh, scheduler_flags: [sh-fallback]}\n" +
			"  - {proto: tcp, vip: 198.18.0.10:81, scheduler: dh, scheduler_flags: [dh-fallback]}\n",
			func(c *Config) bool { return c.Services[0].Sched.Fallback && c.Services[1].Sched.Fallback }},
		{"thresholds and the locality schedulers", "services:\n  - {proto: tcp, vip: 198.18.0.10:80, scheduler: lblcr, backends: [{addr: 198.18.2.11, u_threshold: 100, l_threshold: 50}, {addr: 198.18.2.12}]}\n",
			func(c *Config) bool {
				b := c.Services[0].Backends
				n, _ := c.NAT()
				nb := n.Services[0].Backends
				return c.Services[0].Scheduler == "lblcr" && b[0].UThreshold == 100 && b[0].LThreshold == 50 && b[1].UThreshold == 0 &&
					nb[0].Upper == 100 && nb[0].Lower == 50 && strings.Contains(string(c.YAML()), "u_threshold: 100\n")
			}},
		{"port 0: every port, persistent", "services:\n  - {proto: tcp, vip: 198.18.0.14:0, persistence: 60, health: {port: 80}, backends: [{addr: 198.18.2.11}, {addr: \"198.18.2.12:8080\"}]}\n",
			func(c *Config) bool {
				s := c.Services[0]
				again, err := Parse(c.YAML(), "again.yaml")
				return s.VIP.Port() == 0 && s.Backends[0].Addr.Port() == 0 && s.Backends[1].Addr.Port() == 8080 &&
					err == nil && again.Services[0].VIP == s.VIP && again.Services[0].Backends[0].Addr == s.Backends[0].Addr
			}},
		{"one_packet", "services:\n  - {proto: udp, vip: 198.18.0.10:53, one_packet: true, backends: [{addr: 198.18.2.11}]}\n",
			func(c *Config) bool {
				n, _ := c.NAT()
				again, err := Parse(c.YAML(), "again.yaml")
				return c.Services[0].OnePacket && n.Services[0].OnePacket && err == nil && again.Services[0].OnePacket
			}},
		{"flow_log", "services:\n  - {proto: tcp, vip: 198.18.0.10:80, flow_log: {}}\n  - {proto: udp, vip: 198.18.0.10:53, flow_log: {every: 10, rate: 5}}\n",
			func(c *Config) bool {
				n, _ := c.NAT()
				return *c.Services[0].FlowLog == FlowLog{Every: 1, Rate: 1000} && *c.Services[1].FlowLog == FlowLog{Every: 10, Rate: 5} &&
					n.Services[0].FlowLog == nat.FlowLog{Every: 1, Rate: 1000} && n.Services[1].FlowLog == nat.FlowLog{Every: 10, Rate: 5}
			}},
		{"fwmark services and marks", "marks:\n  - {mark: 1, dst: 198.18.0.16/30, proto: tcp, ports: 80-81}\n  - {mark: 1, dst: \"2001:db8::16\"}\n" +
			"services:\n  - {fwmark: 1, scheduler: rr, persistence: 60, backends: [{addr: 198.18.2.11}]}\n  - {fwmark: 1, family: ipv6, backends: [{addr: \"[2001:db8:2::11]:80\"}]}\n",
			func(c *Config) bool {
				n, err := c.NAT()
				again, err2 := Parse(c.YAML(), "again.yaml")
				return err == nil && err2 == nil && len(n.Marks) == 2 && n.Marks[0].Ports == [2]uint16{80, 81} && n.Marks[0].Proto == packet.ProtoTCP &&
					n.Services[0].Fwmark == 1 && n.Services[0].VIP.Is4() && n.Services[1].VIP.Is6() && n.Services[0].Backends[0].Port == 0 &&
					len(again.Marks) == 2 && again.Marks[1] == c.Marks[1] && again.Services[1].Fwmark == 1 && again.Services[1].VIP == c.Services[1].VIP
			}},
		{"ipchains long options", "masquerade:\n  - {ipchains: \"ipchains --append forward --jump MASQ --src 198.18.2.0/24 -d 0/0 -p all\", to: 198.18.0.20}\n",
			func(c *Config) bool { return c.Masquerade[0].From == netip.MustParsePrefix("198.18.2.0/24") }},
		{"masquerade_to", "masquerade_to: 2001:db8::20\nmasquerade: [{from: 2001:db8:2::/64}, {from: 2001:db8:3::/64, to: 2001:db8::21}]\n",
			func(c *Config) bool {
				return c.Masquerade[0].To == netip.MustParseAddr("2001:db8::20") && c.Masquerade[1].To == netip.MustParseAddr("2001:db8::21") &&
					c.MasqueradeTo == netip.MustParseAddr("2001:db8::20")
			}},
		{"weight 0 and max", "services:\n  - proto: tcp\n    vip: 198.18.0.10:80\n    backends: [{addr: 198.18.2.1, weight: 0}, {addr: 198.18.2.2, weight: 65535}]\n",
			func(c *Config) bool { return c.Services[0].Backends[1].Weight == 65535 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.src), "ok.yaml")
			if tc.name == "anchors and aliases" {
				// x-health is not a key of the schema: anchors must live
				// inside it. Expect exactly that error.
				if err == nil || !strings.Contains(err.Error(), `ok.yaml:1: unknown key "x-health"`) {
					t.Fatalf("err = %v", err)
				}
				src := "services:\n  - &s {proto: tcp, vip: 198.18.0.10:80, health: &h {type: tcp, interval: 3s}}\n  - {proto: tcp, vip: 198.18.0.11:80, health: *h}\n"
				if c, err = Parse([]byte(src), "ok.yaml"); err != nil {
					t.Fatal(err)
				}
				if *c.Services[0].Health != *c.Services[1].Health || c.Services[1].Health.Interval != 3*time.Second {
					t.Fatalf("aliased health = %+v", c.Services[1].Health)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Errorf("%+v", c)
			}
			newEngine(t, c)
			roundTrip(t, c)
		})
	}
}

// badConfigs are configs with exactly one problem each. The line marked
// "# <-" is where it is; fix is part of the message that says how to fix
// it.
var badConfigs = []struct {
	name, src, fix string
}{
	{"unknown scheduler", `
services:
  - proto: tcp
    vip: 198.18.0.10:80
    scheduler: wrrr   # <-
`, "use one of rr, wrr, lc, wlc, sed, nq, sh, dh, mh, p2c, fo, ovf, lblc, lblcr"},
	{"weight above 65535", `
services:
  - proto: tcp
    vip: 198.18.0.10:80
    backends:
      - addr: 198.18.2.11
      - addr: 198.18.2.12:8080
        weight: 70000   # <-
`, "backend 198.18.2.12:8080: weight 70000 is out of range: use 0..65535"},
	{"l_threshold above u_threshold", `
services:
  - proto: tcp
    vip: 198.18.0.10:80
    backends:
      - addr: 198.18.2.11
        u_threshold: 10
        l_threshold: 11   # <-
`, "backend 198.18.2.11:80: l_threshold 11 is above u_threshold 10"},
	{"l_threshold without u_threshold", `
services:
  - {proto: tcp, vip: 198.18.0.10:80, backends: [{addr: 198.18.2.11, l_threshold: 5}]}   # <-
`, "use an l_threshold no larger than u_threshold"},
	{"u_threshold above INT_MAX", `
services:
  - {proto: tcp, vip: 198.18.0.10:80, backends: [{addr: 198.18.2.11, u_threshold: 2147483648}]}   # <-
`, "use 0..2147483647"},
	{"port 0 without persistence", `
services:
  - proto: tcp
    vip: 198.18.0.14:0   # <-
    backends: [{addr: 198.18.2.11}]
`, "add persistence: 300s, or use a port in 1..65535"},
	{"port 0 with a health check of no port", `
services:
  - proto: tcp
    vip: 198.18.0.14:0
    persistence: 60
    health: {type: tcp}   # <-
    backends: [{addr: 198.18.2.11}]
`, "add port: to health"},
	{"backend port 0 under a port", `
services:
  - {proto: tcp, vip: 198.18.0.10:80, backends: [{addr: 198.18.2.11:0}]}   # <-
`, "backend 198.18.2.11 has port 0"},
	{"one_packet on tcp", `
services:
  - proto: tcp
    vip: 198.18.0.10:80
    one_packet: true   # <-
`, "one_packet is for UDP services of mode nat or dr"},
	{"flow_log on one_packet", `
services:
  - proto: udp
    vip: 198.18.0.10:53
    one_packet: true
    flow_log: {}   # <-
`, "remove flow_log or one_packet"},
	{"flow_log every 0", `
services:
  - proto: udp
    vip: 198.18.0.10:53
    flow_log:
      every: 0   # <-
`, "flow_log every"},
	{"flow_log on l7", `
services:
  - proto: tcp
    vip: 198.18.0.10:80
    mode: l7
    l7: {directives: "ProxyPass / http://198.18.2.11/"}
    flow_log: {rate: 10}   # <-
`, "flow_log is for L4 services"},
	{"fwmark with proto", `
services:
  - fwmark: 1
    proto: tcp   # <-
`, "remove proto (the marks choose protocols)"},
	{"mark of too many addresses", `
marks:
  - mark: 1
    dst: 198.18.0.0/23   # <-
`, "has more than 256 addresses"},
	{"mark ports without proto", `
marks:
  - {mark: 1, dst: 198.18.0.16/30, ports: 80-81}   # <-
`, "add proto: tcp or proto: udp"},
	{"one_packet on port 0", `
services:
  - proto: udp
    vip: 198.18.0.14:0
    persistence: 60
    one_packet: true   # <-
`, "one_packet needs the vip's port"},
	{"negative weight", `
services:
  - {proto: tcp, vip: 198.18.0.10:80, backends: [{addr: 198.18.2.11, weight: -1}]}   # <-
`, "use 0..65535"},
	{"removed_backends unknown", `
removed_backends: kill   # <-
`, "drain or reset"},
	{"vip without port", `
services:
  - proto: tcp
    vip: 198.18.0.10   # <-
    backends: [{addr: 198.18.2.11}]
`, "add one, such as vip: 198.18.0.10:80"},
	{"ipv6 vip without port", `
services:
  - proto: tcp
    vip: 2001:db8::10   # <-
`, `add one, such as vip: "[2001:db8::10]:80"`},
	{"backend family differs", `
services:
  - proto: tcp
    vip: 198.18.0.10:80
    backends:
      - addr: 198.18.2.11
      - addr: "[2001:db8:2::12]:80"   # <-
`, "use an IPv4 backend address"},
	{"duplicate service", `
services:
  - {proto: tcp, vip: 198.18.0.10:80}
  - {proto: udp, vip: 198.18.0.10:80}
  - name: again
    proto: TCP
    vip: 198.18.0.10:80   # <-
`, "already defined by service 1: remove one of them"},
	{"duplicate backend", `
services:
  - proto: tcp
    vip: 198.18.0.10:80
    backends:
      - addr: 198.18.2.11
      - addr: 198.18.2.11:81
      - addr: 198.18.2.11:80   # <-
`, "listed twice in service 198.18.0.10:80 (also backend 1): remove one of them"},
	{"fullnat without a pool address of the family", `
fullnat:
  pool: [198.18.0.30]
services:
  - proto: tcp
    vip: "[2001:db8::10]:80"
    mode: fullnat   # <-
`, "add a gateway-owned IPv6 address to fullnat.pool"},
	{"masquerade family mismatch", `
masquerade:
  - from: 198.18.2.0/24
    to: 2001:db8::20   # <-
`, "use an IPv4 address"},
	{"invalid CIDR", `
masquerade:
  - from: 198.18.2.0/33   # <-
    to: 198.18.0.20
`, "use a prefix length 0..32"},
	{"host bits set", `
masquerade:
  - to: 198.18.0.20
    from: 198.18.2.1/24   # <-
`, "did you mean 198.18.2.0/24?"},
	{"port range inverted", `
masquerade:
  - from: 198.18.2.0/24
    to: 198.18.0.20
    ports: 65535-1024   # <-
`, "write 1024-65535"},
	{"health interval not above timeout", `
services:
  - proto: tcp
    vip: 198.18.0.10:80
    health:
      interval: 1s   # <-
      timeout: 1s
`, "make the interval longer than the timeout"},
	{"health rise below 1", `
services:
  - proto: tcp
    vip: 198.18.0.10:80
    health: {type: http, path: /health}
  - proto: tcp
    vip: 198.18.0.10:81
    health:
      rise: 0   # <-
`, "health rise 0 is out of range: use 1..1000"},
	{"queues below 1", `
device:
  type: tun
  queues: 0   # <-
`, "use 1..256"},
	{"table size absurd", `
table:
  size: 1000000000   # <-
`, "use 1..67108864"},
	{"table size zero", `
table: {size: 0}   # <-
`, "use 1..67108864"},
	{"persistence netmask out of range", `
services:
  - proto: tcp
    vip: 198.18.0.10:443
    persistence: 300s
    persistence_netmask: 33   # <-
`, "use a prefix length 0..32"},
	{"unparsable ipchains", `
masquerade:
  - ipchains: "-A input -j MASQ -s 198.18.2.0/24"   # <-
    to: 198.18.0.20
`, "use -A forward"},
	{"metrics on a public address", `
metrics:
  listen: 198.18.0.1:9100   # <-
`, "set metrics.public: true"},
	{"unknown key, near miss", `
services:
  - proto: tcp
    vip: 198.18.0.10:80
    backends:
      - addr: 198.18.2.11
        wieght: 2   # <-
`, `unknown key "wieght": did you mean "weight"?`},
	{"unknown top-level key", `
device: {type: tun}
servers: []   # <-
`, `did you mean "services"?`},
	{"duplicate key", `
services:
  - proto: tcp
    vip: 198.18.0.10:80
    proto: udp   # <-
`, "remove one"},
	{"unquoted IPv6 vip with port", `
services:
  - proto: tcp
    vip: [2001:db8::10]:80   # <-
`, `quote an IPv6 address with a port: "[2001:db8::10]:80"`},
	{"l7 without directives", `
services:
  - proto: tcp   # <-
    vip: 198.18.0.10:80
    mode: l7
`, "add l7: {directives:"},
	{"l7 directive without a URL", `
services:
  - proto: tcp
    vip: 198.18.0.10:80
    mode: l7
    l7:
      directives: |
        ProxyPass / http://198.18.2.11/
        ProxyPass /sales
# <-^ the directive's own line in the file
`, "ProxyPass needs a path and a URL: write ProxyPass /path http://backend:port/path"},
	{"l7 with backends", `
services:
  - proto: tcp
    vip: 198.18.0.10:80
    mode: l7
    l7: {directives: "ProxyPass / http://198.18.2.11/"}
    backends: [{addr: 198.18.2.11}]   # <-
`, "name them in ProxyPass / BalancerMember"},
	{"missing proto", `
services:
  - vip: 198.18.0.10:80   # <-
    backends: [{addr: 198.18.2.11}]
`, "add proto: tcp or proto: udp"},
	{"masquerade without to", `
masquerade:
  - from: 198.18.2.0/24   # <-
`, "add the address its outbound flows leave with, such as to: 198.18.0.20 (the gateway's outside address), or set masquerade_to"},
	{"masquerade without to, default of the other family", `
masquerade_to: 198.18.0.20
masquerade:
  - {from: 198.18.2.0/24}
  - {from: 2001:db8:2::/64}   # <-
`, "add the IPv6 address its outbound flows leave with"},
	{"sh flag on another scheduler", `
services:
  - proto: tcp
    vip: 198.18.0.10:80
    scheduler: wrr
    scheduler_flags:
      - sh-port   # <-
`, "sh-port is for the sh scheduler, and this service uses wrr: remove it, or use scheduler: sh"},
	{"afpacket without interfaces", `
device:
  type: afpacket   # <-
`, "add interfaces: [IFACE, ...]"},
	{"afpacket interface twice", `
device:
  type: afpacket
  interfaces:
    - eth1
    - eth1   # <-
`, "list each interface once"},
	{"afpacket address with a port", `
device:
  type: afpacket
  interfaces: [eth1]
  addresses:
    - 198.18.2.1:80   # <-
`, "write the address alone (198.18.2.1)"},
	{"interfaces on a tun", `
device:
  type: tun
  interfaces: [eth1]   # <-
`, "use type: afpacket"},
	{"bad duration", `
timeouts:
  udp: 5 minutes   # <-
`, "write a duration such as 300s, 5m or 1h30m"},
	{"a list where a value belongs", `
device:
  name: [vsg0, vsg1]   # <-
`, "write name: VALUE on one line"},
	{"relative control socket", `
control:
  socket: vsgate.sock   # <-
`, "use a path such as /run/vsgate/vsgate.sock"},
	{"table size not prime", `
services:
  - proto: tcp
    vip: 198.18.0.10:80
    scheduler: mh
    scheduler_table_size: 65536   # <-
`, "use a prime up to 16777216, such as 65537"},
	{"two FULLNAT addresses of one family", `
fullnat:
  pool:
    - 198.18.0.30
    - 198.18.0.31   # <-
`, "keep one address per family"},
	{"second document", `
device: {type: tun}
---
table: {size: 10}   # <-
`, "a config file holds one document"},
	{"host name", `
services:
  - proto: tcp
    vip: 198.18.0.10:80
    backends:
      - addr: web1.example:80   # <-
`, "host name web1.example has no address"},
	{"host name of the other family", `
services:
  - proto: tcp
    vip: "[2001:db8::10]:80"
    backends:
      - addr: rs2:80   # <-
`, "backend rs2 has no IPv6 address"},
	{"inbound masquerade without an address", `
masquerade:
  - into: 198.18.2.0/24   # <-
`, "no masquerade_inside address lies in 198.18.2.0/24"},
	{"boolean", `
device:
  offloads: yes   # <-
`, "use true or false"},
	{"http expect out of range", `
services:
  - proto: tcp
    vip: 198.18.0.10:80
    health:
      type: http
      expect: 700   # <-
`, "health expect 700 is out of range: use 100..599"},
	{"tcp health with a path", `
services:
  - proto: tcp
    vip: 198.18.0.10:80
    health:
      type: tcp
      path: /health   # <-
`, "remove it, or set type: http"},
	{"duplicate service name", `
services:
  - {name: web, proto: tcp, vip: 198.18.0.10:80}
  - {name: web, proto: tcp, vip: 198.18.0.10:443}   # <-
`, "give each service its own name"},
	{"duplicate masquerade subnet", `
masquerade:
  - {from: 198.18.2.0/24, to: 198.18.0.20}
  - {ipchains: "-A forward -j MASQ -s 198.18.2.0/255.255.255.0", to: 198.18.0.21}   # <-
`, "keep one rule per subnet"},
	{"backend is the vip", `
services:
  - proto: tcp
    vip: 198.18.0.10:80
    backends:
      - addr: 198.18.0.10   # <-
`, "use the real server's address"},
	{"persistence_netmask without persistence", `
services:
  - proto: tcp
    vip: 198.18.0.10:80
    persistence_netmask: 24   # <-
`, "add persistence:"},
	{"too many mh backends for the table", `
services:
  - proto: tcp
    vip: 198.18.0.10:80
    scheduler: mh
    scheduler_table_size: 2   # <-
    backends: [{addr: 198.18.2.1}, {addr: 198.18.2.2}, {addr: 198.18.2.3}]
`, "raise scheduler_table_size"},
	{"not a config", `root:$y$j9T$secretHASH:19000:0:99999:7:::   # <-
`, "the keys at the top level are device"},
	{"user root", `user: root   # <-
`, "use an unprivileged user"},
	{"pcap dir relative", `pcap:
  dir: captures   # <-
`, "use a path such as /var/lib/vsgate/pcap"},
	{"bgp without router id", `bgp:   # <-
  as: 65010
  peers: [{address: 198.18.4.1, as: 65000}]
`, "add an IPv4 address unique among the routers"},
	{"bgp v6 router id", `bgp:
  as: 65010
  router_id: 2001:db8::1   # <-
  peers: [{address: 198.18.4.1, as: 65000}]
`, "BGP identifiers are 32 bits"},
	{"bgp without peers", `bgp:   # <-
  as: 65010
  router_id: 198.18.4.2
`, "add the routers to announce to"},
	{"bgp hold time short", `bgp:
  as: 65010
  router_id: 198.18.4.2
  peers:
    - {address: 198.18.4.1, as: 65000, hold_time: 2s}   # <-
`, "use 3s or more (RFC 4271)"},
	{"bgp keepalive long", `bgp:
  as: 65010
  router_id: 198.18.4.2
  hold_time: 9s
  keepalive: 5s   # <-
  peers: [{address: 198.18.4.1, as: 65000}]
`, "use at most 3s"},
	{"bgp peer twice", `bgp:
  as: 65010
  router_id: 198.18.4.2
  peers:
    - {address: 198.18.4.1, as: 65000}
    - {address: 198.18.4.1, as: 65001}   # <-
`, "listed twice"},
	{"bgp community", `bgp:
  as: 65010
  router_id: 198.18.4.2
  communities: ["65010:100000"]   # <-
  peers: [{address: 198.18.4.1, as: 65000}]
`, "write AS:value"},
	{"bgp VIP with no peer of its family", `bgp:
  as: 65010
  router_id: 198.18.4.2
  peers: [{address: 198.18.4.1, as: 65000}]
services:
  - proto: tcp
    vip: "[2001:db8::10]:80"
    announce: healthy   # <-
`, "add an IPv6 peer, or set announce: never"},
	{"announce without bgp", `services:
  - proto: tcp
    vip: 198.18.0.10:80
    announce: always   # <-
`, "add bgp:"},
	{"sync key short", `sync:
  listen: 198.18.2.1
  peers: [198.18.2.2]
  key: "short"   # <-
`, "16 bytes or more"},
	{"sync peer is itself", `sync:
  listen: 198.18.2.1
  key: "0123456789abcdef"
  peers:
    - 198.18.2.1   # <-
`, "list the other gateways only"},
	{"dr on a tun", `services:
  - proto: tcp
    vip: 198.18.0.10:80
    mode: dr   # <-
    backends: [{addr: 198.18.0.11}]
`, "use device.type: afpacket"},
	{"dr on another port", `device: {type: afpacket, interfaces: [eth0]}
services:
  - proto: tcp
    vip: 198.18.0.10:80
    mode: dr
    backends:
      - addr: 198.18.0.11:8080   # <-
`, "use the VIP's port, 80"},
	{"takeover without sync", `fullnat:
  pool: [198.18.0.31]
  takeover: [198.18.0.32]   # <-
`, "add sync:"},
	{"takeover of its own pool", `sync: {listen: 198.18.2.1, peers: [198.18.2.2], key: "0123456789abcdef"}
fullnat:
  pool: [198.18.0.31]
  takeover:
    - 198.18.0.31   # <-
`, "list the peer gateways' pool addresses only"},
	{"sync without peers", `sync:   # <-
  listen: 198.18.2.1
  key: "0123456789abcdef"
`, "add the other gateways' sync addresses"},
	{"bfd interval without bfd", `bgp:
  as: 65010
  router_id: 198.18.4.2
  peers:
    - {address: 198.18.4.1, as: 65000, bfd_interval: 100ms}   # <-
`, "add bfd: true"},
}

// markedLine returns the 1-based line of src holding "# <-".
func markedLine(tb testing.TB, src string) int {
	tb.Helper()
	for i, l := range strings.Split(src, "\n") {
		switch {
		case strings.Contains(l, "# <-^"):
			// The line above: one inside a block scalar, which cannot
			// carry a YAML comment.
			return i
		case strings.Contains(l, "# <-"):
			return i + 1
		}
	}
	tb.Fatalf("no line marked # <- in\n%s", src)
	return 0
}

func TestBadConfigs(t *testing.T) {
	if len(badConfigs) < 20 {
		t.Fatalf("only %d bad configs", len(badConfigs))
	}
	for _, tc := range badConfigs {
		t.Run(tc.name, func(t *testing.T) {
			line := markedLine(t, tc.src)
			c, err := ParseNames(context.Background(), []byte(tc.src), "bad.yaml", labNames)
			if err == nil {
				t.Fatalf("accepted:\n%s", c.YAML())
			}
			if c != nil {
				t.Errorf("Parse returned a config with its error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			var es Errors
			if !errors.As(err, &es) || len(es) != 1 {
				t.Fatalf("want exactly one error, got:\n%v", err)
			}
			e := es[0]
			if e.File != "bad.yaml" || e.Line != line {
				t.Errorf("error at %s:%d, want bad.yaml:%d: %v", e.File, e.Line, line, e)
			}
			if e.Fix == "" || !strings.Contains(e.Error(), tc.fix) {
				t.Errorf("error %q\ndoes not contain %q", e, tc.fix)
			}
			if strings.Contains(e.Error(), "secretHASH") {
				t.Errorf("error %q repeats a line that is no configuration", e)
			}
			if prefix := "bad.yaml:" + strconv.Itoa(line) + ": "; !strings.HasPrefix(e.Error(), prefix) || strings.Contains(e.Error(), "\n") {
				t.Errorf("error %q: want one line starting %q", e, prefix)
			}
		})
	}
}

// TestEveryError: value problems anywhere in the file are all reported,
// with unknown keys, one per line in line order.
func TestEveryError(t *testing.T) {
	src := `device:
  queues: 0
  colour: blue
services:
  - proto: tcp
    vip: 198.18.0.10:80
    scheduler: nope
    backends:
      - {addr: 198.18.2.1, weight: 70000}
      - {addr: 198.18.2.1, weight: 1}
masquerade:
  - {from: 198.18.2.0/24, to: 2001:db8::1}
metrics: {listen: 0.0.0.0:9100}
`
	_, err := Parse([]byte(src), "many.yaml")
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("err = %v", err)
	}
	want := []string{
		"many.yaml:2: device queues 0 is out of range: use 1..256",
		`many.yaml:3: unknown key "colour": remove it; the keys in device are type, name, queues, offloads, interfaces, addresses`,
		`many.yaml:7: scheduler "nope" is not known: use one of rr, wrr, lc, wlc, sed, nq, sh, dh, mh, p2c, fo, ovf, lblc, lblcr`,
		"many.yaml:9: backend 198.18.2.1:80: weight 70000 is out of range: use 0..65535",
		"many.yaml:10: backend 198.18.2.1:80 is listed twice in service 198.18.0.10:80 (also backend 1): remove one of them (to give it more traffic, raise its weight)",
		"many.yaml:12: masquerade to 2001:db8::1 is IPv6 and from 198.18.2.0/24 is IPv4: use an IPv4 address",
		"many.yaml:13: metrics listen address 0.0.0.0:9100 is not a loopback address: use 127.0.0.1 or [::1], or set metrics.public: true to serve metrics to the network on purpose",
	}
	if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestValidateCodeBuilt(t *testing.T) {
	if err := (&Config{}).Validate(); err == nil {
		t.Fatal("the zero Config is valid")
	}
	c, err := Parse(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	c.Services = []Service{{Proto: packet.ProtoTCP, VIP: netip.MustParseAddrPort("198.18.0.10:80"), Scheduler: "rr",
		Backends: []Backend{{Addr: netip.MustParseAddrPort("198.18.2.1:80"), Weight: 1}, {Addr: netip.MustParseAddrPort("198.18.2.2:80"), Weight: 70000}}}}
	if err := c.Validate(); err == nil || err.Error() != "services[0].backends[1].weight: backend 198.18.2.2:80: weight 70000 is out of range: use 0..65535" {
		t.Errorf("Validate = %v", err)
	}
	if _, err := c.NAT(); !errors.Is(err, ErrInvalid) {
		t.Errorf("NAT of an invalid config: %v", err)
	}
	c.Services[0].Backends[1].Weight = 2
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	newEngine(t, c)
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || errors.Is(err, ErrInvalid) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, MaxFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("big file: %v", err)
	}
	// Line numbers count from the file's first line.
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("# c\n\ntable:\n  size: -1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil || !strings.HasPrefix(err.Error(), bad+":4: table size -1 is out of range") {
		t.Errorf("bad file: %v", err)
	}
}

func TestIPChains(t *testing.T) {
	for _, tc := range []struct {
		rule string
		want string // prefix, or "!" and part of the error
	}{
		{"-A forward -j MASQ -s 198.18.2.0/24", "198.18.2.0/24"},
		{"ipchains -A forward -j MASQ -s 198.18.2.0/24", "198.18.2.0/24"},
		{"-s 198.18.2.0/255.255.254.0 -j MASQ -A forward", "198.18.2.0/23"},
		{"-A forward -j MASQ -s 198.18.2.7", "198.18.2.7/32"},
		{"-A forward -j MASQ -s 0/0", "0.0.0.0/0"},
		{"-A forward -j MASQ -s 2001:db8:2::/64", "2001:db8:2::/64"},
		{"-A forward -j MASQ -s 198.18.2.0/24 -d 0.0.0.0/0 -p all", "198.18.2.0/24"},
		{"", "!no chain"},
		{"-A forward -s 198.18.2.0/24", "!no target"},
		{"-A forward -j ACCEPT -s 198.18.2.0/24", "!use -j MASQ"},
		{"-A input -j MASQ -s 198.18.2.0/24", "!use -A forward"},
		{"-A forward -j MASQ", "!no subnet"},
		{"-A forward -j MASQ -d 0/0", "!no source subnet"},
		{"-A forward -j MASQ -s", "!has no value"},
		{"-A forward -j MASQ -s ! 198.18.2.0/24", "!negation"},
		{"-A forward -j MASQ -s 198.18.2.0/24 -d 198.18.9.0/24", "!by one subnet"},
		{"-A forward -j MASQ -d 198.18.2.0/24", "into 198.18.2.0/24"},
		{"ipchains -A forward -j MASQ -s 0/0 -d 2001:db8:2::/64", "into 2001:db8:2::/64"},
		{"-A forward -j MASQ -s 198.18.2.0/24 -p tcp", "!remove the -p option"},
		{"-A forward -j MASQ -s 198.18.2.0/24 -i eth0", "!option \"-i\" is not supported"},
		{"-A forward -j MASQ -s 198.18.2.0/255.0.255.0", "!bad mask"},
		{"-A forward -j MASQ -s 198.18.2.1/24", "!did you mean 198.18.2.0/24?"},
		{"-A forward -A forward -j MASQ -s 198.18.2.0/24", "!given twice"},
	} {
		p, into, err := ParseIPChains(tc.rule)
		if bad, ok := strings.CutPrefix(tc.want, "!"); ok {
			var e *Error
			if err == nil || !strings.Contains(err.Error(), bad) || !errors.As(err, &e) || e.Fix == "" {
				t.Errorf("%q: err = %v, want one containing %q", tc.rule, err, bad)
			}
			continue
		}
		got := p.String()
		if into {
			got = "into " + got
		}
		if err != nil || got != tc.want {
			t.Errorf("%q = %v, %v; want %s", tc.rule, got, err, tc.want)
		}
	}
}

func TestComparePath(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"services[2].vip", "services[10].vip", -1},
		{"services[10].vip", "services[2].vip", 1},
		{"services[1].backends[9]", "services[1].backends[10]", -1},
		{"device.name", "device.name", 0},
		{"a", "b", -1},
	} {
		if got := comparePath(tc.a, tc.b); got != tc.want {
			t.Errorf("comparePath(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestL7Service: an HTTP service with inline directives and one with a
// directives file (relative to the configuration) are accepted, keep their
// text, and convert to engine services of mode l7 without backends.
func TestL7Service(t *testing.T) {
	dir := t.TempDir()
	conf := "ProxyPass /sales http://198.18.2.11/\nProxyPassReverse /sales http://198.18.2.11/\n"
	if err := os.WriteFile(filepath.Join(dir, "proxy.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	src := `services:
  - proto: tcp
    vip: 198.18.0.10:80
    mode: l7
    l7:
      directives: |
        ProxyPass /rd http://198.18.2.12/
  - proto: tcp
    vip: 198.18.0.10:8000
    mode: l7
    l7: {file: proxy.conf}
`
	c, err := Parse([]byte(src), filepath.Join(dir, "vsgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Services[0].L7 == nil || c.Services[0].L7.Text != "ProxyPass /rd http://198.18.2.12/\n" || c.Services[1].L7.Text != conf {
		t.Fatalf("L7 blocks: %+v %+v", c.Services[0].L7, c.Services[1].L7)
	}
	n, err := c.NAT()
	if err != nil {
		t.Fatal(err)
	}
	if n.Services[0].Mode != nat.ModeL7 || len(n.Services[0].Backends) != 0 {
		t.Fatalf("engine service %+v", n.Services[0])
	}
}

// TestTCPWindowCheck: tcp_window_check: false turns the window check off
// for every flow, or for one service's; left out it is on.
func TestTCPWindowCheck(t *testing.T) {
	c, err := Parse([]byte(`tcp_window_check: false
services:
  - {proto: tcp, vip: 198.18.0.10:80, tcp_window_check: false, backends: [{addr: 198.18.2.11}]}
  - {proto: tcp, vip: 198.18.0.10:81, backends: [{addr: 198.18.2.11}]}
`), "w.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.NAT()
	if err != nil {
		t.Fatal(err)
	}
	if !n.TCPLiberal || !n.Services[0].TCPLiberal || n.Services[1].TCPLiberal {
		t.Fatalf("liberal: engine %v, services %v %v", n.TCPLiberal, n.Services[0].TCPLiberal, n.Services[1].TCPLiberal)
	}
	roundTrip(t, c)
	d, _ := Parse([]byte("services: []\n"), "d.yaml")
	if d.TCPLiberal {
		t.Fatal("the window check is off by default")
	}
}

// TestPerSource: table.per_source reaches the engine, and bad values are
// refused at their line.
func TestPerSource(t *testing.T) {
	c, err := Parse([]byte("table: {size: 1024, per_source: {v4_prefix: 24, v6_prefix: 64, half_open: 100, flows: 1000}}\n"), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.NAT()
	if err != nil || n.SourceBits4 != 24 || n.SourceBits6 != 64 || n.SourceHalfOpen != 100 || n.SourceFlows != 1000 {
		t.Fatalf("engine config %+v, %v", n, err)
	}
	roundTrip(t, c)
	if _, err := Parse([]byte("table:\n  per_source:\n    v4_prefix: 33\n"), "p.yaml"); err == nil || !strings.Contains(err.Error(), "p.yaml:3:") {
		t.Fatalf("v4_prefix 33: %v", err)
	}
}

// TestSynProxy: syn_proxy per TCP service (auto when left out) and the
// auto thresholds reach the engine; syn_proxy on a UDP service is refused
// at its line.
func TestSynProxy(t *testing.T) {
	c, err := Parse([]byte(`table: {syn_proxy: {half_open: 500, fill: 90}}
services:
  - {proto: tcp, vip: 198.18.0.10:80, syn_proxy: on, backends: [{addr: 198.18.2.11}]}
  - {proto: tcp, vip: 198.18.0.10:81, syn_proxy: off, backends: [{addr: 198.18.2.11}]}
  - {proto: tcp, vip: 198.18.0.10:82, mode: fullnat, backends: [{addr: 198.18.2.11}]}
fullnat: {pool: [198.18.0.30]}
`), "s.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.NAT()
	if err != nil {
		t.Fatal(err)
	}
	if n.SynProxyHalfOpen != 500 || n.SynProxyFill != 90 || n.Services[0].SynProxy != nat.SynProxyOn ||
		n.Services[1].SynProxy != nat.SynProxyOff || n.Services[2].SynProxy != nat.SynProxyAuto {
		t.Fatalf("engine config %+v", n)
	}
	roundTrip(t, c)
	_, err = Parse([]byte("services:\n  - proto: udp\n    vip: 198.18.0.10:53\n    syn_proxy: on\n    backends: [{addr: 198.18.2.11}]\n"), "u.yaml")
	if err == nil || !strings.Contains(err.Error(), "u.yaml:4:") || !strings.Contains(err.Error(), "syn_proxy") {
		t.Fatalf("syn_proxy on a UDP service: %v", err)
	}
	if _, err := Parse([]byte("services:\n  - {proto: tcp, vip: 198.18.0.10:80, syn_proxy: maybe, backends: [{addr: 198.18.2.11}]}\n"), "m.yaml"); err == nil {
		t.Fatal("syn_proxy: maybe accepted")
	}
}

// TestUnreachableVIP: a VIP on loopback or link-local, or one of the
// gateway's own device.addresses, is refused at its line (vsgate check
// runs the checks the gateway runs without the network).
func TestUnreachableVIP(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{"services:\n  - {proto: tcp, vip: 127.0.0.1:80, backends: [{addr: 198.18.2.11}]}\n", "loopback"},
		{"services:\n  - {proto: tcp, vip: \"[::1]:80\", backends: [{addr: \"[2001:db8:2::11]\"}]}\n", "loopback"},
		{"services:\n  - {proto: tcp, vip: \"[fe80::1]:80\", backends: [{addr: \"[2001:db8:2::11]\"}]}\n", "link-local"},
		{"device: {type: afpacket, interfaces: [eth0], addresses: [198.18.0.1]}\nservices:\n  - {proto: tcp, vip: 198.18.0.1:80, backends: [{addr: 198.18.2.11}]}\n", "own addresses"},
	} {
		_, err := Parse([]byte(c.text), "v.yaml")
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "v.yaml:") {
			t.Errorf("%q: %v", c.text, err)
		}
	}
}

// TestReplyAdoptions: which sloppy NAT services' real servers' answers a
// gateway that did not see the client translates (each backend serves
// only that service), and which backend stops the others.
func TestReplyAdoptions(t *testing.T) {
	c, err := Parse([]byte(`
services:
  - {name: web, proto: tcp, vip: 198.18.0.10:80, sloppy: true, backends: [{addr: 198.18.2.11:80}, {addr: 198.18.2.12:80}]}
  - {name: dns, proto: udp, vip: 198.18.0.10:53, sloppy: true, backends: [{addr: 198.18.2.11:53}]}
  - {name: alt, proto: tcp, vip: 198.18.0.11:80, sloppy: true, backends: [{addr: 198.18.2.12:80}]}
  - {name: plain, proto: tcp, vip: 198.18.0.12:80, backends: [{addr: 198.18.2.13:80}]}
  - {name: full, proto: tcp, vip: 198.18.0.13:80, mode: fullnat, sloppy: true, backends: [{addr: 198.18.2.13:81}]}
fullnat: {pool: [198.18.0.30]}
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := c.ReplyAdoptions()
	want := []ReplyAdoption{
		{Service: "tcp 198.18.0.10:80 (web)", SharedBy: "198.18.2.12:80 also serves tcp 198.18.0.11:80 (alt)"},
		{Service: "udp 198.18.0.10:53 (dns)"},
		{Service: "tcp 198.18.0.11:80 (alt)", SharedBy: "198.18.2.12:80 also serves tcp 198.18.0.10:80 (web)"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ReplyAdoptions:\n%+v\nwant\n%+v", got, want)
	}
}

// TestL7DirectiveErrorPlace: a refused Apache directive is reported once,
// at its own line — in the directives file when the service names one, in
// the configuration file for an inline block — with vsgate's directives
// listed once.
func TestL7DirectiveErrorPlace(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "proxy.conf")
	if err := os.WriteFile(conf, []byte("ProxyPass /a http://198.18.2.11/\n\n# a comment\nProxyHTMLEnable on\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	inline := "services:\n  - proto: tcp\n    vip: 198.18.0.10:80\n    mode: l7\n    l7:\n      directives: |\n        ProxyPass /a http://198.18.2.11/\n        ProxyHTMLEnable on\n"
	for _, tc := range []struct {
		name, yaml, file string
		line             int
	}{
		{"file", "services:\n  - {proto: tcp, vip: 198.18.0.10:80, mode: l7, l7: {file: proxy.conf}}\n", conf, 4},
		{"inline block", inline, filepath.Join(dir, "vsgate.yaml"), 8},
		{"inline one line", "services:\n  - proto: tcp\n    vip: 198.18.0.10:80\n    mode: l7\n    l7: {directives: \"ProxyHTMLEnable on\"}\n", filepath.Join(dir, "vsgate.yaml"), 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "vsgate.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			var es Errors
			if !errors.As(err, &es) || len(es) != 1 {
				t.Fatalf("want one error, got %v", err)
			}
			e := es[0]
			if e.File != tc.file || e.Line != tc.line {
				t.Errorf("error at %s:%d, want %s:%d: %v", e.File, e.Line, tc.file, tc.line, e)
			}
			if n := strings.Count(e.Error(), "ProxyPassMatch"); n != 1 || !strings.Contains(e.Error(), `"ProxyHTMLEnable"`) {
				t.Errorf("error %q: want the directive named and vsgate's list once (%d)", e, n)
			}
		})
	}
}
