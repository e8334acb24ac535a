package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
	"github.com/vsgate/vsgate/sched"
)

// validate checks c's values and how they fit together, reporting every
// problem in r by schema path. It skips a check whose input r already
// holds a problem for, so one mistake gives one message.
func validate(c *Config, r *report) {
	validateDevice(c.Device, r)
	if c.TableSize < 1 || c.TableSize > MaxTableSize {
		r.fail("table.size", rangeMsg("table size", int64(c.TableSize)), fmt.Sprintf("use 1..%d", MaxTableSize))
	}
	if ps := c.PerSource; ps.V4Prefix < 0 || ps.V4Prefix > 32 || ps.V6Prefix < 0 || ps.V6Prefix > 128 || ps.HalfOpen < 0 || ps.Flows < 0 {
		if !r.failedUnder("table.per_source") {
			r.fail("table.per_source", fmt.Sprintf("per_source %+v is out of range", ps), "use v4_prefix 1..32, v6_prefix 1..128, and limits of 0 or more")
		}
	}
	t := c.Timeouts
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"tcp", t.TCPEstablished}, {"tcp_syn_sent", t.TCPSynSent}, {"tcp_syn_recv", t.TCPSynRecv},
		{"tcpfin", t.TCPFinWait}, {"tcp_time_wait", t.TCPTimeWait}, {"tcp_close", t.TCPClose},
		{"tcp_close_wait", t.TCPCloseWait}, {"tcp_last_ack", t.TCPLastAck}, {"udp", t.UDP}, {"icmp", t.ICMP},
	} {
		// 0 is allowed here: nat reads it as the default.
		if msg, fix := durationProblem("timeout "+d.key, d.v, true); msg != "" {
			r.fail("timeouts."+d.key, msg, fix)
		}
	}

	fam := map[bool]bool{} // FULLNAT pool families present, by Is4
	for i, a := range c.FullNAT.Pool {
		p := fmt.Sprintf("fullnat.pool[%d]", i)
		if r.failed(p) {
			continue
		}
		if msg, fix := unicastProblem("FULLNAT pool address", a); msg != "" {
			r.fail(p, msg, fix)
			continue
		}
		if fam[a.Is4()] {
			r.fail(p, fmt.Sprintf("FULLNAT pool has a second IPv%s address, %s", family(a), a),
				"keep one address per family: the engine uses one")
		}
		fam[a.Is4()] = true
	}
	if msg, fix := portRangeProblem(c.FullNAT.Ports); msg != "" {
		r.fail("fullnat.ports", msg, fix)
	}

	svcs := map[svcID]int{}
	names := map[string]int{}
	for i := range c.Services {
		path := fmt.Sprintf("services[%d]", i)
		validateService(&c.Services[i], path, i, fam, svcs, names, r)
		if vip := c.Services[i].VIP.Addr(); slices.Contains(c.Device.Addresses, vip) && !r.failed(path+".vip") {
			r.fail(path+".vip", fmt.Sprintf("vip %s is one of the gateway's own addresses (device.addresses)", vip),
				"give the service an address of its own; device.addresses are what the real servers use as their gateway")
		}
	}

	if a := c.MasqueradeTo; a.IsValid() && !r.failed("masquerade_to") {
		if msg, fix := unicastProblem("masquerade_to", a); msg != "" {
			r.fail("masquerade_to", msg, fix)
		}
	}
	for i, a := range c.MasqueradeInside {
		p := fmt.Sprintf("masquerade_inside[%d]", i)
		if msg, fix := unicastProblem("masquerade_inside address", a); msg != "" && !r.failed(p) {
			r.fail(p, msg, fix)
		}
	}
	rules := map[masqID]int{}
	for i, m := range c.Masquerade {
		validateMasq(m, fmt.Sprintf("masquerade[%d]", i), i, rules, r)
	}

	s := c.Control.Socket
	switch {
	case !strings.HasPrefix(s, "/"):
		r.fail("control.socket", fmt.Sprintf("control socket %q is not an absolute path", s), "use a path such as "+DefaultSocket)
	case len(s) > 107:
		r.fail("control.socket", fmt.Sprintf("control socket path is %d bytes long", len(s)), "use at most 107 bytes (the limit of a Unix socket address)")
	case !printable(s):
		r.fail("control.socket", fmt.Sprintf("control socket %q has spaces or control characters", s), "use a plain path such as "+DefaultSocket)
	}

	switch u := c.User; {
	case u == "" || !printable(u) || strings.ContainsAny(u, ":/"):
		r.fail("user", fmt.Sprintf("user %q is not a user name or number", u), "use a name from /etc/passwd such as "+DefaultUser)
	case u == "root" || u == "0":
		r.fail("user", "user root would keep every privilege after setup", "use an unprivileged user such as "+DefaultUser)
	}
	switch d := c.Pcap.Dir; {
	case !strings.HasPrefix(d, "/") || filepath.Clean(d) != d || d == "/":
		r.fail("pcap.dir", fmt.Sprintf("capture directory %q is not a clean absolute path below /", d), "use a path such as "+DefaultPcapDir)
	case !printable(d):
		r.fail("pcap.dir", fmt.Sprintf("capture directory %q has spaces or control characters", d), "use a plain path such as "+DefaultPcapDir)
	}

	if l := c.Metrics.Listen; l.IsValid() {
		switch {
		case l.Addr().Zone() != "" || l.Addr().Is4In6():
			r.fail("metrics.listen", fmt.Sprintf("metrics listen address %s has a zone or is IPv4-mapped", l), "use a plain address such as "+DefaultMetrics)
		case l.Port() == 0:
			r.fail("metrics.listen", fmt.Sprintf("metrics listen address %s has port 0", l), "use a port in 1..65535, such as 9100")
		case !l.Addr().IsLoopback() && !c.Metrics.Public:
			r.fail("metrics.listen", fmt.Sprintf("metrics listen address %s is not a loopback address", l),
				"use 127.0.0.1 or [::1], or set metrics.public: true to serve metrics to the network on purpose")
		}
	}
	switch c.Log.Level {
	case slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError:
	default:
		r.fail("log.level", fmt.Sprintf("log level %v is not known", c.Log.Level), "use debug, info, warn or error")
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		r.fail("log.format", fmt.Sprintf("log format %q is not known", c.Log.Format), "use text or json")
	}
	validateBGP(c, r)
	validateSync(c, r)
	validateDR(c, r)
}

