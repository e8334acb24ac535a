package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vsgate/vsgate/nat"
)

// Network wiring in the gateway's namespace (DESIGN.md, "How the TUN
// gateway is wired"): the addresses vsgate answers for are routed into its
// TUN device; packets arriving from the real servers' side are steered
// into it by a policy rule; forwarding is on and reverse-path filtering off
// where it would drop translated packets. Everything vsgate adds is
// recorded and removed again by undo, in reverse order; sysctls get their
// old values back.

// NetPlan is what needs wiring.
type NetPlan struct {
	Device string // the TUN interface
	// Addrs are routed into the device: VIPs, masquerade and FULLNAT
	// addresses. Where one is on-link on another interface, vsgate
	// answers ARP/ND for it there (a proxy neighbour entry).
	Addrs []netip.Addr
	// Steer are addresses or subnets whose traffic arrives on some
	// interface and must go through vsgate (real servers' replies, the
	// masqueraded subnet): the interface is looked up by route, and a
	// rule sends what arrives on it to Table.
	Steer []netip.Prefix
	// Table and RulePriority for the steering rule.
	Table, RulePriority int
	// L7 are the L7 services the kernel terminates: a rule (priority
	// RulePriority-1) sends TCP to each VIP and port to table Table+1,
	// where the VIP is a local address, so that the kernel delivers it
	// to vsgate's listeners; the VIP's other ports still go into the
	// device.
	L7 []netip.AddrPort
}

// l7Table and l7RulePriority are where plan p puts its L7 rules.
func (p NetPlan) l7Table() int        { return p.Table + 1 }
func (p NetPlan) l7RulePriority() int { return p.RulePriority - 1 }

// netState is what the wiring changed, item by item, in the order done.
type netState struct {
	h     *netlink.Handle
	items []netItem
	added []netItem // what the rewire that made this state added (undoNew)
}

// netItem is one change to the namespace, named by what it wires (unique
// in a plan: "route 198.18.0.10", "rule iif eth1 family 2", ...), with
// how to take it back.
type netItem struct {
	key  string
	undo func() error
}

// netStep is one change a plan needs: do makes it and returns its undo.
type netStep struct {
	key string
	do  func() (undo func() error, err error)
}

// removeLeftovers removes what a vsgate that was killed (kill -9, a
// crash) left of its wiring, so that the next one can start: its policy
// rules (plan p's priority and table: vsgate's by construction) and its
// nftables table. Its routes went with its TUN device. It returns what it
// removed. Sysctls stay as the dead one set them, so the new one takes
// their values as the ones to restore.
func removeLeftovers(h *netlink.Handle, p NetPlan) ([]string, error) {
	var removed []string
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		rules, err := h.RuleList(fam)
		if err != nil {
			return removed, fmt.Errorf("listing rules: %w", err)
		}
		for _, r := range rules {
			if (r.Priority != p.RulePriority || r.Table != p.Table) && (r.Priority != p.l7RulePriority() || r.Table != p.l7Table()) {
				continue
			}
			if err := h.RuleDel(&r); err != nil {
				return removed, fmt.Errorf("removing a leftover rule %d iif %s lookup %d: %w", r.Priority, r.IifName, r.Table, err)
			}
			if r.Dport != nil {
				removed = append(removed, fmt.Sprintf("rule %d to %v tcp dport %d lookup %d", r.Priority, r.Dst, r.Dport.Start, r.Table))
			} else {
				removed = append(removed, fmt.Sprintf("rule %d iif %s family %d lookup %d", r.Priority, r.IifName, fam, r.Table))
			}
		}
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		routes, err := h.RouteListFiltered(fam, &netlink.Route{Table: p.l7Table()}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return removed, fmt.Errorf("listing table %d: %w", p.l7Table(), err)
		}
		for _, r := range routes {
			if r.Type != unix.RTN_LOCAL {
				continue
			}
			if err := h.RouteDel(&r); err != nil {
				return removed, fmt.Errorf("removing a leftover route %v table %d: %w", r.Dst, p.l7Table(), err)
			}
			removed = append(removed, fmt.Sprintf("local %v table %d", r.Dst, p.l7Table()))
		}
	}
	had, err := removeGuard()
	if err != nil {
		return removed, err
	}
	if had {
		removed = append(removed, "nftables table inet "+guardTable)
	}
	return removed, nil
}

// setupNetwork wires the plan in the current network namespace. On error
// it has already undone what it did.
func setupNetwork(h *netlink.Handle, p NetPlan) (*netState, error) {
	st, _, err := rewire(h, &netState{h: h}, p)
	return st, err
}

