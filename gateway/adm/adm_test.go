package adm

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vsgate/vsgate/gateway/names"
	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// lab is the resolver of the tests: the handbook's host name with an
// address of each family, one name with IPv4 only, and the services file's
// http.
var lab = names.Map{
	Hosts: map[string][]netip.Addr{
		"www.fuancn.cn": {netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("2001:db8::10")},
		"rs1":           {netip.MustParseAddr("198.18.2.11"), netip.MustParseAddr("2001:db8:2::11")},
		"rs2":           {netip.MustParseAddr("198.18.2.12")},
	},
	Services: map[string]uint16{"tcp/http": 80, "tcp/telnet": 23},
}

// defaults are the masquerade addresses of the tests' gateway.
var defaults = Defaults{
	MasqTo: []netip.Addr{netip.MustParseAddr("198.18.0.20"), netip.MustParseAddr("2001:db8::20")},
	Inside: []netip.Addr{netip.MustParseAddr("198.18.2.254")},
}

func parse(line string) (*Command, error) {
	return Parse(context.Background(), strings.Fields(line), lab)
}

func run(t *testing.T, cfg nat.Config, line string) (nat.Config, error) {
	t.Helper()
	c, err := parse(line)
	if err != nil {
		return cfg, err
	}
	return Apply(cfg, c, defaults)
}

func mustRun(t *testing.T, cfg nat.Config, lines ...string) nat.Config {
	t.Helper()
	for _, l := range lines {
		var err error
		if cfg, err = run(t, cfg, l); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
	}
	return cfg
}

