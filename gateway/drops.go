package gateway

import (
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/vsgate/vsgate/nat"
)

// DeviceDrop is one device-level loss counter: packets lost before vsgate
// read them (or after it wrote them), which no engine counter sees.
type DeviceDrop struct {
	Device  string `json:"device"`  // the TUN interface, or an AF_PACKET interface
	Counter string `json:"counter"` // tx_dropped, tx_errors, rx_dropped, rx_errors (TUN, the kernel's link statistics); ring_full (AF_PACKET, PACKET_STATISTICS tp_drops)
	Value   uint64 `json:"value"`
}

// DeviceDrops reads the device-level loss counters. On a TUN, "tx" is the
// kernel sending to vsgate (tx_dropped: vsgate's queue was full) and "rx"
// what vsgate wrote; on AF_PACKET, ring_full counts the frames the kernel
// could not put in a socket's ring.
func (g *Gateway) DeviceDrops() []DeviceDrop {
	var out []DeviceDrop
	if g.link != nil {
		drops := g.link.RingDrops()
		for _, ifc := range slices.Sorted(maps.Keys(drops)) {
			out = append(out, DeviceDrop{ifc, "ring_full", drops[ifc]})
		}
		return out
	}
	if g.net == nil || g.net.h == nil {
		return nil
	}
	l, err := g.net.h.LinkByName(g.opts.Device)
	if err != nil || l.Attrs().Statistics == nil {
		return nil
	}
	st := l.Attrs().Statistics
	name := g.opts.Device
	out = []DeviceDrop{
		{name, "tx_dropped", st.TxDropped}, {name, "tx_errors", st.TxErrors},
		{name, "rx_dropped", st.RxDropped}, {name, "rx_errors", st.RxErrors},
	}
	if n, ok := guardDrops(); ok {
		// What the kernel would have forwarded around vsgate (guard.go).
		out = append(out, DeviceDrop{"kernel", "forward_guard", n})
	}
	return out
}

// writeDrops is `vsgate adm drops`: the engine's drops by reason, then the
// device's, so that every packet lost anywhere in vsgate shows in one
// listing.
func (g *Gateway) writeDrops(w io.Writer) {
	fmt.Fprintln(w, "Dropped by vsgate, by reason")
	for r := range nat.DropReason(nat.NumDropReasons) {
		if n := g.engine.Drops(r); n > 0 {
			fmt.Fprintf(w, "  %-28s %12d\n", r, n)
		}
	}
	// Packets too big for the link they would leave on (pmtu.go) that
	// got no ICMP error back to their sender.
	for _, d := range []struct {
		name string
		n    uint64
	}{{"too_big_rate_limited", g.pmtu.rateLimited.Load()}, {"too_big_dropped", g.pmtu.dropped.Load()}} {
		if d.n > 0 {
			fmt.Fprintf(w, "  %-28s %12d\n", d.name, d.n)
		}
	}
	fmt.Fprintln(w, "Lost at the device, before vsgate read them (or after it wrote them)")
	for _, d := range g.DeviceDrops() {
		fmt.Fprintf(w, "  %-12s %-15s %12d\n", d.Device, d.Counter, d.Value)
	}
}
