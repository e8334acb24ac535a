package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	example := filepath.Join("..", "..", "gateway", "config", "testdata", "vsgate.yaml")
	good := write("good.yaml", "services:\n  - proto: tcp\n    vip: 198.18.0.10:80\n    backends: [{addr: 198.18.2.11}, {addr: 198.18.2.12}]\n"+
		"masquerade:\n  - {from: 198.18.2.0/24, to: 198.18.0.20}\n")
	named := write("named.yaml", "services:\n  - proto: tcp\n    vip: 198.18.0.10:80\n    backends:\n      - addr: localhost:8080\n")
	bad := write("bad.yaml", "services:\n  - proto: tcp\n    vip: 198.18.0.10\n    backends:\n      - {addr: 198.18.2.11, weight: 70000}\nmetrics: {listen: 0.0.0.0:9100}\n")
	nouser := write("nouser.yaml", "user: no-such-user-here\n")
	ecmp := write("ecmp.yaml", "services:\n  - {proto: tcp, vip: 198.18.0.10:80, sloppy: true, backends: [{addr: 198.18.2.11:80}]}\n"+
		"  - {proto: udp, vip: 198.18.0.10:53, sloppy: true, backends: [{addr: 198.18.2.11:53}]}\n"+
		"  - {proto: tcp, vip: 198.18.0.11:80, sloppy: true, backends: [{addr: 198.18.2.11:80}]}\n")
	for _, tc := range []struct {
		args       []string
		code       int
		out, errs  []string // lines expected in stdout and stderr, in order
		errsPrefix bool     // errs are prefixes
	}{
		{args: []string{"-c", good}, code: 0,
			out: []string{good + ": ok (1 service, 2 backends, 1 masquerade rule)"}},
		{args: []string{"-c", named}, code: 0, out: []string{
			named + ":5: services[0].backends[0].addr localhost -> 127.0.0.1",
			named + ": ok (1 service, 1 backend, 0 masquerade rules)"}},
		{args: []string{"-c", example}, code: 0,
			out: []string{example + ": ok (3 services, 7 backends, 4 masquerade rules)"}},
		{args: []string{"-c", ecmp}, code: 0, out: []string{
			ecmp + ": tcp 198.18.0.10:80: its real servers' answers need the gateway that saw the client: 198.18.2.11:80 also serves tcp 198.18.0.11:80 (behind ECMP, give each service real server ports of its own, or use fullnat)",
			ecmp + ": udp 198.18.0.10:53: its real servers' answers are translated on any gateway (each serves only this service)",
			ecmp + ": tcp 198.18.0.11:80: its real servers' answers need the gateway that saw the client: 198.18.2.11:80 also serves tcp 198.18.0.10:80 (behind ECMP, give each service real server ports of its own, or use fullnat)",
			ecmp + ": ok (3 services, 3 backends, 0 masquerade rules)"}},
		{args: []string{"-c", bad}, code: 1, errs: []string{
			bad + ":3: vip 198.18.0.10 has no port: add one, such as vip: 198.18.0.10:80",
			bad + ":5: backend 198.18.2.11: weight 70000 is out of range: use 0..65535",
			bad + ":6: metrics listen address 0.0.0.0:9100 is not a loopback address: use 127.0.0.1 or [::1], or set metrics.public: true to serve metrics to the network on purpose",
		}},
		{args: []string{"-c", nouser}, code: 1,
			errs: []string{nouser + ": user: user \"no-such-user-here\": no such user"}},
		{args: []string{"-c", filepath.Join(dir, "missing.yaml")}, code: 1,
			errs: []string{"vsgate check: config: open "}, errsPrefix: true},
		{args: nil, code: 2},
		{args: []string{"-c"}, code: 2},
		{args: []string{"-c", good, "extra"}, code: 2},
		{args: []string{"-h"}, code: 0, out: lines(checkUsage)},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"check"}, tc.args...), &out, &errb)
		if code != tc.code {
			t.Errorf("check %v = %d, want %d\n%s%s", tc.args, code, tc.code, out.String(), errb.String())
			continue
		}
		if tc.code == 2 {
			continue
		}
		if got := lines(out.String()); !equalLines(got, tc.out, false) {
			t.Errorf("check %v stdout:\n%s\nwant:\n%s", tc.args, out.String(), strings.Join(tc.out, "\n"))
		}
		if got := lines(errb.String()); !equalLines(got, tc.errs, tc.errsPrefix) {
			t.Errorf("check %v stderr:\n%s\nwant:\n%s", tc.args, errb.String(), strings.Join(tc.errs, "\n"))
		}
	}
}

func lines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func equalLines(got, want []string, prefix bool) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if prefix && !strings.HasPrefix(got[i], want[i]) || !prefix && got[i] != want[i] {
			return false
		}
	}
	return true
}
