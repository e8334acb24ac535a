package sched_test

import (
	"fmt"
	"net/netip"

	"github.com/vsgate/vsgate/sched"
)

// The flow engine's side: one scheduler per virtual service, a Pick per new
// flow, and the connection accounting that lc, wlc, sed and nq run on.
func Example() {
	s, err := sched.New("wlc", sched.Config{})
	if err != nil {
		panic(err)
	}
	// From the config, then again on every reload or health change.
	if err := s.Update([]sched.Backend{
		{Addr: netip.MustParseAddr("198.18.1.10").As16(), Port: 80, Weight: 1},
		{Addr: netip.MustParseAddr("198.18.1.11").As16(), Port: 80, Weight: 3},
		{Addr: netip.MustParseAddr("198.18.1.12").As16(), Port: 80, Weight: 3, Down: true},
	}); err != nil {
		panic(err)
	}

	client := netip.MustParseAddr("198.19.7.7").As16()
	vip := netip.MustParseAddr("198.18.0.1").As16()
	for i := range 5 {
		k := sched.Key{Hash: uint64(i) * 0x9e3779b97f4a7c15, SrcAddr: client, DstAddr: vip, SrcPort: uint16(40000 + i)}
		d, ok := s.Pick(k)
		if !ok {
			fmt.Println("no backend: drop or reject")
			continue
		}
		// Keep d in the flow entry; it stays valid across Updates.
		d.Add(0, 1)  // flow bound: new connections count as inactive
		d.Add(1, -1) // TCP reached ESTABLISHED
		fmt.Println(d)
	}
	// Later, per flow: d.Add(-1, 1) when TCP leaves ESTABLISHED,
	// d.Add(0, -1) when the flow expires.

	for _, d := range s.Dests() {
		active, inactive := d.Conns()
		fmt.Printf("%v active %d inactive %d\n", d, active, inactive)
	}
	// Output:
	// 198.18.1.10:80
	// 198.18.1.11:80
	// 198.18.1.11:80
	// 198.18.1.11:80
	// 198.18.1.10:80
	// 198.18.1.10:80 active 2 inactive 0
	// 198.18.1.11:80 active 3 inactive 0
	// 198.18.1.12:80 active 0 inactive 0
}
