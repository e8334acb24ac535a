// Package netstack is the TCP/IP endpoint of vsgate's application-layer
// virtual server: an embedded gVisor netstack that terminates the clients'
// TCP connections to HTTP VIPs. The gateway hands it the packets the nat
// engine marks "to L7" (Inject); what the stack sends goes back out of the
// gateway's device (Options.Output), in batches: one packet and what is
// queued behind it. The proxy serves the listeners it opens (Listen) like
// any net.Listener.
//
// On a device with offloads (the virtio-net header: an offload TUN or
// AF_PACKET) the gateway sets Options.GSO: host GSO, so TCP
// leaves the stack up to 32 KiB at a time with a partial checksum and the
// kernel cuts and finishes it. Measured in the e2e L7 step, 100 MB
// streamed from a real server to the client through the proxy: 760-800 ms
// without, 236-288 ms with. Inbound, super-packets are still split before
// Inject (the stack takes plain packets).
//
// What it must not do: carry the L4 fast path (only L7 VIP traffic comes
// here), or let gVisor leak into other packages: this is one of the two
// packages allowed to import it (DESIGN.md, STYLE.md 20).
package netstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/vsgate/vsgate/packet"
)

// Options configure a Stack.
type Options struct {
	// MTU of the link between the gateway and the stack (the device's).
	MTU int
	// Output receives the packets the stack sends, in the order it sent
	// them, in batches of up to Batch: one packet and what else is queued
	// behind it at that moment. It is called from one goroutine; the
	// slices are valid only during the call. With GSO, offs[i] says how
	// pkts[i] is to be finished; without it, offs is nil.
	Output func(pkts [][]byte, offs []packet.Offload)
	// GSO turns on host GSO: the stack hands over TCP up to 32 KiB at a
	// time with a partial checksum, for a device with the virtio-net
	// header to segment and finish.
	GSO bool
	// Batch bounds a batch (default 32).
	Batch int
	// QueueLen is how many outbound packets may wait for Output.
	QueueLen int
}

// The stack's TCP tuning (what the issue asks us to choose and say):
//   - SACK on: loss on the client side is recovered without resending
//     whole windows.
//   - CUBIC: the Linux default; the proxy's clients are ordinary hosts.
//   - Buffers 1 MiB default, 8 MiB max, with receive-buffer moderation
//     (auto-tuning), so one connection can fill a gigabit path at LAN
//     round-trip times without the stack holding megabytes per idle
//     connection.
const (
	bufDefault = 1 << 20
	bufMax     = 8 << 20
	nicID      = 1
)

// Stack is one gVisor network stack with one NIC. Create it with New;
// Close releases it. Safe for concurrent use.
type Stack struct {
	s      *stack.Stack
	ep     *channel.Endpoint
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	addrs map[netip.Addr]bool
}

// New starts a stack whose outbound packets go to opts.Output.
func New(opts Options) (*Stack, error) {
	if opts.Output == nil {
		return nil, errors.New("netstack: Output is required")
	}
	if opts.Batch <= 0 {
		opts.Batch = 32
	}
	if opts.MTU <= 0 {
		opts.MTU = 1500
	}
	if opts.QueueLen <= 0 {
		opts.QueueLen = 1024
	}
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	for _, opt := range []tcpip.SettableTransportProtocolOption{
		ptr(tcpip.TCPSACKEnabled(true)),
		ptr(tcpip.CongestionControlOption("cubic")),
		ptr(tcpip.TCPModerateReceiveBufferOption(true)),
		&tcpip.TCPReceiveBufferSizeRangeOption{Min: 4096, Default: bufDefault, Max: bufMax},
		&tcpip.TCPSendBufferSizeRangeOption{Min: 4096, Default: bufDefault, Max: bufMax},
	} {
		if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, opt); err != nil {
			s.Close()
			return nil, fmt.Errorf("netstack: TCP option %T: %s", opt, err)
		}
	}
	ep := channel.New(opts.QueueLen, uint32(opts.MTU), "")
	if opts.GSO {
		ep.SupportedGSOKind = stack.HostGSOSupported
	}
	if err := s.CreateNIC(nicID, ep); err != nil {
		s.Close()
		return nil, fmt.Errorf("netstack: NIC: %s", err)
	}
	s.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: nicID},
		{Destination: header.IPv6EmptySubnet, NIC: nicID},
	})
	ctx, cancel := context.WithCancel(context.Background())
	st := &Stack{s: s, ep: ep, cancel: cancel, addrs: map[netip.Addr]bool{}}
	st.wg.Add(1)
	go func() {
		defer st.wg.Done()
		pkts := make([][]byte, 0, opts.Batch)
		var offs []packet.Offload
		if opts.GSO {
			offs = make([]packet.Offload, 0, opts.Batch)
		}
		views := make([]*buffer.View, 0, opts.Batch)
		for {
			pkt := ep.ReadContext(ctx)
			for pkt != nil {
				v := pkt.ToView()
				views, pkts = append(views, v), append(pkts, v.AsSlice())
				if opts.GSO {
					offs = append(offs, offloadOf(pkt))
				}
				pkt.DecRef()
				if len(pkts) == opts.Batch {
					break
				}
				pkt = ep.Read()
			}
			if len(pkts) == 0 {
				return // closed
			}
			opts.Output(pkts, offs)
			for _, v := range views {
				v.Release()
			}
			clear(views)
			views, pkts = views[:0], pkts[:0]
			if offs != nil {
				offs = offs[:0]
			}
		}
	}()
	return st, nil
}

