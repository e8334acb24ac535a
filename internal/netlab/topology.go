package netlab

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// PrefixLen is the length of every run prefix: "vsg" and five hex digits.
// It MUST NOT grow: interface names are the prefix plus a suffix of at most
// MaxSuffixLen bytes, and Linux caps interface names at 15 bytes.
const PrefixLen = 8

// MaxSuffixLen is the longest interface-name suffix a topology may use.
const MaxSuffixLen = 15 - PrefixLen

// NamePrefix starts every run prefix, and so every namespace and interface
// name netlab creates. Clean looks for it.
const NamePrefix = "vsg"

// ErrInvalidTopology is returned (wrapped) by Validate and Build when a
// topology refers to an unknown host or interface, uses a name that is too
// long, or uses an address outside 198.18.0.0/15 and 2001:db8::/32.
var ErrInvalidTopology = errors.New("netlab: invalid topology")

// Topology declares a lab: hosts (one network namespace each), the veth links
// between them, and the roles the standard scenarios need (Plan).
//
// The zero value is an empty topology; Build of it creates nothing. A
// Topology is plain data: not safe for concurrent mutation, safe to share
// once built.
type Topology struct {
	Name  string     // "basic", "clients", "ecmp" or a custom name
	Hosts []HostSpec // in build order
	Links []LinkSpec // veth pairs; created after all hosts and bridges
	Plan  Plan       // roles and well-known addresses; zero for custom topologies
	// NoChecksumOffload turns transmit checksum offload off on every
	// veth end, so that every host sends complete checksums: for a
	// gateway that reads frames through XDP, which carries no word that
	// a checksum was left partial (as AF_PACKET's virtio-net header
	// does). A host's TCP then sends no super-packets either.
	NoChecksumOffload bool
}

// HostSpec declares one host: a network namespace named Prefix+"-"+Name.
// The zero value is invalid (Name is required).
type HostSpec struct {
	Name    string       // short role name, e.g. "client", "gw", "b1"
	Sysctls []Sysctl     // written before any link is created, in order
	Bridges []BridgeSpec // bridges inside this host
	Routes  []Route      // added after all addresses are up
	Rules   []Rule       // policy rules, added after routes
	// Loopback are addresses on the host's lo (a real server's VIP in
	// direct routing).
	Loopback []netip.Prefix
	// Hosts are the host's /etc/hosts lines beyond localhost: netlab
	// writes them to EtcNetnsDir/NAMESPACE/hosts, which `ip netns exec`
	// (Host.Command) mounts over /etc/hosts for what it runs, and
	// removes the file with the lab.
	Hosts []HostsEntry
}

// HostsEntry is one line of a host's hosts file: an address and its names.
// Plain data; the zero value is invalid.
type HostsEntry struct {
	Addr  netip.Addr
	Names []string
}

// Sysctl is one per-namespace kernel setting, by dotted key under
// /proc/sys ("net.ipv4.ip_forward"). Only "net." keys are allowed: they
// are the ones that belong to a network namespace. Plain data; the zero
// value is invalid.
type Sysctl struct {
	Key, Value string
}

// BridgeSpec declares a Linux bridge inside a host. Name is a suffix; the
// interface is named Prefix+Name. Plain data; the zero value is invalid
// (Name is required).
type BridgeSpec struct {
	Name  string
	Addrs []netip.Prefix // host addresses with their on-link prefix length
}

// LinkSpec declares a veth pair between two hosts (or within one). Plain
// data; the zero value is invalid.
type LinkSpec struct {
	A, B Endpoint
	// Queues is the receive and transmit queues of each end (0: one). A
	// veth hands a frame to its peer's receive queue of the index of the
	// transmit queue it left by, which the sender picks by the flow's
	// hash: multi-queue devices and XDP's queue steering can be tried.
	Queues int
}

// Endpoint is one end of a veth pair. Plain data; Host and Name are
// required.
type Endpoint struct {
	Host   string         // host name
	Name   string         // interface name suffix (at most MaxSuffixLen bytes)
	Addrs  []netip.Prefix // host addresses with their on-link prefix length
	Master string         // bridge suffix in the same host, or "" for none
}

// Route is a route in a host. Via with more than one address makes an ECMP
// multipath route. Dev (an interface suffix) is needed only when Via is
// empty. Table 0 means the main table. Plain data; the zero value is
// invalid (Dst is required).
type Route struct {
	Dst   netip.Prefix
	Via   []netip.Addr
	Dev   string
	Table int
}

// Rule is a policy routing rule: traffic From a prefix (optional) and/or
// arriving on IIF (an interface suffix, optional) looks up Table. Plain
// data; the zero value is invalid (Table must be > 0).
type Rule struct {
	Priority int
	From     netip.Prefix
	IIF      string
	Table    int
	IPv6     bool // family when From is not set
}

// Plan names the roles of a standard topology so that scenarios and other
// packages' tests need not repeat the address plan. The zero value (custom
// topologies) has no roles; scenarios and KernelRefFor need a standard
// topology's plan. Plain data.
type Plan struct {
	Clients  []string // client host names
	Gateways []string // gateway host names
	Backends []string // backend (real server) host names
	Router   string   // upstream router host ("ecmp" only)
	// InsideRouter is the real servers' router ("ecmp" only): their
	// answers reach the gateways through it.
	InsideRouter string

	VIP4, VIP6   netip.Addr // the virtual service address
	Masq4, Masq6 netip.Addr // source address for masqueraded backend traffic

	ClientNet4, ClientNet6 netip.Prefix // client-side subnet
	ServerNet4, ServerNet6 netip.Prefix // backend subnet

	GatewayOut string // gateway interface suffix towards the clients
	GatewayIn  string // gateway interface suffix towards the backends

	// Owned are the gateway addresses that no kernel holds ("l2" only):
	// vsgate answers ARP/ND for them in AF_PACKET mode.
	Owned []netip.Addr
}

