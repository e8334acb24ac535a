package adm

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vsgate/vsgate/gateway/names"
	"github.com/vsgate/vsgate/nat"
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
	OpHelp           // ipvsadm -h, ipmasqadm -h, ipchains -h: Help gives the text
	OpVersion        // ipvsadm -v
	OpStartDaemon    // ipvsadm --start-daemon master|backup
	OpStopDaemon     // ipvsadm --stop-daemon master|backup
	OpMarkAdd        // iptables -t mangle -A PREROUTING ... -j MARK --set-mark N
	OpMarkInsert     // iptables -t mangle -I PREROUTING [N] ...
	OpMarkDel        // iptables -t mangle -D PREROUTING ... | N
	OpMarkFlush      // iptables -t mangle -F [PREROUTING]
	OpMarkList       // iptables -t mangle -L [PREROUTING]
)

// Forward is a real server's forwarding method.
type Forward int

const (
	ForwardUnset   Forward = iota
	ForwardMasq            // -m: NAT
	ForwardFullNAT         // --fullnat (a vsgate extension; ipvsadm has no switch for it)
	ForwardRoute           // -g: direct routing (ipvsadm's default)
	ForwardTunnel          // -i: IPIP (which vsgate refuses)
)

// DefaultPersistence is ipvsadm's timeout for -p without a value
// (IPVS_SVC_PERSISTENT_TIMEOUT; its man page's 300 is wrong).
const DefaultPersistence = 360 * time.Second

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
	Daemon, Thresholds, PersistentConn, TunInfo bool
	// NoSort lists in the gateway's order (--nosort): services as
	// configured, each one's real servers newest first, as IPVS keeps
	// them.
	NoSort bool

	// Fwmark is -f's mark (a firewall-mark service; -6 with it: IPv6).
	// The parser then sets VIP to the family's unspecified address, port
	// 0, and Proto 0, as the engine names such a service. -x/-y are the
	// connection thresholds, -o one-packet scheduling; --pe is refused.
	Fwmark                 uint32
	FwmarkIPv6             bool
	UThreshold, LThreshold int
	OnePacket              bool
	PE                     string

	// The sync daemon (--start-daemon, --stop-daemon): its state word,
	// master or backup, and the multicast options given (--mcast-group,
	// --mcast-port, --mcast-ttl, --sync-maxlen), which vsgate's unicast
	// sync has no use for.
	DaemonState     string
	DaemonMulticast []string

	Timeouts [3]time.Duration // --set tcp tcpfin udp

	// Masquerade (ipchains): the subnets of -s (outbound) or, with
	// MasqInto, of -d (inbound); MasqTo is --to, if given. RuleNum is
	// -D forward N (1-based); 0 = a rule given by its options.
	// The marking rules (iptables -t mangle): -d's prefixes are MarkDst,
	// --set-mark is Fwmark, -p is Proto, --dport MarkPorts; MarkIPv6 for
	// ip6tables.
	MarkDst   []netip.Prefix
	MarkPorts [2]uint16
	MarkIPv6  bool
	Masq      []netip.Prefix
	MasqText  string // -s or -d as typed, for messages
	MasqInto  bool
	MasqTo    netip.Addr
	RuleNum   int
	Policy    string // -P forward ACCEPT or DENY

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

// Selects reports whether s is the service the command names.
func (c *Command) Selects(s nat.Service) bool {
	return s.Proto == c.Proto && s.Fwmark == c.Fwmark && c.VIP.Has(netip.AddrPortFrom(s.VIP, s.Port))
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
		case "iptables", "ip6tables":
			return parseIPTables(ctx, args[1:], r, args[0] == "ip6tables")
		}
	}
	return parseIpvsadm(ctx, args, r)
}

// parseNetmask reads -M: for an IPv6 service a prefix length, 1 to 128;
// else a dotted IPv4 mask, or (vsgate's) a prefix length.
func parseNetmask(s string, ipv6 bool) (int, error) {
	if ipv6 {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 128 {
			return 0, failf("illegal ipv6 netmask specified")
		}
		return n, nil
	}
	if n, err := strconv.Atoi(s); err == nil && n >= 0 && n <= 32 {
		return n, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return 0, failf("illegal virtual server persistent mask specified")
	}
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n := 0
	for v&0x80000000 != 0 {
		n++
		v <<= 1
	}
	if v != 0 {
		return 0, failf("illegal virtual server persistent mask specified")
	}
	return n, nil
}
