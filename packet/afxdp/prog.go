package afxdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/vsgate/vsgate/packet"
)

// maxLocal bounds the kernel addresses one interface's program knows
// (each family's map), and maxL7 the L7 services' addresses and ports.
const (
	maxLocal = 1024
	maxL7    = 4096
)

// XDP verdicts.
const (
	xdpPass     = 2
	xdpRedirect = 4
)

// Program is the XDP program of one interface, with its maps: the
// sockets by receive queue (an XSKMAP) and the kernel's own addresses by
// family, and the L7 services' addresses and ports. It redirects to the
// queue's socket the frames vsgate handles — IPv4 and IPv6 sent to the
// interface's MAC whose destination is not one of the kernel's addresses:
// packets for vsgate's addresses and packets routed through it — and
// passes the rest to the kernel: ARP and neighbour discovery (the kernel
// resolves its own neighbours; vsgate reads copies through an AF_PACKET
// socket), broadcasts and multicasts, the host's own traffic, TCP to an
// L7 service (the kernel's TCP terminates it for vsgate's listeners; found
// behind IPv6 extension headers too, and with its fragments), and any
// frame of a queue that has no socket.
type Program struct {
	prog                 *ebpf.Program
	xsks, local4, local6 *ebpf.Map
	l7v4, l7v6           *ebpf.Map // the L7 services' addresses and ports (SetL7)
	attached             link.Link

	mu    sync.Mutex // serialises SetLocal and SetL7
	local map[netip.Addr]bool
	l7    map[netip.AddrPort]bool
}

// NewProgram loads the program for an interface of address mac with
// queues receive queues. It is not attached (Attach).
func NewProgram(mac packet.MAC, queues int) (_ *Program, err error) {
	p := &Program{local: map[netip.Addr]bool{}, l7: map[netip.AddrPort]bool{}}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if p.xsks, err = ebpf.NewMap(&ebpf.MapSpec{Name: "vsgate_xsks", Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: uint32(max(queues, 1))}); err != nil {
		return nil, fmt.Errorf("afxdp: socket map: %w", err)
	}
	if p.local4, err = ebpf.NewMap(&ebpf.MapSpec{Name: "vsgate_local4", Type: ebpf.Hash, KeySize: 4, ValueSize: 1, MaxEntries: maxLocal}); err != nil {
		return nil, fmt.Errorf("afxdp: address map: %w", err)
	}
	if p.local6, err = ebpf.NewMap(&ebpf.MapSpec{Name: "vsgate_local6", Type: ebpf.Hash, KeySize: 16, ValueSize: 1, MaxEntries: maxLocal}); err != nil {
		return nil, fmt.Errorf("afxdp: address map: %w", err)
	}
	if p.l7v4, err = ebpf.NewMap(&ebpf.MapSpec{Name: "vsgate_l7v4", Type: ebpf.Hash, KeySize: 8, ValueSize: 1, MaxEntries: maxL7}); err != nil {
		return nil, fmt.Errorf("afxdp: L7 map: %w", err)
	}
	if p.l7v6, err = ebpf.NewMap(&ebpf.MapSpec{Name: "vsgate_l7v6", Type: ebpf.Hash, KeySize: 20, ValueSize: 1, MaxEntries: maxL7}); err != nil {
		return nil, fmt.Errorf("afxdp: L7 map: %w", err)
	}
	if p.prog, err = ebpf.NewProgram(programSpec(mac, p.xsks, p.local4, p.local6, p.l7v4, p.l7v6)); err != nil {
		return nil, fmt.Errorf("afxdp: loading the XDP program: %w", err)
	}
	return p, nil
}

