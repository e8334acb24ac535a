package adm

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/vsgate/vsgate/gateway/names"
	"github.com/vsgate/vsgate/packet"
)

// ipvsadm's command line, as ipvsadm 1.31 reads it with popt
// (ipvsadm.c's parse_options, process_options and generic_opt_check):
// the first option is the command; every other option is checked for
// being given twice before its value is read; the command × option
// matrix is checked in option order, not argv order, and the first
// violation wins. Each refusal carries ipvsadm's words and exit status.
// docs/research/ipvsadm-1.31.md has ipvsadm's behaviour with references
// to its source.

// ExitError is a refused command with ipvsadm's message and exit status:
// 2 for what ipvsadm itself refuses (options and values), 255 for what
// its kernel refuses and for a command line that starts with no command,
// 1 for a listing that fails.
type ExitError struct {
	Msg    string
	Status int
}

func (e *ExitError) Error() string { return e.Msg }

// Unwrap makes every refusal of the command line an ErrUsage.
func (e *ExitError) Unwrap() error { return ErrUsage }

// failf is ipvsadm's fail(2, ...).
func failf(format string, a ...any) error {
	return &ExitError{Msg: fmt.Sprintf(format, a...), Status: 2}
}

// tryHelp is ipvsadm's tryhelp_exit: a command line whose first option is
// no command.
func tryHelp() error {
	return &ExitError{Msg: "Try `ipvsadm -h' or 'ipvsadm --help' for more information.", Status: 255}
}

// poptError is popt's complaint about an option after the first: the
// argv element and what is wrong with it.
func poptError(elem, what string) error {
	return &ExitError{Msg: elem + ": " + what, Status: 255}
}

// KernelError is what ipvsadm prints for an error its kernel returns (exit
// 255); vsgate's engine gives the same words.
func KernelError(msg string) error { return &ExitError{Msg: msg, Status: 255} }

// optBit is an option's column in ipvsadm's commands_v_options matrix.
type optBit int

const (
	bitNumeric optBit = iota
	bitConnection
	bitService
	bitScheduler
	bitPersistent
	bitNetmask
	bitRealServer
	bitForward
	bitWeight
	bitUThreshold
	bitLThreshold
	bitMcastInterface
	bitTimeout
	bitDaemon
	bitStats
	bitRate
	bitThresholds
	bitPersistentConn
	bitNosort
	bitSyncid
	bitExact
	bitOps
	bitPe
	bitSchedFlags
	bitMcastGroup
	bitMcastPort
	bitMcastTTL
	bitSyncMaxlen
	bitTunInfo
	bitTunType
	bitTunPort
	bitTunNocsum
	bitTunCsum
	bitTunRemcsum
	numBits
	bitNone optBit = -1 // an option with no column (--sort, -6)
)

// name is the option's name in ipvsadm's messages (optnames).
func (b optBit) name() string {
	const all = "numeric connection service-address scheduler persistent netmask real-server forwarding-method " +
		"weight u-threshold l-threshold mcast-interface timeout daemon stats rate thresholds persistent-conn " +
		"nosort syncid exact ops pe sched-flags mcast-group mcast-port mcast-ttl sync-maxlen tun-info tun-type " +
		"tun-port tun-nocsum tun-csum tun-remcsum"
	return strings.Fields(all)[b]
}

// matrixRow is op's row of commands_v_options, one character per optBit:
// '+' required, 'x' illegal, '.' optional, '1' at most one of the '1's.
func matrixRow(op Op) string {
	switch op {
	case OpAddService, OpEditService:
		return "xx+...xxxxxxxxxxxxxxx...xxxxxxxxxx"
	case OpDelService:
		return "xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	case OpList:
		return ".11xxxxxxxxx11.......xxxxxxx.xxxxx"
	case OpAddServer, OpEditServer:
		return "xx+xxx+....xxxxxxxxxxxxxxxxxx....."
	case OpDelServer:
		return "xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxx"
	case OpSave:
		return ".xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	case OpZero:
		return "xx.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	case OpStartDaemon:
		return "xxxxxxxxxxx.xxxxxxx.xxxx....xxxxxx"
	case OpStopDaemon:
		return "xxxxxxxxxxxxxxxxxxx.xxxxxxxxxxxxxx"
	}
	return "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" // -C, -R, --set
}

