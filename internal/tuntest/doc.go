// Package tuntest is a fake device.Device for tests of code that reads and
// writes packets (the gateway's workers, the engine behind them) without
// root, namespaces or a kernel: ChanDevice, backed by two channels, in the
// manner of wireguard-go's tun/tuntest.ChannelTUN (STYLE.md 16).
//
//	d := tuntest.Start(t, 1500, 64) // closed by t.Cleanup
//	go worker(d)                    // the code under test
//	d.Inbound <- pkt                // arrives in the worker's Read
//	out := d.Recv(t, time.Second)   // what the worker wrote
//
// What it must not do: pretend to be a kernel. It does not route, check,
// fragment or answer packets; what goes in comes out of Read as it is, and
// what is written comes out on Outbound as it is. Only tests import it.
package tuntest
