package names

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Resolver turns host and service names into addresses and ports, and
// addresses and ports back into names for listings.
type Resolver interface {
	// LookupHost returns every address of host (the hosts file first,
	// then DNS): IPv4 first, then IPv6, each in the resolver's order. A
	// literal address is returned as it is, with no lookup.
	LookupHost(ctx context.Context, host string) ([]netip.Addr, error)
	// LookupPort returns the port of a service name ("http") for proto
	// ("tcp" or "udp"); a number is returned as it is.
	LookupPort(proto, service string) (uint16, error)
	// HostName returns a name for addr, or "" when there is none.
	HostName(ctx context.Context, addr netip.Addr) string
	// PortName returns the service name of port for proto, or "".
	PortName(proto string, port uint16) string
}

// DefaultTimeout bounds one forward lookup (as a resolver's own timeout
// and attempts would) and every reverse lookup of one listing together.
const DefaultTimeout = 5 * time.Second

// ErrNotFound means a name has no address.
var ErrNotFound = errors.New("not found")

// System is the Resolver of the machine: Go's resolver, which reads the
// hosts file (in a network namespace entered with `ip netns exec`, the
// namespace's /etc/netns/NAME/hosts) and then asks DNS, and the services
// file. The zero value uses /etc/services; it is safe for concurrent use.
type System struct {
	// ServicesFile is the services database; "" means /etc/services.
	ServicesFile string

	once     sync.Once
	services map[string]uint16 // "tcp/http" -> 80
	byPort   map[string]string // "tcp/80" -> "http"
}

var _ Resolver = (*System)(nil)

// LookupHost implements Resolver.
func (s *System) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	if !ValidHostName(host) {
		return nil, fmt.Errorf("%q is neither an address nor a host name", host)
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		var dns *net.DNSError
		if errors.As(err, &dns) && dns.IsNotFound {
			return nil, fmt.Errorf("host %s: %w", host, ErrNotFound)
		}
		return nil, fmt.Errorf("host %s: %w", host, err)
	}
	return Ordered(addrs), nil
}

// Ordered returns addrs unmapped, without repeats, IPv4 before IPv6 and
// otherwise in their order.
func Ordered(addrs []netip.Addr) []netip.Addr {
	var v4, v6 []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		switch {
		case slices.Contains(v4, a) || slices.Contains(v6, a):
		case a.Is4():
			v4 = append(v4, a)
		default:
			v6 = append(v6, a)
		}
	}
	return append(v4, v6...)
}

// ValidHostName reports whether s can be a host name: letters, digits,
// '-', '_' and dots, labels of 1..63 bytes, 253 bytes in all, not all
// digits and dots (an address that did not parse).
func ValidHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	letter := false
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			switch {
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
				letter = true
			case c >= '0' && c <= '9', c == '-':
			default:
				return false
			}
		}
	}
	return letter
}

// LookupPort implements Resolver.
func (s *System) LookupPort(proto, service string) (uint16, error) {
	if n, err := strconv.ParseUint(service, 10, 16); err == nil {
		return uint16(n), nil
	}
	s.load()
	if p, ok := s.services[proto+"/"+service]; ok {
		return p, nil
	}
	return 0, fmt.Errorf("service %s/%s: %w", service, proto, ErrNotFound)
}

// HostName implements Resolver: the hosts file, then a reverse DNS
// lookup, within DefaultTimeout.
func (s *System) HostName(ctx context.Context, addr netip.Addr) string {
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	names, err := net.DefaultResolver.LookupAddr(ctx, addr.String())
	if err != nil || len(names) == 0 {
		return ""
	}
	return strings.TrimSuffix(names[0], ".")
}

// PortName implements Resolver.
func (s *System) PortName(proto string, port uint16) string {
	s.load()
	return s.byPort[proto+"/"+strconv.Itoa(int(port))]
}

