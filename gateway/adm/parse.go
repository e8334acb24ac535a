package adm

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vsgate/vsgate/gateway/names"
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
	OpPortfwAdd      // ipmasqadm portfw -a, ipmasqadm -A
	OpPortfwDel      // ipmasqadm portfw -d, ipmasqadm -D
	OpPortfwFlush    // ipmasqadm portfw -f
	OpPortfwList     // ipmasqadm portfw -l
	OpMasqAdd        // ipchains -A forward -j MASQ -s|-d NET [--to ADDR]
	OpMasqDel        // ipchains -D forward -j MASQ -s|-d NET, or -D forward N
	OpMasqFlush      // ipchains -F forward
	OpMasqList       // ipchains -L forward
	OpMasqPolicy     // ipchains -P forward ACCEPT|DENY
	OpHelp           // ipmasqadm -h, ipchains -h: Help gives the text
)

// Forward is a real server's forwarding method.
type Forward int

const (
	ForwardUnset   Forward = iota
	ForwardMasq            // -m: NAT
	ForwardFullNAT         // --fullnat (a vsgate extension; ipvsadm has no switch for it)
	ForwardRoute           // -g: direct routing
)

// DefaultPersistence is ipvsadm's timeout for -p without a value.
const DefaultPersistence = 300 * time.Second

// maxPersistence is the longest persistence timeout, in seconds: ipvsadm's
// (86400*31, its string_to_number bound for -p).
const maxPersistence = 86400 * 31

// Command is one parsed command line. Fields are valid as Op needs them.
type Command struct {
	Op Op

	// The virtual service (-t/-u; portfw's -P with -L or -A). A host name
	// stands for every address it has: one service each.
	Proto uint8
	VIP   Endpoint

	Scheduler   string        // -s
	Persistence time.Duration // -p [timeout]; 0 = not given
	Netmask     int           // -M, as a prefix length; -1 = not given
	SchedFlags  []string      // -b

	// Reals are the real servers: ipvsadm's one -r, or portfw's -R, which
	// may be given several times (a balanced service). A name stands for
	// every address it has of the service's family; port 0 means the
	// VIP's port.
	Reals   []Endpoint
	Weight  int // -w; -1 = not given
	Forward Forward

	// Listing options.
	Numeric, Stats, Rate, Conns, Timeout, Exact bool

	Timeouts [3]time.Duration // --set tcp tcpfin udp

	// Masquerade (ipchains): the subnets of -s (outbound) or, with
	// MasqInto, of -d (inbound); MasqTo is --to, if given. RuleNum is
	// -D forward N (1-based); 0 = a rule given by its options.
	Masq     []netip.Prefix
	MasqText string // -s or -d as typed, for messages
	MasqInto bool
	MasqTo   netip.Addr
	RuleNum  int
	Policy   string // -P forward ACCEPT or DENY

	Pref int // portfw -p; 0 = not given (PortfwPref)

	Tool string // "ipvsadm", "ipmasqadm" or "ipchains": whose words the messages use
}

// Endpoint is an address or a host name as typed, with what it stands for.
type Endpoint struct {
	Text  string           // as typed ("www.fuancn.cn:80", "198.18.2.11")
	Addrs []netip.AddrPort // one for an address; every address of a name, IPv4 first
}

// IsValid reports whether the endpoint was given.
func (e Endpoint) IsValid() bool { return len(e.Addrs) > 0 }

// Has reports whether ap is one of the endpoint's addresses.
func (e Endpoint) Has(ap netip.AddrPort) bool { return slices.Contains(e.Addrs, ap) }

// Of returns the endpoint's addresses of the family of a, with port 0
// replaced by port.
func (e Endpoint) Of(a netip.Addr, port uint16) []netip.AddrPort {
	var out []netip.AddrPort
	for _, ap := range e.Addrs {
		if ap.Addr().Is4() == a.Is4() {
			if ap.Port() == 0 {
				ap = netip.AddrPortFrom(ap.Addr(), port)
			}
			out = append(out, ap)
		}
	}
	return out
}

// ErrUsage wraps every command-line error.
var ErrUsage = errors.New("usage")

func usagef(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUsage}, a...)...)
}

// detail is an error's message without the "usage: " of usagef, to quote
// inside another tool's message.
func detail(err error) string {
	return strings.TrimPrefix(err.Error(), ErrUsage.Error()+": ")
}

// Parse parses an ipvsadm command line (no program name; a leading
// "ipvsadm" is skipped), or, when the first word is "ipmasqadm", "portfw"
// or "ipchains", that tool's. Host and service names are resolved with r
// once, here, as ipvsadm resolves them when it reads its arguments; with
// a nil r only addresses and port numbers are understood.
func Parse(ctx context.Context, args []string, r names.Resolver) (*Command, error) {
	if len(args) > 0 {
		switch args[0] {
		case "ipvsadm":
			args = args[1:]
		case "ipmasqadm", "portfw":
			return parsePortfw(ctx, args, r)
		case "ipchains":
			return parseIPChains(ctx, args[1:], r)
		}
	}
	var vipText string
	var realText []string
	c := &Command{Netmask: -1, Weight: -1, Tool: "ipvsadm"}
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
					if n, err = strconv.Atoi(v); err != nil || n < 0 || n > math.MaxInt32 {
						err = usagef("--set %s: timeouts are whole seconds up to %d (tcp tcpfin udp; 0 keeps the current one)", v, math.MaxInt32)
						break
					}
					c.Timeouts[k] = time.Duration(n) * time.Second
				}
			}
		case "-t", "--tcp-service", "-u", "--udp-service":
			if vipText, err = val(); err == nil {
				c.Proto = packet.ProtoTCP
				if a == "-u" || a == "--udp-service" {
					c.Proto = packet.ProtoUDP
				}
			}
		case "-f", "--fwmark-service":
			err = usagef("firewall-mark services (-f) are not supported: use -t or -u")
		case "-s", "--scheduler":
			c.Scheduler, err = val()
		case "-p", "--persistent":
			c.Persistence = DefaultPersistence
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				n, perr := strconv.Atoi(args[i+1])
				if perr != nil || n < 1 || n > maxPersistence {
					err = usagef("-p %s: the persistence timeout is whole seconds, 1 to %d (31 days, as ipvsadm)", args[i+1], maxPersistence)
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
				realText = append(realText, v)
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
		case "-g", "--gatewaying":
			c.Forward = ForwardRoute
		case "-i", "--ipip":
			err = usagef("%s: tunnelling is not supported: vsgate forwards by NAT (-m), FULLNAT (--fullnat) and direct routing (-g); this kernel has no IPIP, GRE or FOU devices to test a tunnel with", a)
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
	if vipText != "" {
		ep, err := resolveEndpoint(ctx, r, vipText, c.Proto, true)
		if err != nil {
			return nil, err
		}
		c.VIP = ep
	}
	for _, t := range realText {
		ep, err := resolveEndpoint(ctx, r, t, c.Proto, false)
		if err != nil {
			return nil, err
		}
		c.Reals = append(c.Reals, ep)
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
		if len(c.Reals) == 0 {
			return usagef("a real server is needed: -r address[:port]")
		}
		if len(c.Reals) > 1 {
			return usagef("-r: one real server at a time")
		}
		if err := c.familiesMatch(); err != nil {
			return err
		}
	}
	if c.Op != OpAddServer && c.Op != OpEditServer && c.Forward != ForwardUnset {
		return usagef("-m/--fullnat go with -a or -e")
	}
	return nil
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