// rewire moves the namespace from the wiring old has made to plan p,
// make-before-break: what both need stays as it is, never removed for a
// moment; what only p needs is added first. It returns the new state and
// done, which removes what only old had: call it once the change is
// committed, or drop it (and the new state) with undoNew to go back. On
// error nothing has changed and old is as it was.
func rewire(h *netlink.Handle, old *netState, p NetPlan) (st *netState, done func() error, err error) {
	steps, err := planSteps(h, p)
	if err != nil {
		return nil, nil, err
	}
	return applySteps(h, old, steps)
}

// applySteps is rewire with the plan's steps listed: a step that fails
// takes back what the ones before it added, and old stays as it was.
func applySteps(h *netlink.Handle, old *netState, steps []netStep) (st *netState, done func() error, err error) {
	have := map[string]func() error{}
	for _, it := range old.items {
		have[it.key] = it.undo
	}
	st = &netState{h: h}
	var added []netItem
	for _, s := range steps {
		if undo, ok := have[s.key]; ok {
			st.items = append(st.items, netItem{s.key, undo})
			delete(have, s.key)
			continue
		}
		undo, err := s.do()
		if err != nil {
			back := (&netState{h: h, items: added}).teardown()
			return nil, nil, errors.Join(err, back)
		}
		if undo != nil {
			added = append(added, netItem{s.key, undo})
			st.items = append(st.items, netItem{s.key, undo})
		}
	}
	var gone []netItem // what only old had, in old's order
	for _, it := range old.items {
		if _, ok := have[it.key]; ok {
			gone = append(gone, it)
		}
	}
	st.added = added
	return st, (&netState{h: h, items: gone}).teardown, nil
}

// undoNew takes back what the rewire that made st added, leaving what it
// kept from the state before: for a change refused after its wiring was
// made.
func (st *netState) undoNew() error {
	return (&netState{h: st.h, items: st.added}).teardown()
}

// planSteps checks plan p against the namespace and lists the steps that
// wire it, in order. It changes nothing.
// tunQueueLen is the TUN's queue of packets for vsgate to read, per
// queue: the kernel's default of 500 is 8 ms of a 64-packet-a-millisecond
// burst, which a worker that two busy cores deschedule for longer loses
// (counted as the device's tx_dropped) — a real client's SYN with the
// flood's. 4096 is 64 ms of it, 32 KB of pointers a queue when empty.
const tunQueueLen = 4096