// programSpec is the program's instructions (cilium/ebpf's assembler: no
// compiler at build time). The context's fields are 32-bit loads: data
// at 0, data_end at 4, rx_queue_index at 16. Packet loads are in host
// byte order, so wire constants are compared as a host-order load of
// their bytes sees them; a 32-bit value is compared with a 32-bit jump,
// since a 64-bit one would sign-extend the immediate and never match a
// value of 2^31 or more.
func programSpec(mac packet.MAC, xsks, local4, local6, l7v4, l7v6 *ebpf.Map) *ebpf.ProgramSpec {
	const eth = packet.EthernetMinimumSize
	macHi := int32(binary.NativeEndian.Uint32(mac[0:4]))
	macLo := int32(binary.NativeEndian.Uint16(mac[4:6]))
	// toUs checks the destination MAC (its symbol first), else passes.
	toUs := func(symbol string) asm.Instructions {
		return asm.Instructions{
			asm.LoadMem(asm.R2, asm.R7, 0, asm.Word).WithSymbol(symbol),
			asm.JNE.Imm32(asm.R2, macHi, "pass"),
			asm.LoadMem(asm.R2, asm.R7, 4, asm.Half),
			asm.JNE.Imm(asm.R2, macLo, "pass"),
		}
	}
	in := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),              // r6 = ctx
		asm.LoadMem(asm.R7, asm.R6, 0, asm.Word), // r7 = data
		asm.LoadMem(asm.R8, asm.R6, 4, asm.Word), // r8 = data_end
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.Add.Imm(asm.R1, eth),
		asm.JGT.Reg(asm.R1, asm.R8, "pass"), // shorter than an Ethernet header
		asm.LoadMem(asm.R2, asm.R7, 12, asm.Half),
		asm.JEq.Imm(asm.R2, wire16(packet.EtherTypeIPv4), "ipv4"),
		asm.JEq.Imm(asm.R2, wire16(packet.EtherTypeIPv6), "ipv6"),
		asm.Ja.Label("pass"), // ARP and the rest

		asm.Mov.Reg(asm.R1, asm.R7).WithSymbol("ipv4"),
		asm.Add.Imm(asm.R1, eth+packet.IPv4MinimumSize),
		asm.JGT.Reg(asm.R1, asm.R8, "pass"),
	}
	in = append(in, toUs("v4mac")...)
	in = append(in,
		asm.LoadMapPtr(asm.R1, local4.FD()),
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Add.Imm(asm.R2, eth+16), // the key: the destination, in the frame
		asm.FnMapLookupElem.Call(),
		asm.JNE.Imm(asm.R0, 0, "pass"), // a kernel address: the host's traffic

		// TCP to an L7 service (its address and port, a map key of 8
		// bytes on the stack): the kernel's TCP terminates it.
		asm.LoadMem(asm.R2, asm.R7, eth+9, asm.Byte),
		asm.JNE.Imm(asm.R2, int32(packet.ProtoTCP), "redirect"),
		// A fragment (more fragments, or an offset) of TCP to an L7
		// service's address: the kernel reassembles it, so it has them
		// all, whatever the port in the first.
		asm.LoadMem(asm.R3, asm.R7, eth+6, asm.Half),
		asm.And.Imm(asm.R3, wire16(0x3fff)),
		asm.JNE.Imm(asm.R3, 0, "v4frag"),
		asm.LoadMem(asm.R3, asm.R7, eth, asm.Byte),
		asm.And.Imm(asm.R3, 0x0f),
		asm.LSh.Imm(asm.R3, 2), // the IPv4 header's length
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Add.Reg(asm.R2, asm.R3),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, eth+4),
		asm.JGT.Reg(asm.R4, asm.R8, "redirect"),
		asm.LoadMem(asm.R5, asm.R2, eth+2, asm.Half), // the destination port
		asm.LoadMem(asm.R3, asm.R7, eth+16, asm.Word),
		asm.StoreMem(asm.RFP, -8, asm.R3, asm.Word),
		asm.StoreMem(asm.RFP, -4, asm.R5, asm.Half),
		asm.StoreImm(asm.RFP, -2, 0, asm.Half),
	)
	in = append(in, l7Lookup(l7v4, -8)...)
	in = append(in,
		asm.LoadMem(asm.R3, asm.R7, eth+16, asm.Word).WithSymbol("v4frag"),
		asm.StoreMem(asm.RFP, -8, asm.R3, asm.Word),
		asm.StoreImm(asm.RFP, -4, 0, asm.Word), // port 0: the address's own entry
	)
	in = append(in, l7Lookup(l7v4, -8)...)
	in = append(in,
		asm.Mov.Reg(asm.R1, asm.R7).WithSymbol("ipv6"),
		asm.Add.Imm(asm.R1, eth+packet.IPv6HeaderSize+1),
		asm.JGT.Reg(asm.R1, asm.R8, "v6fixed"),
		// Neighbour solicitations and advertisements (ICMPv6 right after
		// the fixed header) stay with the kernel, as ARP does.
		asm.LoadMem(asm.R2, asm.R7, eth+6, asm.Byte),
		asm.JNE.Imm(asm.R2, int32(packet.ProtoICMPv6), "v6fixed"),
		asm.LoadMem(asm.R2, asm.R7, eth+packet.IPv6HeaderSize, asm.Byte),
		asm.JEq.Imm(asm.R2, int32(packet.ICMPv6NeighborSolicit), "pass"),
		asm.JEq.Imm(asm.R2, int32(packet.ICMPv6NeighborAdvert), "pass"),
		asm.Mov.Reg(asm.R1, asm.R7).WithSymbol("v6fixed"),
		asm.Add.Imm(asm.R1, eth+packet.IPv6HeaderSize),
		asm.JGT.Reg(asm.R1, asm.R8, "pass"),
	)
	in = append(in, toUs("v6mac")...)
	in = append(in,
		asm.LoadMapPtr(asm.R1, local6.FD()),
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Add.Imm(asm.R2, eth+24),
		asm.FnMapLookupElem.Call(),
		asm.JNE.Imm(asm.R0, 0, "pass"),

		asm.LoadMem(asm.R2, asm.R7, eth+6, asm.Byte), // r2: the next header
		asm.Mov.Imm(asm.R9, packet.IPv6HeaderSize),   // r9: where it starts
	)
	in = append(in, v6Walk(l7v6)...)
	in = append(in,
		// The queue's socket; with none, the kernel has the frame.
		asm.LoadMem(asm.R2, asm.R6, 16, asm.Word).WithSymbol("redirect"),
		asm.LoadMapPtr(asm.R1, xsks.FD()),
		asm.Mov.Imm(asm.R3, xdpPass),
		asm.FnRedirectMap.Call(),
		asm.Return(),

		asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("pass"),
		asm.Return(),
	)
	return &ebpf.ProgramSpec{Name: "vsgate_xsk", Type: ebpf.XDP, License: "GPL", Instructions: in}
}

