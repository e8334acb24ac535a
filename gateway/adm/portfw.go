package adm

import (
	"context"
	"net/netip"
	"strconv"
	"strings"

	"github.com/vsgate/vsgate/gateway/names"
	"github.com/vsgate/vsgate/packet"
)

// PortfwHelp is `ipmasqadm portfw -h`: ipmasqadm's forms, and what each
// becomes in ipvsadm's terms.
const PortfwHelp = `usage: ipmasqadm portfw -a -P PROTO -L LADDR LPORT -R RADDR RPORT [-p PREF]   add entry
       ipmasqadm portfw -d -P PROTO -L LADDR LPORT [-R RADDR RPORT]           delete entry
       ipmasqadm portfw -f                                                    clear table
       ipmasqadm portfw -l [-n]                                               list table
       ipmasqadm -A LADDR:LPORT -R RADDR:RPORT [-R RADDR:RPORT ...] [-P PROTO] [-p PREF]
       ipmasqadm -D LADDR:LPORT [-R RADDR:RPORT]
  "ipmasqadm portfw", "ipmasqadm" and "portfw" all lead in; -A/-D are the
  virtual-server handbook's form (PROTO defaults to tcp there), -a/-d the
  manual page's. PROTO is tcp or udp; PREF 1..65535, default 10. Addresses
  may be host names: a name stands for every address it has (resolved
  once, now, from the hosts file and DNS).

  How it maps onto ipvsadm (vsgate adm -S shows the result in that form):
    the local address and port (-L, -A)  a virtual service, -t|-u LADDR:LPORT -s wrr
    each redirect (-R)                   a real server, -r RADDR:RPORT -m -w PREF
    several -R for one local address     one balanced service: connections are
                                         shared in proportion to PREF (wrr)
    -d ... -R                            -d -t|-u LADDR:LPORT -r RADDR:RPORT
    -d without -R                        -D -t|-u LADDR:LPORT
    -f                                   -C (services of mode l7 stay)
    -l                                   -L; pcnt is ActiveConn+InActConn
`

