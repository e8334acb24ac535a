package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vsgate/vsgate/internal/netlab/labtest"

	"github.com/vishvananda/netlink"

	"github.com/vsgate/vsgate/internal/netlab"
)

// TestNetworkSetup wires a plan in a netlab gateway namespace (with a TUN
// device made by netlink) and checks every route, rule, proxy neighbour
// and sysctl; teardown must leave the namespace as it was.
func TestNetworkSetup(t *testing.T) {
	gw := wiringLab(t)
	plan := NetPlan{
		Device: "vsg0",
		Addrs:  []netip.Addr{netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("2001:db8::10"), netip.MustParseAddr("198.18.0.21")},
		Steer:  []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24"), netip.MustParsePrefix("2001:db8:2::/64")},
		Table:  100, RulePriority: 1000,
		L7: []netip.AddrPort{netip.MustParseAddrPort("198.18.0.10:81"), netip.MustParseAddrPort("198.18.0.10:8080"), netip.MustParseAddrPort("[2001:db8::10]:81")},
	}
	var before, during, after string
	snapshot := func() string { return wiringSnapshot(t, gw) }
	err := withTUN(gw, func(h *netlink.Handle) error {
		before = snapshot()
		st, err := setupNetwork(h, plan)
		if err != nil {
			return err
		}
		during = snapshot()
		// Refused: an address that is local already (the kernel would deliver it).
		bad := plan
		bad.Addrs = []netip.Addr{netip.MustParseAddr("198.18.0.20")}
		if _, err := setupNetwork(h, bad); err == nil || !strings.Contains(err.Error(), "local address") {
			t.Errorf("a local address was accepted: %v", err)
		}
		if err := st.teardown(); err != nil {
			return err
		}
		after = snapshot()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"198.18.0.10 dev vsg0", "198.18.0.21 dev vsg0", "2001:db8::10 dev vsg0",
		"default dev vsg0 table 100",
		"1000:\tfrom all iif " + gw.IfName(netlab.IfGWIn) + " lookup 100",
		"198.18.0.10 dev " + gw.IfName(netlab.IfGWOut) + " proxy",
		"2001:db8::10 dev " + gw.IfName(netlab.IfGWOut) + " proxy",
		"table inet vsgate", `iifname != "vsg0" oifname != "vsg0" counter packets 0 bytes 0 drop`,
		fmt.Sprintf("qlen %d", tunQueueLen),
		"999:\tfrom all to 198.18.0.10 ipproto tcp dport 81 lookup 101",
		"999:\tfrom all to 198.18.0.10 ipproto tcp dport 8080 lookup 101",
		"999:\tfrom all to 2001:db8::10 ipproto tcp dport 81 lookup 101",
		"local 198.18.0.10 dev lo table 101",
		"local 2001:db8::10 dev lo table 101",
	} {
		if !strings.Contains(during, want) {
			t.Errorf("while wired, missing %q in:\n%s", want, during)
		}
	}
	if before != after {
		t.Errorf("teardown left changes:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestRewire: moving from one plan to another adds what is new before
// anything goes, keeps what both need, and removes the rest only when
// told; a refused plan changes nothing; undoNew goes back exactly.
func TestRewire(t *testing.T) {
	gw := wiringLab(t)
	snapshot := func() string {
		out, err := gw.Run(context.Background(), "sh", "-c", "ip -4 route show table all; ip -6 route show table all | grep -v fe80; ip -4 rule; ip -6 rule; ip neigh show proxy")
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return string(out)
	}
	plan := func(addrs ...string) NetPlan {
		p := NetPlan{Device: "vsg0", Steer: []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")}, Table: 100, RulePriority: 1000}
		for _, a := range addrs {
			p.Addrs = append(p.Addrs, netip.MustParseAddr(a))
		}
		return p
	}
	err := withTUN(gw, func(h *netlink.Handle) error {
		empty := snapshot()
		a, err := setupNetwork(h, plan("198.18.0.10", "198.18.0.11"))
		if err != nil {
			return err
		}
		wiredA := snapshot()

		// To B: .11 stays, .10 goes, .12 comes. Before done, both
		// plans' routes are there; .11's was never removed.
		b, done, err := rewire(h, a, plan("198.18.0.11", "198.18.0.12"))
		if err != nil {
			return err
		}
		mid := snapshot()
		for _, want := range []string{"198.18.0.10 dev vsg0", "198.18.0.11 dev vsg0", "198.18.0.12 dev vsg0"} {
			if !strings.Contains(mid, want) {
				t.Errorf("between the plans, missing %q", want)
			}
		}
		if err := done(); err != nil {
			return err
		}
		wiredB := snapshot()
		if strings.Contains(wiredB, "198.18.0.10 dev vsg0") || !strings.Contains(wiredB, "198.18.0.12 dev vsg0") {
			t.Errorf("after B:\n%s", wiredB)
		}

		// Refused: a local address. Nothing changes.
		if _, _, err := rewire(h, b, plan("198.18.0.11", "198.18.0.20")); err == nil || !strings.Contains(err.Error(), "local address") {
			t.Errorf("a local address was accepted: %v", err)
		}
		if got := snapshot(); got != wiredB {
			t.Errorf("a refused plan changed the wiring:\n%s\nwant:\n%s", got, wiredB)
		}
		// Made, then taken back: exactly B again.
		c, _, err := rewire(h, b, plan("198.18.0.13"))
		if err != nil {
			return err
		}
		if err := c.undoNew(); err != nil {
			return err
		}
		if got := snapshot(); got != wiredB {
			t.Errorf("undoNew did not give B back:\n%s\nwant:\n%s", got, wiredB)
		}
		if err := b.teardown(); err != nil {
			return err
		}
		if got := snapshot(); got != empty {
			t.Errorf("teardown left:\n%s\nwant:\n%s", got, empty)
		}
		if !strings.Contains(wiredA, "198.18.0.10 dev vsg0") || !strings.Contains(wiredA, "198.18.0.11 dev vsg0") {
			t.Errorf("plan A not wired:\n%s", wiredA)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// wiringLab builds a basic lab and returns its gateway host; run its
// tests in gw.Do with a TUN from addTUN.
func wiringLab(t *testing.T) *netlab.Host {
	t.Helper()
	return labtest.Build(t, netlab.Basic()).MustHost(netlab.HostGW)
}

// withTUN runs f in gw's namespace with a netlink handle, once it has
// made the TUN device vsg0 the plans route into.
func withTUN(gw *netlab.Host, f func(h *netlink.Handle) error) error {
	return gw.Do(func() error {
		h, err := netlink.NewHandle()
		if err != nil {
			return err
		}
		defer h.Close()
		if err := h.LinkAdd(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "vsg0"}, Mode: netlink.TUNTAP_MODE_TUN}); err != nil {
			return err
		}
		return f(h)
	})
}

// TestRewireFailsAtEveryStep: a move from plan A to plan B whose k-th
// step fails, for every k: the error names the step, and routes, rules,
// proxy neighbour entries, sysctls, the nftables table and the TUN's
// queue length are exactly what A made; the move then succeeds.
func TestRewireFailsAtEveryStep(t *testing.T) {
	gw := wiringLab(t)
	snapshot := func() string { return wiringSnapshot(t, gw) }
	planA := NetPlan{Device: "vsg0", Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.10")}, Table: 100, RulePriority: 1000}
	planB := NetPlan{Device: "vsg0", Table: 100, RulePriority: 1000,
		Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.11"), netip.MustParseAddr("2001:db8::11")},
		Steer: []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24"), netip.MustParsePrefix("2001:db8:2::/64")}}
	err := withTUN(gw, func(h *netlink.Handle) error {
		a, err := setupNetwork(h, planA)
		if err != nil {
			return err
		}
		wiredA := snapshot()
		steps, err := planSteps(h, planB)
		if err != nil {
			return err
		}
		injected := errors.New("injected failure")
		failed := 0
		for k := range steps {
			broken := slices.Clone(steps)
			key := broken[k].key
			broken[k].do = func() (func() error, error) { return nil, fmt.Errorf("%s: %w", key, injected) }
			st, _, err := applySteps(h, a, broken)
			if err == nil {
				// A step A made already is kept, not done again: its
				// failure cannot happen. Take the move back to A.
				if !slices.ContainsFunc(a.items, func(it netItem) bool { return it.key == key }) {
					t.Errorf("step %d (%s) failed, yet the move succeeded", k, key)
				}
				if err := st.undoNew(); err != nil {
					return err
				}
				if got := snapshot(); got != wiredA {
					t.Fatalf("undoNew after step %d did not give A back:\n%s\nwant:\n%s", k, got, wiredA)
				}
				continue
			}
			if !errors.Is(err, injected) {
				t.Errorf("step %d (%s) failed, rewire said %v", k, key, err)
				continue
			}
			failed++
			if !strings.Contains(err.Error(), key) {
				t.Errorf("step %d: the error does not name the step %q: %v", k, key, err)
			}
			if got := snapshot(); got != wiredA {
				t.Fatalf("step %d (%s) failed and the wiring is not A's:\n%s\nwant:\n%s", k, key, got, wiredA)
			}
		}
		t.Logf("plan B has %d steps: %d made to fail one at a time, the rest kept from A", len(steps), failed)
		if failed < len(steps)/2 {
			t.Errorf("only %d of %d steps could be made to fail", failed, len(steps))
		}
		b, done, err := rewire(h, a, planB)
		if err != nil {
			return err
		}
		if err := done(); err != nil {
			return err
		}
		if got := snapshot(); !strings.Contains(got, "198.18.0.11 dev vsg0") || strings.Contains(got, "198.18.0.10 dev vsg0") {
			t.Errorf("the move to B after the failures:\n%s", got)
		}
		return b.teardown()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// wiringSnapshot is everything the wiring may change in gw's namespace,
// as text: routes, rules, proxy neighbour entries, the sysctls it sets,
// nftables and the TUN's queue length.
func wiringSnapshot(t *testing.T, gw *netlab.Host) string {
	t.Helper()
	out, err := gw.Run(context.Background(), "sh", "-c",
		"ip -4 route show table all; ip -6 route show table all | grep -v fe80; ip -4 rule; ip -6 rule; ip neigh show proxy; "+
			"sysctl -n net.ipv4.ip_forward net.ipv6.conf.all.forwarding net.ipv4.conf.all.rp_filter net.ipv6.conf."+gw.IfName(netlab.IfGWOut)+".proxy_ndp; "+
			"nft list ruleset; ip link show vsg0 | grep -o 'qlen [0-9]*'")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return string(out)
}

// TestLeftovers: what a vsgate killed without teardown left (its steering
// rule, its L7 rules and local routes, its nftables table) is found and
// removed by the next one's removeLeftovers, whose own setup then goes
// through, and whose teardown leaves the namespace as it found it. (The
// sysctls the killed one set stay: nothing says what they were before.)
func TestLeftovers(t *testing.T) {
	gw := wiringLab(t)
	plan := NetPlan{
		Device: "vsg0",
		Addrs:  []netip.Addr{netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("2001:db8::10")},
		Steer:  []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")},
		Table:  100, RulePriority: 1000,
		L7: []netip.AddrPort{netip.MustParseAddrPort("198.18.0.10:81"), netip.MustParseAddrPort("[2001:db8::10]:81")},
	}
	var cleaned, after string
	var removed []string
	err := withTUN(gw, func(h *netlink.Handle) error {
		if _, err := setupNetwork(h, plan); err != nil { // and no teardown: killed
			return err
		}
		// Its TUN went with it, and the routes through it; the next
		// vsgate makes its own.
		tun, err := h.LinkByName("vsg0")
		if err != nil {
			return err
		}
		if err := h.LinkDel(tun); err != nil {
			return err
		}
		if err := h.LinkAdd(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "vsg0"}, Mode: netlink.TUNTAP_MODE_TUN}); err != nil {
			return err
		}
		if removed, err = removeLeftovers(h, plan); err != nil {
			return err
		}
		cleaned = wiringSnapshot(t, gw)
		st, err := setupNetwork(h, plan)
		if err != nil {
			return fmt.Errorf("setup after removing the leftovers: %w", err)
		}
		if err := st.teardown(); err != nil {
			return err
		}
		after = wiringSnapshot(t, gw)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"rule 1000 iif", "rule 999 to 198.18.0.10/32 tcp dport 81", "rule 999 to 2001:db8::10/128 tcp dport 81", "local 198.18.0.10/32 table 101", "local 2001:db8::10/128 table 101", "nftables table inet vsgate"} {
		if !slices.ContainsFunc(removed, func(r string) bool { return strings.HasPrefix(r, want) }) {
			t.Errorf("removed %q, missing %q", removed, want)
		}
	}
	for _, left := range []string{"lookup 100", "lookup 101", "table 101", "table inet vsgate"} {
		if strings.Contains(cleaned, left) {
			t.Errorf("after removeLeftovers, %q is still there:\n%s", left, cleaned)
		}
	}
	// A leftover proxy neighbour entry is taken over by the setup (it
	// adds the same), and its teardown removes it: the one difference.
	noProxy := func(s string) string {
		var keep []string
		for _, l := range strings.Split(s, "\n") {
			if !strings.HasSuffix(strings.TrimSpace(l), " proxy") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	if noProxy(cleaned) != after {
		t.Errorf("teardown left changes:\nbefore setup:\n%s\nafter teardown:\n%s", cleaned, after)
	}
}
