package adm

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/vsgate/vsgate/gateway/names"
	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// save is -S of cfg.
func save(cfg nat.Config) string {
	var b bytes.Buffer
	WriteSave(&b, cfg, nil)
	return b.String()
}

// TestHandbookForms: each form the handbook and ipmasqadm's manual use,
// and the ipvsadm table (-S) it makes.
func TestHandbookForms(t *testing.T) {
	l7 := nat.Config{Services: []nat.Service{{Proto: packet.ProtoTCP, VIP: netip.MustParseAddr("198.18.0.10"), Port: 81, Mode: nat.ModeL7}}}
	for _, tc := range []struct {
		name  string
		lines []string
		want  string // -S
	}{
		{"handbook, twice", []string{
			"ipmasqadm -A www.fuancn.cn:80 -R 198.18.2.11:80",
			"ipmasqadm -A www.fuancn.cn:80 -R 198.18.2.12:80",
		}, `-A -t 198.18.0.10:80 -s wrr
-a -t 198.18.0.10:80 -r 198.18.2.11:80 -m -w 10
-a -t 198.18.0.10:80 -r 198.18.2.12:80 -m -w 10
`},
		{"handbook, two -R in one line, with -p", []string{
			"ipmasqadm -A 198.18.0.10:23 -R 198.18.2.11:7 -R 198.18.2.12:7 -p 3",
		}, `-A -t 198.18.0.10:23 -s wrr
-a -t 198.18.0.10:23 -r 198.18.2.11:7 -m -w 3
-a -t 198.18.0.10:23 -r 198.18.2.12:7 -m -w 3
`},
		{"a name with both families and IPv4 real servers: an IPv4 service", []string{
			"ipmasqadm -A www.fuancn.cn:80 -R rs2:80",
		}, `-A -t 198.18.0.10:80 -s wrr
-a -t 198.18.0.10:80 -r 198.18.2.12:80 -m -w 10
`},
		{"a name with both families makes a service of each", []string{
			"ipmasqadm -A www.fuancn.cn:http -R rs1:80",
		}, `-A -t 198.18.0.10:80 -s wrr
-a -t 198.18.0.10:80 -r 198.18.2.11:80 -m -w 10
-A -t [2001:db8::10]:80 -s wrr
-a -t [2001:db8::10]:80 -r [2001:db8:2::11]:80 -m -w 10
`},
		{"manual page, through ipmasqadm portfw", []string{
			"ipmasqadm portfw -a -P tcp -L 198.18.0.10 80 -R 198.18.2.11 80",
			"ipmasqadm portfw -a -P tcp -L 198.18.0.10 80 -R 198.18.2.12 80 -p 20",
			"portfw -a -P udp -L 2001:db8::10 53 -R 2001:db8:2::11 53",
		}, `-A -t 198.18.0.10:80 -s wrr
-a -t 198.18.0.10:80 -r 198.18.2.11:80 -m -w 10
-a -t 198.18.0.10:80 -r 198.18.2.12:80 -m -w 20
-A -u [2001:db8::10]:53 -s wrr
-a -u [2001:db8::10]:53 -r [2001:db8:2::11]:53 -m -w 10
`},
		{"delete one redirect, then the rest", []string{
			"ipmasqadm -A www.fuancn.cn:80 -R 198.18.2.11:80 -R 198.18.2.12:80",
			"ipmasqadm -A 198.18.0.10:23 -R 198.18.2.11:7",
			"ipmasqadm -D 198.18.0.10:80 -R 198.18.2.11:80",
			"portfw -d -P tcp -L 198.18.0.10 23",
		}, `-A -t 198.18.0.10:80 -s wrr
-a -t 198.18.0.10:80 -r 198.18.2.12:80 -m -w 10
`},
		{"ipvsadm with names", []string{
			"-A -t www.fuancn.cn:http -s rr",
			"-a -t www.fuancn.cn:http -r rs1 -m",
		}, `-A -t 198.18.0.10:80 -s rr
-a -t 198.18.0.10:80 -r 198.18.2.11:80 -m -w 1
-A -t [2001:db8::10]:80 -s rr
-a -t [2001:db8::10]:80 -r [2001:db8:2::11]:80 -m -w 1
`},
	} {
		cfg := mustRun(t, nat.Config{}, tc.lines...)
		if got := save(cfg); got != tc.want {
			t.Errorf("%s: -S gives\n%s\nwant\n%s", tc.name, got, tc.want)
		}
	}
	// Flushing (portfw -f, ipvsadm -C) keeps the L7 services, which
	// neither tool made.
	for _, line := range []string{"portfw -f", "-C"} {
		cfg := mustRun(t, l7, "ipmasqadm -A www.fuancn.cn:80 -R rs1:80", line)
		if len(cfg.Services) != 1 || cfg.Services[0].Mode != nat.ModeL7 {
			t.Errorf("%s left %+v, want the L7 service alone", line, cfg.Services)
		}
	}
	if _, err := run(t, l7, "ipmasqadm -A 198.18.0.10:81 -R rs1:80"); err == nil {
		t.Error("a redirect added to an L7 service")
	}
}

