package adm

import (
	"context"
	"net/netip"
	"strconv"
	"strings"

	"github.com/vsgate/vsgate/gateway/names"
)

// IPChainsHelp is `ipchains -h`: the part of ipchains vsgate speaks, and
// what it means here.
const IPChainsHelp = `usage: ipchains -A forward -j MASQ -s NET [--to ADDR]    masquerade what leaves NET
       ipchains -A forward -j MASQ -d NET [--to ADDR]    masquerade what goes into NET
       ipchains -D forward -j MASQ -s|-d NET              delete that rule
       ipchains -D forward N                              delete rule N (from 1)
       ipchains -F [forward]                              delete every rule
       ipchains -L [forward] [-n]                         list the rules
       ipchains -P forward ACCEPT|DENY                    the forward chain's policy
  NET is ADDRESS/BITS, ADDRESS/NETMASK, an address or a host name (every
  address it has, each as a host rule).

  -s NET: flows from NET to anywhere else leave with ADDR as their source
     (ipchains took the outgoing interface's address; vsgate owns no
     interface address outside, so ADDR is --to, or the configuration's
     masquerade_to of NET's family).
  -d NET: connections going into NET leave with ADDR as their source, so
     hosts in NET answer ADDR and need no route back: every NAT service's
     connection to a real server in NET is translated as FULLNAT is, with
     ADDR in place of the FULLNAT pool (FULLNAT services keep their pool;
     L7 services connect from the gateway itself). ADDR is --to, or the
     configuration's masquerade_inside address that lies in NET (an
     address the hosts in NET reach on their link: ipchains took the
     inside interface's). Unlike ipchains under an ACCEPT policy, it
     opens NET to nothing but the services.
  -P forward DENY drops every packet vsgate sees that matches no service,
     flow or rule (the configuration's default: drop); ACCEPT passes them
     (default: pass).
`

// parseIPChains reads the masquerade rules and policy of ipchains' forward
// chain:
//
//	ipchains -A forward -j MASQ -s 198.18.2.0/24
//	ipchains -A forward -j MASQ -d 198.18.2.0/24
//	ipchains -P forward DENY
func parseIPChains(ctx context.Context, args []string, r names.Resolver) (*Command, error) {
	c := &Command{Netmask: -1, Weight: -1, Tool: "ipchains"}
	var chain, target, src, dst string
	setOp := c.oneCommand("ipchains")
	for i := 0; i < len(args); i++ {
		a := args[i]
		val := func() (string, error) {
			if i+1 >= len(args) {
				return "", usagef("ipchains: option %s requires an argument", a)
			}
			i++
			return args[i], nil
		}
		// optChain reads the chain that -L and -F may leave out.
		optChain := func() {
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				i++
				chain = args[i]
			}
		}
		var err error
		switch a {
		case "-A", "--append":
			if err = setOp(OpMasqAdd, a); err == nil {
				chain, err = val()
			}
		case "-D", "--delete":
			if err = setOp(OpMasqDel, a); err == nil {
				if chain, err = val(); err == nil && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
					i++
					if c.RuleNum, err = strconv.Atoi(args[i]); err != nil || c.RuleNum < 1 {
						err = usagef("ipchains: -D %s %s: a rule number is 1 or more", chain, args[i])
					}
				}
			}
		case "-F", "--flush":
			if err = setOp(OpMasqFlush, a); err == nil {
				optChain()
			}
		case "-L", "--list":
			if err = setOp(OpMasqList, a); err == nil {
				optChain()
			}
		case "-P", "--policy":
			if err = setOp(OpMasqPolicy, a); err == nil {
				if chain, err = val(); err == nil {
					c.Policy, err = val()
				}
			}
		case "-j", "--jump":
			target, err = val()
		case "-s", "--source", "--src":
			src, err = val()
		case "-d", "--destination", "--dst":
			dst, err = val()
		case "-p", "--protocol":
			var v string
			if v, err = val(); err == nil && !strings.EqualFold(v, "all") {
				err = usagef("ipchains: -p %s: vsgate masquerades every protocol (-p all)", v)
			}
		case "--to", "--to-source":
			var v string
			if v, err = val(); err == nil {
				var addrs []netip.Addr
				if addrs, err = resolveHost(ctx, r, v); err == nil {
					c.MasqTo = addrs[0]
				}
			}
		case "-n", "--numeric":
			c.Numeric = true
		case "-h", "--help":
			c.Op = OpHelp
			c.Tool = "ipchains"
			return c, nil
		default:
			err = usagef("ipchains: invalid option -- '%s' (vsgate speaks the forward chain's masquerade rules and policy)\nTry `ipchains -h' or 'ipchains --help' for more information.", strings.TrimLeft(a, "-"))
		}
		if err != nil {
			return nil, err
		}
	}
	if chain != "" && chain != "forward" {
		return nil, usagef("ipchains: chain %q: masquerading and the policy vsgate keeps live in the forward chain", chain)
	}
	switch c.Op {
	case OpNone:
		return nil, usagef("ipchains: one of -A -D -F -L -P (ipchains -h)")
	case OpMasqPolicy:
		switch strings.ToUpper(c.Policy) {
		case "ACCEPT", "DENY":
			c.Policy = strings.ToUpper(c.Policy)
		case "REJECT":
			return nil, usagef("ipchains: -P forward REJECT: vsgate drops unmatched packets silently: use DENY")
		case "MASQ":
			return nil, usagef("ipchains: -P forward MASQ: give the subnets: -A forward -j MASQ -s NET")
		default:
			return nil, usagef("ipchains: Invalid policy `%s' for -P (vsgate's are ACCEPT and DENY)", c.Policy)
		}
		return c, nil
	case OpMasqAdd, OpMasqDel:
		if c.Op == OpMasqDel && c.RuleNum > 0 {
			if target != "" || src != "" || dst != "" {
				return nil, usagef("ipchains: -D forward %d: a rule number or a rule, not both", c.RuleNum)
			}
			return c, nil
		}
		if target != "MASQ" {
			return nil, usagef("ipchains: -j %q: vsgate's forward chain holds masquerade rules only: -j MASQ", target)
		}
		return c, c.masqSubnets(ctx, r, src, dst)
	}
	if target != "" || src != "" || dst != "" {
		return nil, usagef("ipchains: -j, -s and -d go with -A or -D")
	}
	return c, nil
}

