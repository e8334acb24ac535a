package adm

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/vsgate/vsgate/gateway/names"
	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// IPTablesHelp is `iptables -h`: the part of iptables vsgate speaks, the
// step before firewall-mark services (ipvsadm -f).
const IPTablesHelp = `usage: iptables -t mangle -A PREROUTING -d DST [-p tcp|udp|all] [--dport PORT[:PORT]] -j MARK --set-mark N
       iptables -t mangle -I PREROUTING [N] RULE            insert (at N, from 1; default 1)
       iptables -t mangle -D PREROUTING RULE | N            delete a rule, by its options or number
       iptables -t mangle -F [PREROUTING]                   delete every rule
       iptables -t mangle -L [PREROUTING] [-n]              list the rules
  (ip6tables for IPv6.) A new flow to DST gets mark N, which a firewall-mark
  service (ipvsadm -A -f N) takes before any service of the address and
  port, as IPVS does; when several rules match, the last one's mark is the
  flow's, as iptables sets marks rule after rule. DST is an address, a
  prefix of at most 256 addresses, or a host name: its addresses are the
  gateway's, as VIPs are. Only the mangle table's PREROUTING chain and the
  MARK target exist here.
`

// parseIPTables reads a mangle-table MARK command of iptables (ip6tables
// with v6):
//
//	iptables -t mangle -A PREROUTING -d 198.18.0.16/30 -p tcp --dport 80:81 -j MARK --set-mark 1
func parseIPTables(ctx context.Context, args []string, r names.Resolver, v6 bool) (*Command, error) {
	tool := "iptables"
	if v6 {
		tool = "ip6tables"
	}
	c := &Command{Netmask: -1, Weight: -1, Tool: tool, MarkIPv6: v6}
	var chain, dst, target string
	var markGiven bool
	setOp := c.oneCommand(tool)
	for i := 0; i < len(args); i++ {
		a := args[i]
		val := func() (string, error) {
			if i+1 >= len(args) {
				return "", usagef("%s: option %q requires an argument", tool, a)
			}
			i++
			return args[i], nil
		}
		// optional reads a word that may follow (a chain, a rule number).
		optional := func() string {
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				i++
				return args[i]
			}
			return ""
		}
		var err error
		switch a {
		case "-t", "--table":
			var t string
			if t, err = val(); err == nil && t != "mangle" {
				err = usagef("%s: table %q: vsgate marks flows in the mangle table only (-t mangle)", tool, t)
			}
		case "-A", "--append", "-D", "--delete", "-I", "--insert":
			op := map[string]Op{"-A": OpMarkAdd, "--append": OpMarkAdd, "-D": OpMarkDel, "--delete": OpMarkDel, "-I": OpMarkInsert, "--insert": OpMarkInsert}[a]
			if err = setOp(op, a); err == nil {
				chain, err = val()
			}
			if n := optional(); err == nil && n != "" {
				c.RuleNum, err = strconv.Atoi(n)
				if err != nil || c.RuleNum < 1 || op == OpMarkAdd {
					err = usagef("%s: %s %s %s: a rule number is 1 or more, with -I or -D", tool, a, chain, n)
				}
			}
		case "-F", "--flush":
			if err = setOp(OpMarkFlush, a); err == nil {
				chain = optional()
			}
		case "-L", "--list":
			if err = setOp(OpMarkList, a); err == nil {
				chain = optional()
			}
		case "-n", "--numeric":
			c.Numeric = true
		case "-h", "--help":
			c.Op = OpHelp
			return c, nil
		case "-d", "--destination", "--dst":
			dst, err = val()
		case "-p", "--protocol":
			var p string
			if p, err = val(); err == nil {
				switch strings.ToLower(p) {
				case "tcp", "6":
					c.Proto = packet.ProtoTCP
				case "udp", "17":
					c.Proto = packet.ProtoUDP
				case "all", "0":
					c.Proto = 0
				default:
					err = usagef("%s: protocol %q: vsgate's services are tcp and udp (or all)", tool, p)
				}
			}
		case "-m", "--match":
			var m string
			if m, err = val(); err == nil && m != "tcp" && m != "udp" {
				err = usagef("%s: match %q: vsgate matches -d, -p and --dport only", tool, m)
			}
		case "--dport", "--destination-port":
			var p string
			if p, err = val(); err == nil {
				c.MarkPorts, err = parseDport(p, c.Proto, r)
			}
		case "-j", "--jump":
			target, err = val()
		case "--set-mark":
			var m string
			if m, err = val(); err == nil {
				markGiven = true
				c.Fwmark, err = parseMarkValue(m)
			}
		default:
			err = usagef("%s: %s: vsgate speaks -t mangle with -A, -I, -D, -F and -L of PREROUTING, and -d, -p, --dport, -j MARK --set-mark", tool, a)
		}
		if err != nil {
			return nil, err
		}
	}
	if c.Op == OpNone {
		return nil, usagef("%s: no command (-A, -I, -D, -F or -L); see %s -h", tool, tool)
	}
	if chain != "" && chain != "PREROUTING" {
		return nil, usagef("%s: chain %q: vsgate marks flows in PREROUTING only", tool, chain)
	}
	if c.MarkPorts != [2]uint16{} && c.Proto == 0 {
		return nil, usagef("%s: --dport needs -p tcp or -p udp, as iptables' tcp and udp matches do", tool)
	}
	isRule := c.Op == OpMarkAdd || c.Op == OpMarkInsert || c.Op == OpMarkDel && c.RuleNum == 0
	if !isRule {
		if dst != "" || target != "" || markGiven {
			return nil, usagef("%s: rule options with a command that takes none", tool)
		}
		return c, nil
	}
	if target != "MARK" || !markGiven {
		return nil, usagef("%s: the rule needs -j MARK --set-mark N (1 or more): vsgate's mangle table marks, nothing else", tool)
	}
	if dst == "" {
		return nil, usagef("%s: the rule needs -d: the addresses it marks become the gateway's, as VIPs are", tool)
	}
	nets, err := resolveMarkDst(ctx, r, dst, v6)
	if err != nil {
		return nil, usagef("%s: -d %s: %v", tool, dst, err)
	}
	c.MarkDst = nets
	return c, nil
}

