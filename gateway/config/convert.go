package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
	"github.com/vsgate/vsgate/proxy"
	"github.com/vsgate/vsgate/sched"
)

// convert reads the values of f into a Config, filling in defaults. Values
// that do not parse are reported in r and left zero; validate then checks
// the rest, and skips what depends on a value already reported.
func (f *file) convert(r *report) *Config {
	cv := &conv{f: f, r: r}
	raw := &f.raw
	c := &Config{}

	d := raw.Device
	c.Device = Device{
		Type:       cv.enum("device.type", d.Type, DeviceTUN, DeviceTUN, DeviceAFPacket, DeviceAFXDP),
		Name:       cv.str(d.Name, "vsg0"),
		Queues:     int(cv.integer("device.queues", "device queues", d.Queues, 1, 1, MaxQueues)),
		Offloads:   d.Offloads == "" || cv.boolean("device.offloads", d.Offloads), // default on
		Interfaces: d.Interfaces,
	}
	for i, s := range d.Addresses {
		c.Device.Addresses = append(c.Device.Addresses, cv.addr(fmt.Sprintf("device.addresses[%d]", i), "device address", s, ""))
	}
	c.TableSize = int(cv.integer("table.size", "table size", raw.Table.Size, DefaultTableSize, 1, MaxTableSize))
	ps := raw.Table.PerSource
	c.PerSource = PerSource{
		V4Prefix: int(cv.integer("table.per_source.v4_prefix", "per-source IPv4 prefix", ps.V4Prefix, 32, 1, 32)),
		V6Prefix: int(cv.integer("table.per_source.v6_prefix", "per-source IPv6 prefix", ps.V6Prefix, 128, 1, 128)),
		HalfOpen: int(cv.integer("table.per_source.half_open", "per-source half-open limit", ps.HalfOpen, 0, 0, MaxTableSize)),
		Flows:    int(cv.integer("table.per_source.flows", "per-source flow limit", ps.Flows, 0, 0, MaxTableSize)),
	}
	sp := raw.Table.SynProxy
	c.SynProxy = SynProxyAuto{
		HalfOpen: int(cv.integer("table.syn_proxy.half_open", "SYN proxy half-open threshold", sp.HalfOpen, DefaultSynProxyHalfOpen, 1, MaxTableSize)),
		Fill:     int(cv.integer("table.syn_proxy.fill", "SYN proxy table fill threshold (percent)", sp.Fill, DefaultSynProxyFill, 1, 100)),
	}

	t, def := raw.Timeouts, nat.DefaultTimeouts()
	c.Timeouts = nat.Timeouts{
		TCPEstablished: cv.timeout("timeouts.tcp", t.TCP, def.TCPEstablished),
		TCPSynSent:     cv.timeout("timeouts.tcp_syn_sent", t.TCPSynSent, def.TCPSynSent),
		TCPSynRecv:     cv.timeout("timeouts.tcp_syn_recv", t.TCPSynRecv, def.TCPSynRecv),
		TCPFinWait:     cv.timeout("timeouts.tcpfin", t.TCPFin, def.TCPFinWait),
		TCPTimeWait:    cv.timeout("timeouts.tcp_time_wait", t.TCPTimeWait, def.TCPTimeWait),
		TCPClose:       cv.timeout("timeouts.tcp_close", t.TCPClose, def.TCPClose),
		TCPCloseWait:   cv.timeout("timeouts.tcp_close_wait", t.TCPCloseWait, def.TCPCloseWait),
		TCPLastAck:     cv.timeout("timeouts.tcp_last_ack", t.TCPLastAck, def.TCPLastAck),
		UDP:            cv.timeout("timeouts.udp", t.UDP, def.UDP),
		ICMP:           cv.timeout("timeouts.icmp", t.ICMP, def.ICMP),
	}
	c.DropUnmatched = cv.enum("default", raw.Default, "pass", "pass", "drop") == "drop"
	c.ResetRemoved = cv.enum("removed_backends", raw.Removed, "drain", "drain", "reset") == "reset"
	c.TCPLiberal = raw.TCPWindow != "" && !cv.boolean("tcp_window_check", raw.TCPWindow)

	c.BGP = cv.bgp(&raw.BGP)
	c.Sync = cv.sync(&raw.Sync)
	for i := range raw.Services {
		c.Services = append(c.Services, cv.service(fmt.Sprintf("services[%d]", i), &raw.Services[i], c.BGP != nil))
	}
	if raw.MasqTo != "" {
		c.MasqueradeTo = cv.addr("masquerade_to", "masquerade_to", raw.MasqTo, "")
	}
	for i, s := range raw.MasqInside {
		c.MasqueradeInside = append(c.MasqueradeInside, cv.addr(fmt.Sprintf("masquerade_inside[%d]", i), "masquerade_inside address", s, ""))
	}
	for i := range raw.Marks {
		c.Marks = append(c.Marks, cv.mark(fmt.Sprintf("marks[%d]", i), &raw.Marks[i]))
	}
	for i := range raw.Masquerade {
		c.Masquerade = append(c.Masquerade, cv.masquerade(fmt.Sprintf("masquerade[%d]", i), &raw.Masquerade[i], c.MasqueradeTo, c.MasqueradeInside))
	}
	for i, s := range raw.FullNAT.Pool {
		c.FullNAT.Pool = append(c.FullNAT.Pool, cv.addr(fmt.Sprintf("fullnat.pool[%d]", i), "FULLNAT pool address", s, " and the ports in fullnat.ports"))
	}
	c.FullNAT.Ports = cv.portRange("fullnat.ports", raw.FullNAT.Ports)
	for i, s := range raw.FullNAT.Takeover {
		c.FullNAT.Takeover = append(c.FullNAT.Takeover, cv.addr(fmt.Sprintf("fullnat.takeover[%d]", i), "FULLNAT takeover address", s, ""))
	}

	c.Control.Socket = cv.str(raw.Control.Socket, DefaultSocket)
	c.User = cv.str(raw.User, DefaultUser)
	c.Seccomp = cv.boolean("seccomp", cv.str(raw.Seccomp, "true"))
	c.L7Stack = cv.enum("l7.stack", raw.L7.Stack, L7Kernel, L7Kernel, L7Netstack)
	c.L7MaxConnections = int(cv.integer("l7.max_connections", "L7 connection cap", raw.L7.MaxConnections, proxy.DefaultMaxConnections, 1, 1<<24))
	c.Pcap.Dir = cv.str(raw.Pcap.Dir, DefaultPcapDir)
	c.Metrics.Public = cv.boolean("metrics.public", raw.Metrics.Public)
	c.Metrics.Pprof = cv.boolean("metrics.pprof", raw.Metrics.Pprof)
	switch l := cv.str(raw.Metrics.Listen, DefaultMetrics); strings.ToLower(l) {
	case "off":
	default:
		a, port, ok := cv.hostPort("metrics.listen", "metrics listen address", l)
		if ok && port == 0 {
			cv.r.fail("metrics.listen", fmt.Sprintf("metrics listen address %s has no port", l),
				fmt.Sprintf("add one, such as %s", netip.AddrPortFrom(a, 9100)))
		}
		c.Metrics.Listen = netip.AddrPortFrom(a, port)
	}
	switch lv := cv.enum("log.level", raw.Log.Level, "info", "debug", "info", "warn", "error"); lv {
	case "debug":
		c.Log.Level = slog.LevelDebug
	case "warn":
		c.Log.Level = slog.LevelWarn
	case "error":
		c.Log.Level = slog.LevelError
	}
	c.Log.Format = cv.enum("log.format", raw.Log.Format, "text", "text", "json")
	return c
}