// TestIpvsadmSession runs the commands of a typical LVS-NAT setup and
// checks the table they build, then ipvsadm's own errors.
func TestIpvsadmSession(t *testing.T) {
	cfg := mustRun(t, nat.Config{},
		"-A -t 198.18.0.10:80 -s wrr",
		"-a -t 198.18.0.10:80 -r 198.18.2.11:8080 -m -w 3",
		"-a -t 198.18.0.10:80 -r 198.18.2.12 -m",
		"-A -u 198.18.0.10:53 -s rr -p 60 -M 255.255.255.0",
		"-a -u 198.18.0.10:53 -r 198.18.2.13:53 --fullnat -w 2",
		"-e -t 198.18.0.10:80 -r 198.18.2.12:80 -m -w 0",
		"--set 600 60 120",
	)
	if len(cfg.Services) != 2 {
		t.Fatalf("services %+v", cfg.Services)
	}
	web := cfg.Services[0]
	want := []nat.Backend{
		{Addr: netip.MustParseAddr("198.18.2.11"), Port: 8080, Weight: 3},
		{Addr: netip.MustParseAddr("198.18.2.12"), Port: 80, Weight: 0},
	}
	if web.Scheduler != "wrr" || web.Mode != nat.ModeNAT || len(web.Backends) != 2 || web.Backends[0] != want[0] || web.Backends[1] != want[1] {
		t.Fatalf("web service %+v", web)
	}
	dns := cfg.Services[1]
	if dns.Proto != packet.ProtoUDP || dns.Persistence != 60*time.Second || dns.PersistMask != 24 || dns.Mode != nat.ModeFullNAT {
		t.Fatalf("dns service %+v", dns)
	}
	if cfg.Timeouts.TCPEstablished != 600*time.Second || cfg.Timeouts.TCPFinWait != time.Minute || cfg.Timeouts.UDP != 2*time.Minute {
		t.Fatalf("timeouts %+v", cfg.Timeouts)
	}
	for _, tc := range []struct {
		line string
		want error
	}{
		{"-A -t 198.18.0.10:80", ErrServiceExists},
		{"-E -t 198.18.0.99:80 -s rr", ErrNoService},
		{"-D -t 198.18.0.99:80", ErrNoService},
		{"-a -t 198.18.0.99:80 -r 198.18.2.11", ErrNotDefined},
		{"-a -t 198.18.0.10:80 -r 198.18.2.11:8080", ErrDestExists},
		{"-e -t 198.18.0.10:80 -r 198.18.2.99", ErrNoDest},
		{"-d -t 198.18.0.10:80 -r 198.18.2.99", ErrNoDest},
		{"-A -t 198.18.0.11:80 -s nosuch", ErrNoScheduler},
		{"-a -t 198.18.0.10:80 -r 198.18.2.14 --fullnat", ErrUsage},
	} {
		if _, err := run(t, cfg, tc.line); !errors.Is(err, tc.want) {
			t.Errorf("%s: error %v, want %v", tc.line, err, tc.want)
		}
	}
	// What IPVS has and vsgate not: refused as ipvsadm's kernel refuses
	// (exit 255), saying so.
	for _, tc := range []struct{ line, want string }{
		{"-A --sctp-service 198.18.0.10:80", "Protocol not available"},
		{"-a -t 198.18.0.10:80 -r 198.18.2.14 -i", "tunnelling (-i) is not supported"},
		{"-a -t 198.18.0.10:80 -r 198.18.2.14 -m -y 10", "Numerical result out of range"},
		{"-A -t 198.18.0.10:81 --pe sip", "Scheduler or persistence engine not found"},
	} {
		_, err := run(t, cfg, tc.line)
		status := 255 // what the gateway answers for an error Apply returns
		if ee := (*ExitError)(nil); errors.As(err, &ee) {
			status = ee.Status
		}
		if err == nil || status != 255 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v (status %d), want one saying %q with status 255", tc.line, err, status, tc.want)
		}
	}
	// -E and -e send a whole entry, as ipvsadm does: what they do not
	// give goes back to ipvsadm's default.
	edited := mustRun(t, cfg, "-E -u 198.18.0.10:53 -s wrr")
	if s := edited.Services[1]; s.Scheduler != "wrr" || s.Persistence != 0 || s.PersistMask != 0 {
		t.Fatalf("-E -s wrr on a persistent rr service: %+v, want wrr without persistence", s)
	}
	edited = mustRun(t, cfg, "-E -u 198.18.0.10:53 -p 600")
	if s := edited.Services[1]; s.Scheduler != "wlc" || s.Persistence != 600*time.Second {
		t.Fatalf("-E -p 600: %+v, want wlc, persistent 600", s)
	}
	edited = mustRun(t, cfg, "-e -t 198.18.0.10:80 -r 198.18.2.11:8080 -m")
	if b := edited.Services[0].Backends[0]; b.Weight != 1 {
		t.Fatalf("-e without -w: weight %d, want 1", b.Weight)
	}
	if _, err := run(t, cfg, "-e -t 198.18.0.10:80 -r 198.18.2.11:8080 -w 5"); err == nil {
		t.Fatal("-e without -m on a NAT service with two real servers (ipvsadm: direct routing for that one) was accepted")
	}
	// A persistent service of port 0 (ipvsadm.c: -t VIP without a port;
	// allowed with -p), its real servers on port 0 (the client's port).
	zero := mustRun(t, cfg, "-A -t 198.18.0.14 -p", "-a -t 198.18.0.14:0 -r 198.18.2.11 -m", "-a -t 198.18.0.14 -r 198.18.2.12:8080 -m")
	if s := zero.Services[2]; s.Port != 0 || s.Persistence != 360*time.Second || s.Backends[0].Port != 0 || s.Backends[1].Port != 8080 {
		t.Fatalf("port-0 service: %+v", s)
	}
	var save bytes.Buffer
	WriteSave(&save, nat.Config{Services: zero.Services[2:]}, nil)
	if want := "-A -t 198.18.0.14:0 -s wlc -p 360\n-a -t 198.18.0.14:0 -r 198.18.2.11:0 -m -w 1\n-a -t 198.18.0.14:0 -r 198.18.2.12:8080 -m -w 1\n"; save.String() != want {
		t.Fatalf("-S of a port-0 service:\n%s\nwant\n%s", save.String(), want)
	}
	// Firewall-mark services (ipvsadm.c: -f MARK, -6 after it for IPv6;
	// listed "FWM  %d", saved "-f %d", their real servers' ports numeric
	// and 0 when not given).
	fwm := mustRun(t, cfg, "-A -f 1 -s rr -p 60", "-a -f 1 -r 198.18.2.11 -m", "-A -f 1 -6 -s wlc", "-a -f 1 -6 -r [2001:db8:2::11]:80 -m")
	if s := fwm.Services[2]; s.Fwmark != 1 || s.Proto != 0 || !s.VIP.Is4() || s.Backends[0].Port != 0 || fwm.Services[3].Fwmark != 1 || !fwm.Services[3].VIP.Is6() {
		t.Fatalf("-A -f 1, -A -f 1 -6: %+v", fwm.Services[2:])
	}
	if _, err := run(t, fwm, "-A -f 1"); !errors.Is(err, ErrServiceExists) {
		t.Fatalf("-A -f 1 again: %v", err)
	}
	save.Reset()
	WriteSave(&save, nat.Config{Services: fwm.Services[2:]}, &Names{Services: lab})
	if want := "-A -f 1 -s rr -p 60\n-a -f 1 -r 198.18.2.11:0 -m -w 1\n-A -f 1 -6 -s wlc\n-a -f 1 -6 -r [2001:db8:2::11]:80 -m -w 1\n"; save.String() != want {
		t.Fatalf("-S of firewall-mark services:\n%s\nwant\n%s", save.String(), want)
	}
	var fl bytes.Buffer
	lc, err := parse("-L -n -f 1")
	if err != nil {
		t.Fatal(err)
	}
	WriteList(&fl, lc, &View{Services: []nat.ServiceInfo{{Service: fwm.Services[2], Backends: []nat.BackendInfo{{Backend: fwm.Services[2].Backends[0]}}}, {Service: fwm.Services[3]}}})
	if want := "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\nFWM  1 rr persistent 60\n  -> 198.18.2.11:0                Masq    1      0          0         \n"; fl.String() != want {
		t.Fatalf("-L -n -f 1:\n%q\nwant\n%q", fl.String(), want)
	}
	if back := mustRun(t, fwm, "-D -f 1 -6"); len(back.Services) != 3 || back.Services[2].VIP.Is6() {
		t.Fatalf("-D -f 1 -6: %+v", back.Services)
	}
	// One-packet scheduling (ipvsadm.c: -o, UDP only; -E without it
	// removes it): listed " ops" after persistence, saved " -o" before -b.
	ops := mustRun(t, cfg, "-A -u 198.18.0.10:54 -s sh -b sh-port -p 30 -o", "-a -u 198.18.0.10:54 -r 198.18.2.11 -m")
	if s := ops.Services[2]; !s.OnePacket {
		t.Fatalf("-A -u -o: %+v", s)
	}
	save.Reset()
	WriteSave(&save, nat.Config{Services: ops.Services[2:]}, nil)
	if want := "-A -u 198.18.0.10:54 -s sh -p 30 -o -b sh-port\n-a -u 198.18.0.10:54 -r 198.18.2.11:54 -m -w 1\n"; save.String() != want {
		t.Fatalf("-S of a one-packet service:\n%s\nwant\n%s", save.String(), want)
	}
	var list bytes.Buffer
	c, err := parse("-L -n")
	if err != nil {
		t.Fatal(err)
	}
	WriteList(&list, c, &View{Services: []nat.ServiceInfo{{Service: ops.Services[2]}}})
	if !strings.Contains(list.String(), "UDP  198.18.0.10:54 sh (sh-port) persistent 30 ops\n") {
		t.Fatalf("-L -n of a one-packet service:\n%s", list.String())
	}
	if s := mustRun(t, ops, "-E -u 198.18.0.10:54 -s rr").Services[2]; s.OnePacket {
		t.Fatalf("-E without -o kept one-packet scheduling: %+v", s)
	}
	// Connection thresholds (ipvsadm.c: -x/-y set u_threshold/l_threshold
	// of the whole entry -a and -e send; ipvsadm-save leaves them out).
	edited = mustRun(t, cfg, "-e -t 198.18.0.10:80 -r 198.18.2.11:8080 -m -x 100 -y 50")
	if b := edited.Services[0].Backends[0]; b.Upper != 100 || b.Lower != 50 {
		t.Fatalf("-e -x 100 -y 50: %+v", b)
	}
	if b := mustRun(t, edited, "-e -t 198.18.0.10:80 -r 198.18.2.11:8080 -m -w 2").Services[0].Backends[0]; b.Upper != 0 || b.Lower != 0 || b.Weight != 2 {
		t.Fatalf("-e -w 2 after -x 100 -y 50: %+v, want the thresholds gone", b)
	}
	if b := mustRun(t, cfg, "-a -t 198.18.0.10:80 -r 198.18.2.14 -m -x 8").Services[0].Backends[2]; b.Upper != 8 || b.Lower != 0 {
		t.Fatalf("-a -x 8: %+v", b)
	}
	cfg = mustRun(t, cfg, "-d -t 198.18.0.10:80 -r 198.18.2.12:80", "-D -u 198.18.0.10:53")
	if len(cfg.Services) != 1 || len(cfg.Services[0].Backends) != 1 {
		t.Fatalf("after deletes: %+v", cfg.Services)
	}
	if cfg = mustRun(t, cfg, "-C"); len(cfg.Services) != 0 {
		t.Fatalf("after -C: %+v", cfg.Services)
	}
}