// cmdName is op's name in ipvsadm's messages (cmdnames).
func cmdName(op Op) string {
	switch op {
	case OpAddService:
		return "add-service"
	case OpEditService:
		return "edit-service"
	case OpDelService:
		return "delete-service"
	case OpClear:
		return "flush"
	case OpList:
		return "list"
	case OpAddServer:
		return "add-server"
	case OpDelServer:
		return "delete-server"
	case OpEditServer:
		return "edit-server"
	case OpSetTimeouts:
		return "set"
	case OpRestore:
		return "restore"
	case OpSave:
		return "save"
	case OpZero:
		return "zero"
	case OpStartDaemon:
		return "start-daemon"
	case OpStopDaemon:
		return "stop-daemon"
	}
	return "?"
}

// argKind says whether an option takes a value.
type argKind int

const (
	argNone argKind = iota
	argRequired
	argOptional // -p: the next word, unless it starts with '-'
)

// optSpec is one of ipvsadm's options: a command (op) or an option (bit).
type optSpec struct {
	op  Op
	bit optBit
	arg argKind
	key string // which option it is, whatever form it was given in
}

// lookupOption finds a long option (without "--") or, with a one-letter
// name, a short one.
func lookupOption(name string, long bool) (optSpec, bool) {
	cmd := func(op Op) (optSpec, bool) { return optSpec{op: op, bit: bitNone, key: name}, true }
	opt := func(bit optBit, arg argKind, key string) (optSpec, bool) {
		return optSpec{bit: bit, arg: arg, key: key}, true
	}
	if !long {
		switch name {
		case "A":
			name = "add-service"
		case "E":
			name = "edit-service"
		case "D":
			name = "delete-service"
		case "C":
			name = "clear"
		case "R":
			name = "restore"
		case "S":
			name = "save"
		case "a":
			name = "add-server"
		case "e":
			name = "edit-server"
		case "d":
			name = "delete-server"
		case "L", "l":
			name = "list"
		case "Z":
			name = "zero"
		case "h":
			name = "help"
		case "v":
			name = "version"
		case "t":
			name = "tcp-service"
		case "u":
			name = "udp-service"
		case "f":
			name = "fwmark-service"
		case "6":
			name = "ipv6"
		case "s":
			name = "scheduler"
		case "p":
			name = "persistent"
		case "M":
			name = "netmask"
		case "r":
			name = "real-server"
		case "g":
			name = "gatewaying"
		case "i":
			name = "ipip"
		case "m":
			name = "masquerading"
		case "w":
			name = "weight"
		case "x":
			name = "u-threshold"
		case "y":
			name = "l-threshold"
		case "n":
			name = "numeric"
		case "c":
			name = "connection"
		case "X":
			name = "exact"
		case "o":
			name = "ops"
		case "b":
			name = "sched-flags"
		default:
			return optSpec{}, false
		}
	}
	switch name {
	case "add-service":
		return cmd(OpAddService)
	case "edit-service":
		return cmd(OpEditService)
	case "delete-service":
		return cmd(OpDelService)
	case "clear":
		return cmd(OpClear)
	case "restore":
		return cmd(OpRestore)
	case "save":
		return cmd(OpSave)
	case "add-server":
		return cmd(OpAddServer)
	case "edit-server":
		return cmd(OpEditServer)
	case "delete-server":
		return cmd(OpDelServer)
	case "list":
		return cmd(OpList)
	case "zero":
		return cmd(OpZero)
	case "set":
		return cmd(OpSetTimeouts)
	case "start-daemon":
		return optSpec{op: OpStartDaemon, bit: bitNone, arg: argRequired, key: name}, true
	case "stop-daemon":
		return optSpec{op: OpStopDaemon, bit: bitNone, arg: argRequired, key: name}, true
	case "help":
		return cmd(OpHelp)
	case "version":
		return cmd(OpVersion)
	case "tcp-service", "udp-service", "sctp-service", "fwmark-service":
		return opt(bitService, argRequired, name)
	case "ipv6":
		return opt(bitNone, argNone, name)
	case "scheduler":
		return opt(bitScheduler, argRequired, name)
	case "persistent":
		return opt(bitPersistent, argOptional, name)
	case "netmask":
		return opt(bitNetmask, argRequired, name)
	case "real-server":
		return opt(bitRealServer, argRequired, name)
	case "gatewaying", "ipip", "masquerading", "fullnat":
		return opt(bitForward, argNone, name)
	case "weight":
		return opt(bitWeight, argRequired, name)
	case "u-threshold":
		return opt(bitUThreshold, argRequired, name)
	case "l-threshold":
		return opt(bitLThreshold, argRequired, name)
	case "numeric":
		return opt(bitNumeric, argNone, name)
	case "connection":
		return opt(bitConnection, argNone, name)
	case "mcast-interface":
		return opt(bitMcastInterface, argRequired, name)
	case "syncid":
		return opt(bitSyncid, argRequired, name)
	case "timeout":
		return opt(bitTimeout, argNone, name)
	case "daemon":
		return opt(bitDaemon, argNone, name)
	case "stats":
		return opt(bitStats, argNone, name)
	case "rate":
		return opt(bitRate, argNone, name)
	case "thresholds":
		return opt(bitThresholds, argNone, name)
	case "persistent-conn":
		return opt(bitPersistentConn, argNone, name)
	case "nosort":
		return opt(bitNosort, argNone, name)
	case "sort":
		return opt(bitNone, argNone, name)
	case "exact":
		return opt(bitExact, argNone, name)
	case "ops":
		return opt(bitOps, argNone, name)
	case "pe":
		return opt(bitPe, argRequired, name)
	case "sched-flags":
		return opt(bitSchedFlags, argRequired, name)
	case "mcast-group":
		return opt(bitMcastGroup, argRequired, name)
	case "mcast-port":
		return opt(bitMcastPort, argRequired, name)
	case "mcast-ttl":
		return opt(bitMcastTTL, argRequired, name)
	case "sync-maxlen":
		return opt(bitSyncMaxlen, argRequired, name)
	case "tun-info":
		return opt(bitTunInfo, argNone, name)
	case "tun-type":
		return opt(bitTunType, argRequired, name)
	case "tun-port":
		return opt(bitTunPort, argRequired, name)
	case "tun-nocsum":
		return opt(bitTunNocsum, argNone, name)
	case "tun-csum":
		return opt(bitTunCsum, argNone, name)
	case "tun-remcsum":
		return opt(bitTunRemcsum, argNone, name)
	}
	return optSpec{}, false
}