// service converts one service; ecmp says the gateway announces by BGP,
// which makes sloppy the default.
func (cv *conv) service(path string, fs *fileService, ecmp bool) Service {
	s := Service{
		Name:      fs.Name,
		Scheduler: cv.str(strings.ToLower(fs.Scheduler), DefaultScheduler),
	}
	if fs.Fwmark != "" {
		s.Fwmark = uint32(cv.integer(path+".fwmark", "fwmark", fs.Fwmark, 0, 1, 1<<32-1))
		fam := netip.IPv4Unspecified()
		if cv.enum(path+".family", fs.Family, "ipv4", "ipv4", "ipv6") == "ipv6" {
			fam = netip.IPv6Unspecified()
		}
		s.VIP = netip.AddrPortFrom(fam, 0)
		switch {
		case fs.Proto != "":
			cv.r.fail(path+".proto", "a fwmark service takes the TCP and UDP flows of its mark", "remove proto (the marks choose protocols)")
		case fs.VIP != "":
			cv.r.fail(path+".vip", "a fwmark service has no vip: the marks name its addresses", "remove vip, and add the addresses to marks:")
		}
	} else if fs.Family != "" {
		cv.r.fail(path+".family", "family is for fwmark services", "remove it: the vip's address has its family")
	}
	switch p := strings.ToLower(fs.Proto); {
	case s.Fwmark != 0:
	case p == "tcp":
		s.Proto = packet.ProtoTCP
	case p == "udp":
		s.Proto = packet.ProtoUDP
	case p == "":
		cv.r.fail(path+".proto", "service has no proto", "add proto: tcp or proto: udp, or fwmark: N")
	default:
		cv.r.fail(path+".proto", fmt.Sprintf("proto %q is not known", fs.Proto), "use tcp or udp")
	}
	if fs.VIP != "" && s.Fwmark == 0 {
		if a, port, every, ok := cv.hostPortOrEvery(path+".vip", "vip", fs.VIP); ok {
			if port == 0 && !every {
				cv.r.fail(path+".vip", fmt.Sprintf("vip %s has no port", fs.VIP),
					fmt.Sprintf("add one, such as vip: %s", quoteV6(netip.AddrPortFrom(a, 80))))
			}
			s.VIP = netip.AddrPortFrom(a, port)
		}
	}
	switch m := cv.enum(path+".mode", fs.Mode, "nat", "nat", "fullnat", "l7", "dr"); m {
	case "dr":
		s.Mode = nat.ModeDR
	case "fullnat":
		s.Mode = nat.ModeFullNAT
	case "l7":
		s.Mode = nat.ModeL7
	}
	if cv.f.has(path+".l7") && s.Mode != nat.ModeL7 {
		cv.r.fail(path+".l7", "an l7 block in a service whose mode is not l7", "remove the block, or set mode: l7")
	}
	if s.Mode == nat.ModeL7 {
		s.L7 = cv.l7(path, &fs.L7)
	}

	for i, fl := range fs.SchedulerFlags {
		p := fmt.Sprintf("%s.scheduler_flags[%d]", path, i)
		switch strings.ToLower(fl) {
		case "sh-port":
			if s.Scheduler != "sh" {
				cv.r.fail(p, fmt.Sprintf("scheduler flag sh-port is for the sh scheduler, and this service uses %s", s.Scheduler),
					"remove it, or use scheduler: sh")
			}
			s.Sched.Port = true
		case "sh-fallback", "dh-fallback":
			if want := strings.TrimSuffix(strings.ToLower(fl), "-fallback"); s.Scheduler != want {
				cv.r.fail(p, fmt.Sprintf("scheduler flag %s is for the %s scheduler, and this service uses %s", fl, want, s.Scheduler),
					"remove it, or use the flag of this scheduler (sh: sh-port, sh-fallback; dh: dh-fallback)")
			}
			s.Sched.Fallback = true
		case "mh-port", "mh-fallback":
			cv.r.fail(p, fmt.Sprintf("scheduler flag %s is not needed", fl),
				"remove it: vsgate's mh hashes the whole flow (ports included) and its table holds only available backends")
		default:
			cv.r.fail(p, fmt.Sprintf("scheduler flag %q is not known", fl), "use sh-port or sh-fallback (sh), dh-fallback (dh)")
		}
	}
	s.Sched.TableSize = uint32(cv.integer(path+".scheduler_table_size", "scheduler table size", fs.SchedulerTableSize, 0, 1, sched.MaxTableSize))

	s.Persistence = cv.duration(path+".persistence", "persistence", fs.Persistence, 0, true)
	s.PersistenceBits = 128
	if s.VIP.Addr().Is4() {
		s.PersistenceBits = 32
	}
	if fs.PersistenceNetmask != "" {
		s.PersistenceBits = cv.netmask(path+".persistence_netmask", fs.PersistenceNetmask, s.VIP.Addr())
		if s.Persistence == 0 && !cv.r.failed(path+".persistence") {
			cv.r.fail(path+".persistence_netmask", "persistence_netmask without persistence",
				"add persistence: (such as 300s), or remove persistence_netmask")
		}
	}
	s.Sloppy = cv.boolean(path+".sloppy", fs.Sloppy)
	if fs.Sloppy == "" && ecmp && s.Mode != nat.ModeL7 {
		s.Sloppy = true
	}
	s.Announce = cv.enum(path+".announce", fs.Announce, AnnounceHealthy, AnnounceHealthy, AnnounceAlways, AnnounceNever)
	s.TCPLiberal = fs.TCPWindow != "" && !cv.boolean(path+".tcp_window_check", fs.TCPWindow)
	s.SynProxy, _ = nat.ParseSynProxy(cv.enum(path+".syn_proxy", fs.SynProxy, "auto", "auto", "on", "off"))
	if fs.SynProxy != "" && s.SynProxy != nat.SynProxyOff && (s.Proto != packet.ProtoTCP || s.Mode == nat.ModeL7) {
		cv.r.fail(path+".syn_proxy", "syn_proxy is for TCP services of mode nat or fullnat",
			"remove it (an l7 service's TCP is the gateway's own kernel's, with its SYN cookies)")
	}
	s.OnePacket = cv.boolean(path+".one_packet", fs.OnePacket)
	switch {
	case !s.OnePacket:
	case s.Proto != packet.ProtoUDP || s.Mode != nat.ModeNAT && s.Mode != nat.ModeDR:
		cv.r.fail(path+".one_packet", "one_packet is for UDP services of mode nat or dr",
			"remove it (TCP connections, FULLNAT and L7 need a flow per connection)")
	case s.VIP.Port() == 0 && s.VIP.Addr().IsValid():
		cv.r.fail(path+".one_packet", "one_packet needs the vip's port: a real server's answer goes back from it",
			"give the vip a port, or remove one_packet")
	}
	if cv.f.has(path + ".health") {
		s.Health = cv.health(path+".health", &fs.Health)
	}
	if cv.f.has(path + ".flow_log") {
		s.FlowLog = &FlowLog{
			Every: uint32(cv.integer(path+".flow_log.every", "flow_log every", fs.FlowLog.Every, DefaultFlowLogEvery, 1, MaxFlowLogEvery)),
			Rate:  uint32(cv.integer(path+".flow_log.rate", "flow_log rate", fs.FlowLog.Rate, DefaultFlowLogRate, 1, MaxFlowLogRate)),
		}
		switch {
		case s.Mode == nat.ModeL7:
			cv.r.fail(path+".flow_log", "flow_log is for L4 services: an l7 service's clients end at the gateway's own TCP",
				"remove it (the L7 side's metrics count its requests)")
		case s.OnePacket:
			cv.r.fail(path+".flow_log", "flow_log needs flows, and one_packet keeps none",
				"remove flow_log or one_packet")
		}
	}
	for i := range fs.Backends {
		s.Backends = append(s.Backends, cv.backend(fmt.Sprintf("%s.backends[%d]", path, i), &fs.Backends[i], s.VIP))
	}
	return s
}

