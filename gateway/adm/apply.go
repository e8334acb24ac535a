package adm

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

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
	ErrNoScheduler   = errors.New("Scheduler not found")
)

// Defaults are what Apply uses where a command leaves something out.
type Defaults struct {
	// MasqTo is the masquerade address for an ipchains rule without --to.
	MasqTo netip.Addr
}

// PortfwPref is ipmasqadm's default preference for portfw -a without -p.
const PortfwPref = 10

// Modifies reports whether the command changes the configuration (as
// opposed to listing it).
func (c *Command) Modifies() bool {
	switch c.Op {
	case OpList, OpSave, OpPortfwList, OpMasqList:
		return false
	case OpZero:
		return false // counters, not configuration
	}
	return true
}

// Apply returns cfg changed by the command. cfg is not modified. Listing
// commands and -Z return cfg unchanged.
func Apply(cfg nat.Config, c *Command, d Defaults) (nat.Config, error) {
	cfg = clone(cfg)
	find := func() int {
		return slices.IndexFunc(cfg.Services, func(s nat.Service) bool {
			return s.Proto == c.Proto && netip.AddrPortFrom(s.VIP, s.Port) == c.VIP
		})
	}
	real := c.Real
	if real.Port() == 0 {
		real = netip.AddrPortFrom(real.Addr(), c.VIP.Port())
	}
	findDest := func(s *nat.Service) int {
		return slices.IndexFunc(s.Backends, func(b nat.Backend) bool {
			return netip.AddrPortFrom(b.Addr, b.Port) == real
		})
	}
	switch c.Op {
	case OpAddService:
		if find() >= 0 {
			return cfg, ErrServiceExists
		}
		s := nat.Service{Proto: c.Proto, VIP: c.VIP.Addr(), Port: c.VIP.Port(), Scheduler: "wlc"} // ipvsadm's default
		if err := setServiceOptions(&s, c); err != nil {
			return cfg, err
		}
		cfg.Services = append(cfg.Services, s)
	case OpEditService:
		i := find()
		if i < 0 {
			return cfg, ErrNoService
		}
		if err := setServiceOptions(&cfg.Services[i], c); err != nil {
			return cfg, err
		}
	case OpDelService:
		i := find()
		if i < 0 {
			return cfg, ErrNoService
		}
		cfg.Services = slices.Delete(cfg.Services, i, i+1)
	case OpClear:
		cfg.Services = nil
	case OpAddServer, OpEditServer:
		i := find()
		if i < 0 {
			return cfg, ErrNotDefined
		}
		s := &cfg.Services[i]
		j := findDest(s)
		if c.Op == OpAddServer && j >= 0 {
			return cfg, ErrDestExists
		}
		if c.Op == OpEditServer && j < 0 {
			return cfg, ErrNoDest
		}
		if err := setForward(s, c.Forward, j < 0 || len(s.Backends) > 1); err != nil {
			return cfg, err
		}
		if j < 0 {
			w := 1
			if c.Weight >= 0 {
				w = c.Weight
			}
			s.Backends = append(s.Backends, nat.Backend{Addr: real.Addr(), Port: real.Port(), Weight: uint32(w)})
		} else if c.Weight >= 0 {
			s.Backends[j].Weight = uint32(c.Weight)
		}
	case OpDelServer:
		i := find()
		if i < 0 {
			return cfg, ErrNotDefined
		}
		s := &cfg.Services[i]
		j := findDest(s)
		if j < 0 {
			return cfg, ErrNoDest
		}
		s.Backends = slices.Delete(s.Backends, j, j+1)
	case OpSetTimeouts:
		t := &cfg.Timeouts
		if c.Timeouts[0] > 0 {
			t.TCPEstablished = c.Timeouts[0]
		}
		if c.Timeouts[1] > 0 {
			t.TCPFinWait = c.Timeouts[1]
		}
		if c.Timeouts[2] > 0 {
			t.UDP = c.Timeouts[2]
		}
	case OpPortfwAdd:
		pref := c.Pref
		if pref == 0 {
			pref = PortfwPref
		}
		i := find()
		if i < 0 {
			// ipmasqadm spreads connections over the -R entries of one
			// -L address in proportion to their preference: weighted
			// round robin.
			cfg.Services = append(cfg.Services, nat.Service{Proto: c.Proto, VIP: c.VIP.Addr(), Port: c.VIP.Port(), Scheduler: "wrr"})
			i = len(cfg.Services) - 1
		}
		s := &cfg.Services[i]
		if j := findDest(s); j >= 0 {
			s.Backends[j].Weight = uint32(pref)
		} else {
			s.Backends = append(s.Backends, nat.Backend{Addr: real.Addr(), Port: real.Port(), Weight: uint32(pref)})
		}
	case OpPortfwDel:
		i := find()
		if i < 0 {
			return cfg, ErrNoService
		}
		if !c.Real.IsValid() {
			cfg.Services = slices.Delete(cfg.Services, i, i+1)
			break
		}
		s := &cfg.Services[i]
		j := findDest(s)
		if j < 0 {
			return cfg, ErrNoDest
		}
		s.Backends = slices.Delete(s.Backends, j, j+1)
	case OpPortfwFlush:
		cfg.Services = nil
	case OpMasqAdd:
		to := c.MasqTo
		if !to.IsValid() {
			to = d.MasqTo
		}
		if !to.IsValid() {
			return cfg, fmt.Errorf("%w: ipchains -j MASQ: no masquerade address: give --to ADDR (vsgate has no outgoing interface address to borrow)", ErrUsage)
		}
		if to.Is4() != c.MasqFrom.Addr().Is4() {
			return cfg, fmt.Errorf("%w: ipchains: --to %v and -s %v are of different families", ErrUsage, to, c.MasqFrom)
		}
		if slices.ContainsFunc(cfg.Masquerade, func(m nat.Masquerade) bool { return m.From == c.MasqFrom }) {
			return cfg, errors.New("ipchains: a masquerade rule for this subnet exists already")
		}
		cfg.Masquerade = append(cfg.Masquerade, nat.Masquerade{From: c.MasqFrom, To: to})
	case OpMasqDel:
		i := slices.IndexFunc(cfg.Masquerade, func(m nat.Masquerade) bool { return m.From == c.MasqFrom })
		if i < 0 {
			return cfg, errors.New("ipchains: Bad rule (does a matching rule exist in that chain?)")
		}
		cfg.Masquerade = slices.Delete(cfg.Masquerade, i, i+1)
	}
	return cfg, nil
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
	for _, f := range c.SchedFlags {
		switch f {
		case "sh-port", "flag-2":
			s.Sched.Port = true
		case "sh-fallback", "flag-1":
			s.Sched.Fallback = true
		default:
			return fmt.Errorf("%w: -b %s: known flags are sh-fallback, sh-port", ErrUsage, f)
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
	}
	if m != s.Mode && others && len(s.Backends) > 0 {
		return fmt.Errorf("%w: all real servers of a service use one forwarding method (this one uses %s)", ErrUsage, fwdName(s.Mode))
	}
	s.Mode = m
	return nil
}

// Restore applies ipvsadm -S output (one command per line, as ipvsadm -R
// reads it) to cfg. On error nothing is applied; the error names the line.
func Restore(cfg nat.Config, script string, d Defaults) (nat.Config, error) {
	sc := bufio.NewScanner(strings.NewReader(script))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		c, err := Parse(strings.Fields(line))
		if err == nil && !c.Modifies() {
			err = fmt.Errorf("%w: only commands that change the table belong in a restore", ErrUsage)
		}
		if err == nil {
			cfg, err = Apply(cfg, c, d)
		}
		if err != nil {
			return cfg, fmt.Errorf("line %d: %s: %w", n, line, err)
		}
	}
	return cfg, sc.Err()
}

func clone(cfg nat.Config) nat.Config {
	cfg.Services = slices.Clone(cfg.Services)
	for i := range cfg.Services {
		cfg.Services[i].Backends = slices.Clone(cfg.Services[i].Backends)
	}
	cfg.Masquerade = slices.Clone(cfg.Masquerade)
	cfg.FullNATPool = slices.Clone(cfg.FullNATPool)
	return cfg
}
