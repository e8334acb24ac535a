package netlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetnsDir is where named network namespaces are bind-mounted, as
// `ip netns` expects them.
const NetnsDir = "/var/run/netns"

// EtcNetnsDir holds per-namespace files that `ip netns exec NAME` mounts
// over /etc (ip-netns(8)): netlab writes a host's hosts file there.
const EtcNetnsDir = "/etc/netns"

// RunDir holds one lock file per live run (prefix.lock), held with flock
// by the process that built the lab: Clean leaves the namespaces of a live
// run alone, so it is safe while other tests run. The lock goes away with
// the process, however it ends.
const RunDir = "/run/vsgate-lab"

// ErrNoNamespaces is returned (wrapped) by Check when this process cannot
// create network namespaces (not root, or no CAP_SYS_ADMIN / netlink).
var ErrNoNamespaces = errors.New("netlab: network namespaces unavailable")

// NewPrefix returns a fresh run prefix: NamePrefix and five random hex
// digits, not used by any namespace that exists now.
func NewPrefix() (string, error) {
	for range 100 {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		p := NamePrefix + hex.EncodeToString(b[:])[:PrefixLen-len(NamePrefix)]
		if len(Leftovers(p)) == 0 && !InUse(p) {
			return p, nil
		}
	}
	return "", errors.New("netlab: no free run prefix found")
}

// validPrefix reports whether p looks like a run prefix: "vsg" + 5 hex digits.
func validPrefix(p string) bool {
	if len(p) != PrefixLen || !strings.HasPrefix(p, NamePrefix) {
		return false
	}
	_, err := hex.DecodeString(p[len(NamePrefix):] + "0")
	return err == nil && strings.ToLower(p) == p
}

// Check reports whether this process can build labs: it is root and can
// create (and remove) a network namespace. Tests call it to skip cleanly.
func Check() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: not root", ErrNoNamespaces)
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("%w: %v", ErrNoNamespaces, err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("%w: %v", ErrNoNamespaces, err)
	}
	ns.Close()
	if err := netns.Set(orig); err != nil {
		return fmt.Errorf("netlab: cannot return to the original namespace: %w", err) // thread stays locked and dies
	}
	runtime.UnlockOSThread()
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("%w: netlink: %v", ErrNoNamespaces, err)
	}
	h.Close()
	return nil
}

// Options change how Build works. The zero value is the default: a fresh
// random prefix.
type Options struct {
	// Prefix is the run prefix ("vsg" + 5 lowercase hex digits). Empty means
	// NewPrefix.
	Prefix string
}

// Lab is a built topology: one network namespace per host, links,
// addresses, routes, and the servers started in it.
//
// The zero value is not usable; get one from Build. Methods are safe for
// concurrent use. Close removes everything and may be called more than once.
type Lab struct {
	Prefix string
	Topo   *Topology

	lock *os.File // flock held on RunDir/Prefix.lock while the lab lives

	mu      sync.Mutex
	hosts   map[string]*Host
	order   []*Host // creation order, for Close
	closers []func() error
	closed  bool
}

// Host is one host of a lab: a named network namespace.
//
// The zero value is not usable; get one from Lab.Host. Methods are safe for
// concurrent use; Do runs its function on a locked OS thread.
type Host struct {
	Name   string // short role name, e.g. "client"
	NSName string // namespace name: Prefix + "-" + Name
	lab    *Lab

	// mu guards ns and nl against Close while a goroutine enters the
	// namespace (an HTTP transport may still be dialing after its request
	// gave up). Read-locked only to enter: a thread inside the namespace
	// keeps it alive by itself.
	mu     sync.RWMutex
	closed bool
	ns     netns.NsHandle
	nl     *netlink.Handle
}

// ErrClosed is returned (wrapped) by Host methods after the lab is closed.
var ErrClosed = errors.New("netlab: lab is closed")

// close releases the host's handles; later Do calls fail with ErrClosed.
func (h *Host) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	if h.nl != nil {
		h.nl.Close()
	}
	if h.ns >= 0 {
		h.ns.Close()
	}
}

// nsName returns the namespace name of host in a run.
func nsName(prefix, host string) string { return prefix + "-" + host }