func (cv *conv) backend(path string, fb *fileBackend, vip netip.AddrPort) Backend {
	var b Backend
	if fb.Addr == "" {
		cv.r.fail(path+".addr", "backend has no addr", "add addr: the real server's address, such as addr: 198.18.2.11:8080")
	} else if a, port, every, ok := cv.hostPortOrEvery(path+".addr", "backend", fb.Addr); ok {
		if port == 0 && !every {
			port = vip.Port() // the VIP's port; 0 if the VIP is bad, reported there
		}
		b.Addr = netip.AddrPortFrom(a, port)
	}
	name := fb.Addr
	if b.Addr.IsValid() {
		name = backendName(b.Addr)
	}
	b.Weight = uint32(cv.integer(path+".weight", "backend "+name+": weight", fb.Weight, 1, 0, sched.MaxWeight))
	b.UThreshold = uint32(cv.integer(path+".u_threshold", "backend "+name+": u_threshold", fb.UThreshold, 0, 0, MaxThreshold))
	b.LThreshold = uint32(cv.integer(path+".l_threshold", "backend "+name+": l_threshold", fb.LThreshold, 0, 0, MaxThreshold))
	return b
}

func (cv *conv) health(path string, fh *fileHealth) *Health {
	h := &Health{
		Type:     cv.enum(path+".type", fh.Type, HealthTCP, HealthTCP, HealthHTTP),
		Interval: cv.duration(path+".interval", "health interval", fh.Interval, 2*time.Second, false),
		Timeout:  cv.duration(path+".timeout", "health timeout", fh.Timeout, time.Second, false),
		Rise:     int(cv.integer(path+".rise", "health rise", fh.Rise, 2, 1, 1000)),
		Fall:     int(cv.integer(path+".fall", "health fall", fh.Fall, 3, 1, 1000)),
		Port:     uint16(cv.integer(path+".port", "health port", fh.Port, 0, 1, 65535)),
		Path:     fh.Path,
	}
	if h.Type == HealthHTTP {
		h.Path = cv.str(fh.Path, "/")
		h.Expect = int(cv.integer(path+".expect", "health expect", fh.Expect, 200, 100, 599))
	} else if fh.Expect != "" {
		cv.r.fail(path+".expect", "expect is for http health checks", "remove it, or set type: http")
	}
	return h
}

