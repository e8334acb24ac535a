package adm

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/vsgate/vsgate/gateway/names"
	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/sched"
)

// Errors worded as libipvs words them (ipvs_strerror), so scripts that
// match ipvsadm's messages keep working.
var (
	ErrServiceExists = errors.New("Service already exists")
	ErrNoService     = errors.New("No such service")
	ErrNotDefined    = errors.New("Service not defined")
	ErrDestExists    = errors.New("Destination already exists")
	ErrNoDest        = errors.New("No such destination")
	ErrNoScheduler   = errors.New("Scheduler or persistence engine not found")
)

// Defaults are what Apply uses where a command leaves something out.
type Defaults struct {
	// MasqTo are the masquerade addresses (one per family) of ipchains
	// -s rules without --to: the configuration's masquerade_to.
	MasqTo []netip.Addr
	// Inside are the addresses of ipchains -d rules without --to: the one
	// that lies in the rule's subnet is taken (masquerade_inside).
	Inside []netip.Addr
}

// PortfwPref is ipmasqadm's default preference for portfw -a without -p.
const PortfwPref = 10

// Modifies reports whether the command changes the configuration (as
// opposed to listing it).
func (c *Command) Modifies() bool {
	switch c.Op {
	case OpList, OpSave, OpPortfwList, OpMasqList, OpMarkList, OpHelp, OpVersion:
		return false
	case OpZero:
		return false // counters, not configuration
	case OpStartDaemon, OpStopDaemon:
		return false // the sync's roles, not configuration
	}
	return true
}

// Help returns the help text of the command's tool (ipmasqadm -h,
// ipchains -h), for OpHelp.
func (c *Command) Help() string {
	switch c.Tool {
	case "ipchains":
		return IPChainsHelp
	case "iptables", "ip6tables":
		return IPTablesHelp
	case "ipvsadm":
		return IpvsadmHelp
	}
	return PortfwHelp
}

// Apply returns cfg changed by the command. cfg is not modified; on error
// the returned configuration is cfg as given, so a command is applied
// whole or not at all (a name with several addresses included). Listing
// commands and -Z return cfg unchanged.
func Apply(cfg nat.Config, c *Command, d Defaults) (nat.Config, error) {
	if err := unsupported(c); err != nil {
		return cfg, err
	}
	next := clone(cfg)
	var err error
	switch c.Op {
	case OpClear, OpPortfwFlush:
		next.Services = slices.DeleteFunc(next.Services, func(s nat.Service) bool { return s.Mode != nat.ModeL7 })
	case OpSetTimeouts:
		t := &next.Timeouts
		if c.Timeouts[0] > 0 {
			t.TCPEstablished = c.Timeouts[0]
		}
		if c.Timeouts[1] > 0 {
			t.TCPFinWait = c.Timeouts[1]
		}
		if c.Timeouts[2] > 0 {
			t.UDP = c.Timeouts[2]
		}
	case OpMasqAdd, OpMasqDel, OpMasqFlush, OpMasqPolicy:
		err = applyIPChains(&next, c, d)
	case OpMarkAdd, OpMarkInsert, OpMarkDel, OpMarkFlush:
		err = applyIPTables(&next, c)
	default:
		for _, vip := range c.VIP.Addrs {
			if err = applyToService(&next, c, vip); err != nil {
				if len(c.VIP.Addrs) > 1 {
					err = fmt.Errorf("%s (%v): %w", c.VIP.Text, vip, err)
				}
				break
			}
		}
	}
	if err != nil {
		return cfg, err
	}
	return next, nil
}

// unsupported refuses, as ipvsadm's kernel would refuse what it cannot do
// (exit 255), what IPVS has and vsgate does not.
func unsupported(c *Command) error {
	switch {
	case c.Tool != "ipvsadm" || !c.Modifies():
		return nil
	case c.Proto == protoSCTP:
		return KernelError("Protocol not available: vsgate forwards TCP (-t) and UDP (-u), not SCTP")
	case c.Forward == ForwardTunnel:
		return KernelError("tunnelling (-i) is not supported: vsgate forwards by NAT (-m), FULLNAT (--fullnat) and direct routing (-g); this kernel has no IPIP, GRE or FOU devices to test a tunnel with")
	case c.LThreshold > c.UThreshold:
		return KernelError("Numerical result out of range") // the kernel's ERANGE: l_threshold above u_threshold
	case c.PE != "":
		return ErrNoScheduler // vsgate has no persistence engines: the kernel's ENOENT
	}
	return nil
}