func ptr[T any](v T) *T { return &v }

// offloadOf says how a device is to finish pkt, from the GSO options TCP
// set on it (host GSO: the checksum of every TCP packet is partial, and
// one longer than the MSS is a super-packet).
func offloadOf(pkt *stack.PacketBuffer) packet.Offload {
	g := pkt.GSOOptions
	if g.Type == stack.GSONone {
		return packet.Offload{}
	}
	o := packet.Offload{NeedsCsum: g.NeedsCsum, CsumStart: int(g.L3HdrLen), CsumOffset: int(g.CsumOffset)}
	if g.MSS > 0 && pkt.Data().Size() > int(g.MSS) {
		o.GSOType, o.GSOSize, o.HdrLen = packet.GSOTCPv4, int(g.MSS), pkt.HeaderSize()
		if g.Type == stack.GSOTCPv6 {
			o.GSOType = packet.GSOTCPv6
		}
	}
	return o
}

// AddAddress makes the stack answer for a (an HTTP VIP).
func (st *Stack) AddAddress(a netip.Addr) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.addrs[a] {
		return nil
	}
	pa := tcpip.ProtocolAddress{Protocol: proto(a), AddressWithPrefix: tcpip.AddrFromSlice(a.AsSlice()).WithPrefix()}
	if err := st.s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
		return fmt.Errorf("netstack: address %v: %s", a, err)
	}
	st.addrs[a] = true
	return nil
}

// Listen opens a TCP listener on ap (its address added first).
func (st *Stack) Listen(ap netip.AddrPort) (net.Listener, error) {
	if err := st.AddAddress(ap.Addr()); err != nil {
		return nil, err
	}
	ln, err := gonet.ListenTCP(st.s, tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(ap.Addr().AsSlice()), Port: ap.Port()}, proto(ap.Addr()))
	if err != nil {
		return nil, fmt.Errorf("netstack: listen %v: %w", ap, err)
	}
	return ln, nil
}

// Dial opens a TCP connection from the stack (for tests: a client stack).
func (st *Stack) Dial(ctx context.Context, ap netip.AddrPort) (net.Conn, error) {
	return gonet.DialContextTCP(ctx, st.s, tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(ap.Addr().AsSlice()), Port: ap.Port()}, proto(ap.Addr()))
}

// Inject hands the stack one IP packet that arrived for it. The packet is
// copied: the caller may reuse pkt at once.
func (st *Stack) Inject(pkt []byte) {
	if len(pkt) == 0 {
		return
	}
	var p tcpip.NetworkProtocolNumber
	switch pkt[0] >> 4 {
	case 4:
		p = ipv4.ProtocolNumber
	case 6:
		p = ipv6.ProtocolNumber
	default:
		return
	}
	pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(pkt)})
	st.ep.InjectInbound(p, pb)
	pb.DecRef()
}

// Close stops the stack and its output goroutine.
func (st *Stack) Close() {
	st.cancel()
	st.ep.Close()
	st.s.Close()
	st.wg.Wait()
}

func proto(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Is4() {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}
