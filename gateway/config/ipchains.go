package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// ParseIPChains reads a masquerade rule written the way the old Linux
// virtual-server recipe writes it, either of its two lines:
//
//	ipchains -A forward -j MASQ -s 198.18.2.0/24 [-d 0.0.0.0/0]
//	ipchains -A forward -j MASQ -d 198.18.2.0/24
//
// and returns the subnet, and whether it is the destination (into: an
// inbound rule, see nat.Masquerade). The leading "ipchains" is optional;
// the options may come in any order and in their long forms (--append,
// --jump, --source/--src, --destination/--dst, --protocol). A subnet may
// be ADDRESS/BITS, ADDRESS/NETMASK, an address alone (one host) or 0/0
// (anywhere); one of -s and -d names the subnet and the other, if given,
// must be anywhere; a protocol must be all. The address the flows get is
// not part of the rule (ipchains took the interface's): the config's
// masquerade "to" gives it.
//
// On failure the error is an *Error (no file or line) saying what is wrong
// and how to fix it.
func ParseIPChains(rule string) (subnet netip.Prefix, into bool, err error) {
	fail := func(msg, fix string) (netip.Prefix, bool, error) {
		return netip.Prefix{}, false, &Error{Msg: "ipchains rule: " + msg, Fix: fix}
	}
	const example = `write it as "-A forward -j MASQ -s 198.18.2.0/24" (or -d 198.18.2.0/24)`
	args := strings.Fields(rule)
	if len(args) > 0 && args[0] == "ipchains" {
		args = args[1:]
	}
	var chain, target, src, dst string
	for i := 0; i < len(args); i++ {
		opt := args[i]
		var val *string
		switch opt {
		case "-A", "--append":
			val = &chain
		case "-j", "--jump":
			val = &target
		case "-s", "--source", "--src":
			val = &src
		case "-d", "--destination", "--dst":
			val = &dst
		case "-p", "--protocol":
			if i+1 < len(args) && strings.EqualFold(args[i+1], "all") {
				i++
				continue
			}
			return fail(fmt.Sprintf("%s: vsgate masquerades every protocol", opt), "remove the "+opt+" option")
		default:
			return fail(fmt.Sprintf("option %q is not supported", opt), example)
		}
		if i+1 >= len(args) {
			return fail(fmt.Sprintf("option %s has no value", opt), example)
		}
		if *val != "" {
			return fail(fmt.Sprintf("option %s is given twice", opt), "give it once")
		}
		i++
		if args[i] == "!" {
			return fail(fmt.Sprintf("negation (%s !) is not supported", opt), "name the subnet to masquerade itself")
		}
		*val = args[i]
	}
	switch {
	case chain == "":
		return fail("no chain (-A forward)", example)
	case chain != "forward":
		return fail(fmt.Sprintf("chain %q: only forward is supported", chain), "use -A forward")
	case target == "":
		return fail("no target (-j MASQ)", example)
	case target != "MASQ":
		return fail(fmt.Sprintf("target %q: only MASQ is supported", target), "use -j MASQ")
	case src == "" && dst == "":
		return fail("no subnet: -s NET (what leaves NET) or -d NET (what goes into NET)", example)
	}
	anywhere := func(s string) bool {
		p, msg, _ := parsePrefix(s)
		return s == "" || msg == "" && p.Bits() == 0
	}
	switch {
	case !anywhere(src) && !anywhere(dst):
		return fail(fmt.Sprintf("-s %s -d %s: vsgate masquerades by one subnet", src, dst),
			"write -s NET (what leaves NET) or -d NET (what goes into NET)")
	case !anywhere(dst):
		p, msg, fix := parsePrefix(dst)
		if msg != "" {
			return fail("destination "+msg, fix)
		}
		return p, true, nil
	case src == "":
		return fail("no source subnet (-s NET), and the destination is anywhere", example)
	}
	p, msg, fix := parsePrefix(src)
	if msg != "" {
		return fail("source "+msg, fix)
	}
	return p, false, nil
}
