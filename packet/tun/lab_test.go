package tun

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netlink"
	"github.com/vsgate/vsgate/internal/netlab"
	"github.com/vsgate/vsgate/internal/netlab/labtest"
	"github.com/vsgate/vsgate/packet/device"
)

// The lab of these tests: one namespace, one TUN, nothing else.
//
//	+----------------------------------------------------+
//	| host "tun" (namespace <prefix>-tun)                |
//	|                                                    |
//	|   socket 198.18.8.1 / 2001:db8:8::1                |
//	|      |  ^                                          |
//	|      v  |  routes 198.18.9.0/24, 2001:db8:9::/64   |
//	|   <prefix>tun0 (addresses .8.1/32, :8::1/128) <--> Read / Write
//	|                                                    |
//	|   ip_forward=1: a packet written to tun0 for       |
//	|   198.18.9.x comes straight back out of tun0       |
//	+----------------------------------------------------+
var (
	tunAddr4 = netip.MustParseAddr("198.18.8.1")
	tunAddr6 = netip.MustParseAddr("2001:db8:8::1")
	farNet4  = netip.MustParsePrefix("198.18.9.0/24")
	farNet6  = netip.MustParsePrefix("2001:db8:9::/64")
	far4     = netip.MustParseAddr("198.18.9.9")
	far6     = netip.MustParseAddr("2001:db8:9::9")
)

const tunSuffix = "tun0"

// watchdogTimeout bounds every test that uses a lab TUN, and every run of
// a benchmark (which resets the watchdog; keep -benchtime well below it).
const watchdogTimeout = 60 * time.Second

// labTUN is an opened, configured TUN in its own lab.
type labTUN struct {
	host     *netlab.Host
	devs     []device.Device
	watchdog *time.Timer // closes devs after watchdogTimeout
}

// openLabTUN builds the lab, opens tun0 with the given queues inside it,
// brings it up with addresses and routes, and registers cleanups (devices
// first, then the lab). Without root it skips the test. ipv6 false turns
// IPv6 off on the TUN, so that no router solicitation or MLD report ever
// shows up in a Read.
func openLabTUN(tb testing.TB, queues int, ipv6 bool) *labTUN {
	tb.Helper()
	return openLabTUNWith(tb, queues, ipv6, Open)
}

// openLabTUNWith is openLabTUN with the given Open (Open or OpenOffload).
func openLabTUNWith(tb testing.TB, queues int, ipv6 bool, open func(string, int) ([]device.Device, error)) *labTUN {
	tb.Helper()
	sys := []netlab.Sysctl{
		{Key: "net.ipv4.ip_forward", Value: "1"},
		{Key: "net.ipv6.conf.all.forwarding", Value: "1"},
		{Key: "net.ipv4.conf.all.rp_filter", Value: "0"},
		{Key: "net.ipv4.conf.default.rp_filter", Value: "0"},
		{Key: "net.ipv4.conf.all.send_redirects", Value: "0"},
		{Key: "net.ipv4.conf.default.send_redirects", Value: "0"},
	}
	if !ipv6 {
		sys = append(sys, netlab.Sysctl{Key: "net.ipv6.conf.default.disable_ipv6", Value: "1"})
	}
	lab := labtest.Build(tb, &netlab.Topology{Name: "tun", Hosts: []netlab.HostSpec{{Name: "tun", Sysctls: sys}}})
	h := lab.MustHost("tun")
	name := lab.IfName(tunSuffix)
	var devs []device.Device
	if err := h.Do(func() error {
		var err error
		devs, err = open(name, queues)
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	for _, d := range devs {
		tb.Cleanup(func() {
			if err := d.Close(); err != nil {
				tb.Error(err)
			}
		})
	}
	// A test that waits for a packet that never comes fails instead of
	// hanging: Close unblocks its Read.
	watchdog := time.AfterFunc(watchdogTimeout, func() {
		for _, d := range devs {
			d.Close()
		}
	})
	tb.Cleanup(func() { watchdog.Stop() })
	nl := h.Netlink()
	link, err := nl.LinkByIndex(devs[0].(interface{ Index() int }).Index())
	if err != nil {
		tb.Fatal(err)
	}
	if link.Attrs().Name != name {
		tb.Fatalf("link %d is %q, want %q", link.Attrs().Index, link.Attrs().Name, name)
	}
	addrs := []netip.Prefix{netip.PrefixFrom(tunAddr4, 32)}
	routes := []netip.Prefix{farNet4}
	if ipv6 {
		addrs = append(addrs, netip.PrefixFrom(tunAddr6, 128))
		routes = append(routes, farNet6)
	}
	for _, a := range addrs {
		if err := nl.AddrAdd(link, &netlink.Addr{IPNet: ipNet(a)}); err != nil {
			tb.Fatalf("address %v: %v", a, err)
		}
	}
	if err := nl.LinkSetUp(link); err != nil {
		tb.Fatal(err)
	}
	for _, r := range routes {
		if err := nl.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(r)}); err != nil {
			tb.Fatalf("route %v: %v", r, err)
		}
	}
	return &labTUN{host: h, devs: devs, watchdog: watchdog}
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// udpPacket builds an IPv4 or IPv6 UDP packet with gopacket, checksums and
// lengths filled in.
func udpPacket(tb testing.TB, src, dst netip.AddrPort, payload []byte) []byte {
	tb.Helper()
	udp := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	var ip gopacket.SerializableLayer
	if src.Addr().Is4() {
		ip4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
			SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
		udp.SetNetworkLayerForChecksum(ip4)
		ip = ip4
	} else {
		ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP,
			SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
		udp.SetNetworkLayerForChecksum(ip6)
		ip = ip6
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ip, udp, gopacket.Payload(payload)); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// collect reads every queue in its own goroutine and sends a copy of
// each packet on the returned channel, until the queue fails (Close).
// The goroutines never touch tb.
func collect(devs []device.Device) <-chan []byte {
	out := make(chan []byte, 1024)
	for _, d := range devs {
		go func() {
			bufs := make([][]byte, d.BatchSize())
			sizes := make([]int, len(bufs))
			for i := range bufs {
				bufs[i] = make([]byte, 65535)
			}
			for {
				n, err := d.Read(bufs, sizes, 0)
				for i := range n {
					select {
					case out <- append([]byte(nil), bufs[i][:sizes[i]]...):
					default: // the test is not listening any more
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
	return out
}