// Build creates the topology. On any error everything created so far is
// removed before Build returns; on success the caller must Close the lab.
func Build(ctx context.Context, t *Topology, opt Options) (_ *Lab, err error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	prefix := opt.Prefix
	if prefix == "" {
		if prefix, err = NewPrefix(); err != nil {
			return nil, err
		}
	} else if !validPrefix(prefix) {
		return nil, fmt.Errorf("netlab: prefix %q: want %q and %d lowercase hex digits", prefix, NamePrefix, PrefixLen-len(NamePrefix))
	}
	lock, err := lockRun(prefix)
	if err != nil {
		return nil, err
	}
	l := &Lab{Prefix: prefix, Topo: t, hosts: map[string]*Host{}, lock: lock}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.Close())
		}
	}()
	step := func(what string, e error) error {
		if e == nil {
			return nil
		}
		return fmt.Errorf("netlab: build %s (prefix %s): %s: %w", t.Name, prefix, what, e)
	}
	for _, hs := range t.Hosts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, err := l.newHost(hs.Name)
		if err != nil {
			return nil, step("host "+hs.Name, err)
		}
		// DAD off before any link exists, so addresses are usable at once
		// (links inherit "default").
		sys := append([]Sysctl{
			{"net.ipv6.conf.all.accept_dad", "0"},
			{"net.ipv6.conf.default.accept_dad", "0"},
			{"net.ipv6.conf.all.disable_ipv6", "0"},
		}, hs.Sysctls...)
		if err := h.SetSysctls(sys...); err != nil {
			return nil, step("host "+hs.Name, err)
		}
		lo, err := h.nl.LinkByName("lo")
		if err == nil {
			err = h.nl.LinkSetUp(lo)
		}
		if err != nil {
			return nil, step("host "+hs.Name+": lo up", err)
		}
		if err := l.writeHostsFile(h, hs.Hosts); err != nil {
			return nil, step("host "+hs.Name+": hosts file", err)
		}
		for _, b := range hs.Bridges {
			br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: l.IfName(b.Name)}}
			if err := h.nl.LinkAdd(br); err != nil {
				return nil, step("host "+hs.Name+": bridge "+b.Name, err)
			}
			if err := h.addAddrs(b.Name, b.Addrs); err != nil {
				return nil, step("host "+hs.Name+": bridge "+b.Name, err)
			}
		}
	}
	for i, ls := range t.Links {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := l.addLink(i, ls); err != nil {
			return nil, step(fmt.Sprintf("link %s/%s-%s/%s", ls.A.Host, ls.A.Name, ls.B.Host, ls.B.Name), err)
		}
	}
	for _, hs := range t.Hosts {
		h := l.hosts[hs.Name]
		if err := h.setAllUp(); err != nil {
			return nil, step("host "+hs.Name+": links up", err)
		}
		if err := h.addLoopback(hs.Loopback); err != nil {
			return nil, step("host "+hs.Name+": loopback addresses", err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, hs := range t.Hosts {
		if err := l.hosts[hs.Name].waitUp(wctx); err != nil {
			return nil, step("host "+hs.Name, err)
		}
	}
	for _, hs := range t.Hosts {
		h := l.hosts[hs.Name]
		for _, r := range hs.Routes {
			if err := h.addRoute(r); err != nil {
				return nil, step(fmt.Sprintf("host %s: route %v via %v", hs.Name, r.Dst, r.Via), err)
			}
		}
		for _, r := range hs.Rules {
			if err := h.addRule(r); err != nil {
				return nil, step(fmt.Sprintf("host %s: rule %+v", hs.Name, r), err)
			}
		}
	}
	return l, nil
}

// newHost creates the named namespace and a netlink handle inside it, and
// records the host for Close before anything else can fail.
func (l *Lab) newHost(name string) (*Host, error) {
	h := &Host{Name: name, NSName: nsName(l.Prefix, name), lab: l, ns: -1}
	l.mu.Lock()
	l.hosts[name] = h
	l.order = append(l.order, h)
	l.mu.Unlock()

	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		return nil, err
	}
	ns, err := newNamedNS(h.NSName)
	if err != nil {
		return nil, err
	}
	nl, err := netlink.NewHandleAt(ns)
	h.mu.Lock()
	h.ns, h.nl = ns, nl
	h.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return h, nil
}

// writeHostsFile writes the host's hosts file (localhost and entries) for
// `ip netns exec` to mount over /etc/hosts, and makes Close remove it.
func (l *Lab) writeHostsFile(h *Host, entries []HostsEntry) error {
	if len(entries) == 0 {
		return nil
	}
	dir := filepath.Join(EtcNetnsDir, h.NSName)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := l.onClose(func() error { return os.RemoveAll(dir) }); err != nil {
		os.RemoveAll(dir)
		return err
	}
	var b strings.Builder
	b.WriteString("# written by netlab for " + h.NSName + "; removed with the lab\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	for _, e := range entries {
		fmt.Fprintf(&b, "%s\t%s\n", e.Addr, strings.Join(e.Names, " "))
	}
	return os.WriteFile(filepath.Join(dir, "hosts"), []byte(b.String()), 0o644)
}

// HostsFile is the path of the host's hosts file ("" if it has none).
func (h *Host) HostsFile() string {
	p := filepath.Join(EtcNetnsDir, h.NSName, "hosts")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// newNamedNS creates a network namespace bind-mounted at NetnsDir/name
// without leaving the calling goroutine's thread in it (STYLE.md 17).
func newNamedNS(name string) (netns.NsHandle, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return -1, err
	}
	defer orig.Close()
	ns, nerr := netns.NewNamed(name)
	if err := netns.Set(orig); err != nil {
		// The thread is in the wrong namespace: keep it locked so that it
		// is destroyed when this goroutine ends.
		if nerr == nil {
			ns.Close()
		}
		return -1, fmt.Errorf("netlab: cannot return to the original namespace: %w", err)
	}
	runtime.UnlockOSThread()
	if nerr != nil {
		return -1, nerr
	}
	return ns, nil
}

// deleteNamedNS removes the bind mount and file of a named namespace. The
// namespace itself (and its links) goes away when nothing refers to it.
func deleteNamedNS(name string) error {
	p := filepath.Join(NetnsDir, name)
	uerr := unix.Unmount(p, unix.MNT_DETACH)
	rerr := os.Remove(p)
	if rerr != nil && errors.Is(rerr, os.ErrNotExist) {
		rerr = nil
	}
	if uerr != nil && (errors.Is(uerr, unix.EINVAL) || errors.Is(uerr, unix.ENOENT)) {
		uerr = nil // not mounted: a half-made namespace
	}
	if rerr != nil || uerr != nil {
		return fmt.Errorf("netlab: remove namespace %s: %w", name, errors.Join(uerr, rerr))
	}
	return nil
}

// IfName returns the full interface name of a suffix: Prefix+suffix.
func (l *Lab) IfName(suffix string) string { return l.Prefix + suffix }

// Host returns the host by name, or nil.
func (l *Lab) Host(name string) *Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.hosts[name]
}