func (cv *conv) masquerade(path string, fm *fileMasq, def netip.Addr, inside []netip.Addr) nat.Masquerade {
	var m nat.Masquerade
	given := 0
	for _, v := range []string{fm.From, fm.Into, fm.IPChains} {
		if v != "" {
			given++
		}
	}
	switch {
	case given > 1:
		cv.r.fail(path+".ipchains", "masquerade rule has more than one of from, into and ipchains", "keep one of them")
	case fm.From != "":
		m.From = cv.prefix(path+".from", "masquerade from", fm.From)
	case fm.Into != "":
		m.Into = cv.prefix(path+".into", "masquerade into", fm.Into)
	case fm.IPChains != "":
		p, into, err := ParseIPChains(fm.IPChains)
		if e := (*Error)(nil); errors.As(err, &e) {
			cv.r.fail(path+".ipchains", e.Msg, e.Fix)
		}
		if into {
			m.Into = p
		} else {
			m.From = p
		}
	default:
		cv.r.fail(path+".from", "masquerade rule has no from",
			"add the subnet whose outbound flows are masqueraded, such as from: 198.18.2.0/24 (or into: for flows going into it; or ipchains: \"-A forward -j MASQ -s 198.18.2.0/24\")")
	}
	if fm.To != "" {
		if a, port, ok := cv.hostPort(path+".to", "masquerade to", fm.To); ok {
			if port != 0 {
				cv.r.fail(path+".to", fmt.Sprintf("masquerade to %s has a port", fm.To),
					fmt.Sprintf("write the address alone (%s) and the ports in ports:", a))
			}
			m.To = a
		}
	} else if m.Into.IsValid() {
		for _, a := range inside {
			if m.Into.Contains(a) {
				m.To = a
			}
		}
		if !m.To.IsValid() {
			cv.r.fail(path+".to", fmt.Sprintf("masquerade rule into %s has no to, and no masquerade_inside address lies in %s", m.Into, m.Into),
				fmt.Sprintf("add to: an address in %s that vsgate may take (the hosts there reach it on their link, such as %s), or list one in masquerade_inside", m.Into, exampleAddr(m.Into.Addr())))
		}
	} else {
		switch {
		case def.IsValid() && (!m.From.IsValid() || def.Is4() == m.From.Addr().Is4()):
			m.To = def
		case def.IsValid():
			cv.r.fail(path+".to", fmt.Sprintf("masquerade rule for %s has no to, and masquerade_to %s is IPv%s", m.From, def, family(def)),
				fmt.Sprintf("add the IPv%s address its outbound flows leave with, such as to: %s", family(m.From.Addr()), exampleAddr(m.From.Addr())))
		default:
			cv.r.fail(path+".to", "masquerade rule has no to",
				"add the address its outbound flows leave with, such as to: "+exampleAddr(m.From.Addr())+" (the gateway's outside address), or set masquerade_to for every rule")
		}
	}
	m.Ports = cv.portRange(path+".ports", fm.Ports)
	return m
}

