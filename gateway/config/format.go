package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// YAML returns c as a configuration file with every value explicit, in the
// schema's order and without comments. For a Config that Parse returned,
// Parse(c.YAML()) gives back an equal Config: a config
// dump that can be loaded again.
func (c *Config) YAML() []byte {
	var b strings.Builder
	w := func(indent int, format string, args ...any) {
		b.WriteString(strings.Repeat("  ", indent))
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}
	q := strconv.Quote
	dur := func(d time.Duration) string { return q(d.String()) }
	ports := func(p [2]uint16) string { return q(fmt.Sprintf("%d-%d", p[0], p[1])) }

	w(0, "device:")
	w(1, "type: %s", q(c.Device.Type))
	w(1, "name: %s", q(c.Device.Name))
	w(1, "queues: %d", c.Device.Queues)
	w(1, "offloads: %t", c.Device.Offloads)
	if len(c.Device.Interfaces) > 0 {
		var ifs []string
		for _, n := range c.Device.Interfaces {
			ifs = append(ifs, q(n))
		}
		w(1, "interfaces: [%s]", strings.Join(ifs, ", "))
	}
	if len(c.Device.Addresses) > 0 {
		var as []string
		for _, a := range c.Device.Addresses {
			as = append(as, q(a.String()))
		}
		w(1, "addresses: [%s]", strings.Join(as, ", "))
	}
	w(0, "table:")
	w(1, "size: %d", c.TableSize)
	ps := c.PerSource
	w(1, "per_source: {v4_prefix: %d, v6_prefix: %d, half_open: %d, flows: %d}", ps.V4Prefix, ps.V6Prefix, ps.HalfOpen, ps.Flows)
	w(1, "syn_proxy: {half_open: %d, fill: %d}", c.SynProxy.HalfOpen, c.SynProxy.Fill)
	w(0, "timeouts:")
	t := c.Timeouts
	for _, kv := range []struct {
		k string
		v time.Duration
	}{
		{"tcp", t.TCPEstablished}, {"tcpfin", t.TCPFinWait}, {"udp", t.UDP}, {"icmp", t.ICMP},
		{"tcp_syn_sent", t.TCPSynSent}, {"tcp_syn_recv", t.TCPSynRecv}, {"tcp_time_wait", t.TCPTimeWait},
		{"tcp_close", t.TCPClose}, {"tcp_close_wait", t.TCPCloseWait}, {"tcp_last_ack", t.TCPLastAck},
	} {
		if kv.v != 0 {
			w(1, "%s: %s", kv.k, dur(kv.v))
		}
	}
	if c.DropUnmatched {
		w(0, "default: drop")
	} else {
		w(0, "default: pass")
	}
	if c.ResetRemoved {
		w(0, "removed_backends: reset")
	} else {
		w(0, "removed_backends: drain")
	}
	w(0, "tcp_window_check: %t", !c.TCPLiberal)

	w(0, "services:%s", emptyList(len(c.Services)))
	for _, s := range c.Services {
		if s.Fwmark != 0 {
			w(1, "- fwmark: %d", s.Fwmark)
			w(2, "family: ipv%s", family(s.VIP.Addr()))
		} else {
			w(1, "- proto: %s", protoName(s.Proto))
			w(2, "vip: %s", q(s.VIP.String()))
		}
		if s.Name != "" {
			w(2, "name: %s", q(s.Name))
		}
		w(2, "scheduler: %s", q(s.Scheduler))
		var flags []string
		if s.Sched.Port {
			flags = append(flags, "sh-port")
		}
		if s.Sched.Fallback {
			flags = append(flags, s.Scheduler+"-fallback")
		}
		if len(flags) > 0 {
			w(2, "scheduler_flags: [%s]", strings.Join(flags, ", "))
		}
		if s.Sched.TableSize != 0 {
			w(2, "scheduler_table_size: %d", s.Sched.TableSize)
		}
		w(2, "mode: %s", modeName(s.Mode))
		w(2, "persistence: %s", dur(s.Persistence))
		if s.Persistence != 0 {
			w(2, "persistence_netmask: %d", s.PersistenceBits)
		}
		w(2, "sloppy: %t", s.Sloppy)
		if c.BGP != nil {
			w(2, "announce: %s", s.Announce)
		}
		w(2, "tcp_window_check: %t", !s.TCPLiberal)
		if s.OnePacket {
			w(2, "one_packet: true")
		}
		if s.Proto == packet.ProtoTCP && s.Mode != nat.ModeL7 {
			w(2, "syn_proxy: %s", s.SynProxy)
		}
		if fl := s.FlowLog; fl != nil {
			w(2, "flow_log:")
			w(3, "every: %d", fl.Every)
			w(3, "rate: %d", fl.Rate)
		}
		if h := s.Health; h != nil {
			w(2, "health:")
			w(3, "type: %s", q(h.Type))
			w(3, "interval: %s", dur(h.Interval))
			w(3, "timeout: %s", dur(h.Timeout))
			w(3, "rise: %d", h.Rise)
			w(3, "fall: %d", h.Fall)
			if h.Port != 0 {
				w(3, "port: %d", h.Port)
			}
			if h.Type == HealthHTTP {
				w(3, "path: %s", q(h.Path))
				w(3, "expect: %d", h.Expect)
			}
		}
		if l := s.L7; l != nil {
			w(2, "l7:")
			if l.File != "" {
				w(3, "file: %s", q(l.File))
			} else {
				w(3, "directives: %s", q(l.Text))
			}
		}
		w(2, "backends:%s", emptyList(len(s.Backends)))
		for _, be := range s.Backends {
			w(3, "- addr: %s", q(be.Addr.String()))
			w(4, "weight: %d", be.Weight)
			if be.UThreshold != 0 || be.LThreshold != 0 {
				w(4, "u_threshold: %d", be.UThreshold)
				w(4, "l_threshold: %d", be.LThreshold)
			}
		}
	}

	if c.MasqueradeTo.IsValid() {
		w(0, "masquerade_to: %s", q(c.MasqueradeTo.String()))
	}
	if len(c.MasqueradeInside) > 0 {
		inside := make([]string, len(c.MasqueradeInside))
		for i, a := range c.MasqueradeInside {
			inside[i] = q(a.String())
		}
		w(0, "masquerade_inside: [%s]", strings.Join(inside, ", "))
	}
	if len(c.Marks) > 0 {
		w(0, "marks:")
		for _, m := range c.Marks {
			w(1, "- mark: %d", m.Mark)
			w(2, "dst: %s", q(m.Dst.String()))
			w(2, "proto: %s", map[uint8]string{0: "all", packet.ProtoTCP: "tcp", packet.ProtoUDP: "udp"}[m.Proto])
			if m.Ports != [2]uint16{} {
				w(2, "ports: %s", ports(m.Ports))
			}
		}
	}
	w(0, "masquerade:%s", emptyList(len(c.Masquerade)))
	for _, m := range c.Masquerade {
		if m.Into.IsValid() {
			w(1, "- into: %s", q(m.Into.String()))
		} else {
			w(1, "- from: %s", q(m.From.String()))
		}
		w(2, "to: %s", q(m.To.String()))
		if m.Ports != [2]uint16{} {
			w(2, "ports: %s", ports(m.Ports))
		}
	}

	w(0, "fullnat:")
	pool := make([]string, len(c.FullNAT.Pool))
	for i, a := range c.FullNAT.Pool {
		pool[i] = q(a.String())
	}
	w(1, "pool: [%s]", strings.Join(pool, ", "))
	w(1, "ports: %s", ports(c.FullNAT.Ports))
	if len(c.FullNAT.Takeover) > 0 {
		tk := make([]string, len(c.FullNAT.Takeover))
		for i, a := range c.FullNAT.Takeover {
			tk[i] = q(a.String())
		}
		w(1, "takeover: [%s]", strings.Join(tk, ", "))
	}
	w(0, "control:")
	w(1, "socket: %s", q(c.Control.Socket))
	w(0, "user: %s", q(c.User))
	w(0, "seccomp: %t", c.Seccomp)
	w(0, "l7:")
	w(1, "stack: %s", c.L7Stack)
	w(1, "max_connections: %d", c.L7MaxConnections)
	w(0, "pcap:")
	w(1, "dir: %s", q(c.Pcap.Dir))
	w(0, "metrics:")
	if c.Metrics.Listen.IsValid() {
		w(1, "listen: %s", q(c.Metrics.Listen.String()))
	} else {
		w(1, "listen: off")
	}
	w(1, "public: %t", c.Metrics.Public)
	w(1, "pprof: %t", c.Metrics.Pprof)
	yamlBGP(c.BGP, w, q)
	yamlSync(c.Sync, w, q)
	w(0, "log:")
	w(1, "level: %s", strings.ToLower(c.Log.Level.String()))
	w(1, "format: %s", q(c.Log.Format))
	return []byte(b.String())
}

func emptyList(n int) string {
	if n == 0 {
		return " []"
	}
	return ""
}

func modeName(m nat.Mode) string {
	switch m {
	case nat.ModeNAT:
		return "nat"
	case nat.ModeFullNAT:
		return "fullnat"
	case nat.ModeL7:
		return "l7"
	case nat.ModeDR:
		return "dr"
	}
	return fmt.Sprintf("mode-%d", m)
}