// validateDR checks the direct-routing services: AF_PACKET only (vsgate
// must write the real server's MAC into the frame, which a TUN has not),
// real servers on the VIP's port, no SYN proxy (the real server's SYN-ACK
// goes to the client without the gateway).
func validateDR(c *Config, r *report) {
	for i, s := range c.Services {
		if s.Mode != nat.ModeDR {
			continue
		}
		path := fmt.Sprintf("services[%d]", i)
		if !c.Device.Ethernet() && !r.failed("device.type") {
			r.fail(path+".mode", fmt.Sprintf("service %v is direct routing, and the device is %s", s.VIP, c.Device.Type),
				"use device.type: afpacket (direct routing puts the real server's MAC in the frame, and a TUN carries no frames), or mode: nat")
		}
		for j, b := range s.Backends {
			if b.Addr.Port() != s.VIP.Port() {
				r.fail(fmt.Sprintf("%s.backends[%d].addr", path, j), fmt.Sprintf("real server %v of direct-routing service %v is on another port", b.Addr, s.VIP),
					fmt.Sprintf("use the VIP's port, %d (direct routing does not rewrite the packet)", s.VIP.Port()))
			}
		}
		if s.SynProxy == nat.SynProxyOn {
			r.fail(path+".syn_proxy", "syn_proxy: on with direct routing", "remove it: the real server's SYN-ACK goes to the client, not through vsgate")
		}
	}
}

