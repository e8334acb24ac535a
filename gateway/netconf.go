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
}

// netState is what setupNetwork changed.
type netState struct {
	h    *netlink.Handle
	undo []func() error
}

// setupNetwork wires the plan in the current network namespace. On error
// it has already undone what it did.
func setupNetwork(h *netlink.Handle, p NetPlan) (_ *netState, err error) {
	st := &netState{h: h}
	defer func() {
		if err != nil {
			err = errors.Join(err, st.teardown())
		}
	}()
	tun, err := h.LinkByName(p.Device)
	if err != nil {
		return st, fmt.Errorf("device %s: %w", p.Device, err)
	}
	if err := h.LinkSetUp(tun); err != nil {
		return st, fmt.Errorf("device %s: up: %w", p.Device, err)
	}
	for _, s := range []struct{ path, val string }{
		{"net/ipv4/ip_forward", "1"},
		{"net/ipv6/conf/all/forwarding", "1"},
		{"net/ipv4/conf/all/rp_filter", "0"},
		{"net/ipv4/conf/" + p.Device + "/rp_filter", "0"},
	} {
		if err := st.sysctl(s.path, s.val); err != nil {
			return st, err
		}
	}
	local, err := localAddrs(h)
	if err != nil {
		return st, err
	}
	for _, a := range p.Addrs {
		if dev, ok := local[a]; ok {
			return st, fmt.Errorf("%v is a local address of %s: vsgate routes it into %s and answers ARP/ND for it itself; remove it from %s (ip addr del %v dev %s)", a, dev, p.Device, dev, a, dev)
		}
		// Answer neighbour discovery where the address is on-link.
		if dev, ok := onLinkDevice(h, a); ok && dev.Attrs().Name != p.Device {
			if a.Is6() {
				if err := st.sysctl("net/ipv6/conf/"+dev.Attrs().Name+"/proxy_ndp", "1"); err != nil {
					return st, err
				}
			}
			n := &netlink.Neigh{LinkIndex: dev.Attrs().Index, IP: net.IP(a.AsSlice()), Flags: netlink.NTF_PROXY, Family: family(a)}
			if err := h.NeighAdd(n); err != nil && !errors.Is(err, unix.EEXIST) {
				return st, fmt.Errorf("proxy neighbour %v on %s: %w", a, dev.Attrs().Name, err)
			}
			st.undo = append(st.undo, func() error { return h.NeighDel(n) })
		}
		r := &netlink.Route{Dst: hostNet(a), LinkIndex: tun.Attrs().Index}
		if err := h.RouteAdd(r); err != nil {
			return st, fmt.Errorf("route %v dev %s: %w", a, p.Device, err)
		}
		st.undo = append(st.undo, func() error { return h.RouteDel(r) })
	}
	if len(p.Steer) == 0 {
		return st, nil
	}
	// The steering table: everything into the device.
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		dst := &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}
		if fam == unix.AF_INET6 {
			dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		}
		r := &netlink.Route{Dst: dst, LinkIndex: tun.Attrs().Index, Table: p.Table, Family: fam}
		if err := h.RouteAdd(r); err != nil {
			return st, fmt.Errorf("default route dev %s table %d: %w", p.Device, p.Table, err)
		}
		st.undo = append(st.undo, func() error { return h.RouteDel(r) })
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
				return st, fmt.Errorf("%v: no route to it, so no interface to steer from: %v", s, err)
			}
			if dev, err = h.LinkByIndex(rs[0].LinkIndex); err != nil {
				return st, err
			}
		}
		k := ifam{dev.Attrs().Name, family(s.Addr())}
		if done[k] || k.dev == p.Device {
			continue
		}
		done[k] = true
		rule := netlink.NewRule()
		rule.IifName, rule.Table, rule.Priority, rule.Family = k.dev, p.Table, p.RulePriority, k.fam
		if err := h.RuleAdd(rule); err != nil {
			return st, fmt.Errorf("rule iif %s lookup %d: %w", k.dev, p.Table, err)
		}
		st.undo = append(st.undo, func() error { return h.RuleDel(rule) })
		if err := st.sysctl("net/ipv4/conf/"+k.dev+"/rp_filter", "0"); err != nil {
			return st, err
		}
	}
	return st, nil
}

// teardown undoes everything, newest first, and reports what failed.
func (st *netState) teardown() error {
	var errs []error
	for i := len(st.undo) - 1; i >= 0; i-- {
		if err := st.undo[i](); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, err)
		}
	}
	st.undo = nil
	return errors.Join(errs...)
}

// sysctl sets a per-namespace kernel setting and remembers the old value.
func (st *netState) sysctl(path, val string) error {
	f := filepath.Join("/proc/sys", path)
	old, err := os.ReadFile(f)
	if err != nil {
		return fmt.Errorf("sysctl %s: %w", strings.ReplaceAll(path, "/", "."), err)
	}
	if strings.TrimSpace(string(old)) == val {
		return nil
	}
	if err := os.WriteFile(f, []byte(val), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(path, "/", "."), val, err)
	}
	st.undo = append(st.undo, func() error { return os.WriteFile(f, old, 0o644) })
	return nil
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