// TestParseErrors: bad command lines are refused with a message that says
// what to do.
func TestParseErrors(t *testing.T) {
	// ipvsadm 1.31's own words and exit statuses (ipvsadm.c, popt): 2 for
	// what ipvsadm refuses, 255 for a line without a command first and
	// for popt's complaints after it.
	for _, tc := range []struct {
		line, want string
		status     int
	}{
		{"-n -L", "Try `ipvsadm -h' or 'ipvsadm --help' for more information.", 255},
		{"-t 198.18.0.10:80 -A", "Try `ipvsadm -h' or 'ipvsadm --help' for more information.", 255},
		{"--bogus", "Try `ipvsadm -h' or 'ipvsadm --help' for more information.", 255},
		{"-L -q", "-q: unknown option", 255},
		{"-Lq", "-Lq: unknown option", 255},
		{"-A -t", "-t: missing argument", 255},
		{"-L --numeric=1", "--numeric=1: option does not take an argument", 255},
		{"-A", "You need to supply the 'service-address' option for the 'add-service' command", 2},
		{"-A -t 198.18.0.10", "Zero port specified for non-persistent service", 2},
		{"-A -t nosuch.example:80", "illegal virtual server address[:port] specified", 2},
		{"-A -t 198.18.0.10:nosuch", "illegal virtual server address[:port] specified", 2},
		{"-a -t 198.18.0.10:80", "You need to supply the 'real-server' option for the 'add-server' command", 2},
		{"-a -r 198.18.2.1", "You need to supply the 'service-address' option for the 'add-server' command", 2},
		{"-a -t 198.18.0.10:80 -r 198.18.2.1 -w 70000", "illegal weight specified", 2},
		{"-A -t 198.18.0.10:80 -M 255.0.255.0", "illegal virtual server persistent mask specified", 2},
		{"-A -t [2001:db8::10]:80 -M 129", "illegal ipv6 netmask specified", 2},
		{"-A -t 198.18.0.10:80 -p x", "invalid timeout value `x' specified", 2},
		{"-A -t 198.18.0.10:80 -p 0", "invalid timeout value `0' specified", 2},
		{"-A -t 198.18.0.10:80 -p 2678401", "invalid timeout value `2678401' specified", 2},
		{"-A -D -t 198.18.0.10:80", "invalid option `-D'", 2},
		{"-L -L", "invalid option `-L'", 2},
		{"-A -t 198.18.0.10:80 -s rr -s wlc", "multiple 'scheduler' options specified", 2},
		{"-a -t 198.18.0.10:80 -r 198.18.2.1 -g -m", "multiple 'forwarding-method' options specified", 2},
		{"-A -t 198.18.0.10:80 -t 198.18.0.11:80", "multiple 'service-address' options specified", 2},
		{"-A -t 198.18.0.10:80 -r 198.18.2.1", "Illegal 'real-server' option with the 'add-service' command", 2},
		{"-a -t 198.18.0.10:80 -r 198.18.2.1 -s rr", "Illegal 'scheduler' option with the 'add-server' command", 2},
		{"-A -t 198.18.0.10:80 -w 3 -n", "Illegal 'numeric' option with the 'add-service' command", 2},
		{"-S -t 198.18.0.10:80", "Illegal 'service-address' option with the 'save' command", 2},
		{"-L -c -t 198.18.0.10:80", "The option 'service-address' conflicts with the 'connection' option in the 'list' command", 2},
		{"-L -c --stats", "options conflicts in the list command", 2},
		{"-d -t 198.18.0.10:80 -r 198.18.2.1 -w 1", "Illegal 'weight' option with the 'delete-server' command", 2},
		{"--set 1 2", "--set option requires 3 timeout values", 2},
		{"--set 1 2 x", "invalid timeout value `x' specified", 2},
		{"--set 1 2 3 4", "unexpected argument 4", 2},
		{"-L foo", "unexpected argument foo", 2},
		{"-A -t 198.18.0.10:80 --bogus", "--bogus: unknown option", 255},
		{"-A -f x", "invalid fwmark value `x' specified", 2},
		{"-A -6 -f 1", "-6 used before -f\n", 2},
		{"-A -t 198.18.0.10:80 -o", "One-Packet Scheduling is only for UDP virtual services", 2},
		{"-A -t 198.18.0.10:80 -b flag-9", "invalid scheduler flag `flag-9'", 2},
		{"-A -t 198.18.0.10:80 -b sh-port", "incompatible scheduler flag `sh-port'", 2},
		{"-a -t 198.18.0.10:80 -r 198.18.2.1 --tun-type gue", "Tunnel options conflict with forward method", 2},
		{"portfw -a -P tcp -L 198.18.0.10 80", "insufficient options specified", 2},
		{"portfw -a -P sctp", "invalid protocol specified", 2},
		{"ipchains -A input -j MASQ -s 198.18.2.0/24", "forward chain", 2},
		{"ipchains -A forward -j ACCEPT -s 198.18.2.0/24", "masquerade rules only: -j MASQ", 2},
	} {
		_, err := parse(tc.line)
		status := 2
		if ee := (*ExitError)(nil); errors.As(err, &ee) {
			status = ee.Status
		}
		if err == nil || !errors.Is(err, ErrUsage) || status != tc.status {
			t.Errorf("%q: error %v (status %d), want %q (status %d)", tc.line, err, status, tc.want, tc.status)
			continue
		}
		if _, ok := err.(*ExitError); ok && err.Error() != tc.want || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %q, want %q", tc.line, err, tc.want)
		}
	}
}