func validateDevice(d Device, r *report) {
	switch d.Type {
	case DeviceTUN:
		if n := d.Name; !validIfName(n) {
			r.fail("device.name", fmt.Sprintf("device name %q is not a valid interface name", n),
				"use 1 to 15 letters, digits, '-', '_' or '.', such as vsg0")
		}
		if len(d.Interfaces) > 0 {
			r.fail("device.interfaces", "device interfaces are for type afpacket", "remove them, or use type: afpacket")
		}
		if len(d.Addresses) > 0 {
			r.fail("device.addresses", "device addresses are for type afpacket", "remove them, or use type: afpacket")
		}
	case DeviceAFPacket, DeviceAFXDP:
		if len(d.Interfaces) == 0 {
			r.fail("device.type", "device type "+d.Type+" needs the Ethernet interfaces it owns",
				"add interfaces: [IFACE, ...], such as interfaces: [eth1, eth2]")
		}
		seen := map[string]bool{}
		for i, n := range d.Interfaces {
			p := fmt.Sprintf("device.interfaces[%d]", i)
			switch {
			case !validIfName(n):
				r.fail(p, fmt.Sprintf("interface name %q is not a valid interface name", n), "use 1 to 15 letters, digits, '-', '_' or '.', such as eth1")
			case seen[n]:
				r.fail(p, fmt.Sprintf("interface %s is listed twice", n), "list each interface once")
			}
			seen[n] = true
		}
		for i, a := range d.Addresses {
			if a.IsValid() && (a.IsUnspecified() || a.IsMulticast() || a.IsLoopback()) {
				r.fail(fmt.Sprintf("device.addresses[%d]", i), fmt.Sprintf("device address %v is not a unicast address", a), "use the address the real servers route through, such as 198.18.2.1")
			}
		}
	default:
		r.fail("device.type", fmt.Sprintf("device type %q is not known", d.Type), "use type: tun or type: afpacket")
	}
	if d.Queues < 1 || d.Queues > MaxQueues {
		r.fail("device.queues", rangeMsg("device queues", int64(d.Queues)), fmt.Sprintf("use 1..%d", MaxQueues))
	}
}

// validIfName reports whether n can name a Linux interface.
func validIfName(n string) bool {
	return n != "" && len(n) <= 15 && n != "." && n != ".." && !strings.ContainsAny(n, "/:% ") && printable(n)
}

// svcID is what makes a service unique: protocol, VIP and port, or a
// firewall mark and family.
type svcID struct {
	proto uint8
	vip   netip.AddrPort
	mark  uint32
}