// l7Lookup looks up in the L7 map m the key built on the stack at
// key (from the frame pointer): the kernel's on a hit, else vsgate's.
func l7Lookup(m *ebpf.Map, key int32) asm.Instructions {
	return asm.Instructions{
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, key),
		asm.FnMapLookupElem.Call(),
		asm.JNE.Imm(asm.R0, 0, "pass"),
		asm.Ja.Label("redirect"),
	}
}

// wire16 is a 16-bit wire (big-endian) constant as the program's
// host-order loads see it.
func wire16(v uint16) int32 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return int32(binary.NativeEndian.Uint16(b[:]))
}

// v6Walk is the IPv6 part after the address checks, r2 holding the fixed
// header's next header and r9 its offset (40): it walks the extension
// headers as packet.Parse does, at most packet.MaxIPv6ExtHeaders of them
// (unrolled: the verifier takes no loop), to find TCP to an L7 service,
// a key of 20 bytes (address, port, two zeros); or a fragment of TCP to
// an L7 service's address (its key with port 0), which the kernel must
// have whole. A longer chain, or one cut short, is vsgate's to drop and
// count; every other packet is redirected.
func v6Walk(l7v6 *ebpf.Map) asm.Instructions {
	const eth = packet.EthernetMinimumSize
	// headerAt (its symbol first) checks that the header of size bytes
	// at r9 is in the frame, with r1 pointing at it (less eth), else
	// redirects.
	headerAt := func(symbol string, size int32) asm.Instructions {
		return asm.Instructions{
			asm.Mov.Reg(asm.R1, asm.R7).WithSymbol(symbol),
			asm.Add.Reg(asm.R1, asm.R9),
			asm.Mov.Reg(asm.R4, asm.R1),
			asm.Add.Imm(asm.R4, eth+size),
			asm.JGT.Reg(asm.R4, asm.R8, "redirect"),
		}
	}
	// lookup looks the key at fp-24 up, and passes on a hit.
	lookup := func(port asm.Instruction) asm.Instructions {
		in := asm.Instructions{
			asm.LoadMem(asm.R3, asm.R7, eth+24, asm.DWord),
			asm.StoreMem(asm.RFP, -24, asm.R3, asm.DWord),
			asm.LoadMem(asm.R3, asm.R7, eth+32, asm.DWord),
			asm.StoreMem(asm.RFP, -16, asm.R3, asm.DWord),
			port,
			asm.StoreImm(asm.RFP, -6, 0, asm.Half),
		}
		return append(in, l7Lookup(l7v6, -24)...)
	}
	var in asm.Instructions
	for i := range packet.MaxIPv6ExtHeaders {
		here, opts, frag, next := fmt.Sprint("v6ext", i), fmt.Sprint("v6opts", i), fmt.Sprint("v6frag", i), fmt.Sprint("v6ext", i+1)
		in = append(in,
			asm.JEq.Imm(asm.R2, 0, opts).WithSymbol(here), // hop-by-hop
			asm.JEq.Imm(asm.R2, 43, opts),                 // routing
			asm.JEq.Imm(asm.R2, 60, opts),                 // destination options
			asm.JEq.Imm(asm.R2, 44, frag),
			asm.Ja.Label("v6upper"),
		)
		in = append(in, headerAt(opts, 8)...)
		in = append(in,
			asm.LoadMem(asm.R3, asm.R1, eth+1, asm.Byte), // length in 8 bytes, less one
			asm.LoadMem(asm.R2, asm.R1, eth, asm.Byte),
			asm.Add.Imm(asm.R3, 1),
			asm.LSh.Imm(asm.R3, 3),
			asm.Add.Reg(asm.R9, asm.R3),
			asm.Ja.Label(next),
		)
		in = append(in, headerAt(frag, 8)...)
		in = append(in,
			asm.LoadMem(asm.R2, asm.R1, eth, asm.Byte),
			asm.LoadMem(asm.R3, asm.R1, eth+2, asm.Half),
			asm.And.Imm(asm.R3, wire16(0xfff9)), // the offset and M
			asm.JNE.Imm(asm.R3, 0, "v6fragment"),
			asm.Add.Imm(asm.R9, 8), // an atomic fragment: walk on
			asm.Ja.Label(next),
		)
	}
	in = append(in,
		// Past the longest chain packet.Parse takes: vsgate drops it.
		asm.JEq.Imm(asm.R2, 0, "redirect").WithSymbol(fmt.Sprint("v6ext", packet.MaxIPv6ExtHeaders)),
		asm.JEq.Imm(asm.R2, 43, "redirect"),
		asm.JEq.Imm(asm.R2, 60, "redirect"),
		asm.JEq.Imm(asm.R2, 44, "redirect"),

		asm.JNE.Imm(asm.R2, int32(packet.ProtoTCP), "redirect").WithSymbol("v6upper"),
	)
	in = append(in, headerAt("v6tcp", 4)...)
	in = append(in, asm.LoadMem(asm.R5, asm.R1, eth+2, asm.Half)) // the destination port
	in = append(in, lookup(asm.StoreMem(asm.RFP, -8, asm.R5, asm.Half))...)
	in = append(in, asm.JNE.Imm(asm.R2, int32(packet.ProtoTCP), "redirect").WithSymbol("v6fragment"))
	in = append(in, lookup(asm.StoreImm(asm.RFP, -8, 0, asm.Half))...)
	return in
}

