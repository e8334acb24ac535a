package names_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/vsgate/vsgate/gateway/names"
)

func TestParseServices(t *testing.T) {
	byName, byPort := names.ParseServices(strings.NewReader(`# services
http		80/tcp		www		# WorldWideWeb HTTP
http		80/udp
domain		53/tcp
domain		53/udp
webcache	8080/tcp
http-alt	8080/tcp	# a second name for a port keeps the first
bad		x/tcp
`))
	for k, want := range map[string]uint16{"tcp/http": 80, "tcp/www": 80, "udp/http": 80, "udp/domain": 53, "tcp/http-alt": 8080} {
		if byName[k] != want {
			t.Errorf("byName[%s] = %d, want %d", k, byName[k], want)
		}
	}
	for k, want := range map[string]string{"tcp/80": "http", "udp/53": "domain", "tcp/8080": "webcache"} {
		if byPort[k] != want {
			t.Errorf("byPort[%s] = %q, want %q", k, byPort[k], want)
		}
	}
	if _, ok := byName["tcp/bad"]; ok {
		t.Error("a line with a bad port was read")
	}
}

func TestValidHostName(t *testing.T) {
	for s, want := range map[string]bool{
		"www.fuancn.cn": true, "localhost": true, "a_b-c.example.": true,
		"": false, "198.18.0.10": false, "1.2.3": false, "-a.example": false, "a..b": false,
		"a b": false, "[::1]": false, strings.Repeat("a", 64) + ".cn": false,
	} {
		if got := names.ValidHostName(s); got != want {
			t.Errorf("ValidHostName(%q) = %v, want %v", s, got, want)
		}
	}
}

// TestSystemLiteralAndMissing: a literal address needs no lookup; a name
// of the reserved .invalid domain (RFC 6761) is not found, and says so.
func TestSystemLiteralAndMissing(t *testing.T) {
	var s names.System
	got, err := s.LookupHost(context.Background(), "::ffff:198.18.0.10")
	if err != nil || len(got) != 1 || got[0] != netip.MustParseAddr("198.18.0.10") {
		t.Fatalf("literal: %v %v", got, err)
	}
	if _, err := s.LookupHost(context.Background(), "no-such-host.invalid"); err == nil {
		t.Fatal("a .invalid name resolved")
	}
	if _, err := s.LookupHost(context.Background(), "bad name"); err == nil || !strings.Contains(err.Error(), "neither an address nor a host name") {
		t.Fatalf("bad name: %v", err)
	}
	if p, err := s.LookupPort("tcp", "8080"); err != nil || p != 8080 {
		t.Fatalf("numeric port: %d %v", p, err)
	}
}

func TestMapAndHostNames(t *testing.T) {
	v4, v6 := netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("2001:db8::10")
	m := names.Map{Hosts: map[string][]netip.Addr{"www.fuancn.cn": {v6, v4, v4}}, Services: map[string]uint16{"tcp/http": 80}}
	got, err := m.LookupHost(context.Background(), "www.fuancn.cn")
	if err != nil || len(got) != 2 || got[0] != v4 || got[1] != v6 {
		t.Fatalf("LookupHost: %v %v (want IPv4 first, no repeats)", got, err)
	}
	if _, err := m.LookupHost(context.Background(), "other"); !errors.Is(err, names.ErrNotFound) {
		t.Fatalf("missing name: %v", err)
	}
	if p, _ := m.LookupPort("tcp", "http"); p != 80 || m.PortName("tcp", 80) != "http" || m.PortName("udp", 80) != "" {
		t.Fatal("services")
	}
	n := names.HostNames(context.Background(), m, []netip.Addr{v4, v6, v4, netip.MustParseAddr("198.18.2.11")})
	if len(n) != 2 || n[v4] != "www.fuancn.cn" || n[v6] != "www.fuancn.cn" {
		t.Fatalf("HostNames: %v", n)
	}
}