// poptOption is one option popt returned: what it is, its value (hasValue
// says whether one was given) and the argv element it came from.
type poptOption struct {
	spec     optSpec
	value    string
	hasValue bool
	elem     string
}

// poptScan splits args as popt does for ipvsadm: "--name", "--name=value",
// short clusters ("-Ln", "-t1.2.3.4:80", "-p=600"), a required value
// from the next word whatever it is, -p's optional one from the next word
// unless it starts with '-', "--" ending the options, and other words
// left over. It stops at the first unknown option or missing value,
// returning what it read before it and the error (popt's text), which
// the caller words as ipvsadm does.
func poptScan(args []string) (opts []poptOption, leftovers []string, bad string, badWhat string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return opts, append(leftovers, args[i+1:]...), "", ""
		case len(a) < 2 || a[0] != '-':
			leftovers = append(leftovers, a)
			continue
		}
		next := func() (string, bool) {
			if i+1 < len(args) {
				i++
				return args[i], true
			}
			return "", false
		}
		if strings.HasPrefix(a, "--") {
			name, value, hasValue := strings.Cut(a[2:], "=")
			spec, ok := lookupOption(name, true)
			if !ok {
				return opts, leftovers, a, "unknown option"
			}
			o := poptOption{spec: spec, elem: a, value: value, hasValue: hasValue}
			switch spec.arg {
			case argNone:
				if hasValue {
					return opts, leftovers, a, "option does not take an argument"
				}
			case argRequired:
				if !hasValue {
					if o.value, o.hasValue = next(); !o.hasValue {
						return opts, leftovers, a, "missing argument"
					}
				}
			case argOptional:
				if !hasValue && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
					o.value, o.hasValue = next()
				}
			}
			opts = append(opts, o)
			continue
		}
		for j := 1; j < len(a); j++ {
			spec, ok := lookupOption(a[j:j+1], false)
			if !ok {
				return opts, leftovers, a, "unknown option"
			}
			o := poptOption{spec: spec, elem: a}
			if spec.arg != argNone {
				if rest := a[j+1:]; rest != "" {
					o.value, o.hasValue = strings.TrimPrefix(rest, "="), true
				} else if spec.arg == argRequired {
					if o.value, o.hasValue = next(); !o.hasValue {
						return opts, leftovers, a, "missing argument"
					}
				} else if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
					o.value, o.hasValue = next()
				}
				opts = append(opts, o)
				break
			}
			opts = append(opts, o)
		}
	}
	return opts, leftovers, "", ""
}