// oneCommand returns the setter of c.Op for a tool's parser that takes one
// command per line: a second one is refused.
func (c *Command) oneCommand(tool string) func(op Op, flag string) error {
	return func(op Op, flag string) error {
		if c.Op != OpNone {
			return usagef("%s: %s: only one command at a time", tool, flag)
		}
		c.Op = op
		return nil
	}
}

// parseDport reads --dport: a port or FIRST:LAST, numbers or names.
func parseDport(s string, proto uint8, r names.Resolver) ([2]uint16, error) {
	lo, hi, ranged := strings.Cut(s, ":")
	a, err := lookupPort(r, proto, lo)
	if err != nil || a == 0 {
		return [2]uint16{}, usagef("--dport %s: a port 1..65535, or FIRST:LAST", s)
	}
	b := a
	if ranged {
		if b, err = lookupPort(r, proto, hi); err != nil || b < a {
			return [2]uint16{}, usagef("--dport %s: a port 1..65535, or FIRST:LAST low to high", s)
		}
	}
	return [2]uint16{a, b}, nil
}

// parseMarkValue reads --set-mark: decimal or 0x hexadecimal, 1 or more
// (a mask other than /0xffffffff is refused: vsgate keeps no other bits).
func parseMarkValue(s string) (uint32, error) {
	v, mask, masked := strings.Cut(s, "/")
	if masked && !strings.EqualFold(mask, "0xffffffff") {
		return 0, usagef("--set-mark %s: a mark with a mask other than 0xffffffff: vsgate's marks are whole", s)
	}
	n, err := strconv.ParseUint(v, 0, 32)
	if err != nil || n == 0 {
		return 0, usagef("--set-mark %s: a mark 1..4294967295 (decimal or 0x hex)", s)
	}
	return uint32(n), nil
}