// TestPoptForms: popt's ways of giving an option's value, -p's optional
// one (360 s without it), and ipvsadm's defaults.
func TestPoptForms(t *testing.T) {
	for _, tc := range []struct {
		line  string
		check func(c *Command) bool
	}{
		{"-A -t 198.18.0.10:80 -p", func(c *Command) bool { return c.Persistence == 360*time.Second && c.Scheduler == "wlc" }},
		{"-A -t 198.18.0.10:80 -p -M 255.255.255.0", func(c *Command) bool { return c.Persistence == 360*time.Second && c.Netmask == 24 }},
		{"-A -t 198.18.0.10:80 -p 600", func(c *Command) bool { return c.Persistence == 600*time.Second }},
		{"-A -t198.18.0.10:80 -p600 -srr", func(c *Command) bool {
			return c.Persistence == 600*time.Second && c.Scheduler == "rr" && c.VIP.Text == "198.18.0.10:80"
		}},
		{"-A -t 198.18.0.10:80 -p=600", func(c *Command) bool { return c.Persistence == 600*time.Second }},
		{"--add-service --tcp-service=198.18.0.10:80 --persistent=600 --scheduler rr", func(c *Command) bool {
			return c.Op == OpAddService && c.Persistence == 600*time.Second && c.Scheduler == "rr"
		}},
		{"-A -t 198.18.0.10 -p", func(c *Command) bool { return c.VIP.Addrs[0].Port() == 0 && c.Persistence > 0 }},
		{"-Ln", func(c *Command) bool { return c.Op == OpList && c.Numeric }},
		{"-L -n --sort", func(c *Command) bool { return c.Op == OpList && c.Numeric }},
		{"", func(c *Command) bool { return c.Op == OpList && !c.Numeric }},
		{"-h", func(c *Command) bool { return c.Op == OpHelp && c.Help() == IpvsadmHelp }},
		{"-v", func(c *Command) bool { return c.Op == OpVersion }},
		{"-a -t 198.18.0.10:80 -r 198.18.2.1 -w+5", func(c *Command) bool { return c.Weight == 5 }},
		{"ipvsadm -L -n -- ", func(c *Command) bool { return c.Op == OpList }},
	} {
		c, err := parse(tc.line)
		if err != nil || !tc.check(c) {
			t.Errorf("%q: %+v, %v", tc.line, c, err)
		}
	}
}