// applyToService applies a service or real-server command to one of the
// service's addresses.
func applyToService(cfg *nat.Config, c *Command, vip netip.AddrPort) error {
	i := slices.IndexFunc(cfg.Services, func(s nat.Service) bool {
		return s.Proto == c.Proto && s.Fwmark == c.Fwmark && netip.AddrPortFrom(s.VIP, s.Port) == vip
	})
	var reals []netip.AddrPort // the real servers of vip's family
	for _, r := range c.Reals {
		reals = append(reals, r.Of(vip.Addr(), vip.Port())...)
	}
	findDest := func(s *nat.Service, real netip.AddrPort) int {
		return slices.IndexFunc(s.Backends, func(b nat.Backend) bool {
			return netip.AddrPortFrom(b.Addr, b.Port) == real
		})
	}
	switch c.Op {
	case OpAddService:
		if i >= 0 && cfg.Services[i].Mode == nat.ModeL7 {
			return fmt.Errorf("%w: %v is an L7 (ProxyPass) service", ErrServiceExists, vip)
		}
		if i >= 0 {
			return ErrServiceExists
		}
		s := nat.Service{Proto: c.Proto, VIP: vip.Addr(), Port: vip.Port(), Fwmark: c.Fwmark, Scheduler: "wlc"} // ipvsadm's default
		if err := setServiceOptions(&s, c); err != nil {
			return err
		}
		cfg.Services = append(cfg.Services, s)
		return nil
	case OpPortfwAdd:
		pref := c.Pref
		if pref == 0 {
			pref = PortfwPref
		}
		if i < 0 {
			// ipmasqadm spreads connections over the -R entries of one
			// local address in proportion to their preference:
			// weighted round robin.
			cfg.Services = append(cfg.Services, nat.Service{Proto: c.Proto, VIP: vip.Addr(), Port: vip.Port(), Scheduler: "wrr"})
			i = len(cfg.Services) - 1
		}
		s := &cfg.Services[i]
		if s.Mode == nat.ModeL7 {
			return fmt.Errorf("%w: %v is an L7 (ProxyPass) service", ErrServiceExists, vip)
		}
		for _, real := range reals {
			if j := findDest(s, real); j >= 0 {
				s.Backends[j].Weight = uint32(pref)
			} else {
				s.Backends = append(s.Backends, nat.Backend{Addr: real.Addr(), Port: real.Port(), Weight: uint32(pref)})
			}
		}
		return nil
	}
	if i < 0 {
		if c.Op == OpAddServer || c.Op == OpEditServer || c.Op == OpDelServer {
			return ErrNotDefined
		}
		return ErrNoService
	}
	s := &cfg.Services[i]
	if s.Mode == nat.ModeL7 {
		// Its routes and members are the configuration's Apache
		// directives; the engine's entry only hands its packets to the
		// proxy. Changing the entry would change nothing the proxy does
		// (or, deleted, be put back), so it is refused.
		return fmt.Errorf("%v is an L7 (ProxyPass) service: its routes and members are the configuration file's l7 directives, not vsgate adm's", vip)
	}
	switch c.Op {
	case OpEditService:
		// ipvsadm sends a whole new entry: what -E does not give goes
		// back to the default (wlc, no persistence, no flags).
		s.Scheduler, s.Persistence, s.PersistMask, s.Sched = "wlc", 0, 0, nat.Service{}.Sched
		return setServiceOptions(s, c)
	case OpDelService:
		cfg.Services = slices.Delete(cfg.Services, i, i+1)
	case OpAddServer, OpEditServer:
		for _, real := range reals {
			j := findDest(s, real)
			if c.Op == OpAddServer && j >= 0 {
				return ErrDestExists
			}
			if c.Op == OpEditServer && j < 0 {
				return ErrNoDest
			}
			// ipvsadm sends a whole entry for -a and -e alike: what is
			// not given is the default (weight 1, direct routing).
			fwd := c.Forward
			if fwd == ForwardUnset && c.Tool == "ipvsadm" {
				fwd = ForwardRoute
			}
			if err := setForward(s, fwd, j < 0 || len(s.Backends) > 1); err != nil {
				return err
			}
			w := 1
			if c.Weight >= 0 {
				w = c.Weight
			}
			// The thresholds too: -e without -x or -y removes them.
			u, l := uint32(c.UThreshold), uint32(c.LThreshold)
			if j < 0 {
				s.Backends = append(s.Backends, nat.Backend{Addr: real.Addr(), Port: real.Port(), Weight: uint32(w), Upper: u, Lower: l})
			} else {
				s.Backends[j].Weight, s.Backends[j].Upper, s.Backends[j].Lower = uint32(w), u, l
			}
		}
	case OpDelServer, OpPortfwDel:
		if c.Op == OpPortfwDel && len(c.Reals) == 0 {
			cfg.Services = slices.Delete(cfg.Services, i, i+1)
			break
		}
		for _, real := range reals {
			j := findDest(s, real)
			if j < 0 {
				return ErrNoDest
			}
			s.Backends = slices.Delete(s.Backends, j, j+1)
		}
	}
	return nil
}