// resolveMarkDst reads -d as ipchains' -s and -d are read (parseNet): an
// address, a subnet or a host name, whose prefixes of the family it keeps.
func resolveMarkDst(ctx context.Context, r names.Resolver, s string, v6 bool) ([]netip.Prefix, error) {
	nets, err := parseNet(ctx, r, s)
	if err != nil {
		return nil, fmt.Errorf("%s", detail(err))
	}
	nets = slices.DeleteFunc(nets, func(p netip.Prefix) bool { return p.Addr().Is6() != v6 })
	if len(nets) == 0 {
		return nil, fmt.Errorf("no IPv%s address", map[bool]string{true: "6", false: "4"}[v6])
	}
	return nets, nil
}

// markRule is the rule a command gives for destination n.
func (c *Command) markRule(n netip.Prefix) nat.Mark {
	return nat.Mark{Mark: c.Fwmark, Dst: n, Proto: c.Proto, Ports: c.MarkPorts}
}

// applyIPTables applies a mangle-table command to cfg's marks of the
// command's family.
func applyIPTables(cfg *nat.Config, c *Command) error {
	family := func(m nat.Mark) bool { return m.Dst.Addr().Is6() == c.MarkIPv6 }
	// Positions in the list of the family's rules, as the tool numbers them.
	var idx []int
	for i, m := range cfg.Marks {
		if family(m) {
			idx = append(idx, i)
		}
	}
	switch c.Op {
	case OpMarkFlush:
		cfg.Marks = slices.DeleteFunc(cfg.Marks, family)
	case OpMarkAdd, OpMarkInsert:
		var rules []nat.Mark
		for _, n := range c.MarkDst {
			rules = append(rules, c.markRule(n))
		}
		at := len(cfg.Marks)
		if c.Op == OpMarkInsert {
			pos := max(c.RuleNum, 1)
			switch {
			case pos > len(idx)+1:
				return KernelError("Index of insertion too big.")
			case pos <= len(idx):
				at = idx[pos-1]
			}
		}
		cfg.Marks = slices.Insert(cfg.Marks, at, rules...)
	case OpMarkDel:
		if c.RuleNum > 0 {
			if c.RuleNum > len(idx) {
				return KernelError("Index of deletion too big.")
			}
			cfg.Marks = slices.Delete(cfg.Marks, idx[c.RuleNum-1], idx[c.RuleNum-1]+1)
			return nil
		}
		for _, n := range c.MarkDst {
			i := slices.Index(cfg.Marks, c.markRule(n))
			if i < 0 {
				return KernelError("Bad rule (does a matching rule exist in that chain?).")
			}
			cfg.Marks = slices.Delete(cfg.Marks, i, i+1)
		}
	}
	return nil
}

// WriteMarks writes `iptables -t mangle -L PREROUTING -n` (ip6tables with
// ipv6): the family's marking rules in iptables' layout.
func WriteMarks(w io.Writer, cfg nat.Config, ipv6 bool) {
	any := "0.0.0.0/0"
	if ipv6 {
		any = "::/0"
	}
	fmt.Fprintf(w, "Chain PREROUTING (policy ACCEPT)\n%-10s %-4s %-3s %-20s %-20s\n", "target", "prot", "opt", "source", "destination")
	for _, m := range cfg.Marks {
		if m.Dst.Addr().Is6() != ipv6 {
			continue
		}
		dst := m.Dst.String()
		if m.Dst.IsSingleIP() {
			dst = m.Dst.Addr().String()
		}
		prot, match := "all", ""
		switch m.Proto {
		case packet.ProtoTCP:
			prot = "tcp"
		case packet.ProtoUDP:
			prot = "udp"
		}
		switch {
		case m.Ports == [2]uint16{}:
		case m.Ports[0] == m.Ports[1]:
			match = fmt.Sprintf("%s dpt:%d ", prot, m.Ports[0])
		default:
			match = fmt.Sprintf("%s dpts:%d:%d ", prot, m.Ports[0], m.Ports[1])
		}
		opt := "--"
		if ipv6 {
			opt = "  " // ip6tables has no fragment flag to show
		}
		fmt.Fprintf(w, "%-10s %-4s %-3s %-20s %-20s %sMARK set 0x%x\n", "MARK", prot, opt, any, dst, match, m.Mark)
	}
}