// MustHost returns the host by name and panics if there is none: for the
// standard topologies' well-known names.
func (l *Lab) MustHost(name string) *Host {
	h := l.Host(name)
	if h == nil {
		panic("netlab: no host " + name + " in topology " + l.Topo.Name)
	}
	return h
}

// Hosts returns the hosts in creation order.
func (l *Lab) Hosts() []*Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Host(nil), l.order...)
}

// onClose registers f to run first in Close (last registered, first run).
func (l *Lab) onClose(f func() error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("netlab: lab is closed")
	}
	l.closers = append(l.closers, f)
	return nil
}

// Close stops every server and process the lab started, then removes every
// namespace (and with them every link, address and route). It returns the
// joined errors and may be called more than once.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	closers, hosts := l.closers, l.order
	l.closers = nil
	l.mu.Unlock()

	var errs []error
	for i := len(closers) - 1; i >= 0; i-- {
		errs = append(errs, closers[i]())
	}
	for i := len(hosts) - 1; i >= 0; i-- {
		h := hosts[i]
		h.close()
		errs = append(errs, deleteNamedNS(h.NSName))
	}
	if l.lock != nil {
		errs = append(errs, os.Remove(l.lock.Name()))
		l.lock.Close()
	}
	return errors.Join(errs...)
}