func validateService(s *Service, path string, idx int, pool map[bool]bool, svcs map[svcID]int, names map[string]int, r *report) {
	if s.Name != "" {
		if !validName(s.Name) {
			r.fail(path+".name", fmt.Sprintf("service name %q has characters other than letters, digits, '.', '_' and '-'", s.Name),
				"use a short label such as web-80 (at most 64 characters)")
		} else if j, dup := names[s.Name]; dup {
			r.fail(path+".name", fmt.Sprintf("service name %q is already used by service %d", s.Name, j+1), "give each service its own name")
		} else {
			names[s.Name] = idx
		}
	}
	if s.Fwmark == 0 && s.Proto != packet.ProtoTCP && s.Proto != packet.ProtoUDP {
		r.fail(path+".proto", fmt.Sprintf("service proto %s is not tcp or udp", protoName(s.Proto)), "use proto: tcp or proto: udp")
	}
	if s.Fwmark != 0 && s.Mode == nat.ModeL7 {
		r.fail(path+".mode", "a fwmark service is not l7: an l7 service listens on one address and port", "use mode: nat, fullnat or dr")
	}
	// addrOK: the VIP's address can be compared with others; vipOK: the
	// whole VIP (address and port) can. A firewall-mark service's is its
	// family's unspecified address (its marks name its addresses).
	vip := s.VIP.Addr()
	addrOK := vip.IsValid()
	if addrOK && s.Fwmark == 0 {
		if msg, fix := unicastProblem("vip", vip); msg != "" {
			r.fail(path+".vip", msg, fix)
			addrOK = false
		} else if err := nat.CheckServiceAddr(vip); err != nil {
			r.fail(path+".vip", "vip "+err.Error(), "use an address clients reach the gateway by")
			addrOK = false
		}
	}
	vipOK := addrOK && !r.failed(path+".vip")
	if vipOK && s.VIP.Port() == 0 {
		switch {
		case s.Mode == nat.ModeL7:
			r.fail(path+".vip", fmt.Sprintf("vip %s has port 0 (every port), and an l7 service listens on one", vip), "use a port in 1..65535")
		case s.Persistence == 0 && s.Fwmark == 0:
			r.fail(path+".vip", fmt.Sprintf("vip %s has port 0 (every port of the address), which needs persistence, as ipvsadm's -p", vip),
				"add persistence: 300s, or use a port in 1..65535")
		case s.Health != nil && s.Health.Port == 0 && slices.ContainsFunc(s.Backends, func(b Backend) bool { return b.Addr.Port() == 0 }):
			r.fail(path+".health", "the health check of backends on every port (port 0) has no port to check", "add port: to health, such as port: 80")
		}
	}
	if !vip.IsValid() && !r.failed(path+".vip") {
		r.fail(path+".vip", "service has no vip", "add the virtual address and port, such as vip: 198.18.0.10:80")
	}
	label := "service " + quoteV6(s.VIP)
	if s.Fwmark != 0 {
		label = fmt.Sprintf("fwmark service %d (IPv%s)", s.Fwmark, family(vip))
	}
	if !vipOK {
		label = fmt.Sprintf("service %d", idx+1)
	} else if id := (svcID{s.Proto, s.VIP, s.Fwmark}); !r.failed(path + ".proto") {
		if j, dup := svcs[id]; dup && s.Fwmark != 0 {
			r.fail(path+".fwmark", fmt.Sprintf("%s is already defined by service %d", label, j+1), "remove one of them, or give this one another mark or family")
		} else if dup {
			r.fail(path+".vip", fmt.Sprintf("service %s %s is already defined by service %d", protoName(s.Proto), quoteV6(s.VIP), j+1),
				"remove one of them, or give this one another address or port")
		} else {
			svcs[id] = idx
		}
	}

	switch s.Mode {
	case nat.ModeNAT, nat.ModeDR:
	case nat.ModeFullNAT:
		if addrOK && !pool[vip.Is4()] {
			r.fail(path+".mode", fmt.Sprintf("%s is FULLNAT but fullnat.pool has no IPv%s address", label, family(vip)),
				fmt.Sprintf("add a gateway-owned IPv%s address to fullnat.pool, or use mode: nat", family(vip)))
		}
	case nat.ModeL7:
		if s.Proto != packet.ProtoTCP {
			r.fail(path+".proto", "an l7 (HTTP) service is TCP", "use proto: tcp")
		}
		if len(s.Backends) > 0 {
			r.fail(path+".backends", "an l7 service takes its real servers from its directives", "remove backends: and name them in ProxyPass / BalancerMember")
		}
		if s.L7 == nil && !r.failedUnder(path+".l7") {
			r.fail(path+".l7", "mode l7 needs Apache proxy directives", "add an l7: block")
		}
	default:
		r.fail(path+".mode", fmt.Sprintf("mode %d is not known", s.Mode), "use nat or fullnat")
	}

	if !r.failed(path+".scheduler") && !r.failedUnder(path+".scheduler_flags") {
		if _, err := sched.New(s.Scheduler, s.Sched); err != nil {
			switch {
			case errors.Is(err, sched.ErrUnknownScheduler):
				r.fail(path+".scheduler", fmt.Sprintf("scheduler %q is not known", s.Scheduler), "use one of "+strings.Join(sched.Names(), ", "))
			case errors.Is(err, sched.ErrTableSize):
				r.fail(path+".scheduler_table_size", fmt.Sprintf("scheduler table size %d is not a prime", s.Sched.TableSize),
					fmt.Sprintf("use a prime up to %d, such as %d", sched.MaxTableSize, sched.DefaultTableSize))
			case errors.Is(err, sched.ErrOption) && s.Sched.TableSize != 0 && s.Scheduler != "sh" && s.Scheduler != "dh" && s.Scheduler != "mh":
				r.fail(path+".scheduler_table_size", fmt.Sprintf("scheduler %s has no table", s.Scheduler), "remove scheduler_table_size (it is for sh, dh and mh)")
			default:
				r.fail(path+".scheduler_flags", fmt.Sprintf("scheduler %s: %v", s.Scheduler, err), "remove the flag (sh-port is for sh; sh-fallback for sh; dh-fallback for dh)")
			}
		}
	}

	if s.Persistence != 0 || s.PersistenceBits != 0 {
		if msg, fix := durationProblem("persistence", s.Persistence, true); msg != "" {
			r.fail(path+".persistence", msg, fix)
		}
		if addrOK && (s.PersistenceBits < 0 || s.PersistenceBits > vip.BitLen()) {
			r.fail(path+".persistence_netmask", fmt.Sprintf("persistence_netmask %d is out of range for an IPv%s service", s.PersistenceBits, family(vip)),
				fmt.Sprintf("use a prefix length 0..%d", vip.BitLen()))
		}
	}
	if s.Health != nil {
		validateHealth(s.Health, path+".health", r)
	}

	if len(s.Backends) > sched.MaxBackends {
		r.fail(path+".backends", fmt.Sprintf("%s has %d backends", label, len(s.Backends)), fmt.Sprintf("use at most %d", sched.MaxBackends))
	}
	seen := map[netip.AddrPort]int{}
	members := 0
	for j, b := range s.Backends {
		bp := fmt.Sprintf("%s.backends[%d]", path, j)
		if b.Weight > 0 || s.Scheduler != "mh" {
			members++
		}
		if b.Weight > sched.MaxWeight {
			r.fail(bp+".weight", rangeMsg("backend "+backendName(b.Addr)+": weight", int64(b.Weight)), fmt.Sprintf("use 0..%d", sched.MaxWeight))
		}
		switch {
		case b.UThreshold > MaxThreshold:
			r.fail(bp+".u_threshold", rangeMsg("backend "+backendName(b.Addr)+": u_threshold", int64(b.UThreshold)), fmt.Sprintf("use 0..%d", MaxThreshold))
		case b.LThreshold > b.UThreshold && !r.failed(bp+".l_threshold"):
			r.fail(bp+".l_threshold", fmt.Sprintf("backend %s: l_threshold %d is above u_threshold %d", backendName(b.Addr), b.LThreshold, b.UThreshold),
				"use an l_threshold no larger than u_threshold (a backend over u_threshold takes new connections again below l_threshold)")
		}
		if r.failed(bp + ".addr") {
			continue
		}
		a := b.Addr.Addr()
		if msg, fix := unicastProblem("backend", a); msg != "" {
			r.fail(bp+".addr", msg, fix)
			continue
		}
		if addrOK && a.Is4() != vip.Is4() {
			r.fail(bp+".addr", fmt.Sprintf("backend %s is IPv%s and the vip %s is IPv%s", a, family(a), vip, family(vip)),
				fmt.Sprintf("use an IPv%s backend address (vsgate does not translate between families)", family(vip)))
			continue
		}
		if !vipOK {
			continue // the backend's port may be the VIP's
		}
		switch {
		case b.Addr.Port() == 0 && s.VIP.Port() != 0:
			r.fail(bp+".addr", fmt.Sprintf("backend %s has port 0", a), "use a port in 1..65535, or leave it out for the vip's port")
		case b.Addr == s.VIP:
			r.fail(bp+".addr", fmt.Sprintf("backend %s is the vip itself", quoteV6(b.Addr)), "use the real server's address")
		default:
			if k, dup := seen[b.Addr]; dup {
				r.fail(bp+".addr", fmt.Sprintf("backend %s is listed twice in %s (also backend %d)", quoteV6(b.Addr), label, k+1),
					"remove one of them (to give it more traffic, raise its weight)")
			}
			seen[b.Addr] = j
		}
	}
	if s.Scheduler == "sh" || s.Scheduler == "dh" || s.Scheduler == "mh" {
		m := s.Sched.TableSize
		if m == 0 {
			m = sched.DefaultTableSize
		}
		if uint64(members) > uint64(m) && !r.failed(path+".scheduler_table_size") {
			r.fail(path+".scheduler_table_size", fmt.Sprintf("%s has %d backends and a %s table of %d slots", label, members, s.Scheduler, m),
				"raise scheduler_table_size to a prime above the number of backends (100 times more keeps moves under 1%)")
		}
	}
}