// maxTimeout is ipvsadm's MAX_TIMEOUT: the longest persistence and --set
// timeout, in seconds (31 days).
const maxTimeout = 86400 * 31

// stringToNumber is ipvsadm's string_to_number: a whole decimal number
// (strtol: a sign allowed) in [lo, hi], else -1.
func stringToNumber(s string, lo, hi int64) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < lo || n > hi {
		return -1
	}
	return n
}

// parseIpvsadm reads an ipvsadm command line (the program name already
// taken off).
func parseIpvsadm(ctx context.Context, args []string, r names.Resolver) (*Command, error) {
	c := &Command{Netmask: -1, Weight: -1, Tool: "ipvsadm"}
	if len(args) == 0 {
		// ipvsadm alone lists the table, with names.
		c.Op = OpList
		return c, nil
	}
	opts, leftovers, bad, badWhat := poptScan(args)
	if len(opts) == 0 || opts[0].spec.op == OpNone {
		return nil, tryHelp()
	}
	c.Op = opts[0].spec.op
	switch c.Op {
	case OpHelp, OpVersion:
		return c, nil
	case OpStartDaemon, OpStopDaemon:
		// Checked as the first option is read (ipvsadm.c's
		// parse_options), with ipvsadm's words ("start_daemon", sic).
		if c.DaemonState = opts[0].value; c.DaemonState != "master" && c.DaemonState != "backup" {
			if c.Op == OpStartDaemon {
				return nil, failf("illegal start-daemon parameter specified")
			}
			return nil, failf("illegal start_daemon specified")
		}
	}
	var given [numBits]bool
	var vipText, realText, fwmarkText, schedFlags string
	for _, o := range opts[1:] {
		if o.spec.op != OpNone {
			return nil, failf("invalid option `%s'", o.elem)
		}
		if b := o.spec.bit; b != bitNone {
			if given[b] {
				return nil, failf("multiple '%s' options specified", b.name())
			}
			given[b] = true
		}
		v := o.value
		if o.spec.bit == bitMcastGroup || o.spec.bit == bitMcastPort || o.spec.bit == bitMcastTTL || o.spec.bit == bitSyncMaxlen {
			c.DaemonMulticast = append(c.DaemonMulticast, "--"+o.spec.key)
		}
		switch o.spec.key {
		case "tcp-service", "udp-service", "sctp-service":
			vipText = v
			c.Proto = packet.ProtoTCP
			switch o.spec.key {
			case "udp-service":
				c.Proto = packet.ProtoUDP
			case "sctp-service":
				c.Proto = protoSCTP
			}
		case "fwmark-service":
			if stringToNumber(v, 1, 1<<32-1) < 0 {
				return nil, failf("invalid fwmark value `%s' specified", v)
			}
			fwmarkText, c.Fwmark, c.Proto = v, uint32(stringToNumber(v, 1, 1<<32-1)), 0
		case "ipv6":
			if fwmarkText == "" {
				return nil, failf("-6 used before -f\n")
			}
			c.FwmarkIPv6 = true
		case "scheduler":
			c.Scheduler = v
		case "persistent":
			c.Persistence = DefaultPersistence
			if o.hasValue {
				n := stringToNumber(v, 1, maxTimeout)
				if n < 0 {
					return nil, failf("invalid timeout value `%s' specified", v)
				}
				c.Persistence = time.Duration(n) * time.Second
			}
		case "netmask":
			n, err := parseNetmask(v, isIPv6Text(vipText))
			if err != nil {
				return nil, err
			}
			c.Netmask = n
		case "real-server":
			realText = v
		case "gatewaying":
			c.Forward = ForwardRoute
		case "masquerading":
			c.Forward = ForwardMasq
		case "fullnat":
			c.Forward = ForwardFullNAT
		case "ipip":
			c.Forward = ForwardTunnel
		case "weight":
			n := stringToNumber(v, 0, 65535)
			if n < 0 {
				return nil, failf("illegal weight specified")
			}
			c.Weight = int(n)
		case "u-threshold":
			n := stringToNumber(v, 0, 1<<31-1)
			if n < 0 {
				return nil, failf("illegal u_threshold specified")
			}
			c.UThreshold = int(n)
		case "l-threshold":
			n := stringToNumber(v, 0, 1<<31-1)
			if n < 0 {
				return nil, failf("illegal l_threshold specified")
			}
			c.LThreshold = int(n)
		case "numeric":
			c.Numeric = true
		case "connection":
			c.Conns = true
		case "timeout":
			c.Timeout = true
		case "daemon":
			c.Daemon = true
		case "stats":
			c.Stats = true
		case "rate":
			c.Rate = true
		case "thresholds":
			c.Thresholds = true
		case "tun-info":
			c.TunInfo = true
		case "nosort":
			c.NoSort = true
		case "persistent-conn":
			c.PersistentConn = true
		case "exact":
			c.Exact = true
		case "ops":
			c.OnePacket = true
		case "pe":
			c.PE = v
		case "sched-flags":
			schedFlags = v
		case "syncid":
			if stringToNumber(v, 0, 255) < 0 {
				return nil, failf("illegal syncid specified")
			}
		case "mcast-port":
			if stringToNumber(v, 1, 65535) < 0 {
				return nil, failf("illegal mcast-port specified")
			}
		case "mcast-ttl":
			if stringToNumber(v, 1, 255) < 0 {
				return nil, failf("illegal mcast-ttl specified")
			}
		case "sync-maxlen":
			if stringToNumber(v, 1, 65507) < 0 {
				return nil, failf("illegal sync-maxlen specified")
			}
		case "mcast-group":
			a, err := netip.ParseAddr(v)
			if strings.Contains(v, ":") {
				if err != nil || !a.Is6() || !a.IsMulticast() {
					return nil, failf("invalid IPv6 mcast-group `%s'", v)
				}
			} else if err != nil || !a.Is4() || !a.IsMulticast() {
				return nil, failf("invalid IPv4 mcast-group `%s'", v)
			}
		case "tun-type":
			if v != "ipip" && v != "gue" && v != "gre" {
				return nil, failf("illegal tunnel type specified")
			}
		case "tun-port":
			if stringToNumber(v, 1, 65535) < 0 {
				return nil, failf("illegal tunnel port specified")
			}
		}
	}
	if bad != "" {
		if len(opts) == 0 {
			return nil, tryHelp()
		}
		return nil, poptError(bad, badWhat)
	}
	if c.Op == OpSetTimeouts {
		if len(leftovers) < 3 {
			return nil, failf("--set option requires 3 timeout values")
		}
		for k := range 3 {
			n := stringToNumber(leftovers[k], 0, maxTimeout)
			if n < 0 {
				return nil, failf("invalid timeout value `%s' specified", leftovers[k])
			}
			c.Timeouts[k] = time.Duration(n) * time.Second
		}
		leftovers = leftovers[3:]
	}
	if len(leftovers) > 0 {
		return nil, failf("unexpected argument %s", leftovers[0])
	}
	if given[bitSchedFlags] && schedFlags != "" {
		flags, err := parseSchedFlags(schedFlags, c.Scheduler)
		if err != nil {
			return nil, err
		}
		c.SchedFlags = flags
	}
	if err := checkMatrix(c.Op, given); err != nil {
		return nil, err
	}
	switch c.Op {
	case OpAddService, OpEditService:
		if fwmarkText == "" && !given[bitPersistent] && portOf(vipText) == "" {
			return nil, failf("Zero port specified for non-persistent service")
		}
		if c.OnePacket && fwmarkText == "" && c.Proto != packet.ProtoUDP {
			return nil, failf("One-Packet Scheduling is only for UDP virtual services")
		}
		if c.Scheduler == "" {
			c.Scheduler = "wlc"
		}
	case OpList:
		if (c.Conns || c.Timeout || c.Daemon) && (c.Stats || c.Rate || c.Thresholds) ||
			(c.Timeout || c.Daemon) && c.PersistentConn {
			return nil, failf("options conflicts in the list command")
		}
	case OpAddServer, OpEditServer:
		tunOpts := given[bitTunType] || given[bitTunPort] || given[bitTunNocsum] || given[bitTunCsum] || given[bitTunRemcsum]
		if tunOpts && c.Forward != ForwardTunnel {
			return nil, failf("Tunnel options conflict with forward method")
		}
	}
	if vipText != "" {
		ep, err := resolveEndpoint(ctx, r, vipText, c.Proto, false)
		if err != nil {
			return nil, failf("illegal virtual server address[:port] specified")
		}
		c.VIP = ep
	}
	if fwmarkText != "" {
		fam := netip.IPv4Unspecified()
		if c.FwmarkIPv6 {
			fam = netip.IPv6Unspecified()
		}
		c.VIP = Endpoint{Text: "fwmark " + fwmarkText, Addrs: []netip.AddrPort{netip.AddrPortFrom(fam, 0)}}
	}
	if realText != "" {
		ep, err := resolveEndpoint(ctx, r, realText, c.Proto, false)
		if err != nil {
			return nil, failf("illegal real server address[:port] specified")
		}
		c.Reals = append(c.Reals, ep) // port 0: the service's (Endpoint.Of)
		if err := c.familiesMatch(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// protoSCTP is IPPROTO_SCTP, for --sctp-service (which vsgate refuses).
const protoSCTP = 132

// portOf is the port part of a service address as typed ("" for none).
func portOf(text string) string {
	if strings.HasPrefix(text, "[") {
		_, port, _ := strings.Cut(text, "]:")
		return port
	}
	if strings.Count(text, ":") != 1 {
		return ""
	}
	_, port, _ := strings.Cut(text, ":")
	return port
}

// isIPv6Text tells whether a service address as typed is IPv6 (for -M's
// form).
func isIPv6Text(text string) bool {
	if strings.HasPrefix(text, "[") {
		return true
	}
	a, err := netip.ParseAddr(text)
	return err == nil && a.Is6()
}

// checkMatrix is generic_opt_check: the options given against op's row,
// in option order.
func checkMatrix(op Op, given [numBits]bool) error {
	row := matrixRow(op)
	first := bitNone
	for b := range numBits {
		switch row[b] {
		case '+':
			if !given[b] {
				return failf("You need to supply the '%s' option for the '%s' command", b.name(), cmdName(op))
			}
		case 'x':
			if given[b] {
				return failf("Illegal '%s' option with the '%s' command", b.name(), cmdName(op))
			}
		case '1':
			if given[b] {
				if first != bitNone {
					return failf("The option '%s' conflicts with the '%s' option in the '%s' command", b.name(), first.name(), cmdName(op))
				}
				first = b
			}
		}
	}
	return nil
}

// parseSchedFlags is ipvsadm's parse_sched_flags: flag-1..3, or sh-
// and mh- flags for those schedulers (-s, or wlc when not given).
func parseSchedFlags(s, sched string) ([]string, error) {
	if sched == "" {
		sched = "wlc"
	}
	var out []string
	for _, f := range strings.Split(s, ",") {
		switch f {
		case "flag-1", "flag-2", "flag-3":
		case "sh-fallback", "sh-port":
			if sched != "sh" {
				return nil, failf("incompatible scheduler flag `%s'", f)
			}
		case "mh-fallback", "mh-port":
			if sched != "mh" {
				return nil, failf("incompatible scheduler flag `%s'", f)
			}
		default:
			return nil, failf("invalid scheduler flag `%s'", f)
		}
		out = append(out, f)
	}
	return out, nil
}

// IpvsadmVersion is ipvsadm -v's line: the ipvsadm vsgate adm speaks.
const IpvsadmVersion = "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n"

// IpvsadmHelp is ipvsadm -h's text, as ipvsadm 1.31 prints it (its
// scheduler list is ipvsadm's; vsgate adm -L lists what vsgate runs).
const IpvsadmHelp = IpvsadmVersion + `Usage:
  ipvsadm -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [--pe persistence_engine] [-b sched-flags]
  ipvsadm -D virtual-service
  ipvsadm -C
  ipvsadm -R
  ipvsadm -S [-n]
  ipvsadm -a|e virtual-service -r server-address [options]
  ipvsadm -d virtual-service -r server-address
  ipvsadm -L|l [virtual-service] [options]
  ipvsadm -Z [virtual-service]
  ipvsadm --set tcp tcpfin udp
  ipvsadm --start-daemon {master|backup} [daemon-options]
  ipvsadm --stop-daemon {master|backup}
  ipvsadm -h

Commands:
Either long or short options are allowed.
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options
  --delete-service  -D        delete virtual service
  --clear           -C        clear the whole table
  --restore         -R        restore rules from stdin
  --save            -S        save rules to stdout
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options
  --delete-server   -d        delete real server
  --list            -L|-l     list the table
  --zero            -Z        zero counters in a service or all services
  --set tcp tcpfin udp        set connection timeout values
  --start-daemon              start connection sync daemon
  --stop-daemon               stop connection sync daemon
  --help            -h        display this help message

virtual-service:
  --tcp-service|-t  service-address   service-address is host[:port]
  --udp-service|-u  service-address   service-address is host[:port]
  --sctp-service    service-address   service-address is host[:port]
  --fwmark-service|-f fwmark          fwmark is an integer greater than zero

Options:
  --ipv6         -6                   fwmark entry uses IPv6
  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh,
                                      the default scheduler is wlc.
  --pe            engine              alternate persistence engine may be sip,
                                      not set by default.
  --persistent   -p [timeout]         persistent service
  --netmask      -M netmask           persistent granularity mask
  --real-server  -r server-address    server-address is host (and port)
  --gatewaying   -g                   gatewaying (direct routing) (default)
  --ipip         -i                   ipip encapsulation (tunneling)
  --masquerading -m                   masquerading (NAT)
  --tun-type      type                one of ipip|gue|gre,
                                      the default tunnel type is ipip.
  --tun-port      port                tunnel destination port
  --tun-nocsum                        tunnel encapsulation without checksum
  --tun-csum                          tunnel encapsulation with checksum
  --tun-remcsum                       tunnel encapsulation with remote checksum
  --weight       -w weight            capacity of real server
  --u-threshold  -x uthreshold        upper threshold of connections
  --l-threshold  -y lthreshold        lower threshold of connections
  --connection   -c                   output of current IPVS connections
  --timeout                           output of timeout (tcp tcpfin udp)
  --daemon                            output of daemon information
  --stats                             output of statistics information
  --rate                              output of rate information
  --exact                             expand numbers (display exact values)
  --thresholds                        output of thresholds information
  --persistent-conn                   output of persistent connection info
  --tun-info                          output of tunnel information
  --nosort                            disable sorting output of service/server entries
  --sort                              does nothing, for backwards compatibility
  --ops          -o                   one-packet scheduling
  --numeric      -n                   numeric output of addresses and ports
  --sched-flags  -b flags             scheduler flags (comma-separated)
Daemon Options:
  --syncid sid                        syncid for connection sync (default=255)
  --sync-maxlen length                Max sync message length (default=1472)
  --mcast-interface interface         multicast interface for connection sync
  --mcast-group address               IPv4/IPv6 group (default=224.0.0.81)
  --mcast-port port                   UDP port (default=8848)
  --mcast-ttl ttl                     Multicast TTL (default=1)
`