func planSteps(h *netlink.Handle, p NetPlan) ([]netStep, error) {
	tun, err := h.LinkByName(p.Device)
	if err != nil {
		return nil, fmt.Errorf("device %s: %w", p.Device, err)
	}
	var steps []netStep
	add := func(key string, do func() (func() error, error)) { steps = append(steps, netStep{key, do}) }
	add("up "+p.Device, func() (func() error, error) {
		if err := h.LinkSetUp(tun); err != nil {
			return nil, fmt.Errorf("device %s: up: %w", p.Device, err)
		}
		return nil, nil
	})
	add(fmt.Sprintf("txqueuelen %s %d", p.Device, tunQueueLen), func() (func() error, error) {
		old := tun.Attrs().TxQLen
		if old >= tunQueueLen {
			return nil, nil
		}
		if err := h.LinkSetTxQLen(tun, tunQueueLen); err != nil {
			return nil, fmt.Errorf("device %s: txqueuelen %d: %w", p.Device, tunQueueLen, err)
		}
		return func() error {
			// A TUN vsgate made is gone once its queues are closed, and
			// its queue length with it.
			if err := h.LinkSetTxQLen(tun, old); err != nil && !errors.Is(err, unix.ENODEV) {
				return err
			}
			return nil
		}, nil
	})
	sysctl := func(path, val string) {
		add("sysctl "+path+"="+val, func() (func() error, error) { return setSysctl(path, val) })
	}
	sysctl("net/ipv4/ip_forward", "1")
	sysctl("net/ipv6/conf/all/forwarding", "1")
	sysctl("net/ipv4/conf/all/rp_filter", "0")
	sysctl("net/ipv4/conf/"+p.Device+"/rp_filter", "0")
	local, err := localAddrs(h)
	if err != nil {
		return nil, err
	}
	for _, a := range p.Addrs {
		if err := nat.CheckServiceAddr(a); err != nil {
			return nil, err
		}
		if dev, ok := local[a]; ok {
			return nil, fmt.Errorf("%v is a local address of %s: vsgate routes it into %s and answers ARP/ND for it itself; remove it from %s (ip addr del %v dev %s)", a, dev, p.Device, dev, a, dev)
		}
		// Answer neighbour discovery where the address is on-link.
		if dev, ok := onLinkDevice(h, a); ok && dev.Attrs().Name != p.Device {
			if a.Is6() {
				sysctl("net/ipv6/conf/"+dev.Attrs().Name+"/proxy_ndp", "1")
			}
			n := &netlink.Neigh{LinkIndex: dev.Attrs().Index, IP: net.IP(a.AsSlice()), Flags: netlink.NTF_PROXY, Family: family(a)}
			add(fmt.Sprintf("proxy %v dev %s", a, dev.Attrs().Name), func() (func() error, error) {
				if err := h.NeighAdd(n); err != nil && !errors.Is(err, unix.EEXIST) {
					return nil, fmt.Errorf("proxy neighbour %v on %s: %w", a, dev.Attrs().Name, err)
				}
				return func() error { return h.NeighDel(n) }, nil
			})
		}
		r := &netlink.Route{Dst: hostNet(a), LinkIndex: tun.Attrs().Index}
		add(fmt.Sprintf("route %v dev %s", a, p.Device), func() (func() error, error) {
			if err := h.RouteAdd(r); err != nil {
				return nil, fmt.Errorf("route %v dev %s: %w", a, p.Device, err)
			}
			return func() error { return h.RouteDel(r) }, nil
		})
	}
	add("nftables guard dev "+p.Device, func() (func() error, error) { return addGuard(p.Device) })
	l7, err := l7Steps(h, p)
	if err != nil {
		return nil, err
	}
	steps = append(steps, l7...)
	if len(p.Steer) == 0 {
		return steps, nil
	}
	// The steering table: everything into the device.
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		dst := &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}
		if fam == unix.AF_INET6 {
			dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		}
		r := &netlink.Route{Dst: dst, LinkIndex: tun.Attrs().Index, Table: p.Table, Family: fam}
		add(fmt.Sprintf("default dev %s table %d family %d", p.Device, p.Table, fam), func() (func() error, error) {
			if err := h.RouteAdd(r); err != nil {
				return nil, fmt.Errorf("default route dev %s table %d: %w", p.Device, p.Table, err)
			}
			return func() error { return h.RouteDel(r) }, nil
		})
	}
	// One rule per (interface, family) the steered traffic arrives on.
	type ifam struct {
		dev string
		fam int
	}
	done := map[ifam]bool{}
	for _, s := range p.Steer {
		dev, ok := onLinkDevice(h, s.Addr())
		if !ok {
			rs, err := h.RouteGet(net.IP(s.Addr().AsSlice()))
			if err != nil || len(rs) == 0 {
				return nil, fmt.Errorf("%v: no route to it, so no interface to steer from: %v", s, err)
			}
			if dev, err = h.LinkByIndex(rs[0].LinkIndex); err != nil {
				return nil, err
			}
		}
		k := ifam{dev.Attrs().Name, family(s.Addr())}
		if done[k] || k.dev == p.Device {
			continue
		}
		done[k] = true
		rule := netlink.NewRule()
		rule.IifName, rule.Table, rule.Priority, rule.Family = k.dev, p.Table, p.RulePriority, k.fam
		add(fmt.Sprintf("rule %d iif %s family %d lookup %d", p.RulePriority, k.dev, k.fam, p.Table), func() (func() error, error) {
			if err := h.RuleAdd(rule); err != nil {
				return nil, fmt.Errorf("rule iif %s lookup %d: %w", k.dev, p.Table, err)
			}
			return func() error { return h.RuleDel(rule) }, nil
		})
		sysctl("net/ipv4/conf/"+k.dev+"/rp_filter", "0")
	}
	return steps, nil
}