func validateHealth(h *Health, path string, r *report) {
	switch h.Type {
	case HealthTCP:
		if h.Path != "" {
			r.fail(path+".path", "path is for http health checks", "remove it, or set type: http")
		}
		if h.Expect != 0 {
			r.fail(path+".expect", "expect is for http health checks", "remove it, or set type: http")
		}
	case HealthHTTP:
		if !strings.HasPrefix(h.Path, "/") || !printable(h.Path) {
			r.fail(path+".path", fmt.Sprintf("health path %q is not an absolute URL path", h.Path), "write a path that starts with '/', such as /health")
		}
		if h.Expect < 100 || h.Expect > 599 {
			r.fail(path+".expect", rangeMsg("health expect", int64(h.Expect)), "use an HTTP status 100..599, such as 200")
		}
	default:
		r.fail(path+".type", fmt.Sprintf("health type %q is not known", h.Type), "use tcp or http")
	}
	intervalOK := !r.failed(path + ".interval")
	timeoutOK := !r.failed(path + ".timeout")
	if msg, fix := durationProblem("health interval", h.Interval, false); intervalOK && msg != "" {
		r.fail(path+".interval", msg, fix)
		intervalOK = false
	}
	if msg, fix := durationProblem("health timeout", h.Timeout, false); timeoutOK && msg != "" {
		r.fail(path+".timeout", msg, fix)
		timeoutOK = false
	}
	if intervalOK && timeoutOK && h.Interval <= h.Timeout {
		r.fail(path+".interval", fmt.Sprintf("health interval %v is not longer than the timeout %v", h.Interval, h.Timeout),
			"make the interval longer than the timeout, such as interval: 2s with timeout: 1s")
	}
	if h.Rise < 1 || h.Rise > 1000 {
		r.fail(path+".rise", rangeMsg("health rise", int64(h.Rise)), "use 1..1000")
	}
	if h.Fall < 1 || h.Fall > 1000 {
		r.fail(path+".fall", rangeMsg("health fall", int64(h.Fall)), "use 1..1000")
	}
}