// TestPortfwAndIPChains: the seed's own commands build the same table.
func TestPortfwAndIPChains(t *testing.T) {
	cfg := mustRun(t, nat.Config{},
		"portfw -a -P tcp -L 198.18.0.10 80 -R 198.18.2.11 80",
		"portfw -a -P tcp -L 198.18.0.10 80 -R 198.18.2.12 80 -p 20",
		"ipchains -A forward -j MASQ -s 198.18.2.0/255.255.255.0",
	)
	s := cfg.Services[0]
	if s.Scheduler != "wrr" || len(s.Backends) != 2 || s.Backends[0].Weight != PortfwPref || s.Backends[1].Weight != 20 {
		t.Fatalf("portfw built %+v", s)
	}
	if len(cfg.Masquerade) != 1 || cfg.Masquerade[0].From != netip.MustParsePrefix("198.18.2.0/24") || cfg.Masquerade[0].To != netip.MustParseAddr("198.18.0.20") {
		t.Fatalf("masquerade %+v", cfg.Masquerade)
	}
	cfg = mustRun(t, cfg, "portfw -d -P tcp -L 198.18.0.10 80 -R 198.18.2.11 80")
	if len(cfg.Services[0].Backends) != 1 {
		t.Fatalf("after portfw -d -R: %+v", cfg.Services[0])
	}
	cfg = mustRun(t, cfg, "portfw -f", "ipchains -D forward -j MASQ -s 198.18.2.0/24")
	if len(cfg.Services) != 0 || len(cfg.Masquerade) != 0 {
		t.Fatalf("after flush: %+v", cfg)
	}
	var buf bytes.Buffer
	WriteMasq(&buf, mustRun(t, nat.Config{}, "ipchains -A forward -j MASQ -s 198.18.2.0/24 --to 198.18.0.21"), nil)
	if !strings.Contains(buf.String(), "MASQ       all  ------  198.18.2.0/24        0.0.0.0/0             n/a => 198.18.0.21") {
		t.Errorf("ipchains -L:\n%s", buf.String())
	}
}

// TestListFormats compares listings with ipvsadm's layout, column for
// column.
func TestListFormats(t *testing.T) {
	rip := netip.MustParseAddr("198.18.2.11")
	v := &View{Size: 4096, Services: []nat.ServiceInfo{{
		Service: nat.Service{Proto: packet.ProtoTCP, VIP: netip.MustParseAddr("198.18.0.10"), Port: 80, Scheduler: "rr",
			Persistence: 300 * time.Second, PersistMask: 24},
		Stats: nat.Stats{Conns: 100, PacketsIn: 700, BytesIn: 36700, PacketsOut: 123456789},
		Backends: []nat.BackendInfo{{Backend: nat.Backend{Addr: rip, Port: 8080, Weight: 1, Upper: 2000000, Lower: 1500}, ActiveConns: 3, InactiveConns: 12, PersistConns: 2,
			Stats: nat.Stats{Conns: 50, PacketsIn: 350, BytesIn: 18350}}},
	}}}
	v.Flows = []nat.FlowInfo{{Proto: packet.ProtoTCP, State: "ESTABLISHED", Expires: 231 * time.Second,
		OrigSrc: netip.MustParseAddrPort("198.18.0.2:56954"), OrigDst: netip.MustParseAddrPort("198.18.0.10:80"),
		ReplySrc: netip.MustParseAddrPort("198.18.2.11:8080")}}
	v.Timeouts = nat.DefaultTimeouts()
	for _, tc := range []struct{ args, want string }{
		{"-L -n", `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  198.18.0.10:80 rr persistent 300 mask 255.255.255.0
  -> 198.18.2.11:8080             Masq    1      3          12        
`},
		{"-Ln --stats", `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  198.18.0.10:80                    100      700  123456K    36700        0
  -> 198.18.2.11:8080                   50      350        0    18350        0
`},
		{"-lnc", `IPVS connection entries
pro expire state       source             virtual            destination
TCP 03:51  ESTABLISHED 198.18.0.2:56954   198.18.0.10:80     198.18.2.11:8080
`},
		{"-L --timeout", "Timeout (tcp tcpfin udp): 900 120 300\n"},
		// One service: ipvsadm prints no version line.
		{"-L -n -t 198.18.0.10:80", `Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  198.18.0.10:80 rr persistent 300 mask 255.255.255.0
  -> 198.18.2.11:8080             Masq    1      3          12        
`},
		{"-L -n --thresholds", `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  198.18.0.10:80 rr persistent 300 mask 255.255.255.0
  -> 198.18.2.11:8080             2000000    1500       3          12        
`},
		{"-L -n --persistent-conn", `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  198.18.0.10:80 rr persistent 300 mask 255.255.255.0
  -> 198.18.2.11:8080             1         2           3          12        
`},
	} {
		c, err := parse(tc.args)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		WriteList(&buf, c, v)
		if buf.String() != tc.want {
			t.Errorf("ipvsadm %s:\n got:\n%s\nwant:\n%s", tc.args, buf.String(), tc.want)
		}
	}
}

