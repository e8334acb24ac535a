package netlab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// KernelRef describes the kernel reference gateway: the same virtual
// service vsgate provides, done by nftables in the gateway namespace —
// DNAT of VIP:port round robin (numgen inc) over the backends, and
// masquerade (SNAT to a fixed address) of the backend subnet leaving
// towards the clients.
//
// The zero value describes nothing; get one from Lab.KernelRefFor. It is
// plain data.
type KernelRef struct {
	Gateway  string       // host name
	OutIf    string       // interface suffix towards the clients (masquerade only out of it)
	VIPs     []netip.Addr // IPv4 and/or IPv6
	Backends []netip.Addr // both families; each VIP uses those of its family, in order
	TCPPorts []uint16     // e.g. 80, 7
	UDPPorts []uint16     // e.g. 53

	MasqFrom []netip.Prefix // backend subnets to masquerade
	MasqTo   []netip.Addr   // source address per family
}

// KernelRefFor returns the reference for a standard topology's plan: VIPs
// 198.18.0.10 and 2001:db8::10, TCP 80 and 7, UDP 53, over the three
// backends, masquerading the server subnets to the masquerade addresses.
func (l *Lab) KernelRefFor() (KernelRef, error) {
	p := l.Topo.Plan
	if len(p.Gateways) != 1 || len(p.Backends) == 0 || !p.Masq4.IsValid() {
		return KernelRef{}, fmt.Errorf("netlab: topology %s has no single gateway with a masquerade address", l.Topo.Name)
	}
	ref := KernelRef{
		Gateway:  p.Gateways[0],
		OutIf:    p.GatewayOut,
		VIPs:     []netip.Addr{p.VIP4, p.VIP6},
		TCPPorts: []uint16{80, 7},
		UDPPorts: []uint16{53},
		MasqFrom: []netip.Prefix{p.ServerNet4, p.ServerNet6},
		MasqTo:   []netip.Addr{p.Masq4, p.Masq6},
	}
	for _, b := range p.Backends {
		addrs, err := l.MustHost(b).Addrs()
		if err != nil {
			return KernelRef{}, err
		}
		ref.Backends = append(ref.Backends, addrs...)
	}
	return ref, nil
}

// nftTable is the name of the reference's tables (one ip, one ip6).
const nftTable = "vsgate_ref"

// Ruleset returns the nftables ruleset of the reference; ifPrefix is the
// lab's run prefix (interface names are prefix+suffix).
func (r KernelRef) Ruleset(ifPrefix string) (string, error) {
	var b strings.Builder
	for _, fam := range []string{"ip", "ip6"} {
		is4 := fam == "ip"
		var backends []string
		for _, a := range r.Backends {
			if a.Is4() == is4 {
				backends = append(backends, a.String())
			}
		}
		fmt.Fprintf(&b, "table %s %s {\n", fam, nftTable)
		b.WriteString("\tchain pre {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n")
		for _, vip := range r.VIPs {
			if vip.Is4() != is4 {
				continue
			}
			if len(backends) == 0 {
				return "", fmt.Errorf("netlab: kernel reference: no %s backend for VIP %v", fam, vip)
			}
			var m []string
			for i, a := range backends {
				m = append(m, fmt.Sprintf("%d : %s", i, a))
			}
			for _, proto := range []struct {
				name  string
				ports []uint16
			}{{"tcp", r.TCPPorts}, {"udp", r.UDPPorts}} {
				for _, port := range proto.ports {
					// One numgen per rule: each port has its own round robin.
					fmt.Fprintf(&b, "\t\t%s daddr %s %s dport %d dnat %s to numgen inc mod %d map { %s }\n",
						fam, vip, proto.name, port, fam, len(backends), strings.Join(m, ", "))
				}
			}
		}
		b.WriteString("\t}\n\tchain post {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n")
		for i, from := range r.MasqFrom {
			if from.Addr().Is4() != is4 || i >= len(r.MasqTo) {
				continue
			}
			fmt.Fprintf(&b, "\t\t%s saddr %s oifname %q snat %s to %s\n", fam, from, ifPrefix+r.OutIf, fam, r.MasqTo[i])
		}
		b.WriteString("\t}\n}\n")
	}
	return b.String(), nil
}

// StartKernelRef loads the reference ruleset into the gateway namespace
// with nft (run through `ip netns exec`). The rules go away with the
// namespace; StopKernelRef removes them earlier.
func (l *Lab) StartKernelRef(ctx context.Context, r KernelRef) error {
	h := l.Host(r.Gateway)
	if h == nil {
		return fmt.Errorf("netlab: kernel reference: no host %s", r.Gateway)
	}
	rs, err := r.Ruleset(l.Prefix)
	if err != nil {
		return err
	}
	cmd := h.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rs)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("netlab: kernel reference in %s: nft -f: %w: %s\nruleset:\n%s", h.Name, err, out, rs)
	}
	return nil
}

// StopKernelRef deletes the reference tables from the gateway namespace.
func (l *Lab) StopKernelRef(ctx context.Context, r KernelRef) error {
	h := l.Host(r.Gateway)
	if h == nil {
		return fmt.Errorf("netlab: kernel reference: no host %s", r.Gateway)
	}
	var errs []error
	for _, fam := range []string{"ip", "ip6"} {
		if _, err := h.Run(ctx, "nft", "delete", "table", fam, nftTable); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
