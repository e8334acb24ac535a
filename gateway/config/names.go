package config

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/vsgate/vsgate/gateway/names"
)

// Resolution is one host name the file gave and what it stood for when the
// file was read.
type Resolution struct {
	Line  int
	Key   string // the key it was given for, such as "services[0].vip"
	Name  string
	Addrs []netip.Addr // what the file's entry became (of the family it needed)
}

// resolveNames replaces the host names of the raw file by addresses before
// convert reads it, as ipvsadm resolves names when it reads its arguments:
//
//   - services[].vip: a name stands for every address it has of a family
//     all the service's backends have (a name with IPv4 and IPv6 addresses
//     and IPv4 backends is an IPv4 service), one service each (the copies
//     are named NAME-2, NAME-3, ... when the service has a name, and are
//     appended after the file's services);
//   - services[].backends[].addr: every address of the service's family,
//     one backend each; a name with none is an error that says so;
//   - masquerade_to and masquerade[].to: the name's first address of the
//     rule's family (IPv4 first for masquerade_to);
//   - masquerade_inside[]: every address.
//
// A name that cannot be resolved is reported at its key. With a nil
// resolver nothing is resolved, and convert reports each name as not an
// address. The copies' schema paths are aliases of the original's, so
// problems with them are reported at the original's line.
func (f *file) resolveNames(ctx context.Context, res names.Resolver, r *report) []Resolution {
	if res == nil {
		return nil
	}
	var out []Resolution
	type answer struct {
		addrs []netip.Addr
		msg   string
	}
	cache := map[string]answer{} // each name is looked up once per file
	lookup := func(path, host string) []netip.Addr {
		a, ok := cache[host]
		if !ok {
			addrs, err := res.LookupHost(ctx, host)
			switch {
			case err == nil && len(addrs) > 0:
				a.addrs = addrs
			case err == nil || errors.Is(err, names.ErrNotFound):
				a.msg = fmt.Sprintf("host name %s has no address", host)
			default:
				a.msg = fmt.Sprintf("host name %s: %v", host, err)
			}
			cache[host] = a
		}
		if a.addrs == nil {
			r.fail(path, a.msg, "add it to the hosts file or DNS, or write the address")
		}
		return a.addrs
	}
	raw := &f.raw
	n := len(raw.Services)
	for i := range n {
		path := fmt.Sprintf("services[%d]", i)
		s := &raw.Services[i]
		// The backends' addresses first: a VIP name's addresses are
		// narrowed to the families every backend has.
		backendAddrs := make([][]netip.Addr, len(s.Backends))
		covered := map[bool]bool{true: true, false: true} // by Is4
		for j, b := range s.Backends {
			bpath := fmt.Sprintf("%s.backends[%d].addr", path, j)
			if host, _, ok := nameOf(b.Addr); ok {
				backendAddrs[j] = lookup(bpath, host)
			} else if h, _, _ := splitHostPort(b.Addr); h != "" {
				if a, err := netip.ParseAddr(h); err == nil {
					backendAddrs[j] = []netip.Addr{a.Unmap()}
				}
			}
			if backendAddrs[j] == nil {
				continue // not an address: convert reports it
			}
			for _, fam := range []bool{true, false} {
				if !slices.ContainsFunc(backendAddrs[j], func(a netip.Addr) bool { return a.Is4() == fam }) {
					covered[fam] = false
				}
			}
		}
		host, port, ok := nameOf(s.VIP)
		if ok {
			all := lookup(path+".vip", host)
			var addrs []netip.Addr
			for _, a := range all {
				if covered[a.Is4()] {
					addrs = append(addrs, a)
				}
			}
			if all != nil && addrs == nil {
				r.fail(path+".vip", fmt.Sprintf("vip %s has addresses (%v) of no family all the service's backends have", host, all),
					"give the backends addresses of the VIP's family, or use the VIP's address")
			}
			if addrs == nil {
				continue
			}
			out = append(out, Resolution{Line: f.line(path + ".vip"), Key: path + ".vip", Name: host, Addrs: addrs})
			base := *s
			s.VIP = joinHostPort(addrs[0], port)
			for k, a := range addrs[1:] {
				cp := base
				cp.Backends = append([]fileBackend(nil), base.Backends...)
				cp.VIP = joinHostPort(a, port)
				if cp.Name != "" {
					cp.Name = fmt.Sprintf("%s-%d", base.Name, k+2)
				}
				f.alias = append(f.alias, pathAlias{fmt.Sprintf("services[%d]", len(raw.Services)), path})
				raw.Services = append(raw.Services, cp)
				s = &raw.Services[i] // append may have moved it
			}
		}
	}
	for i := range raw.Services {
		s := &raw.Services[i]
		vh, _, _ := splitHostPort(s.VIP)
		vip, err := netip.ParseAddr(vh)
		if err != nil {
			continue // reported by convert
		}
		nb := len(s.Backends)
		for j := range nb {
			path := fmt.Sprintf("services[%d].backends[%d].addr", i, j)
			host, port, ok := nameOf(s.Backends[j].Addr)
			if !ok {
				continue
			}
			all := lookup(path, host)
			if all == nil {
				continue
			}
			var addrs []netip.Addr
			for _, a := range all {
				if a.Is4() == vip.Is4() {
					addrs = append(addrs, a)
				}
			}
			if len(addrs) == 0 {
				r.fail(path, fmt.Sprintf("backend %s has no IPv%s address (it has %v), and the service's vip %s is IPv%s", host, family(vip), all, vip, family(vip)),
					fmt.Sprintf("give %s an IPv%s address, or use a service of its family", host, family(vip)))
				continue
			}
			out = append(out, Resolution{Line: f.line(path), Key: path, Name: host, Addrs: addrs})
			base := s.Backends[j]
			s.Backends[j].Addr = joinHostPort(addrs[0], port)
			for _, a := range addrs[1:] {
				cp := base
				cp.Addr = joinHostPort(a, port)
				f.alias = append(f.alias, pathAlias{fmt.Sprintf("services[%d].backends[%d]", i, len(s.Backends)), fmt.Sprintf("services[%d].backends[%d]", i, j)})
				s.Backends = append(s.Backends, cp)
			}
		}
	}
	first := func(path, value string, want func(netip.Addr) bool) string {
		host, _, ok := nameOf(value)
		if !ok {
			return value
		}
		addrs := lookup(path, host)
		for _, a := range addrs {
			if want(a) {
				out = append(out, Resolution{Line: f.line(path), Key: path, Name: host, Addrs: []netip.Addr{a}})
				return a.String()
			}
		}
		if addrs != nil {
			r.fail(path, fmt.Sprintf("host name %s has no address of the rule's family (it has %v)", host, addrs), "write the address")
		}
		return value
	}
	anyAddr := func(netip.Addr) bool { return true }
	raw.MasqTo = first("masquerade_to", raw.MasqTo, anyAddr)
	for i := range raw.Masquerade {
		m := &raw.Masquerade[i]
		want := anyAddr
		if p, _, _ := parsePrefix(m.From + m.Into); p.IsValid() {
			want = func(a netip.Addr) bool { return a.Is4() == p.Addr().Is4() }
		}
		m.To = first(fmt.Sprintf("masquerade[%d].to", i), m.To, want)
	}
	var inside []string
	for i, v := range raw.MasqInside {
		path := fmt.Sprintf("masquerade_inside[%d]", i)
		host, _, ok := nameOf(v)
		if !ok {
			inside = append(inside, v)
			continue
		}
		addrs := lookup(path, host)
		if addrs == nil {
			inside = append(inside, v)
			continue
		}
		out = append(out, Resolution{Line: f.line(path), Key: path, Name: host, Addrs: addrs})
		for k, a := range addrs {
			if k > 0 {
				f.alias = append(f.alias, pathAlias{fmt.Sprintf("masquerade_inside[%d]", len(inside)), path})
			}
			inside = append(inside, a.String())
		}
	}
	raw.MasqInside = inside
	return out
}

// pathAlias says that a schema path made by resolveNames (a copy of an
// entry whose name had several addresses) is reported at another's line.
type pathAlias struct{ copy, orig string }

// nameOf splits "HOST[:PORT]" and reports whether HOST is a host name (not
// an address, and well formed: a malformed one is convert's to report).
func nameOf(s string) (host, port string, ok bool) {
	host, port, _ = splitHostPort(s)
	if _, err := netip.ParseAddr(host); err == nil || !names.ValidHostName(host) {
		return "", "", false
	}
	return host, port, true
}

// splitHostPort splits "HOST:PORT", "[V6]:PORT", "V6" or "HOST".
func splitHostPort(s string) (host, port string, hasPort bool) {
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 {
			return s, "", false
		}
		port, hasPort = strings.CutPrefix(s[end+1:], ":")
		return s[1:end], port, hasPort
	case strings.Count(s, ":") == 1:
		host, port, _ = strings.Cut(s, ":")
		return host, port, true
	}
	return s, "", false
}

// joinHostPort writes an address back with the port it was given with.
func joinHostPort(a netip.Addr, port string) string {
	if port == "" {
		return a.String()
	}
	if a.Is6() {
		return "[" + a.String() + "]:" + port
	}
	return a.String() + ":" + port
}
