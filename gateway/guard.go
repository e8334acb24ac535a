package gateway

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// The forward guard (TUN mode): vsgate's own nftables table, made with
// the wiring and removed with it, whose forward chain drops (and counts)
// every packet the kernel would forward between two interfaces neither of
// which is vsgate's device. Everything vsgate serves crosses its device —
// a client's packet to a VIP is routed into it, a real server's answer and
// an inside host's outbound packet are steered into it, and what vsgate
// writes back leaves from it — so the only packets the guard stops are
// the ones the kernel would route around vsgate: from the outside
// straight to an inside host that is no service, and its answer. Without
// it, forwarding on (which the wiring needs) made the gateway an open
// router into the servers' network, whatever `default:` said.
//
// rp_filter stays off on the device and the steered interfaces (the
// wiring sets it): a translated packet arrives on the device with a
// source that routes elsewhere, and the steered replies arrive where the
// kernel's own route to their source would not send them back. The guard,
// not rp_filter, is what keeps the outside out.

const (
	guardTable = "vsgate"
	guardChain = "forward_guard"
)

// ifname is an interface name as nftables compares it: NUL-padded to
// IFNAMSIZ.
func ifname(n string) []byte {
	b := make([]byte, 16)
	copy(b, n)
	return b
}

// addGuard makes the guard for device dev and returns how to remove it.
func addGuard(dev string) (func() error, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	t := c.AddTable(&nftables.Table{Name: guardTable, Family: nftables.TableFamilyINet})
	accept := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: guardChain, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(dev)},
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(dev)},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("nftables: table inet %s: %w", guardTable, err)
	}
	return func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		c.DelTable(&nftables.Table{Name: guardTable, Family: nftables.TableFamilyINet})
		return c.Flush()
	}, nil
}

// removeGuard removes the guard table if there is one (a killed vsgate's)
// and reports whether there was.
func removeGuard() (bool, error) {
	c, err := nftables.New()
	if err != nil {
		return false, fmt.Errorf("nftables: %w", err)
	}
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("nftables: %w", err)
	}
	for _, t := range ts {
		if t.Name == guardTable {
			c.DelTable(t)
			if err := c.Flush(); err != nil {
				return false, fmt.Errorf("nftables: removing a leftover table inet %s: %w", guardTable, err)
			}
			return true, nil
		}
	}
	return false, nil
}

// guardDrops returns how many packets the guard has dropped, and false if
// there is no guard.
func guardDrops() (uint64, bool) {
	c, err := nftables.New()
	if err != nil {
		return 0, false
	}
	t := &nftables.Table{Name: guardTable, Family: nftables.TableFamilyINet}
	rules, err := c.GetRules(t, &nftables.Chain{Name: guardChain, Table: t})
	if err != nil {
		return 0, false
	}
	var n uint64
	for _, r := range rules {
		for _, e := range r.Exprs {
			if ctr, ok := e.(*expr.Counter); ok {
				n += ctr.Packets
			}
		}
	}
	return n, true
}
