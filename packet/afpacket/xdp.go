package afpacket

import (
	"errors"
	"net"
	"net/netip"

	"github.com/vsgate/vsgate/packet"
	"github.com/vsgate/vsgate/packet/afxdp"
)

// openXDP carries interface i's frames through AF_XDP (LinkConfig.XDP):
// the XDP program with the kernel's addresses, one socket per queue in
// its map, an AF_PACKET socket for ARP and neighbour discovery (which the
// program leaves to the kernel: this socket reads copies), then the
// program attached and a goroutine reading the control socket. On error
// nothing of it stays, and the interface is as it was.
func (l *Link) openXDP(i int, queues int, local []netip.Addr, umem *afxdp.UMEM) (err error) {
	ifc := l.ifs[i]
	prog, err := afxdp.NewProgram(ifc.mac, queues)
	if err != nil {
		return err
	}
	var data []dataSocket
	var ctl *Socket
	defer func() {
		if err != nil {
			prog.Close()
			for _, d := range data {
				d.Close()
			}
			if ctl != nil {
				ctl.Close()
			}
		}
	}()
	if err := prog.SetLocal(local); err != nil {
		return err
	}
	for q := range queues {
		s, err := afxdp.Open(afxdp.Config{Interface: ifc.name, Queue: q, VNetHdr: true, UMEM: umem})
		if err != nil {
			return err
		}
		data = append(data, s)
		if err := prog.Register(s); err != nil {
			return err
		}
	}
	if ctl, err = Open(Config{Interface: ifc.name, Filter: &FilterSpec{MAC: ifc.mac, Local: local, ControlOnly: true}, VNetHdr: true}); err != nil {
		return err
	}
	if err := prog.Attach(ifc.index); err != nil {
		return err
	}
	ifc.prog, ifc.data, ifc.socks = prog, data, []*Socket{ctl}
	// The AF_XDP socket cuts a super-packet into frames itself: merging
	// datagrams into one would only be undone there.
	l.noUSO.Store(true)
	l.control.Add(1)
	go l.readControl(i, ctl)
	return nil
}

// readControl handles the ARP and neighbour discovery frames of interface
// i's control socket until it closes.
func (l *Link) readControl(i int, s *Socket) {
	defer l.control.Done()
	const n = 16
	bufs, sizes := make([][]byte, n), make([]int, n)
	for j := range bufs {
		bufs[j] = make([]byte, packet.VNetHdrSize+2048)
	}
	var c Control
	var reply controlFrame
	for {
		got, err := s.ReadBatch(bufs, sizes, packet.VNetHdrSize)
		for j := range got {
			if ParseControl(bufs[j][packet.VNetHdrSize:packet.VNetHdrSize+sizes[j]], &c) {
				l.handleControl(i, &c, &reply)
			}
		}
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				l.log.Error("reading ARP and neighbour discovery stopped", "interface", l.ifs[i].name, "err", err)
			}
			return
		}
	}
}

// SetL7 names the L7 services' addresses and ports, whose TCP the kernel
// terminates (vsgate's listeners): on an interface whose frames go
// through AF_XDP the program leaves those to the kernel. On AF_PACKET
// sockets the kernel has every frame anyway, and SetL7 does nothing.
func (l *Link) SetL7(eps []netip.AddrPort) error {
	var errs []error
	for _, ifc := range l.ifs {
		if ifc.prog != nil {
			errs = append(errs, ifc.prog.SetL7(eps))
		}
	}
	return errors.Join(errs...)
}

// DataPaths says, by interface, how the engine's frames travel:
// "afpacket", or AF_XDP in the mode its sockets were bound in:
// "afxdp-zerocopy" (the driver's own AF_XDP support) or "afxdp-copy" (the
// kernel copies each frame; veth has nothing else).
func (l *Link) DataPaths() map[string]string {
	out := map[string]string{}
	for _, ifc := range l.ifs {
		out[ifc.name] = "afpacket"
		if ifc.prog != nil {
			out[ifc.name] = "afxdp-" + xdpMode(ifc.data)
		}
	}
	return out
}

// CopiedFrames counts, by AF_XDP interface, the frames its sockets copied
// into a chunk to send them: what vsgate made itself (replies, the
// segments of a super-packet). A frame forwarded leaves from the chunk it
// arrived in and is not counted.
func (l *Link) CopiedFrames() map[string]uint64 {
	out := map[string]uint64{}
	for _, ifc := range l.ifs {
		if ifc.prog == nil {
			continue
		}
		for _, d := range ifc.data {
			out[ifc.name] += d.(*afxdp.Socket).Copied.Load()
		}
	}
	return out
}

// xdpMode is the mode an interface's AF_XDP sockets were bound in:
// "zerocopy" when every one of them is, else "copy".
func xdpMode(data []dataSocket) string {
	for _, d := range data {
		if s, ok := d.(*afxdp.Socket); !ok || !s.ZeroCopy() {
			return "copy"
		}
	}
	return "zerocopy"
}