// masqSubnets sets the rule's direction and subnets from -s and -d: one of
// them names the subnet, the other is left out or anywhere (0/0).
func (c *Command) masqSubnets(ctx context.Context, r names.Resolver, src, dst string) error {
	anywhere := func(s string) bool {
		p, err := parseNet(ctx, r, s)
		return err == nil && len(p) == 1 && p[0].Bits() == 0
	}
	switch {
	case src != "" && !anywhere(src) && dst != "" && !anywhere(dst):
		return usagef("ipchains: -s %s -d %s: vsgate masquerades by one subnet: -s NET (what leaves it) or -d NET (what goes into it)", src, dst)
	case src != "" && !anywhere(src):
		c.MasqText = src
	case dst != "" && !anywhere(dst):
		c.MasqText, c.MasqInto = dst, true
	case src != "" || dst != "":
		return usagef("ipchains: masquerading everything (0/0) is not supported: name the subnet with -s NET or -d NET")
	default:
		return usagef("ipchains: the rule needs -s NET (masquerade what leaves NET) or -d NET (what goes into NET)")
	}
	nets, err := parseNet(ctx, r, c.MasqText)
	if err != nil {
		return err
	}
	// With --to, a host name's addresses of the other family are left out.
	for _, n := range nets {
		if !c.MasqTo.IsValid() || n.Addr().Is4() == c.MasqTo.Is4() {
			c.Masq = append(c.Masq, n)
		}
	}
	if len(c.Masq) == 0 {
		return usagef("ipchains: --to %v and %s %s are of different families", c.MasqTo, map[bool]string{true: "-d", false: "-s"}[c.MasqInto], c.MasqText)
	}
	return nil
}

// parseNet reads a subnet "a.b.c.d/len", "a.b.c.d/mask" (ipchains' form),
// "0/0", a single address, or a host name (every address it has, each a
// host subnet), as ipchains reads -s and -d.
func parseNet(ctx context.Context, r names.Resolver, s string) ([]netip.Prefix, error) {
	if s == "0/0" {
		return []netip.Prefix{netip.PrefixFrom(netip.IPv4Unspecified(), 0)}, nil
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return []netip.Prefix{p.Masked()}, nil
	}
	if addr, mask, ok := strings.Cut(s, "/"); ok {
		a, err := netip.ParseAddr(addr)
		n, merr := parseNetmask(mask, false)
		if err == nil && merr == nil {
			if p, err := a.Prefix(n); err == nil {
				return []netip.Prefix{p}, nil
			}
		}
		return nil, usagef("ipchains: host/network `%s' not found (write a.b.c.d/len or a.b.c.d/mask)", s)
	}
	addrs, err := resolveHost(ctx, r, s)
	if err != nil {
		return nil, usagef("ipchains: host/network `%s' not found (%v)", s, detail(err))
	}
	var out []netip.Prefix
	for _, a := range addrs {
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