// TestSaveRestore: -S output read back by -R rebuilds the same table.
func TestSaveRestore(t *testing.T) {
	cfg := mustRun(t, nat.Config{},
		"-A -t 198.18.0.10:80 -s wrr -p 120 -M 255.255.0.0",
		"-a -t 198.18.0.10:80 -r 198.18.2.11:8080 -m -w 3",
		"-A -u [2001:db8::10]:53 -s sh -b sh-port",
		"-a -u [2001:db8::10]:53 -r [2001:db8:2::11]:53 --fullnat -w 1",
	)
	var buf bytes.Buffer
	WriteSave(&buf, cfg, nil)
	want := `-A -t 198.18.0.10:80 -s wrr -p 120 -M 255.255.0.0
-a -t 198.18.0.10:80 -r 198.18.2.11:8080 -m -w 3
-A -u [2001:db8::10]:53 -s sh -b sh-port
-a -u [2001:db8::10]:53 -r [2001:db8:2::11]:53 --fullnat -w 1
`
	if buf.String() != want {
		t.Fatalf("-S:\n%s\nwant:\n%s", buf.String(), want)
	}
	installs := 0
	install := func(nat.Config) error { installs++; return nil }
	back, st := Restore(context.Background(), nat.Config{}, buf.String(), Defaults{}, lab, install, nil)
	if st.Status != 0 || len(st.Errors) != 0 || installs != 4 {
		t.Fatalf("-R of -S: %+v, %d lines installed", st, installs)
	}
	var again bytes.Buffer
	WriteSave(&again, back, nil)
	if again.String() != want {
		t.Fatalf("after -R, -S gives:\n%s", again.String())
	}
	// As ipvsadm -R: a line its kernel refuses is reported and the rest
	// runs, each line a change of its own; the status is the last line's;
	// every word "ipvsadm" is dropped.
	back, st = Restore(context.Background(), nat.Config{}, "ipvsadm -A -t 198.18.0.10:80\n\n-a -t 198.18.0.99:80 -r 198.18.2.1 -m\n-a -t 198.18.0.10:80 -r 198.18.2.1 -m\n", Defaults{}, lab, install, nil)
	if st.Status != 0 || len(st.Errors) != 1 || st.Errors[0] != "Service not defined" || len(back.Services) != 1 || len(back.Services[0].Backends) != 1 {
		t.Fatalf("a refused line in the middle: %+v, %+v", st, back.Services)
	}
	_, st = Restore(context.Background(), nat.Config{}, "-A -t 198.18.0.10:80\n-D -t 198.18.0.99:80\n", Defaults{}, lab, install, nil)
	if st.Status != 255 || len(st.Errors) != 1 || st.Errors[0] != "No such service" {
		t.Fatalf("a refused last line: %+v, want status 255", st)
	}
	// A line ipvsadm refuses itself ends the restore: a '#' comment
	// (ipvsadm 1.31 does not understand them), a bad option.
	back, st = Restore(context.Background(), nat.Config{}, "-A -t 198.18.0.10:80\n# a comment\n-A -t 198.18.0.11:80\n", Defaults{}, lab, install, nil)
	if st.Status != 255 || len(back.Services) != 1 || !strings.HasPrefix(st.Errors[0], "Try `ipvsadm -h'") {
		t.Fatalf("a comment line: %+v, %d services", st, len(back.Services))
	}
	back, st = Restore(context.Background(), nat.Config{}, "-A -t 198.18.0.10:80 -w 3\n-A -t 198.18.0.11:80\n", Defaults{}, lab, install, nil)
	if st.Status != 2 || len(back.Services) != 0 || st.Errors[0] != "Illegal 'weight' option with the 'add-service' command" {
		t.Fatalf("a bad first line: %+v, %d services", st, len(back.Services))
	}
	// A line the gateway cannot install is refused like the kernel's.
	_, st = Restore(context.Background(), nat.Config{}, "-A -t 198.18.0.10:80\n", Defaults{}, lab, func(nat.Config) error { return errors.New("no room") }, nil)
	if st.Status != 255 || st.Errors[0] != "no room" {
		t.Fatalf("an install that fails: %+v", st)
	}
}

