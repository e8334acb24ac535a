package adm

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/vsgate/vsgate/packet"
)

// Op is what a command does.
type Op int

const (
	OpNone        Op = iota
	OpAddService     // -A
	OpEditService    // -E
	OpDelService     // -D
	OpClear          // -C
	OpRestore        // -R
	OpSave           // -S
	OpAddServer      // -a
	OpEditServer     // -e
	OpDelServer      // -d
	OpList           // -L / -l
	OpZero           // -Z
	OpSetTimeouts    // --set
	OpPortfwAdd      // portfw -a
	OpPortfwDel      // portfw -d
	OpPortfwFlush    // portfw -f
	OpPortfwList     // portfw -l
	OpMasqAdd        // ipchains -A forward -j MASQ -s NET (to ADDR)
	OpMasqDel        // ipchains -D forward -j MASQ -s NET
	OpMasqList       // ipchains -L forward
)

// Forward is a real server's forwarding method.
type Forward int

const (
	ForwardUnset   Forward = iota
	ForwardMasq            // -m: NAT
	ForwardFullNAT         // --fullnat (a vsgate extension; ipvsadm has no switch for it)
)

// DefaultPersistence is ipvsadm's timeout for -p without a value.
const DefaultPersistence = 300 * time.Second

// Command is one parsed command line. Fields are valid as Op needs them.
type Command struct {
	Op Op

	// The virtual service (-t/-u, or portfw's -P and -L).
	Proto uint8
	VIP   netip.AddrPort

	Scheduler   string        // -s
	Persistence time.Duration // -p [timeout]; 0 = not given
	Netmask     int           // -M, as a prefix length; -1 = not given
	SchedFlags  []string      // -b

	Real    netip.AddrPort // -r (port 0 = the VIP's port)
	Weight  int            // -w; -1 = not given
	Forward Forward

	// Listing options.
	Numeric, Stats, Rate, Conns, Timeout, Exact bool

	Timeouts [3]time.Duration // --set tcp tcpfin udp

	// Masquerade (ipchains) and portfw's preference.
	MasqFrom netip.Prefix
	MasqTo   netip.Addr
	Pref     int // portfw -p; 0 = not given (weight 1)
}

// ErrUsage wraps every command-line error.
var ErrUsage = errors.New("usage")

func usagef(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUsage}, a...)...)
}