// labNet4 and labNet6 are the only address ranges a topology may use
// (RFC 2544 benchmarking range and RFC 3849 documentation range).
var (
	labNet4 = netip.MustParsePrefix("198.18.0.0/15")
	labNet6 = netip.MustParsePrefix("2001:db8::/32")
)

// allowedAddr reports whether a is in the lab ranges.
func allowedAddr(a netip.Addr) bool {
	return labNet4.Contains(a) || labNet6.Contains(a)
}

// allowedDst reports whether p may be a route destination: a lab range
// prefix or a default route.
func allowedDst(p netip.Prefix) bool {
	if p.Bits() == 0 {
		return true
	}
	return allowedAddr(p.Addr())
}

// Validate checks names, references and addresses. Errors wrap
// ErrInvalidTopology.
func (t *Topology) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidTopology, t.Name, fmt.Sprintf(format, a...))
	}
	ifnames := map[string]map[string]bool{} // host -> suffixes
	for _, h := range t.Hosts {
		if h.Name == "" || strings.ContainsAny(h.Name, "/ \t") {
			return bad("host name %q: must be non-empty without '/' or spaces", h.Name)
		}
		if ifnames[h.Name] != nil {
			return bad("host %q declared twice", h.Name)
		}
		ifnames[h.Name] = map[string]bool{}
		for _, s := range h.Sysctls {
			if !strings.HasPrefix(s.Key, "net.") || strings.Contains(s.Key, "..") || strings.Contains(s.Key, "/") {
				return bad("host %s: sysctl %q: only per-namespace net.* keys are allowed", h.Name, s.Key)
			}
		}
	}
	addIf := func(host, name string) error {
		names, ok := ifnames[host]
		if !ok {
			return bad("unknown host %q", host)
		}
		if name == "" || len(name) > MaxSuffixLen {
			return bad("host %s: interface suffix %q: must be 1..%d bytes", host, name, MaxSuffixLen)
		}
		if names[name] {
			return bad("host %s: interface %q declared twice", host, name)
		}
		names[name] = true
		return nil
	}
	for _, h := range t.Hosts {
		for _, e := range h.Hosts {
			if !e.Addr.IsValid() || !allowedAddr(e.Addr) {
				return bad("host %s: hosts entry %v: only 198.18.0.0/15 and 2001:db8::/32 are allowed", h.Name, e.Addr)
			}
			if len(e.Names) == 0 {
				return bad("host %s: hosts entry %v has no name", h.Name, e.Addr)
			}
			for _, n := range e.Names {
				if n == "" || strings.ContainsAny(n, " \t\n#") {
					return bad("host %s: hosts entry %v: name %q", h.Name, e.Addr, n)
				}
			}
		}
	}
	checkAddrs := func(where string, ps []netip.Prefix) error {
		for _, p := range ps {
			if !p.IsValid() || !allowedAddr(p.Addr()) {
				return bad("%s: address %v: only 198.18.0.0/15 and 2001:db8::/32 are allowed", where, p)
			}
		}
		return nil
	}
	for _, h := range t.Hosts {
		for _, b := range h.Bridges {
			if err := addIf(h.Name, b.Name); err != nil {
				return err
			}
			if err := checkAddrs(h.Name+"/"+b.Name, b.Addrs); err != nil {
				return err
			}
		}
	}
	for _, l := range t.Links {
		for _, e := range []Endpoint{l.A, l.B} {
			if err := addIf(e.Host, e.Name); err != nil {
				return err
			}
			if err := checkAddrs(e.Host+"/"+e.Name, e.Addrs); err != nil {
				return err
			}
		}
	}
	for _, l := range t.Links {
		for _, e := range []Endpoint{l.A, l.B} {
			if e.Master != "" && !ifnames[e.Host][e.Master] {
				return bad("host %s: interface %s: unknown bridge %q", e.Host, e.Name, e.Master)
			}
		}
	}
	for _, h := range t.Hosts {
		for _, p := range h.Loopback {
			if !p.IsValid() || !allowedAddr(p.Addr()) {
				return bad("host %s: loopback address %v: only lab ranges", h.Name, p)
			}
		}
		for _, r := range h.Routes {
			if !r.Dst.IsValid() || !allowedDst(r.Dst) {
				return bad("host %s: route to %v: destination must be a default route or in the lab ranges", h.Name, r.Dst)
			}
			for _, v := range r.Via {
				if !allowedAddr(v) || v.Is4() != r.Dst.Addr().Is4() {
					return bad("host %s: route to %v via %v: next hop must be in the lab ranges and of the same family", h.Name, r.Dst, v)
				}
			}
			if len(r.Via) == 0 && r.Dev == "" {
				return bad("host %s: route to %v: needs Via or Dev", h.Name, r.Dst)
			}
			if r.Dev != "" && !ifnames[h.Name][r.Dev] {
				return bad("host %s: route to %v: unknown interface %q", h.Name, r.Dst, r.Dev)
			}
		}
		for _, r := range h.Rules {
			if r.From.IsValid() && !allowedAddr(r.From.Addr()) {
				return bad("host %s: rule from %v: only lab ranges", h.Name, r.From)
			}
			if r.IIF != "" && !ifnames[h.Name][r.IIF] {
				return bad("host %s: rule: unknown interface %q", h.Name, r.IIF)
			}
			if r.Table <= 0 {
				return bad("host %s: rule: table must be > 0", h.Name)
			}
		}
	}
	return nil
}