// load reads the services file once. A missing file leaves no names:
// ports are then numbers only, as with a C library without one.
func (s *System) load() {
	s.once.Do(func() {
		path := s.ServicesFile
		if path == "" {
			path = "/etc/services"
		}
		s.services, s.byPort = map[string]uint16{}, map[string]string{}
		f, err := os.Open(path)
		if err != nil {
			return
		}
		defer f.Close()
		s.services, s.byPort = ParseServices(io.LimitReader(f, 1<<20))
	})
}

// ParseServices reads a services(5) database: "name port/proto aliases...
// # comment". It returns name (and alias) to port by "proto/name", and the
// first name of each port by "proto/port", as getservbyport gives it.
func ParseServices(r io.Reader) (byName map[string]uint16, byPort map[string]string) {
	byName, byPort = map[string]uint16{}, map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		ps, proto, ok := strings.Cut(f[1], "/")
		port, err := strconv.ParseUint(ps, 10, 16)
		if !ok || err != nil {
			continue
		}
		for _, n := range append([]string{f[0]}, f[2:]...) {
			if _, dup := byName[proto+"/"+n]; !dup {
				byName[proto+"/"+n] = uint16(port)
			}
		}
		if _, dup := byPort[proto+"/"+ps]; !dup {
			byPort[proto+"/"+ps] = f[0]
		}
	}
	return byName, byPort
}

// HostNames looks up a name for each address at once, all within
// DefaultTimeout together, and returns those found: a listing waits at
// most that long however many addresses it shows.
func HostNames(ctx context.Context, r Resolver, addrs []netip.Addr) map[netip.Addr]string {
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	type found struct {
		a    netip.Addr
		name string
	}
	ch := make(chan found, len(addrs))
	seen := map[netip.Addr]bool{}
	n := 0
	for _, a := range addrs {
		if seen[a] {
			continue
		}
		seen[a] = true
		n++
		go func() { ch <- found{a, r.HostName(ctx, a)} }()
	}
	out := map[netip.Addr]string{}
	for range n {
		select {
		case f := <-ch:
			if f.name != "" {
				out[f.a] = f.name
			}
		case <-ctx.Done():
			return out
		}
	}
	return out
}

// Map is a Resolver over fixed tables: for tests, and for callers that
// hold the answers already. Read-only after construction.
type Map struct {
	Hosts    map[string][]netip.Addr // by host name
	Services map[string]uint16       // by "proto/name": "tcp/http"
}

var _ Resolver = Map{}

// LookupHost implements Resolver.
func (m Map) LookupHost(_ context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	if as, ok := m.Hosts[host]; ok && len(as) > 0 {
		return Ordered(as), nil
	}
	return nil, fmt.Errorf("host %s: %w", host, ErrNotFound)
}

// LookupPort implements Resolver.
func (m Map) LookupPort(proto, service string) (uint16, error) {
	if n, err := strconv.ParseUint(service, 10, 16); err == nil {
		return uint16(n), nil
	}
	if p, ok := m.Services[proto+"/"+service]; ok {
		return p, nil
	}
	return 0, fmt.Errorf("service %s/%s: %w", service, proto, ErrNotFound)
}

// HostName implements Resolver: the first name, in sorted order, that
// has addr.
func (m Map) HostName(_ context.Context, addr netip.Addr) string {
	var found []string
	for n, as := range m.Hosts {
		if slices.Contains(as, addr) {
			found = append(found, n)
		}
	}
	slices.Sort(found)
	if len(found) == 0 {
		return ""
	}
	return found[0]
}

// PortName implements Resolver.
func (m Map) PortName(proto string, port uint16) string {
	var found []string
	for k, p := range m.Services {
		if name, ok := strings.CutPrefix(k, proto+"/"); ok && p == port {
			found = append(found, name)
		}
	}
	slices.Sort(found)
	if len(found) == 0 {
		return ""
	}
	return found[0]
}
