package adm

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// TestIPTablesMarks: the mangle table's MARK rules, as LVS setups write
// them before ipvsadm -f, build the engine's marking rules in order (-A at
// the end, -I at a position, -D by rule or number, -F), per family, and
// list in iptables' layout; what vsgate does not do is refused saying so.
func TestIPTablesMarks(t *testing.T) {
	cfg := mustRun(t, nat.Config{},
		"iptables -t mangle -A PREROUTING -d 198.18.0.16/30 -p tcp --dport 80:81 -j MARK --set-mark 1",
		"iptables -t mangle -A PREROUTING -d rs2 -j MARK --set-mark 0x2",
		"ip6tables -t mangle -A PREROUTING -d 2001:db8::16 -p udp --dport 53 -j MARK --set-mark 1",
		"iptables -t mangle -I PREROUTING 1 -d 198.18.0.20 -p tcp --dport http -j MARK --set-mark 3",
	)
	want := []nat.Mark{
		{Mark: 3, Dst: netip.MustParsePrefix("198.18.0.20/32"), Proto: packet.ProtoTCP, Ports: [2]uint16{80, 80}},
		{Mark: 1, Dst: netip.MustParsePrefix("198.18.0.16/30"), Proto: packet.ProtoTCP, Ports: [2]uint16{80, 81}},
		{Mark: 2, Dst: netip.MustParsePrefix("198.18.2.12/32")},
		{Mark: 1, Dst: netip.MustParsePrefix("2001:db8::16/128"), Proto: packet.ProtoUDP, Ports: [2]uint16{53, 53}},
	}
	if len(cfg.Marks) != len(want) {
		t.Fatalf("marks %+v", cfg.Marks)
	}
	for i := range want {
		if cfg.Marks[i] != want[i] {
			t.Fatalf("mark %d: %+v, want %+v", i, cfg.Marks[i], want[i])
		}
	}
	var b bytes.Buffer
	WriteMarks(&b, cfg, false)
	if w := `Chain PREROUTING (policy ACCEPT)
target     prot opt source               destination         
MARK       tcp  --  0.0.0.0/0            198.18.0.20          tcp dpt:80 MARK set 0x3
MARK       tcp  --  0.0.0.0/0            198.18.0.16/30       tcp dpts:80:81 MARK set 0x1
MARK       all  --  0.0.0.0/0            198.18.2.12          MARK set 0x2
`; b.String() != w {
		t.Fatalf("iptables -t mangle -L -n:\n%s\nwant\n%s", b.String(), w)
	}
	// -D by rule and by number (of the family), -F of one family.
	after := mustRun(t, cfg, "iptables -t mangle -D PREROUTING -d 198.18.0.16/30 -p tcp --dport 80:81 -j MARK --set-mark 1", "iptables -t mangle -D PREROUTING 1")
	if len(after.Marks) != 2 || after.Marks[0].Mark != 2 || after.Marks[1].Dst.Addr().Is4() {
		t.Fatalf("after two -D: %+v", after.Marks)
	}
	if after = mustRun(t, cfg, "ip6tables -t mangle -F"); len(after.Marks) != 3 {
		t.Fatalf("after ip6tables -F: %+v", after.Marks)
	}
	for _, tc := range []struct{ line, want string }{
		{"iptables -t nat -A PREROUTING -d 198.18.0.10 -j MARK --set-mark 1", "mangle table only"},
		{"iptables -t mangle -A INPUT -d 198.18.0.10 -j MARK --set-mark 1", "PREROUTING only"},
		{"iptables -t mangle -A PREROUTING -p tcp --dport 80 -j MARK --set-mark 1", "needs -d"},
		{"iptables -t mangle -A PREROUTING -d 198.18.0.10 -j ACCEPT", "-j MARK --set-mark N"},
		{"iptables -t mangle -A PREROUTING -d 198.18.0.10 --dport 80 -j MARK --set-mark 1", "--dport needs -p tcp or -p udp"},
		{"iptables -t mangle -A PREROUTING -d 198.18.0.10 -j MARK --set-mark 0", "a mark 1..4294967295"},
		{"iptables -t mangle -A PREROUTING -d 198.18.0.10 -j MARK --set-mark 1/0xff", "mask other than 0xffffffff"},
		{"iptables -t mangle -A PREROUTING -d 2001:db8::10 -j MARK --set-mark 1", "no IPv4 address"},
		{"iptables -t mangle -A PREROUTING -d 198.18.0.10 -s 198.18.0.2 -j MARK --set-mark 1", "vsgate speaks"},
	} {
		if _, err := run(t, nat.Config{}, tc.line); !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a usage error saying %q", tc.line, err, tc.want)
		}
	}
	for _, tc := range []struct{ line, want string }{
		{"iptables -t mangle -D PREROUTING -d 198.18.0.99 -j MARK --set-mark 1", "Bad rule"},
		{"iptables -t mangle -D PREROUTING 9", "Index of deletion too big."},
		{"iptables -t mangle -I PREROUTING 9 -d 198.18.0.99 -j MARK --set-mark 1", "Index of insertion too big."},
	} {
		if _, err := run(t, cfg, tc.line); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.line, err, tc.want)
		}
	}
	if c, err := parse("iptables -h"); err != nil || c.Op != OpHelp || c.Help() != IPTablesHelp {
		t.Fatalf("iptables -h: %+v, %v", c, err)
	}
}