// TestRefusedForms: each is refused with its tool's own words, and changes
// nothing (the same configuration comes back).
func TestRefusedForms(t *testing.T) {
	base := mustRun(t, nat.Config{}, "ipmasqadm -A 198.18.0.10:80 -R 198.18.2.11:80")
	for _, tc := range []struct{ line, want string }{
		{"ipmasqadm", "no command"},
		{"ipmasqadm autofw -A", `module "autofw"`},
		{"ipmasqadm portfw -a -a", "multiple commands specified"},
		{"ipmasqadm portfw -a -P tcp -P udp", "multiple protocols specified"},
		{"ipmasqadm portfw -a -P icmp -L 198.18.0.10 80 -R 198.18.2.11 80", "invalid protocol specified"},
		{"ipmasqadm portfw -a -P tcp -L 198.18.0.10 80 -L 198.18.0.11 80", "multiple local address/port specified"},
		{"ipmasqadm portfw -a -P tcp -L nosuch 80 -R 198.18.2.11 80", "illegal local address/port specified"},
		{"ipmasqadm portfw -a -P tcp -L 198.18.0.10 80 -R 198.18.2.11 80 -R 198.18.2.12 80", "multiple destinations specified"},
		{"ipmasqadm portfw -a -P tcp -L 198.18.0.10 80 -R nosuch 80", "illegal destination specified"},
		{"ipmasqadm portfw -a -P tcp -L 198.18.0.10 80 -R 198.18.2.11 80 -p 0", "illegal preference value specified"},
		{"ipmasqadm portfw -a -P tcp -R 198.18.2.11 80", "insufficient options specified"},
		{"ipmasqadm portfw -l -P tcp", "incompatible options specified"},
		{"ipmasqadm portfw -x", "invalid option -- 'x'"},
		{"ipmasqadm -A [2001:db8::10]:80 -R rs2:80", "no IPv6 address"},
		{"ipmasqadm -A 198.18.0.10 -R 198.18.2.11:80", "illegal local address/port specified"},
		{"ipchains -A forward -j MASQ", "needs -s NET"},
		{"ipchains -A forward -j MASQ -s 198.18.2.0/24 -d 198.18.3.0/24", "one subnet"},
		{"ipchains -A forward -j MASQ -s 0/0", "0/0"},
		{"ipchains -A forward -j MASQ -s nosuch", "host/network `nosuch' not found"},
		{"ipchains -A forward -j MASQ -s 198.18.2.0/255.0.255.0", "host/network `198.18.2.0/255.0.255.0' not found"},
		{"ipchains -P forward REJECT", "use DENY"},
		{"ipchains -P forward maybe", "Invalid policy `maybe' for -P"},
		{"ipchains -P input DENY", "forward chain"},
		{"ipchains -A forward -j MASQ -s 198.18.2.0/24 -i eth0", "invalid option -- 'i'"},
		{"ipchains -D forward 1 -j MASQ", "a rule number or a rule"},
	} {
		_, err := run(t, base, tc.line)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one saying %q", tc.line, err, tc.want)
		}
	}
	for _, tc := range []struct{ line, want string }{
		{"ipchains -D forward -j MASQ -s 198.18.9.0/24", "ipchains: bad rule (does a matching rule exist in that chain?)"},
		{"ipchains -D forward 3", "ipchains: No chain by that name"},
		{"ipchains -A forward -j MASQ -d 198.18.3.0/24", "no address to masquerade to"},
		{"ipmasqadm -D 198.18.0.10:80 -R 198.18.2.99:80", "No such destination"},
		{"ipmasqadm -D 198.18.0.99:80", "No such service"},
	} {
		got, err := run(t, base, tc.line)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.line, err, tc.want)
		}
		if save(got) != save(base) || len(got.Masquerade) != 0 {
			t.Errorf("%q: a refused command changed the table:\n%s", tc.line, save(got))
		}
	}
	// All or nothing: the IPv4 half of a name is not added when the IPv6
	// half fails.
	got, err := run(t, nat.Config{}, "-A -t www.fuancn.cn:80")
	if err != nil {
		t.Fatal(err)
	}
	got = mustRun(t, got, "-a -t [2001:db8::10]:80 -r [2001:db8:2::12]:80")
	after, err := run(t, got, "-a -t www.fuancn.cn:80 -r [2001:db8:2::12]:80")
	if err == nil || save(after) != save(got) {
		t.Errorf("a half-failing command: error %v, table\n%s", err, save(after))
	}
}