// Attach attaches the program to the interface in native (driver) mode,
// through a BPF link: it comes off when the link closes, or when the
// process ends however it ends, and the kernel has all the frames again.
func (p *Program) Attach(ifindex int) error {
	l, err := link.AttachXDP(link.XDPOptions{Program: p.prog, Interface: ifindex, Flags: link.XDPDriverMode})
	if err != nil {
		return fmt.Errorf("afxdp: attaching XDP to interface %d: %w", ifindex, err)
	}
	p.attached = l
	return nil
}

// Register puts the socket in the map at its queue: the queue's frames
// go to it from now on.
func (p *Program) Register(s *Socket) error {
	if err := p.xsks.Update(uint32(s.Queue()), uint32(s.FD()), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("afxdp: registering the socket of queue %d: %w", s.Queue(), err)
	}
	return nil
}

// SetLocal makes local the kernel's own addresses, whose packets the
// program leaves to the kernel: the maps change entry by entry, each
// change atomic, while the program runs.
func (p *Program) SetLocal(local []netip.Addr) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	want := map[netip.Addr]bool{}
	for _, a := range local {
		want[a.Unmap()] = true
	}
	return syncSet(p.local, want,
		func(a netip.Addr) error { return p.localMap(a).Update(keyOf(a), uint8(1), ebpf.UpdateAny) },
		func(a netip.Addr) error { return p.localMap(a).Delete(keyOf(a)) })
}

