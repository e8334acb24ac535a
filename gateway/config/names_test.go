package config

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vsgate/vsgate/gateway/names"
	"github.com/vsgate/vsgate/nat"
)

// labNames is the tests' resolver: the handbook's host name with an
// address of each family, a real server with both and one with IPv4 only.
var labNames = names.Map{Hosts: map[string][]netip.Addr{
	"www.fuancn.cn": {netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("2001:db8::10")},
	"rs1":           {netip.MustParseAddr("198.18.2.11"), netip.MustParseAddr("2001:db8:2::11")},
	"rs2":           {netip.MustParseAddr("198.18.2.12")},
	"gw-outside":    {netip.MustParseAddr("198.18.0.20")},
	"gw-inside":     {netip.MustParseAddr("198.18.2.254"), netip.MustParseAddr("2001:db8:2::254")},
}}

// TestNames: names in the file are resolved once, as it is read: a VIP
// name is a service per address (its copy named NAME-2), a backend name
// every address of the service's family; the masquerade addresses too; and
// Resolved says what each became, at its line.
func TestNames(t *testing.T) {
	src := `services:
  - name: web
    proto: tcp
    vip: www.fuancn.cn:80
    scheduler: rr
    backends:
      - addr: rs1:80
        weight: 2
      - addr: gw-inside:80
masquerade_to: gw-outside
masquerade_inside: [gw-inside]
masquerade:
  - from: 198.18.2.0/24
  - into: 198.18.2.0/24
  - ipchains: "-A forward -j MASQ -d 2001:db8:2::/64"
`
	c, err := ParseNames(context.Background(), []byte(src), "names.yaml", labNames)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Services) != 2 {
		t.Fatalf("%d services, want 2 (one per address of www.fuancn.cn)", len(c.Services))
	}
	v4, v6 := c.Services[0], c.Services[1]
	if v4.Name != "web" || v4.VIP != netip.MustParseAddrPort("198.18.0.10:80") || v6.Name != "web-2" || v6.VIP != netip.MustParseAddrPort("[2001:db8::10]:80") {
		t.Fatalf("services %v %v / %v %v", v4.Name, v4.VIP, v6.Name, v6.VIP)
	}
	wantV4 := []Backend{{Addr: netip.MustParseAddrPort("198.18.2.11:80"), Weight: 2}, {Addr: netip.MustParseAddrPort("198.18.2.254:80"), Weight: 1}}
	wantV6 := []Backend{{Addr: netip.MustParseAddrPort("[2001:db8:2::11]:80"), Weight: 2}, {Addr: netip.MustParseAddrPort("[2001:db8:2::254]:80"), Weight: 1}}
	if !slices.Equal(v4.Backends, wantV4) || !slices.Equal(v6.Backends, wantV6) {
		t.Errorf("backends %v and %v, want %v and %v", v4.Backends, v6.Backends, wantV4, wantV6)
	}
	wantMasq := []nat.Masquerade{
		{From: netip.MustParsePrefix("198.18.2.0/24"), To: netip.MustParseAddr("198.18.0.20"), Ports: [2]uint16{1024, 65535}},
		{Into: netip.MustParsePrefix("198.18.2.0/24"), To: netip.MustParseAddr("198.18.2.254"), Ports: [2]uint16{1024, 65535}},
		{Into: netip.MustParsePrefix("2001:db8:2::/64"), To: netip.MustParseAddr("2001:db8:2::254"), Ports: [2]uint16{1024, 65535}},
	}
	if !slices.Equal(c.Masquerade, wantMasq) {
		t.Errorf("masquerade %+v, want %+v", c.Masquerade, wantMasq)
	}
	var got []string
	for _, r := range c.Resolved {
		got = append(got, strings.Trim(strings.Join([]string{r.Key, r.Name, addrList(r.Addrs)}, " "), " "))
	}
	want := []string{
		"services[0].vip www.fuancn.cn 198.18.0.10,2001:db8::10",
		"services[0].backends[0].addr rs1 198.18.2.11",
		"services[0].backends[1].addr gw-inside 198.18.2.254",
		"services[1].backends[0].addr rs1 2001:db8:2::11",
		"services[1].backends[1].addr gw-inside 2001:db8:2::254",
		"masquerade_to gw-outside 198.18.0.20",
		"masquerade_inside[0] gw-inside 198.18.2.254,2001:db8:2::254",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Resolved:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if c.Resolved[0].Line != 4 || c.Resolved[3].Line != 7 {
		t.Errorf("lines %d, %d, want 4 and 7", c.Resolved[0].Line, c.Resolved[3].Line)
	}
}

// TestNamesNarrowAndCopyErrors: a VIP name with both families and IPv4
// backends is an IPv4 service; a problem of a copy made for a name's
// second address is reported at the line of the file's entry.
func TestNamesNarrowAndCopyErrors(t *testing.T) {
	src := `services:
  - proto: tcp
    vip: www.fuancn.cn:80
    backends:
      - addr: 198.18.2.13:80
`
	c, err := ParseNames(context.Background(), []byte(src), "narrow.yaml", labNames)
	if err != nil || len(c.Services) != 1 || c.Services[0].VIP != netip.MustParseAddrPort("198.18.0.10:80") {
		t.Fatalf("IPv4 backends under a dual-stack name: %v, %v", c, err)
	}
	src = `services:
  - proto: tcp
    vip: "[2001:db8::10]:80"
  - proto: tcp
    vip: www.fuancn.cn:80
`
	_, err = ParseNames(context.Background(), []byte(src), "copy.yaml", labNames)
	if err == nil || !strings.Contains(err.Error(), "copy.yaml:5:") {
		t.Fatalf("error %v, want the IPv6 copy's clash with the first service reported at its vip line, 5", err)
	}
}

func addrList(as []netip.Addr) string {
	var s []string
	for _, a := range as {
		s = append(s, a.String())
	}
	return strings.Join(s, ",")
}