// lockRun creates and flocks RunDir/prefix.lock.
func lockRun(prefix string) (*os.File, error) {
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(RunDir, prefix+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("netlab: run %s is in use: %w", prefix, err)
	}
	return f, nil
}

// InUse reports whether a live process holds the lock of run prefix.
func InUse(prefix string) bool {
	f, err := os.Open(filepath.Join(RunDir, prefix+".lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return true
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}

// Leftovers returns the names of namespaces in NetnsDir that start with
// prefix (a run prefix, or NamePrefix for every run).
func Leftovers(prefix string) []string { return entriesWithPrefix(NetnsDir, prefix) }

// leftoverEtc returns the per-namespace /etc directories of runs that
// start with prefix.
func leftoverEtc(prefix string) []string { return entriesWithPrefix(EtcNetnsDir, prefix) }

// entriesWithPrefix lists the names in dir that start with prefix.
func entriesWithPrefix(dir, prefix string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// LeftoverLinks returns links in the calling process's (root) namespace
// whose name starts with prefix. netlab never creates links there; a
// non-empty result means something went wrong.
func LeftoverLinks(prefix string) ([]string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, k := range links {
		if strings.HasPrefix(k.Attrs().Name, prefix) {
			out = append(out, k.Attrs().Name)
		}
	}
	return out, nil
}

// Clean removes what crashed runs left behind: every namespace whose name
// starts with prefix, unless its run is live (InUse), and veth links in this namespace named like a run
// prefix (netlab never creates them there, so only a bug could leave one).
// prefix must start with NamePrefix. It returns what it removed.
func Clean(prefix string) ([]string, error) {
	if !strings.HasPrefix(prefix, NamePrefix) {
		return nil, fmt.Errorf("netlab: clean: prefix %q must start with %q", prefix, NamePrefix)
	}
	var removed []string
	var errs []error
	for _, name := range Leftovers(prefix) {
		if len(name) >= PrefixLen && InUse(name[:PrefixLen]) {
			continue
		}
		if err := deleteNamedNS(name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "netns "+name)
	}
	for _, name := range leftoverEtc(prefix) {
		if len(name) >= PrefixLen && InUse(name[:PrefixLen]) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(EtcNetnsDir, name)); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "hosts file "+filepath.Join(EtcNetnsDir, name, "hosts"))
	}
	links, err := netlink.LinkList()
	if err != nil {
		errs = append(errs, err)
	}
	for _, k := range links {
		name := k.Attrs().Name
		if k.Type() != "veth" || !strings.HasPrefix(name, prefix) || len(name) < PrefixLen || !validPrefix(name[:PrefixLen]) {
			continue
		}
		if err := netlink.LinkDel(k); err != nil {
			errs = append(errs, fmt.Errorf("netlab: clean: link %s: %w", name, err))
			continue
		}
		removed = append(removed, "link "+name)
	}
	frrRemoved, frrErrs := cleanFRR(prefix)
	removed, errs = append(removed, frrRemoved...), append(errs, frrErrs...)
	locks, _ := filepath.Glob(filepath.Join(RunDir, prefix+"*.lock"))
	for _, f := range locks {
		if p := strings.TrimSuffix(filepath.Base(f), ".lock"); validPrefix(p) && !InUse(p) {
			_ = os.Remove(f)
		}
	}
	return removed, errors.Join(errs...)
}

// Do runs fn on a locked OS thread that is inside the host's network
// namespace: sockets fn creates (net.Listen, net.Dial, ListenPacket) belong
// to the host and keep working from any goroutine after Do returns. fn must
// not start goroutines that expect to be in the namespace. If the thread
// cannot be switched back, it stays locked and dies with the goroutine.
func (h *Host) Do(fn func() error) (err error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netlab: host %s: %w", h.Name, err)
	}
	defer orig.Close()
	h.mu.RLock()
	if h.closed {
		h.mu.RUnlock()
		runtime.UnlockOSThread()
		return fmt.Errorf("netlab: host %s: %w", h.Name, ErrClosed)
	}
	err = netns.Set(h.ns)
	h.mu.RUnlock()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netlab: host %s: enter namespace: %w", h.Name, err)
	}
	// Deferred, so that a panicking fn does not leave the goroutine in
	// the host either.
	defer func() {
		if serr := netns.Set(orig); serr != nil {
			err = errors.Join(err, fmt.Errorf("netlab: host %s: leave namespace: %w", h.Name, serr))
			return // thread stays locked and dies with the goroutine
		}
		runtime.UnlockOSThread()
	}()
	return fn()
}

