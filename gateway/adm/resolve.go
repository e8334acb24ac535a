package adm

import (
	"context"
	"net/netip"
	"strings"

	"github.com/vsgate/vsgate/gateway/names"
	"github.com/vsgate/vsgate/packet"
)

// resolveEndpoint reads an address or host name with an optional port, as
// ipvsadm reads -t and -r: "198.18.0.10:80", "[2001:db8::10]:80",
// "2001:db8::10" (no port), "www.fuancn.cn:http". The port is a number or
// a service name of proto; with needPort it must be there. A name stands
// for every address it has.
func resolveEndpoint(ctx context.Context, r names.Resolver, text string, proto uint8, needPort bool) (Endpoint, error) {
	host, port := text, ""
	switch {
	case strings.HasPrefix(text, "["):
		end := strings.Index(text, "]")
		if end < 0 {
			return Endpoint{}, usagef("%q: no closing ']': write [v6]:port", text)
		}
		host, port = text[1:end], strings.TrimPrefix(text[end+1:], ":")
		if rest := text[end+1:]; rest != "" && !strings.HasPrefix(rest, ":") {
			return Endpoint{}, usagef("%q: write [v6]:port", text)
		}
	case strings.Count(text, ":") == 1:
		host, port, _ = strings.Cut(text, ":")
	}
	var p uint16
	if port != "" {
		n, err := lookupPort(r, proto, port)
		if err != nil {
			return Endpoint{}, usagef("%q: %v", text, err)
		}
		p = n
	}
	if needPort && p == 0 {
		return Endpoint{}, usagef("%q: the service needs a port, as %s:80", text, text)
	}
	addrs, err := resolveHost(ctx, r, host)
	if err != nil {
		return Endpoint{}, usagef("%q: %v", text, err)
	}
	ep := Endpoint{Text: text}
	for _, a := range addrs {
		ep.Addrs = append(ep.Addrs, netip.AddrPortFrom(a, p))
	}
	return ep, nil
}

// resolveHost returns an address, or every address of a host name.
func resolveHost(ctx context.Context, r names.Resolver, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return nil, usagef("%s: zones are not supported", host)
		}
		return []netip.Addr{a.Unmap()}, nil
	}
	if r == nil || !names.ValidHostName(host) {
		return nil, usagef("%s: not an address (write [v6]:port for IPv6)", host)
	}
	addrs, err := r.LookupHost(ctx, host)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, usagef("host %s: no address", host)
	}
	return addrs, nil
}

// lookupPort reads a port number (1..65535) or a service name of proto.
func lookupPort(r names.Resolver, proto uint8, s string) (uint16, error) {
	if r == nil {
		r = names.Map{} // numbers only
	}
	p, err := r.LookupPort(protoWord(proto), s)
	if err != nil {
		return 0, usagef("port %s: a number 0..65535 or a service name", s)
	}
	return p, nil // 0 too: ipvsadm's port-0 services; portfw needs a port (resolveEndpoint's needPort)
}

// protoWord is the services file's name of a protocol.
func protoWord(p uint8) string {
	if p == packet.ProtoUDP {
		return "udp"
	}
	return "tcp"
}

// familiesMatch narrows the service to the address families every real
// server has an address of: a VIP name with IPv4 and IPv6 addresses and
// IPv4 real servers makes an IPv4 service. It is an error when no family
// is left, and the error names the real server that lacks it.
func (c *Command) familiesMatch() error {
	var keep []netip.AddrPort
	var lacking Endpoint
	for _, vip := range c.VIP.Addrs {
		ok := true
		for _, r := range c.Reals {
			if len(r.Of(vip.Addr(), vip.Port())) == 0 {
				ok, lacking = false, r
			}
		}
		if ok {
			keep = append(keep, vip)
		}
	}
	if len(keep) == 0 && len(c.VIP.Addrs) > 0 {
		vip := c.VIP.Addrs[0]
		return usagef("%s: the real server has no IPv%s address, and the service %s is IPv%s: the address family differs",
			lacking.Text, family(vip.Addr()), c.VIP.Text, family(vip.Addr()))
	}
	c.VIP.Addrs = keep
	return nil
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "4"
	}
	return "6"
}
