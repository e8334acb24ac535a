package netlab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// addLink creates a veth pair inside host A's namespace with its peer
// created directly in host B's namespace: no link ever exists in the
// caller's namespace.
//
// The A end gets ifindex firstIfIndex+n: the kernel treats a carrier change
// of a veth whose ifindex equals its peer's (likely in fresh namespaces) as
// not urgent and activates its queue up to a second later, dropping the
// first packets; distinct indexes make links usable at once.
func (l *Lab) addLink(n int, ls LinkSpec) error {
	a, b := l.Host(ls.A.Host), l.Host(ls.B.Host)
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: l.IfName(ls.A.Name), Index: firstIfIndex + n},
		PeerName:      l.IfName(ls.B.Name),
		PeerNamespace: netlink.NsFd(int(b.ns)),
	}
	if ls.Queues > 1 {
		veth.NumTxQueues, veth.NumRxQueues = ls.Queues, ls.Queues
		veth.PeerNumTxQueues, veth.PeerNumRxQueues = uint32(ls.Queues), uint32(ls.Queues)
	}
	if err := a.nl.LinkAdd(veth); err != nil {
		return err
	}
	for _, e := range []Endpoint{ls.A, ls.B} {
		h := l.Host(e.Host)
		if e.Master != "" {
			link, err := h.nl.LinkByName(l.IfName(e.Name))
			if err != nil {
				return err
			}
			br, err := h.nl.LinkByName(l.IfName(e.Master))
			if err != nil {
				return err
			}
			if err := h.nl.LinkSetMaster(link, br); err != nil {
				return fmt.Errorf("%s master %s: %w", e.Name, e.Master, err)
			}
		}
		if err := h.addAddrs(e.Name, e.Addrs); err != nil {
			return err
		}
		if l.Topo.NoChecksumOffload {
			if err := h.Do(func() error { return txChecksumOff(l.IfName(e.Name)) }); err != nil {
				return fmt.Errorf("%s: transmit checksum offload off: %w", e.Name, err)
			}
		}
	}
	return nil
}

// txChecksumOff turns transmit checksum offload off on interface name in
// the calling thread's namespace: ethtool's legacy ETHTOOL_STXCSUM
// (ethtool -K NAME tx off), which needs no ethtool binary.
func txChecksumOff(name string) error {
	const (
		siocEthtool    = 0x8946
		ethtoolSTxCsum = 0x17
	)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	value := struct{ cmd, data uint32 }{cmd: ethtoolSTxCsum}
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data uintptr
		_    [16]byte // the rest of struct ifreq's union
	}
	copy(ifr.name[:], name)
	ifr.data = uintptr(unsafe.Pointer(&value))
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), siocEthtool, uintptr(unsafe.Pointer(&ifr))); e != 0 {
		return e
	}
	runtime.KeepAlive(&value)
	return nil
}

// firstIfIndex is the ifindex of the first link's A end; peers get small
// indexes from their own namespace.
const firstIfIndex = 1000

// waitUp waits until every veth of the host, and every bridge with a port,
// is operationally up, or ctx ends.
func (h *Host) waitUp(ctx context.Context) error {
	for {
		links, err := h.nl.LinkList()
		if err != nil {
			return err
		}
		hasPort := map[int]bool{}
		for _, k := range links {
			hasPort[k.Attrs().MasterIndex] = true
		}
		var down []string
		for _, k := range links {
			at := k.Attrs()
			wait := k.Type() == "veth" || (k.Type() == "bridge" && hasPort[at.Index])
			if wait && at.OperState != netlink.OperUp {
				down = append(down, at.Name)
			}
		}
		if len(down) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("links not up: %v: %w", down, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// addAddrs adds addresses to an interface of the host; IPv6 ones without
// duplicate address detection, so they are usable at once.
func (h *Host) addAddrs(suffix string, ps []netip.Prefix) error {
	if len(ps) == 0 {
		return nil
	}
	link, err := h.nl.LinkByName(h.IfName(suffix))
	if err != nil {
		return err
	}
	for _, p := range ps {
		a := &netlink.Addr{IPNet: ipNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.nl.AddrAdd(link, a); err != nil {
			return fmt.Errorf("address %v on %s: %w", p, suffix, err)
		}
	}
	return nil
}

// addLoopback adds addresses to the host's lo.
func (h *Host) addLoopback(ps []netip.Prefix) error {
	if len(ps) == 0 {
		return nil
	}
	lo, err := h.nl.LinkByName("lo")
	if err != nil {
		return err
	}
	for _, p := range ps {
		if err := h.nl.AddrAdd(lo, &netlink.Addr{IPNet: ipNet(p), Flags: unix.IFA_F_NODAD}); err != nil {
			return fmt.Errorf("address %v on lo: %w", p, err)
		}
	}
	return nil
}

// setAllUp sets every link of the host up.
func (h *Host) setAllUp() error {
	links, err := h.nl.LinkList()
	if err != nil {
		return err
	}
	for _, k := range links {
		if err := h.nl.LinkSetUp(k); err != nil {
			return fmt.Errorf("%s up: %w", k.Attrs().Name, err)
		}
	}
	return nil
}

// addRoute adds a declared route (multipath when it has several next hops).
func (h *Host) addRoute(r Route) error {
	nr := &netlink.Route{Dst: ipNet(r.Dst.Masked()), Table: r.Table, Family: family(r.Dst.Addr())}
	if r.Dev != "" {
		link, err := h.nl.LinkByName(h.IfName(r.Dev))
		if err != nil {
			return err
		}
		nr.LinkIndex = link.Attrs().Index
		if len(r.Via) == 0 {
			nr.Scope = netlink.SCOPE_LINK
		}
	}
	switch len(r.Via) {
	case 0:
	case 1:
		nr.Gw = net.IP(r.Via[0].AsSlice())
	default:
		for _, v := range r.Via {
			nr.MultiPath = append(nr.MultiPath, &netlink.NexthopInfo{Gw: net.IP(v.AsSlice())})
		}
	}
	return h.nl.RouteAdd(nr)
}

// addRule adds a declared policy rule.
func (h *Host) addRule(r Rule) error {
	nr := netlink.NewRule()
	nr.Priority = r.Priority
	nr.Table = r.Table
	nr.Family = netlink.FAMILY_V4
	if r.IPv6 {
		nr.Family = netlink.FAMILY_V6
	}
	if r.From.IsValid() {
		nr.Src = ipNet(r.From.Masked())
		nr.Family = family(r.From.Addr())
	}
	if r.IIF != "" {
		nr.IifName = h.IfName(r.IIF)
	}
	return h.nl.RuleAdd(nr)
}

// ipNet converts a prefix, keeping the host bits (an interface address).
func ipNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), bits)}
}

// family returns the netlink address family of a.
func family(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// afterSeconds is time.After in whole seconds.
func afterSeconds(n int) <-chan time.Time { return time.After(time.Duration(n) * time.Second) }