// TestSaveOrderAndNames: -S lists in ipvsadm's order (libipvs's
// ipvs_cmp_services: IPv4 before IPv6, then protocol, address, port; real
// servers by address and port), writes -p and -M before -b (ipvsadm.c's
// print_service_entry, FMT_RULE), and without -n names hosts and ports
// (addrport_to_anyname); -R of the named form restores the same table.
func TestSaveOrderAndNames(t *testing.T) {
	cfg := mustRun(t, nat.Config{},
		"-A -t [2001:db8::10]:80 -s rr",
		"-A -u 198.18.0.10:53 -s sh -b sh-port -p 60",
		"-A -t 198.18.0.10:80 -s wlc",
		"-a -t 198.18.0.10:80 -r 198.18.2.12:80 -m",
		"-a -t 198.18.0.10:80 -r 198.18.2.11:8080 -m -w 2",
		"-a -t 198.18.0.10:80 -r 198.18.2.11:80 -m -x 5",
	)
	var buf bytes.Buffer
	WriteSave(&buf, cfg, nil)
	numeric := `-A -t 198.18.0.10:80 -s wlc
-a -t 198.18.0.10:80 -r 198.18.2.11:80 -m -w 1
-a -t 198.18.0.10:80 -r 198.18.2.11:8080 -m -w 2
-a -t 198.18.0.10:80 -r 198.18.2.12:80 -m -w 1
-A -u 198.18.0.10:53 -s sh -p 60 -b sh-port
-A -t [2001:db8::10]:80 -s rr
`
	if buf.String() != numeric {
		t.Fatalf("-S -n:\n%s\nwant:\n%s", buf.String(), numeric)
	}
	// ipvsadm resolves a name to IPv4 only (host_to_addr): the test's
	// names have one address each.
	r := names.Map{
		Hosts: map[string][]netip.Addr{
			"vip.lab": {netip.MustParseAddr("198.18.0.10")},
			"rs1":     {netip.MustParseAddr("198.18.2.11")},
		},
		Services: map[string]uint16{"tcp/http": 80, "udp/domain": 53},
	}
	buf.Reset()
	WriteSave(&buf, cfg, LookupNames(context.Background(), r, []netip.Addr{netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("198.18.2.11")}))
	named := `-A -t vip.lab:http -s wlc
-a -t vip.lab:http -r rs1:http -m -w 1
-a -t vip.lab:http -r rs1:8080 -m -w 2
-a -t vip.lab:http -r 198.18.2.12:http -m -w 1
-A -u vip.lab:domain -s sh -p 60 -b sh-port
-A -t [2001:db8::10]:http -s rr
`
	if buf.String() != named {
		t.Fatalf("-S:\n%s\nwant:\n%s", buf.String(), named)
	}
	// For -S a name that stands for more addresses than this one is not
	// written: -R would make a service of each.
	r.Hosts["vip.lab"] = append(r.Hosts["vip.lab"], netip.MustParseAddr("2001:db8::10"))
	buf.Reset()
	WriteSave(&buf, cfg, LookupSaveNames(context.Background(), r, []netip.Addr{netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("198.18.2.11")}))
	if strings.Contains(buf.String(), "vip.lab") || !strings.Contains(buf.String(), "-a -t 198.18.0.10:http -r rs1:http -m -w 1") {
		t.Fatalf("-S with a name of two addresses:\n%s", buf.String())
	}
	r.Hosts["vip.lab"] = r.Hosts["vip.lab"][:1]
	back, st := Restore(context.Background(), nat.Config{}, named, Defaults{}, r, func(nat.Config) error { return nil }, nil)
	if st.Status != 0 || len(st.Errors) != 0 {
		t.Fatalf("-R of the named -S: %+v", st)
	}
	buf.Reset()
	WriteSave(&buf, back, nil)
	if buf.String() != numeric {
		t.Fatalf("-R of the named -S, then -S -n:\n%s\nwant:\n%s", buf.String(), numeric)
	}
	// Signed differences: 200.0.0.1 - 10.0.0.1 is more than 2^31, so
	// ipvsadm lists 200.0.0.1 first.
	if c := compareAddr(netip.MustParseAddr("200.0.0.1"), netip.MustParseAddr("10.0.0.1")); c >= 0 {
		t.Fatalf("compareAddr(200.0.0.1, 10.0.0.1) = %d, want < 0 as libipvs's", c)
	}
	if c := compareAddr(netip.MustParseAddr("198.18.0.11"), netip.MustParseAddr("198.18.0.10")); c <= 0 {
		t.Fatalf("compareAddr(198.18.0.11, 198.18.0.10) = %d, want > 0", c)
	}
}