// TestIPChains: the handbook's two lines, the listing in ipchains' layout,
// the policy, deletion and flush.
func TestIPChains(t *testing.T) {
	cfg := mustRun(t, nat.Config{},
		"ipchains -A forward -j MASQ -s 198.18.2.0/24",
		"ipchains -A forward -j MASQ -d 198.18.2.0/24",
		"ipchains -A forward -j MASQ -s rs1 --to 198.18.0.21",
	)
	want := []nat.Masquerade{
		{From: netip.MustParsePrefix("198.18.2.0/24"), To: netip.MustParseAddr("198.18.0.20")},
		{Into: netip.MustParsePrefix("198.18.2.0/24"), To: netip.MustParseAddr("198.18.2.254")},
		{From: netip.MustParsePrefix("198.18.2.11/32"), To: netip.MustParseAddr("198.18.0.21")},
	}
	if len(cfg.Masquerade) != 3 || cfg.Masquerade[0] != want[0] || cfg.Masquerade[1] != want[1] || cfg.Masquerade[2] != want[2] {
		t.Fatalf("rules %+v, want %+v", cfg.Masquerade, want)
	}
	if _, err := run(t, cfg, "ipchains -A forward -j MASQ -s 2001:db8:2::/64"); err != nil {
		t.Fatalf("IPv6 rule with the IPv6 masquerade_to: %v", err)
	}
	cfg = mustRun(t, cfg, "ipchains -P forward DENY")
	if !cfg.DropUnmatched {
		t.Fatal("-P forward DENY did not set default: drop")
	}
	var b bytes.Buffer
	WriteMasq(&b, cfg, nil)
	wantList := "Chain forward (policy DENY):\n" +
		"target     prot opt     source                destination           ports\n" +
		"MASQ       all  ------  198.18.2.0/24        0.0.0.0/0             n/a => 198.18.0.20\n" +
		"MASQ       all  ------  0.0.0.0/0            198.18.2.0/24         n/a => 198.18.2.254\n" +
		"MASQ       all  ------  198.18.2.11          0.0.0.0/0             n/a => 198.18.0.21\n"
	if b.String() != wantList {
		t.Errorf("ipchains -L forward -n:\n%s\nwant:\n%s", b.String(), wantList)
	}
	b.Reset()
	WriteMasq(&b, cfg, &Names{Hosts: map[netip.Addr]string{netip.MustParseAddr("198.18.2.11"): "rs1"}})
	if !strings.Contains(b.String(), "MASQ       all  ------  rs1                  anywhere              n/a => 198.18.0.21\n") {
		t.Errorf("ipchains -L forward (names):\n%s", b.String())
	}
	cfg = mustRun(t, cfg, "ipchains -D forward -j MASQ -d 198.18.2.0/24", "ipchains -D forward 2", "ipchains -P forward ACCEPT")
	if len(cfg.Masquerade) != 1 || cfg.Masquerade[0] != want[0] || cfg.DropUnmatched {
		t.Fatalf("after -D, -D 2 and -P ACCEPT: %+v", cfg)
	}
	if cfg = mustRun(t, cfg, "ipchains -F forward"); len(cfg.Masquerade) != 0 {
		t.Fatal("-F left rules")
	}
	for _, line := range []string{"ipchains -L", "ipchains -L forward -n", "ipchains -h"} {
		c, err := parse(line)
		if err != nil || c.Modifies() {
			t.Errorf("%s: %v", line, err)
		}
	}
}

// TestListNames: listings without -n show the names found, in each tool's
// layout; ipvsadm cuts an IPv4 real server's column at 28 bytes.
func TestListNames(t *testing.T) {
	vip, rip := netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("198.18.2.11")
	v := &View{Size: 4096, Services: []nat.ServiceInfo{{
		Service:  nat.Service{Proto: packet.ProtoTCP, VIP: vip, Port: 80, Scheduler: "wrr"},
		Backends: []nat.BackendInfo{{Backend: nat.Backend{Addr: rip, Port: 80, Weight: 10}, ActiveConns: 1, InactiveConns: 2}},
	}}, Names: &Names{
		Hosts:    map[netip.Addr]string{vip: "www.fuancn.cn", rip: "real-server-one.sales.fuancn.cn"},
		Services: names.Map{Services: map[string]uint16{"tcp/http": 80}},
	}}
	c, _ := parse("-L")
	var b bytes.Buffer
	WriteList(&b, c, v)
	want := `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  www.fuancn.cn:http wrr
  -> real-server-one.sales.fuancn Masq    10     1          2         
`
	if b.String() != want {
		t.Errorf("-L:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	WritePortfw(&b, v)
	want = `prot localaddr            rediraddr               lport    rport  pcnt  pref
TCP  www.fuancn.cn        real-server-one.sales.fuancn.cn     http     http     3    10
`
	if b.String() != want {
		t.Errorf("portfw -l:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	v.Names = nil
	WritePortfw(&b, v)
	if !strings.Contains(b.String(), "TCP  198.18.0.10          198.18.2.11                80       80     3    10\n") {
		t.Errorf("portfw -l -n:\n%s", b.String())
	}
}

// TestHelp: the tools' -h texts, with how they map onto ipvsadm.
func TestHelp(t *testing.T) {
	for line, want := range map[string]string{
		"ipmasqadm portfw -h": "How it maps onto ipvsadm",
		"portfw -h":           "-A LADDR:LPORT -R RADDR:RPORT",
		"ipchains -h":         "-P forward ACCEPT|DENY",
	} {
		c, err := parse(line)
		if err != nil || c.Op != OpHelp || !strings.Contains(c.Help(), want) {
			t.Errorf("%s: %v, help lacks %q", line, err, want)
		}
	}
}