// Parse parses an ipvsadm command line (no program name), or, when the
// first word is "portfw" or "ipchains", that tool's syntax.
func Parse(args []string) (*Command, error) {
	if len(args) > 0 {
		switch args[0] {
		case "portfw":
			return parsePortfw(args[1:])
		case "ipchains":
			return parseIPChains(args[1:])
		}
	}
	c := &Command{Netmask: -1, Weight: -1}
	setOp := func(op Op, flag string) error {
		if c.Op != OpNone {
			return usagef("%s: only one command at a time", flag)
		}
		c.Op = op
		return nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		// Combined short flags such as -Ln, -lnc.
		if len(a) > 2 && a[0] == '-' && a[1] != '-' && !needsValue(a[:2]) {
			var expanded []string
			for _, ch := range a[1:] {
				expanded = append(expanded, "-"+string(ch))
			}
			args = append(args[:i], append(expanded, args[i+1:]...)...)
			a = args[i]
		}
		val := func() (string, error) {
			if i+1 >= len(args) {
				return "", usagef("%s needs a value", a)
			}
			i++
			return args[i], nil
		}
		var err error
		switch a {
		case "-A", "--add-service":
			err = setOp(OpAddService, a)
		case "-E", "--edit-service":
			err = setOp(OpEditService, a)
		case "-D", "--delete-service":
			err = setOp(OpDelService, a)
		case "-C", "--clear":
			err = setOp(OpClear, a)
		case "-R", "--restore":
			err = setOp(OpRestore, a)
		case "-S", "--save":
			err = setOp(OpSave, a)
		case "-a", "--add-server":
			err = setOp(OpAddServer, a)
		case "-e", "--edit-server":
			err = setOp(OpEditServer, a)
		case "-d", "--delete-server":
			err = setOp(OpDelServer, a)
		case "-L", "-l", "--list":
			err = setOp(OpList, a)
		case "-Z", "--zero":
			err = setOp(OpZero, a)
		case "--set":
			if err = setOp(OpSetTimeouts, a); err == nil {
				for k := range 3 {
					var v string
					if v, err = val(); err != nil {
						break
					}
					var n int
					if n, err = strconv.Atoi(v); err != nil || n < 0 {
						err = usagef("--set %s: timeouts are whole seconds (tcp tcpfin udp; 0 keeps the current one)", v)
						break
					}
					c.Timeouts[k] = time.Duration(n) * time.Second
				}
			}
		case "-t", "--tcp-service", "-u", "--udp-service":
			var v string
			if v, err = val(); err == nil {
				c.Proto = packet.ProtoTCP
				if a == "-u" || a == "--udp-service" {
					c.Proto = packet.ProtoUDP
				}
				c.VIP, err = parseAddrPort(v, true)
			}
		case "-f", "--fwmark-service":
			err = usagef("firewall-mark services (-f) are not supported: use -t or -u")
		case "-s", "--scheduler":
			c.Scheduler, err = val()
		case "-p", "--persistent":
			c.Persistence = DefaultPersistence
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				n, perr := strconv.Atoi(args[i+1])
				if perr != nil || n < 1 {
					err = usagef("-p %s: the persistence timeout is whole seconds, at least 1", args[i+1])
					break
				}
				i++
				c.Persistence = time.Duration(n) * time.Second
			}
		case "-M", "--netmask":
			var v string
			if v, err = val(); err == nil {
				c.Netmask, err = parseNetmask(v)
			}
		case "-b", "--sched-flags":
			var v string
			if v, err = val(); err == nil {
				c.SchedFlags = strings.Split(v, ",")
			}
		case "-r", "--real-server":
			var v string
			if v, err = val(); err == nil {
				c.Real, err = parseAddrPort(v, false)
			}
		case "-w", "--weight":
			var v string
			if v, err = val(); err == nil {
				c.Weight, err = strconv.Atoi(v)
				if err != nil || c.Weight < 0 || c.Weight > 65535 {
					err = usagef("-w %s: weight must be 0..65535", v)
				}
			}
		case "-m", "--masquerading":
			c.Forward = ForwardMasq
		case "--fullnat":
			c.Forward = ForwardFullNAT
		case "-g", "--gatewaying", "-i", "--ipip":
			err = usagef("%s: vsgate forwards by NAT (-m) or FULLNAT (--fullnat) only; direct routing and tunnelling need the real servers on the gateway's link", a)
		case "-x", "--u-threshold", "-y", "--l-threshold":
			err = usagef("%s: connection thresholds are not supported", a)
		case "-n", "--numeric":
			c.Numeric = true
		case "--stats":
			c.Stats = true
		case "--rate":
			c.Rate = true
		case "-c", "--connection":
			c.Conns = true
		case "--timeout":
			c.Timeout = true
		case "--exact":
			c.Exact = true
		default:
			err = usagef("unknown option %q", a)
		}
		if err != nil {
			if errors.Is(err, ErrUsage) {
				return nil, err
			}
			return nil, usagef("%s: %v", a, err)
		}
	}
	return c, c.check()
}

// needsValue reports whether a short flag takes a value (so "-t1.2.3.4:80"
// style is not expanded as combined flags).
func needsValue(flag string) bool {
	switch flag {
	case "-t", "-u", "-f", "-s", "-M", "-b", "-r", "-w", "-x", "-y", "-p":
		return true
	}
	return false
}