// TestListLargeNumbers: --stats and --rate print counters as ipvsadm's
// print_largenum does (A:1819-1840): up to 8 digits in 9 columns, then
// thousands with K below 1e9, millions with M below 1e11, billions with G
// below 1e14, else trillions with T, each division truncating; --exact
// prints every digit, in 9 columns or one more than the digits. A real
// server's --rate shows CPS, InPPS and OutPPS plain.
func TestListLargeNumbers(t *testing.T) {
	big := nat.Stats{Conns: 99999999, PacketsIn: 100000000, PacketsOut: 99999999999, BytesIn: 100000000000, BytesOut: 123456789012345}
	s := nat.Service{Proto: packet.ProtoTCP, VIP: netip.MustParseAddr("198.18.0.10"), Port: 80, Scheduler: "rr"}
	b := nat.Backend{Addr: netip.MustParseAddr("198.18.2.11"), Port: 80, Weight: 1}
	v := &View{Services: []nat.ServiceInfo{{Service: s, Stats: big, Backends: []nat.BackendInfo{{Backend: b, Stats: big}}}},
		Rates: map[string]Rates{
			ServiceKey(s):    {CPS: 999999999, InPPS: 1000000000, OutPPS: 5, InBPS: 99999999999999, OutBPS: 100000000000000},
			BackendKey(s, b): {CPS: 123456789, InPPS: 1, OutPPS: 2, InBPS: 100000000, OutBPS: 8},
		}}
	for _, tc := range []struct{ args, want string }{
		{"-L -n --stats -t 198.18.0.10:80", `Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  198.18.0.10:80               99999999  100000K   99999M     100G     123T
  -> 198.18.2.11:80               99999999  100000K   99999M     100G     123T
`},
		{"-L -n --stats --exact -t 198.18.0.10:80", `Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  198.18.0.10:80               99999999 100000000 99999999999 100000000000 123456789012345
  -> 198.18.2.11:80               99999999 100000000 99999999999 100000000000 123456789012345
`},
		{"-L -n --rate -t 198.18.0.10:80", `Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS
  -> RemoteAddress:Port
TCP  198.18.0.10:80                999999K    1000M        5   99999G     100T
  -> 198.18.2.11:80               123456789        1        2  100000K        8
`},
	} {
		c, err := parse(tc.args)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		WriteList(&out, c, v)
		if out.String() != tc.want {
			t.Errorf("%s:\n%q\nwant\n%q", tc.args, out.String(), tc.want)
		}
	}
}

// FuzzParse: no command line crashes Parse or Apply, and a command that
// applies gives a configuration the engine accepts or rejects cleanly.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"-A -t 198.18.0.10:80 -s wrr", "-a -t 198.18.0.10:80 -r 198.18.2.11:8080 -m -w 3",
		"iptables -t mangle -A PREROUTING -d 198.18.0.16/30 -p tcp --dport 80:81 -j MARK --set-mark 1", "-A -f 1 -6 -p", "-a -f 1 -r 198.18.2.11 -m -x 3 -y 1",
		"--start-daemon master --syncid 3", "-A -u 198.18.0.10:53 -o", "-A -t 198.18.0.10 -p",
		"-Lnc", "--set 1 2 3", "portfw -a -P tcp -L 198.18.0.10 80 -R 198.18.2.11 80 -p 5",
		"ipchains -A forward -j MASQ -s 198.18.2.0/24", "-A -u [2001:db8::10]:53 -p -M 64",
		"ipmasqadm -A www.fuancn.cn:80 -R rs1:80 -R rs2:http", "ipchains -A forward -j MASQ -d 198.18.2.0/24",
		"ipchains -P forward DENY", "ipchains -D forward 1", "ipmasqadm portfw -d -P udp -L [2001:db8::10]:53"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		c, err := parse(line)
		if err != nil {
			return
		}
		cfg, err := Apply(nat.Config{Services: []nat.Service{{Proto: packet.ProtoTCP, VIP: netip.MustParseAddr("198.18.0.10"), Port: 80, Scheduler: "rr"}}},
			c, defaults)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		WriteSave(&buf, cfg, nil)
		WriteMasq(&buf, cfg, nil)
		WritePortfw(&buf, &View{Services: nil, Names: &Names{}})
		if e, err := nat.New(nat.Config{Capacity: 16, Services: cfg.Services, Masquerade: cfg.Masquerade, Timeouts: cfg.Timeouts}); err == nil {
			var list bytes.Buffer
			WriteList(&list, &Command{Op: OpList}, &View{Services: e.Services()})
		}
	})
}

// TestNumberRanges: numbers too big for their flag are refused, not
// wrapped (-p 99999999999999 became a negative duration).
func TestNumberRanges(t *testing.T) {
	for _, args := range [][]string{
		{"-A", "-t", "198.18.0.10:80", "-p", "99999999999999"},
		{"-A", "-t", "198.18.0.10:80", "-p", "2678401"},
		{"--set", "99999999999", "0", "0"},
	} {
		if _, err := Parse(context.Background(), args, nil); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	if c, err := Parse(context.Background(), []string{"-A", "-t", "198.18.0.10:80", "-p", "2678400"}, nil); err != nil || c.Persistence != 2678400*time.Second {
		t.Errorf("-p 2678400: %+v, %v", c, err)
	}
}