// parsePortfw reads ipmasqadm's portfw, in both of its forms:
//
//	ipmasqadm portfw -a -P tcp -L 198.18.0.10 80 -R 198.18.2.11 80 -p 10
//	ipmasqadm -A www.fuancn.cn:80 -R 198.18.2.11:80
//
// args starts with "ipmasqadm" or "portfw".
func parsePortfw(ctx context.Context, args []string, r names.Resolver) (*Command, error) {
	c := &Command{Netmask: -1, Weight: -1, Tool: "ipmasqadm"}
	if args[0] == "ipmasqadm" {
		args = args[1:]
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			if args[0] != "portfw" {
				return nil, usagef("ipmasqadm: module %q: vsgate has the portfw module only (autofw, mfw and the others are not built)", args[0])
			}
			args = args[1:]
		}
	} else {
		args = args[1:]
	}
	setOp := func(op Op, flag string) error {
		if c.Op != OpNone {
			return usagef("portfw: multiple commands specified")
		}
		c.Op = op
		return nil
	}
	var local string
	var remotes []string
	handbook := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		need := func(what string) (string, error) {
			if i+1 >= len(args) {
				return "", usagef("portfw: %s needs %s", a, what)
			}
			i++
			return args[i], nil
		}
		// addrPortArg reads "ADDR PORT" (the manual's form) or
		// "ADDR:PORT" (the handbook's) after -L or -R.
		addrPortArg := func() (string, error) {
			v, err := need("an address and a port")
			if err != nil {
				return "", err
			}
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") && !hasPort(v) {
				i++
				if _, perr := netip.ParseAddr(v); perr == nil && strings.Contains(v, ":") {
					return "[" + v + "]:" + args[i], nil
				}
				return v + ":" + args[i], nil
			}
			return v, nil
		}
		var err error
		switch a {
		case "-a":
			err = setOp(OpPortfwAdd, a)
		case "-d":
			err = setOp(OpPortfwDel, a)
		case "-A":
			handbook = true
			if err = setOp(OpPortfwAdd, a); err == nil {
				local, err = need("LADDR:LPORT")
			}
		case "-D":
			handbook = true
			if err = setOp(OpPortfwDel, a); err == nil {
				local, err = need("LADDR:LPORT")
			}
		case "-f":
			err = setOp(OpPortfwFlush, a)
		case "-l":
			err = setOp(OpPortfwList, a)
		case "-n":
			c.Numeric = true
		case "-h", "--help":
			c.Op = OpHelp
			return c, nil
		case "-P":
			var v string
			if v, err = need("tcp or udp"); err == nil {
				// ipmasqadm reads the first letter only.
				switch {
				case c.Proto != 0:
					err = usagef("portfw: multiple protocols specified")
				case strings.HasPrefix(v, "t"):
					c.Proto = packet.ProtoTCP
				case strings.HasPrefix(v, "u"):
					c.Proto = packet.ProtoUDP
				default:
					err = usagef("portfw: invalid protocol specified (-P %s: tcp or udp)", v)
				}
			}
		case "-L":
			if local != "" {
				err = usagef("portfw: multiple local address/port specified")
			} else {
				local, err = addrPortArg()
			}
		case "-R":
			var v string
			if v, err = addrPortArg(); err == nil {
				remotes = append(remotes, v)
			}
			if err == nil && len(remotes) > 1 && !handbook {
				// The handbook's -A takes several (a balanced service
				// in one line); the manual's -a one per entry.
				err = usagef("portfw: multiple destinations specified")
			}
		case "-p":
			var v string
			if v, err = need("a preference"); err == nil {
				c.Pref, err = strconv.Atoi(v)
				if err != nil || c.Pref < 1 || c.Pref > 65535 {
					err = usagef("portfw: illegal preference value specified (-p %s: 1..65535)", v)
				}
			}
		default:
			err = usagef("portfw: invalid option -- '%s' (ipmasqadm portfw -h lists them)", strings.TrimLeft(a, "-"))
		}
		if err != nil {
			return nil, err
		}
	}
	if handbook && c.Proto == 0 {
		c.Proto = packet.ProtoTCP // the handbook's lines name no protocol: its services are TCP
	}
	switch c.Op {
	case OpNone:
		return nil, usagef("portfw: no command: one of -a -A -d -D -f -l (ipmasqadm portfw -h lists them)")
	case OpPortfwAdd, OpPortfwDel:
		if c.Proto == 0 || local == "" {
			return nil, usagef("portfw: insufficient options specified (-P tcp|udp and -L LADDR LPORT, or -A LADDR:LPORT)")
		}
		if c.Op == OpPortfwAdd && len(remotes) == 0 {
			return nil, usagef("portfw: insufficient options specified (-R RADDR RPORT)")
		}
		if c.Op == OpPortfwDel && len(remotes) > 1 {
			return nil, usagef("portfw: multiple destinations specified")
		}
	case OpPortfwFlush, OpPortfwList:
		if c.Proto != 0 || local != "" || len(remotes) > 0 {
			return nil, usagef("portfw: incompatible options specified")
		}
	}
	if local != "" {
		ep, err := resolveEndpoint(ctx, r, local, c.Proto, true)
		if err != nil {
			return nil, usagef("portfw: illegal local address/port specified (%v)", detail(err))
		}
		c.VIP = ep
	}
	for _, rt := range remotes {
		ep, err := resolveEndpoint(ctx, r, rt, c.Proto, true)
		if err != nil {
			return nil, usagef("portfw: illegal destination specified (%v)", detail(err))
		}
		c.Reals = append(c.Reals, ep)
	}
	if err := c.familiesMatch(); err != nil {
		return nil, err
	}
	return c, nil
}

// hasPort reports whether an -L/-R argument carries its port
// ("198.18.0.10:80", "[2001:db8::10]:80", "www.fuancn.cn:80") rather than
// being followed by it.
func hasPort(v string) bool {
	if strings.HasPrefix(v, "[") {
		return strings.Contains(v, "]:")
	}
	if _, err := netip.ParseAddr(v); err == nil {
		return false // a bare address, IPv6 included
	}
	return strings.Count(v, ":") == 1
}