// conv parses the file's values, reporting what does not parse.
type conv struct {
	f *file
	r *report
}

// str returns s, or def if s is empty.
func (cv *conv) str(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// enum returns s lower-cased if it is one of allowed, def if s is empty.
func (cv *conv) enum(path, s, def string, allowed ...string) string {
	if s == "" {
		return def
	}
	l := strings.ToLower(s)
	for _, a := range allowed {
		if l == a {
			return l
		}
	}
	cv.r.fail(path, fmt.Sprintf("%s %q is not known", keyOf(path), s), "use "+orList(allowed))
	return def
}

func keyOf(path string) string { return path[strings.LastIndexAny(path, ".")+1:] }

// orList is "a, b or c".
func orList(s []string) string {
	if len(s) == 1 {
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

func (cv *conv) boolean(path, s string) bool {
	switch strings.ToLower(s) {
	case "", "false":
		return false
	case "true":
		return true
	}
	cv.r.fail(path, fmt.Sprintf("%s %q is not true or false", keyOf(path), s), "use true or false")
	return false
}

// integer parses a decimal integer in lo..hi; def if s is empty.
func (cv *conv) integer(path, what, s string, def, lo, hi int64) int64 {
	if s == "" {
		return def
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		cv.r.fail(path, fmt.Sprintf("%s %q is not a whole number", what, s), fmt.Sprintf("use %d..%d", lo, hi))
		return def
	}
	if v < lo || v > hi {
		cv.r.fail(path, rangeMsg(what, v), fmt.Sprintf("use %d..%d", lo, hi))
		return def
	}
	return v
}

func rangeMsg(what string, v int64) string { return fmt.Sprintf("%s %d is out of range", what, v) }

// duration parses a Go duration ("90s", "1h30m") or a whole number of
// seconds; def if s is empty. zero says whether 0 is allowed.
func (cv *conv) duration(path, what, s string, def time.Duration, zero bool) time.Duration {
	if s == "" {
		return def
	}
	var d time.Duration
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		if n > uint64(MaxTimeout/time.Second) {
			n = uint64(MaxTimeout/time.Second) + 1
		}
		d = time.Duration(n) * time.Second
	} else if d, err = time.ParseDuration(s); err != nil {
		cv.r.fail(path, fmt.Sprintf("%s %q is not a duration", what, s),
			"write a duration such as 300s, 5m or 1h30m (a plain number is seconds)")
		return def
	}
	if msg, fix := durationProblem(what, d, zero); msg != "" {
		cv.r.fail(path, msg, fix)
		return def
	}
	return d
}

// durationProblem says what is wrong with d, if anything.
func durationProblem(what string, d time.Duration, zero bool) (msg, fix string) {
	switch {
	case d < 0 || (d == 0 && !zero):
		return fmt.Sprintf("%s %v is not more than 0", what, d), "use a positive duration"
	case d > MaxTimeout:
		return fmt.Sprintf("%s %v is too long", what, d), fmt.Sprintf("use at most %v (one year)", MaxTimeout)
	case d%time.Millisecond != 0:
		return fmt.Sprintf("%s %v is finer than a millisecond", what, d), "round it to milliseconds"
	}
	return "", ""
}

// timeout is a flow timeout: a positive duration, def when absent.
func (cv *conv) timeout(path, s string, def time.Duration) time.Duration {
	return cv.duration(path, "timeout "+keyOf(path), s, def, false)
}

// portRange parses "lo-hi" or a single port; 1024-65535 when s is empty.
// mark converts one marking rule (iptables -t mangle ... -j MARK).
func (cv *conv) mark(path string, fm *fileMark) nat.Mark {
	var m nat.Mark
	if fm.Mark == "" {
		cv.r.fail(path+".mark", "mark rule has no mark", "add mark: N, the fwmark of the service it feeds")
	} else {
		m.Mark = uint32(cv.integer(path+".mark", "mark", fm.Mark, 0, 1, 1<<32-1))
	}
	if fm.Dst == "" {
		cv.r.fail(path+".dst", "mark rule has no dst", "add dst: the address or prefix (at most 256 addresses) it marks")
	} else if m.Dst = cv.prefix(path+".dst", "mark dst", fm.Dst); m.Dst.IsValid() && m.Dst.Bits() < m.Dst.Addr().BitLen()-8 {
		cv.r.fail(path+".dst", fmt.Sprintf("mark dst %s has more than %d addresses", m.Dst, nat.MaxMarkAddrs),
			"use a smaller prefix: every address a mark names becomes the gateway's")
	}
	switch cv.enum(path+".proto", fm.Proto, "all", "all", "tcp", "udp") {
	case "tcp":
		m.Proto = packet.ProtoTCP
	case "udp":
		m.Proto = packet.ProtoUDP
	}
	if fm.Ports != "" {
		if m.Proto == 0 {
			cv.r.fail(path+".ports", "mark ports need a protocol", "add proto: tcp or proto: udp")
		}
		m.Ports = cv.portRange(path+".ports", fm.Ports)
	}
	return m
}

func (cv *conv) portRange(path, s string) [2]uint16 {
	def := [2]uint16{1024, 65535}
	if s == "" {
		return def
	}
	los, his, isRange := strings.Cut(s, "-")
	if !isRange {
		his = los
	}
	lo, err1 := strconv.ParseUint(strings.TrimSpace(los), 10, 16)
	hi, err2 := strconv.ParseUint(strings.TrimSpace(his), 10, 16)
	if err1 != nil || err2 != nil {
		cv.r.fail(path, fmt.Sprintf("ports %q is not a port range", s), "write FIRST-LAST, such as 1024-65535")
		return def
	}
	r := [2]uint16{uint16(lo), uint16(hi)}
	if msg, fix := portRangeProblem(r); msg != "" {
		cv.r.fail(path, msg, fix)
		return def
	}
	return r
}

func portRangeProblem(r [2]uint16) (msg, fix string) {
	switch {
	case r[0] == 0:
		return fmt.Sprintf("ports %d-%d includes port 0", r[0], r[1]), "start at 1 or above, such as 1024"
	case r[0] > r[1]:
		return fmt.Sprintf("ports %d-%d is inverted", r[0], r[1]), fmt.Sprintf("write %d-%d", r[1], r[0])
	}
	return "", ""
}

// hostPort parses an address with an optional port: "198.18.0.10:80",
// "[2001:db8::10]:80", "198.18.0.10", "2001:db8::10", "[2001:db8::10]".
// Port 0 means none was given. IPv4-mapped IPv6 addresses are unmapped.
// addr converts an address that must come without a port (what names it
// in messages; more ends the fix, e.g. where the ports go instead).
func (cv *conv) addr(path, what, s, more string) netip.Addr {
	a, port, ok := cv.hostPort(path, what, s)
	if ok && port != 0 {
		cv.r.fail(path, fmt.Sprintf("%s %s has a port", what, s), fmt.Sprintf("write the address alone (%s)%s", a, more))
	}
	return a
}

func (cv *conv) hostPort(path, what, s string) (netip.Addr, uint16, bool) {
	a, port, msg, fix := parseHostPort(s)
	if msg != "" {
		cv.r.fail(path, what+" "+msg, fix)
		return netip.Addr{}, 0, false
	}
	return a, port, true
}

// hostPortOrEvery is hostPort for a service's vip and backends, where an
// explicit ":0" is allowed and reported as every: every port of the
// address (ipvsadm's port-0 services), not a missing port.
func (cv *conv) hostPortOrEvery(path, what, s string) (a netip.Addr, port uint16, every, ok bool) {
	if rest, zero := strings.CutSuffix(s, ":0"); zero && (strings.HasSuffix(rest, "]") || !strings.Contains(rest, ":")) {
		a, port, ok = cv.hostPort(path, what, rest)
		return a, port, ok, ok
	}
	a, port, ok = cv.hostPort(path, what, s)
	return a, port, false, ok
}

func parseHostPort(s string) (a netip.Addr, port uint16, msg, fix string) {
	host, ps := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 {
			return a, 0, fmt.Sprintf("%q has no closing ']'", s), `write "[2001:db8::10]:80"`
		}
		host, ps = s[1:end], s[end+1:]
		if ps != "" {
			if ps[0] != ':' {
				return a, 0, fmt.Sprintf("%q has something after ']' that is not :PORT", s), `write "[2001:db8::10]:80"`
			}
			ps = ps[1:]
			if ps == "" {
				return a, 0, fmt.Sprintf("%q ends in ':' without a port", s), "add the port or remove the ':'"
			}
		}
	case strings.Count(s, ":") == 1:
		host, ps, _ = strings.Cut(s, ":")
		if ps == "" {
			return a, 0, fmt.Sprintf("%q ends in ':' without a port", s), "add the port or remove the ':'"
		}
	}
	if strings.Contains(host, "%") {
		return a, 0, fmt.Sprintf("%q has an IPv6 zone", s), "remove the %zone: vsgate does not route by link"
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return a, 0, fmt.Sprintf("%q is not an IP address", s),
			`write an address such as 198.18.0.10:80 or "[2001:db8::10]:80", or a host name the hosts file or DNS knows`
	}
	a = a.Unmap()
	if ps != "" {
		p, err := strconv.ParseUint(ps, 10, 16)
		if err != nil || p == 0 {
			return a, 0, fmt.Sprintf("%q has port %q", s, ps), "use a port in 1..65535"
		}
		port = uint16(p)
	}
	return a, port, "", ""
}

// quoteV6 writes an address and port as the file needs it: quoted if IPv6.
func quoteV6(ap netip.AddrPort) string {
	if ap.Addr().Is6() {
		return strconv.Quote(ap.String())
	}
	return ap.String()
}

// prefix parses a subnet: "198.18.2.0/24", "198.18.2.0/255.255.255.0",
// "2001:db8:2::/64", or an address alone (one host).
func (cv *conv) prefix(path, what, s string) netip.Prefix {
	p, msg, fix := parsePrefix(s)
	if msg != "" {
		cv.r.fail(path, what+" "+msg, fix)
	}
	return p
}

func parsePrefix(s string) (p netip.Prefix, msg, fix string) {
	if s == "0/0" { // ipchains' and ipfwadm's "anywhere"
		s = "0.0.0.0/0"
	}
	as, bs, hasBits := strings.Cut(s, "/")
	a, err := netip.ParseAddr(as)
	if err != nil || a.Zone() != "" {
		return p, fmt.Sprintf("%q is not a subnet", s), "write ADDRESS/BITS, such as 198.18.2.0/24 or 2001:db8:2::/64"
	}
	a = a.Unmap()
	bits := a.BitLen()
	if hasBits {
		if n, err := strconv.Atoi(bs); err == nil && n >= 0 && n <= a.BitLen() && bs == strconv.Itoa(n) {
			bits = n
		} else if m, err := netip.ParseAddr(bs); err == nil && m.Is4() && a.Is4() && maskBits(m) >= 0 {
			bits = maskBits(m)
		} else {
			return p, fmt.Sprintf("%q has a bad mask %q", s, bs),
				fmt.Sprintf("use a prefix length 0..%d (or, for IPv4, a netmask such as 255.255.255.0)", a.BitLen())
		}
	}
	p = netip.PrefixFrom(a, bits)
	if p.Masked() != p {
		return p.Masked(), fmt.Sprintf("%s has host bits set", s), fmt.Sprintf("did you mean %s?", p.Masked())
	}
	return p, "", ""
}

// maskBits returns the prefix length of a contiguous IPv4 netmask, or -1.
func maskBits(m netip.Addr) int {
	b := m.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n := 0
	for v&(1<<31) != 0 {
		v <<= 1
		n++
	}
	if v != 0 {
		return -1
	}
	return n
}

// netmask parses persistence_netmask: a prefix length, or for IPv4 a
// dotted netmask as ipvsadm -M takes it.
func (cv *conv) netmask(path, s string, vip netip.Addr) int {
	bits := 128
	if vip.Is4() {
		bits = 32
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 || n > bits {
			cv.r.fail(path, fmt.Sprintf("persistence_netmask %d is out of range for an IPv%d service", n, map[int]int{32: 4, 128: 6}[bits]),
				fmt.Sprintf("use a prefix length 0..%d", bits))
			return bits
		}
		return n
	}
	if m, err := netip.ParseAddr(s); err == nil && m.Is4() && bits == 32 && maskBits(m) >= 0 {
		return maskBits(m)
	}
	cv.r.fail(path, fmt.Sprintf("persistence_netmask %q is not a prefix length", s),
		fmt.Sprintf("use a prefix length 0..%d (or, for IPv4, a netmask such as 255.255.255.0)", bits))
	return bits
}

// exampleAddr is an address of a's family for messages.
func exampleAddr(a netip.Addr) string {
	if a.Is6() {
		return "2001:db8::20"
	}
	return "198.18.0.20"
}

// l7 reads an HTTP service's directives (inline or from a file, relative
// to the configuration file) and checks them with the proxy's parser.
func (cv *conv) l7(path string, fl *fileL7) *L7 {
	switch {
	case fl.Directives == "" && fl.File == "":
		cv.r.fail(path+".l7", "mode l7 needs Apache proxy directives",
			"add l7: {directives: \"ProxyPass / http://198.18.2.11/\"} or l7: {file: proxy.conf}")
		return nil
	case fl.Directives != "" && fl.File != "":
		cv.r.fail(path+".l7", "l7 has both directives and file", "keep one of them")
		return nil
	}
	l := &L7{Text: fl.Directives, File: fl.File}
	source, first := cv.f.name, cv.f.line(path+".l7.directives"+textLine)
	if fl.File != "" {
		name := fl.File
		if !filepath.IsAbs(name) {
			name = filepath.Join(filepath.Dir(cv.f.name), name)
		}
		b, err := readLimited(name)
		if err != nil {
			cv.r.fail(path+".l7.file", fmt.Sprintf("directives file: %v", err), "give the path of a readable file (relative paths start at this file's directory)")
			return nil
		}
		l.Text, source, first = string(b), name, 1
	}
	l.Source, l.FirstLine = source, first
	if _, err := proxy.ParseDirectives(l.Text, source, first); err != nil {
		// The directive's own file and line; its message says the fix
		// and what vsgate takes.
		var de *proxy.DirectiveError
		fix := "write it as Apache 2.4's httpd.conf has it"
		if errors.As(err, &de) {
			if de.Fix != "" {
				fix = de.Fix
			}
			cv.r.failAt(path+".l7", de.File, de.Line, de.Msg, fix)
		} else {
			cv.r.fail(path+".l7", err.Error(), fix)
		}
		return nil
	}
	return l
}

// readLimited reads a file of at most MaxFileSize bytes.
func readLimited(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err == nil && len(b) > MaxFileSize {
		err = fmt.Errorf("%s is larger than %d bytes", name, MaxFileSize)
	}
	return b, err
}