// l7Steps wires plan p's L7 services to the kernel: per VIP a local
// route in the L7 table, per VIP and port a rule to it.
func l7Steps(h *netlink.Handle, p NetPlan) ([]netStep, error) {
	if len(p.L7) == 0 {
		return nil, nil
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("loopback: %w", err)
	}
	var steps []netStep
	add := func(key string, do func() (func() error, error)) { steps = append(steps, netStep{key, do}) }
	local := map[netip.Addr]bool{}
	for _, ap := range p.L7 {
		a := ap.Addr()
		if !local[a] {
			local[a] = true
			r := &netlink.Route{Dst: hostNet(a), LinkIndex: lo.Attrs().Index, Type: unix.RTN_LOCAL, Scope: netlink.SCOPE_HOST, Table: p.l7Table(), Family: family(a)}
			add(fmt.Sprintf("local %v dev lo table %d", a, p.l7Table()), func() (func() error, error) {
				if err := h.RouteAdd(r); err != nil {
					return nil, fmt.Errorf("route local %v dev lo table %d: %w", a, p.l7Table(), err)
				}
				return func() error { return h.RouteDel(r) }, nil
			})
		}
		rule := netlink.NewRule()
		rule.Dst, rule.IPProto, rule.Dport = hostNet(a), unix.IPPROTO_TCP, netlink.NewRulePortRange(ap.Port(), ap.Port())
		rule.Table, rule.Priority, rule.Family = p.l7Table(), p.l7RulePriority(), family(a)
		add(fmt.Sprintf("rule %d to %v tcp dport %d lookup %d", p.l7RulePriority(), a, ap.Port(), p.l7Table()), func() (func() error, error) {
			if err := h.RuleAdd(rule); err != nil {
				return nil, fmt.Errorf("rule to %v tcp dport %d lookup %d: %w", a, ap.Port(), p.l7Table(), err)
			}
			return func() error { return h.RuleDel(rule) }, nil
		})
	}
	return steps, nil
}

// apply does steps in order, recording each, outside a plan (AF_PACKET
// mode's L7 wiring): on error what the steps did is taken back.
func (st *netState) apply(steps []netStep) error {
	n := len(st.items)
	for _, s := range steps {
		undo, err := s.do()
		if err != nil {
			for i := len(st.items) - 1; i >= n; i-- {
				_ = st.items[i].undo()
			}
			st.items = st.items[:n]
			return fmt.Errorf("%s: %w", s.key, err)
		}
		if undo != nil {
			st.items = append(st.items, netItem{s.key, undo})
		}
	}
	return nil
}

// teardown undoes everything, newest first, and reports what failed.
func (st *netState) teardown() error {
	var errs []error
	for i := len(st.items) - 1; i >= 0; i-- {
		if err := st.items[i].undo(); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, err)
		}
	}
	st.items, st.added = nil, nil
	return errors.Join(errs...)
}

// setSysctl sets a per-namespace kernel setting and returns how to put
// the old value back (nil if it already had the value).
func setSysctl(path, val string) (func() error, error) {
	f := filepath.Join("/proc/sys", path)
	old, err := os.ReadFile(f)
	if err != nil {
		return nil, fmt.Errorf("sysctl %s: %w", strings.ReplaceAll(path, "/", "."), err)
	}
	if strings.TrimSpace(string(old)) == val {
		return nil, nil
	}
	if err := os.WriteFile(f, []byte(val), 0o644); err != nil {
		return nil, fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(path, "/", "."), val, err)
	}
	return func() error { return os.WriteFile(f, old, 0o644) }, nil
}

// sysctl sets a kernel setting outside a plan (AF_PACKET mode's
// forwarding off) and records how to put it back.
func (st *netState) sysctl(path, val string) error {
	undo, err := setSysctl(path, val)
	if err == nil && undo != nil {
		st.items = append(st.items, netItem{"sysctl " + path + "=" + val, undo})
	}
	return err
}

// localAddrs maps every address assigned in the namespace to its device.
func localAddrs(h *netlink.Handle) (map[netip.Addr]string, error) {
	links, err := h.LinkList()
	if err != nil {
		return nil, err
	}
	m := map[netip.Addr]string{}
	for _, l := range links {
		as, err := h.AddrList(l, unix.AF_UNSPEC)
		if err != nil {
			return nil, err
		}
		for _, a := range as {
			if ip, ok := netip.AddrFromSlice(a.IP); ok {
				m[ip.Unmap()] = l.Attrs().Name
			}
		}
	}
	return m, nil
}

// onLinkDevice finds the interface whose connected subnet holds a.
func onLinkDevice(h *netlink.Handle, a netip.Addr) (netlink.Link, bool) {
	links, err := h.LinkList()
	if err != nil {
		return nil, false
	}
	for _, l := range links {
		as, err := h.AddrList(l, family(a))
		if err != nil {
			continue
		}
		if slices.ContainsFunc(as, func(x netlink.Addr) bool {
			p, ok := netip.AddrFromSlice(x.IP)
			ones, _ := x.Mask.Size()
			return ok && ones < a.BitLen() && netip.PrefixFrom(p.Unmap(), ones).Masked().Contains(a)
		}) {
			return l, true
		}
	}
	return nil, false
}

func family(a netip.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func hostNet(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}
}