// check validates that the command has what its op needs.
func (c *Command) check() error {
	svc := c.VIP.IsValid()
	switch c.Op {
	case OpNone:
		return usagef("no command: one of -A -E -D -C -R -S -a -e -d -L -Z --set")
	case OpAddService, OpEditService, OpDelService:
		if !svc {
			return usagef("a virtual service is needed: -t|-u address:port")
		}
	case OpAddServer, OpEditServer, OpDelServer:
		if !svc {
			return usagef("a virtual service is needed: -t|-u address:port")
		}
		if !c.Real.Addr().IsValid() {
			return usagef("a real server is needed: -r address[:port]")
		}
		if c.Real.Addr().Is4() != c.VIP.Addr().Is4() {
			return usagef("-r %v: the real server's address family differs from the service's", c.Real.Addr())
		}
	}
	if c.Op != OpAddServer && c.Op != OpEditServer && c.Forward != ForwardUnset {
		return usagef("-m/--fullnat go with -a or -e")
	}
	return nil
}

// parseAddrPort reads "a.b.c.d[:port]" or "[v6][:port]". With needPort the
// port is required (a virtual service).
func parseAddrPort(s string, needPort bool) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.AddrPort{}, usagef("%q: not an address[:port] (names are not resolved; write [v6]:port for IPv6)", s)
	}
	if needPort {
		return netip.AddrPort{}, usagef("%q: the service needs a port, as %s:80", s, s)
	}
	return netip.AddrPortFrom(a.Unmap(), 0), nil
}

// parseNetmask reads -M as a dotted IPv4 mask or a prefix length.
func parseNetmask(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 && n <= 128 {
		return n, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return 0, usagef("-M %s: a netmask is a dotted IPv4 mask or a prefix length", s)
	}
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n := 0
	for v&0x80000000 != 0 {
		n++
		v <<= 1
	}
	if v != 0 {
		return 0, usagef("-M %s: not a contiguous netmask", s)
	}
	return n, nil
}

// parsePortfw reads ipmasqadm portfw syntax:
//
//	portfw -a -P tcp|udp -L laddr lport -R raddr rport [-p pref]
//	portfw -d -P tcp|udp -L laddr lport [-R raddr rport]
//	portfw -f
//	portfw -l [-n]
func parsePortfw(args []string) (*Command, error) {
	c := &Command{Netmask: -1, Weight: -1}
	var laddr, raddr netip.AddrPort
	for i := 0; i < len(args); i++ {
		a := args[i]
		two := func() (netip.AddrPort, error) {
			if i+2 >= len(args) {
				return netip.AddrPort{}, usagef("portfw %s needs an address and a port", a)
			}
			ad, err := netip.ParseAddr(args[i+1])
			if err != nil {
				return netip.AddrPort{}, usagef("portfw %s %s: not an address", a, args[i+1])
			}
			p, err := strconv.ParseUint(args[i+2], 10, 16)
			if err != nil || p == 0 {
				return netip.AddrPort{}, usagef("portfw %s %s: not a port (1..65535)", a, args[i+2])
			}
			i += 2
			return netip.AddrPortFrom(ad.Unmap(), uint16(p)), nil
		}
		var err error
		switch a {
		case "-a":
			c.Op = OpPortfwAdd
		case "-d":
			c.Op = OpPortfwDel
		case "-f":
			c.Op = OpPortfwFlush
		case "-l":
			c.Op = OpPortfwList
		case "-n":
			c.Numeric = true
		case "-P":
			if i+1 >= len(args) {
				return nil, usagef("portfw -P needs tcp or udp")
			}
			i++
			switch args[i] {
			case "tcp":
				c.Proto = packet.ProtoTCP
			case "udp":
				c.Proto = packet.ProtoUDP
			default:
				return nil, usagef("portfw -P %s: tcp or udp", args[i])
			}
		case "-L":
			laddr, err = two()
		case "-R":
			raddr, err = two()
		case "-p":
			if i+1 >= len(args) {
				return nil, usagef("portfw -p needs a preference")
			}
			i++
			c.Pref, err = strconv.Atoi(args[i])
			if err != nil || c.Pref < 1 || c.Pref > 65535 {
				err = usagef("portfw -p %s: the preference is 1..65535", args[i])
			}
		default:
			err = usagef("portfw: unknown option %q", a)
		}
		if err != nil {
			return nil, err
		}
	}
	c.VIP, c.Real = laddr, raddr
	switch c.Op {
	case OpNone:
		return nil, usagef("portfw: one of -a -d -f -l")
	case OpPortfwAdd:
		if c.Proto == 0 || !laddr.IsValid() || !raddr.IsValid() {
			return nil, usagef("portfw -a needs -P proto -L laddr lport -R raddr rport")
		}
		if laddr.Addr().Is4() != raddr.Addr().Is4() {
			return nil, usagef("portfw: -L and -R addresses are of different families")
		}
	case OpPortfwDel:
		if c.Proto == 0 || !laddr.IsValid() {
			return nil, usagef("portfw -d needs -P proto -L laddr lport")
		}
	}
	return c, nil
}