// SetSysctls writes per-namespace kernel settings ("net.ipv4.ip_forward"
// = "1") in the host.
func (h *Host) SetSysctls(s ...Sysctl) error {
	for _, x := range s {
		if !strings.HasPrefix(x.Key, "net.") || strings.Contains(x.Key, "/") {
			return fmt.Errorf("netlab: host %s: sysctl %q: only net.* keys", h.Name, x.Key)
		}
	}
	return h.Do(func() error {
		for _, x := range s {
			p := "/proc/sys/" + strings.ReplaceAll(x.Key, ".", "/")
			if err := os.WriteFile(p, []byte(x.Value), 0o644); err != nil {
				return fmt.Errorf("netlab: host %s: sysctl %s=%s: %w", h.Name, x.Key, x.Value, err)
			}
		}
		return nil
	})
}

// Sysctl reads a per-namespace kernel setting in the host.
func (h *Host) Sysctl(key string) (string, error) {
	var v []byte
	err := h.Do(func() error {
		var err error
		v, err = os.ReadFile("/proc/sys/" + strings.ReplaceAll(key, ".", "/"))
		return err
	})
	return strings.TrimSpace(string(v)), err
}

// Netlink returns a netlink handle bound to the host's namespace, for
// changes the topology does not declare. It is owned by the lab: do not
// close it, and do not use it after Close.
func (h *Host) Netlink() *netlink.Handle { return h.nl }

// NsHandle returns the host's namespace handle, owned by the lab.
func (h *Host) NsHandle() netns.NsHandle { return h.ns }

// IfName returns the full interface name of suffix in this lab.
func (h *Host) IfName(suffix string) string { return h.lab.IfName(suffix) }

// Addrs returns the host's global addresses (without prefix length), IPv4
// first, in interface order.
func (h *Host) Addrs() ([]netip.Addr, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		return nil, fmt.Errorf("netlab: host %s: %w", h.Name, ErrClosed)
	}
	var v4, v6 []netip.Addr
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		as, err := h.nl.AddrList(nil, fam)
		if err != nil {
			return nil, err
		}
		for _, a := range as {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok || !ip.IsGlobalUnicast() {
				continue
			}
			if ip.Is4() || ip.Is4In6() {
				v4 = append(v4, ip.Unmap())
			} else {
				v6 = append(v6, ip)
			}
		}
	}
	return append(v4, v6...), nil
}

// Command returns a command that runs name inside the host through
// `ip netns exec` (which also gives it the namespace's /sys). Start it
// it yourself, or with Host.Start so that Close stops it.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NSName, name}, args...)...)
}

// Run runs a command inside the host and returns its combined output.
func (h *Host) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := h.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("netlab: host %s: %s %s: %w: %s", h.Name, name, strings.Join(args, " "), err, out)
	}
	return out, nil
}

// Start starts cmd (from Command) and makes Close stop it: SIGTERM, then
// SIGKILL, to its PID only.
func (h *Host) Start(cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	return h.lab.onClose(func() error {
		_ = cmd.Process.Signal(unix.SIGTERM)
		select {
		case <-done:
		case <-afterSeconds(2):
			_ = cmd.Process.Kill()
			<-done
		}
		return nil
	})
}

// Listen opens a listener inside the host ("tcp", ":80").
func (h *Host) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := h.Do(func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// ListenPacket opens a packet socket inside the host ("udp", ":53").
func (h *Host) ListenPacket(network, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := h.Do(func() error {
		var err error
		pc, err = net.ListenPacket(network, addr)
		return err
	})
	return pc, err
}

// DialContext dials from inside the host. Use literal addresses: name
// resolution would run outside the namespace.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := h.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}