func validateMasq(m nat.Masquerade, path string, idx int, rules map[masqID]int, r *report) {
	key, what := ".from", "from"
	if m.Into.IsValid() {
		key, what = ".into", "into"
	}
	netPath := path + key
	if r.failed(path + ".ipchains") {
		netPath = path + ".ipchains"
	}
	n := m.Subnet()
	netOK := !r.failed(netPath)
	if netOK && (!n.IsValid() || n.Masked() != n || n.Addr().Is4In6() || n.Addr().Zone() != "") {
		r.fail(netPath, fmt.Sprintf("masquerade %s %v is not a subnet", what, n), "write ADDRESS/BITS with no host bits, such as 198.18.2.0/24")
		netOK = false
	}
	if netOK {
		id := masqID{n, m.Into.IsValid()}
		if j, dup := rules[id]; dup {
			r.fail(netPath, fmt.Sprintf("masquerade %s %s is already given by masquerade rule %d", what, n, j+1), "keep one rule per subnet and direction")
		} else {
			rules[id] = idx
		}
	}
	if !r.failed(path + ".to") {
		if msg, fix := unicastProblem("masquerade to", m.To); msg != "" {
			r.fail(path+".to", msg, fix)
		} else if netOK && m.To.Is4() != n.Addr().Is4() {
			r.fail(path+".to", fmt.Sprintf("masquerade to %s is IPv%s and %s %s is IPv%s", m.To, family(m.To), what, n, family(n.Addr())),
				fmt.Sprintf("use an IPv%s address", family(n.Addr())))
		}
	}
	if msg, fix := portRangeProblem(m.Ports); msg != "" && !r.failed(path+".ports") {
		r.fail(path+".ports", msg, fix)
	}
}

// masqID is a masquerade rule's subnet and direction: one rule each.
type masqID struct {
	subnet netip.Prefix
	into   bool
}

// unicastProblem says what is wrong with a as the address of a host.
func unicastProblem(what string, a netip.Addr) (msg, fix string) {
	switch {
	case !a.IsValid():
		return what + " is missing", "add an address"
	case a.Zone() != "" || a.Is4In6():
		return fmt.Sprintf("%s %s has a zone or is IPv4-mapped", what, a), "write a plain IPv4 or IPv6 address"
	case a.IsUnspecified():
		return fmt.Sprintf("%s %s is the unspecified address", what, a), "use the host's own address"
	case a.IsMulticast():
		return fmt.Sprintf("%s %s is a multicast address", what, a), "use a unicast address"
	case a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Sprintf("%s %s is the broadcast address", what, a), "use a unicast address"
	}
	return "", ""
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "4"
	}
	return "6"
}

func validName(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// printable reports whether s has only printable characters and no spaces.
func printable(s string) bool {
	for _, c := range s {
		if c <= ' ' || c == 0x7f || c == 0xfffd {
			return false
		}
	}
	return true
}

// backendName is a backend's address, with its port if it has one.
func backendName(ap netip.AddrPort) string {
	if !ap.IsValid() {
		return "?"
	}
	if ap.Port() == 0 {
		return ap.Addr().String()
	}
	return quoteV6(ap)
}