// SetL7 makes eps the L7 services' addresses and ports: TCP to them goes
// to the kernel, whose listeners (vsgate's) terminate it, and so do the
// fragments of TCP to their addresses, whatever the port (the kernel
// reassembles them). The maps change
// entry by entry, as SetLocal's.
func (p *Program) SetL7(eps []netip.AddrPort) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	want := map[netip.AddrPort]bool{}
	for _, ep := range eps {
		want[netip.AddrPortFrom(ep.Addr().Unmap(), ep.Port())] = true
		// Port 0, which no service has, stands for the address: its TCP
		// fragments are the kernel's too.
		want[netip.AddrPortFrom(ep.Addr().Unmap(), 0)] = true
	}
	return syncSet(p.l7, want,
		func(ep netip.AddrPort) error { return p.l7Map(ep).Update(l7Key(ep), uint8(1), ebpf.UpdateAny) },
		func(ep netip.AddrPort) error { return p.l7Map(ep).Delete(l7Key(ep)) })
}

// syncSet makes a kernel map hold the keys of want, by what it held
// (have, which follows every change that went through): put adds a key,
// del removes one (one already gone is fine).
func syncSet[K comparable](have, want map[K]bool, put, del func(K) error) error {
	var errs []error
	for k := range want {
		if have[k] {
			continue
		}
		if err := put(k); err != nil {
			errs = append(errs, fmt.Errorf("afxdp: map entry %v: %w", k, err))
			continue
		}
		have[k] = true
	}
	for k := range have {
		if want[k] {
			continue
		}
		if err := del(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("afxdp: map entry %v: %w", k, err))
			continue
		}
		delete(have, k)
	}
	return errors.Join(errs...)
}

func (p *Program) l7Map(ep netip.AddrPort) *ebpf.Map {
	if ep.Addr().Is4() {
		return p.l7v4
	}
	return p.l7v6
}

// l7Key is an L7 service's key as the program builds it from a frame: the
// address, the port in network order, two zero bytes.
func l7Key(ep netip.AddrPort) []byte {
	return append(ep.Addr().AsSlice(), byte(ep.Port()>>8), byte(ep.Port()), 0, 0)
}

func (p *Program) localMap(a netip.Addr) *ebpf.Map {
	if a.Is4() {
		return p.local4
	}
	return p.local6
}

// keyOf is an address as the program's maps key it: its bytes.
func keyOf(a netip.Addr) []byte { return a.AsSlice() }

// Run runs the program once on frame, received on queue 0, without
// attaching it (the kernel's test run), and returns its verdict: 2
// passes, 4 redirects (a socket of queue 0 is in the map).
func (p *Program) Run(frame []byte) (uint32, error) {
	return p.prog.Run(&ebpf.RunOptions{Data: frame})
}

// Close detaches the program and releases it and its maps.
func (p *Program) Close() error {
	var errs []error
	if p.attached != nil {
		errs = append(errs, p.attached.Close())
	}
	if p.prog != nil {
		errs = append(errs, p.prog.Close())
	}
	for _, m := range []*ebpf.Map{p.xsks, p.local4, p.local6, p.l7v4, p.l7v6} {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	return errors.Join(errs...)
}