// applyIPChains applies an ipchains command to the masquerade rules and
// the policy.
func applyIPChains(cfg *nat.Config, c *Command, d Defaults) error {
	same := func(m nat.Masquerade, n netip.Prefix) bool {
		return m.Subnet() == n && m.Into.IsValid() == c.MasqInto
	}
	switch c.Op {
	case OpMasqPolicy:
		cfg.DropUnmatched = c.Policy == "DENY"
	case OpMasqFlush:
		cfg.Masquerade = nil
	case OpMasqDel:
		if c.RuleNum > 0 {
			if c.RuleNum > len(cfg.Masquerade) {
				return errors.New("ipchains: No chain by that name") // ipchains' word for a rule number past the end
			}
			cfg.Masquerade = slices.Delete(cfg.Masquerade, c.RuleNum-1, c.RuleNum)
			return nil
		}
		for _, n := range c.Masq {
			i := slices.IndexFunc(cfg.Masquerade, func(m nat.Masquerade) bool { return same(m, n) })
			if i < 0 {
				return errors.New("ipchains: bad rule (does a matching rule exist in that chain?)")
			}
			cfg.Masquerade = slices.Delete(cfg.Masquerade, i, i+1)
		}
	case OpMasqAdd:
		for _, n := range c.Masq {
			to, err := masqAddress(c, d, n)
			if err != nil {
				return err
			}
			if slices.ContainsFunc(cfg.Masquerade, func(m nat.Masquerade) bool { return same(m, n) }) {
				return fmt.Errorf("ipchains: a masquerade rule for %v exists already (ipchains -L forward lists it)", n)
			}
			m := nat.Masquerade{From: n, To: to}
			if c.MasqInto {
				m = nat.Masquerade{Into: n, To: to}
			}
			cfg.Masquerade = append(cfg.Masquerade, m)
		}
	}
	return nil
}