// parseIPChains reads the masquerade rule the way ipchains says it:
//
//	ipchains -A forward -j MASQ -s NET [--to ADDR]
//	ipchains -D forward -j MASQ -s NET
//	ipchains -L forward
//
// ipchains masqueraded to the outgoing interface's address; vsgate has no
// interface of its own on the outside, so --to names the address (the
// gateway's configured masquerade address is used when it is left out).
func parseIPChains(args []string) (*Command, error) {
	c := &Command{Netmask: -1, Weight: -1}
	var chain, target string
	for i := 0; i < len(args); i++ {
		a := args[i]
		val := func() (string, error) {
			if i+1 >= len(args) {
				return "", usagef("ipchains %s needs a value", a)
			}
			i++
			return args[i], nil
		}
		var err error
		switch a {
		case "-A", "--append":
			c.Op = OpMasqAdd
			chain, err = val()
		case "-D", "--delete":
			c.Op = OpMasqDel
			chain, err = val()
		case "-L", "--list":
			c.Op = OpMasqList
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				chain, err = val()
			}
		case "-j", "--jump":
			target, err = val()
		case "-s", "--source":
			var v string
			if v, err = val(); err == nil {
				c.MasqFrom, err = parseNet(v)
			}
		case "--to", "--to-source":
			var v string
			if v, err = val(); err == nil {
				c.MasqTo, err = netip.ParseAddr(v)
				if err != nil {
					err = usagef("--to %s: not an address", v)
				}
			}
		case "-n":
			c.Numeric = true
		default:
			err = usagef("ipchains: %q: only the masquerade rule (-A forward -j MASQ -s NET) is understood", a)
		}
		if err != nil {
			return nil, err
		}
	}
	if chain != "" && chain != "forward" {
		return nil, usagef("ipchains: chain %q: masquerading lives in the forward chain", chain)
	}
	switch c.Op {
	case OpNone:
		return nil, usagef("ipchains: one of -A forward, -D forward, -L forward")
	case OpMasqAdd, OpMasqDel:
		if target != "MASQ" {
			return nil, usagef("ipchains: -j %q: only -j MASQ is understood", target)
		}
		if !c.MasqFrom.IsValid() {
			return nil, usagef("ipchains: the rule needs -s NET (the subnet to masquerade)")
		}
	}
	return c, nil
}

// parseNet reads a subnet "a.b.c.d/len", "a.b.c.d/mask" (ipchains' form) or
// a single address.
func parseNet(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if addr, mask, ok := strings.Cut(s, "/"); ok {
		a, err := netip.ParseAddr(addr)
		n, merr := parseNetmask(mask)
		if err == nil && merr == nil {
			if p, err := a.Prefix(n); err == nil {
				return p, nil
			}
		}
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, usagef("-s %s: not a subnet (a.b.c.d/len or a.b.c.d/mask)", s)
}