// masqAddress is the address a new masquerade rule for n gets: --to, else
// the default of its direction.
func masqAddress(c *Command, d Defaults, n netip.Prefix) (netip.Addr, error) {
	if c.MasqTo.IsValid() {
		return c.MasqTo, nil
	}
	if c.MasqInto {
		for _, a := range d.Inside {
			if n.Contains(a) {
				return a, nil
			}
		}
		return netip.Addr{}, fmt.Errorf("%w: ipchains -d %v: no address to masquerade to: give --to ADDR, or set masquerade_inside in the configuration to an address vsgate may take in %v (the hosts there must reach it on their link)", ErrUsage, n, n)
	}
	for _, a := range d.MasqTo {
		if a.Is4() == n.Addr().Is4() {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("%w: ipchains -s %v: no masquerade address: give --to ADDR, or set masquerade_to in the configuration (vsgate has no outgoing interface address to borrow)", ErrUsage, n)
}

// setServiceOptions applies -s -p -M -b.
func setServiceOptions(s *nat.Service, c *Command) error {
	if c.Scheduler != "" {
		if !slices.Contains(sched.Names(), c.Scheduler) {
			return ErrNoScheduler
		}
		s.Scheduler = c.Scheduler
	}
	if c.Persistence > 0 {
		s.Persistence = c.Persistence
	}
	if c.Netmask >= 0 {
		s.PersistMask = c.Netmask
	}
	s.OnePacket = c.OnePacket
	for _, f := range c.SchedFlags {
		switch f {
		case "sh-port", "flag-2":
			s.Sched.Port = true
		case "sh-fallback", "flag-1":
			s.Sched.Fallback = true
		default:
			return KernelError(fmt.Sprintf("scheduler flag %s is not supported: vsgate knows sh-fallback (flag-1) and sh-port (flag-2)", f))
		}
	}
	return nil
}

// setForward sets the service's mode from a real server's forwarding
// method. vsgate forwards per service: a method that differs from the one
// the service's other real servers use is refused.
func setForward(s *nat.Service, f Forward, others bool) error {
	var m nat.Mode
	switch f {
	case ForwardUnset:
		return nil
	case ForwardMasq:
		m = nat.ModeNAT
	case ForwardFullNAT:
		m = nat.ModeFullNAT
	case ForwardRoute:
		m = nat.ModeDR
	}
	if m != s.Mode && others && len(s.Backends) > 0 {
		flag := map[nat.Mode]string{nat.ModeNAT: "-m", nat.ModeFullNAT: "--fullnat", nat.ModeDR: "-g"}[s.Mode]
		return KernelError(fmt.Sprintf("all real servers of a service use one forwarding method in vsgate, and this one's use %s: give %s", fwdName(s.Mode), flag))
	}
	s.Mode = m
	return nil
}

// RestoreStatus is what ipvsadm -R did with a script: each refusal's
// message in order, and the exit status.
type RestoreStatus struct {
	Output string // what the lines that list printed
	Errors []string
	Status int
}

// Restore runs a script as ipvsadm -R does: line by line, each split into
// words at spaces, tabs and line ends (no quoting; every word "ipvsadm"
// dropped), a line without words skipped. Each line is a change of its
// own, made by install when Apply takes it. A line the gateway refuses
// (ipvsadm: its kernel) is reported and the next one runs; a line
// ipvsadm itself refuses (its options, a '#' comment, which ipvsadm 1.31
// does not understand, a nested -R) ends the restore there. The exit
// status is the last line's. Lines that change no configuration (-L, -S,
// -Z, -h, -v, --start-daemon, --stop-daemon) run through query with the
// configuration of the moment, their output in RestoreStatus.Output: as in
// ipvsadm, -h and -v end the restore (status 0), a listing that fails
// ends it with its status, and a refused -Z or daemon command is reported
// and the next line runs. A nil query skips
// them. It returns the configuration after the lines that went through.
func Restore(ctx context.Context, cfg nat.Config, script string, d Defaults, r names.Resolver,
	install func(nat.Config) error, query func(*Command, nat.Config) (string, error)) (nat.Config, RestoreStatus) {
	var st RestoreStatus
	for line := range strings.Lines(script) {
		var args []string
		for _, w := range strings.FieldsFunc(line, func(c rune) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }) {
			if w != "ipvsadm" {
				args = append(args, w)
			}
		}
		if len(args) == 0 {
			continue
		}
		c, err := parseIpvsadm(ctx, args, r)
		if err == nil && c.Op == OpRestore {
			err = tryHelp()
		}
		if err != nil {
			st.Errors = append(st.Errors, err.Error())
			st.Status = 2
			if ee := (*ExitError)(nil); errors.As(err, &ee) {
				st.Status = ee.Status
			}
			return cfg, st
		}
		st.Status = 0
		if !c.Modifies() {
			if query == nil {
				continue
			}
			out, err := query(c, cfg)
			st.Output += out
			switch {
			case c.Op == OpHelp || c.Op == OpVersion:
				return cfg, st
			case err == nil:
			case c.Op == OpZero || c.Op == OpStartDaemon || c.Op == OpStopDaemon: // a kernel error: reported, the next line runs
				st.Errors = append(st.Errors, err.Error())
				st.Status = 255
			default: // ipvsadm's listing exits on its error
				st.Errors = append(st.Errors, err.Error())
				st.Status = 1
				if ee := (*ExitError)(nil); errors.As(err, &ee) {
					st.Status = ee.Status
				}
				return cfg, st
			}
			continue
		}
		next, err := Apply(cfg, c, d)
		if err == nil {
			err = install(next)
		}
		if err != nil {
			st.Errors = append(st.Errors, err.Error())
			st.Status = 255
			continue
		}
		cfg = next
	}
	return cfg, st
}

func clone(cfg nat.Config) nat.Config {
	cfg.Services = slices.Clone(cfg.Services)
	for i := range cfg.Services {
		cfg.Services[i].Backends = slices.Clone(cfg.Services[i].Backends)
	}
	cfg.Masquerade = slices.Clone(cfg.Masquerade)
	cfg.FullNATPool = slices.Clone(cfg.FullNATPool)
	cfg.Marks = slices.Clone(cfg.Marks)
	return cfg
}
