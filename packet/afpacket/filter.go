package afpacket

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/net/bpf"

	"github.com/vsgate/vsgate/packet"
)

// FilterSpec is what the socket filter needs to tell vsgate's frames from
// the host's.
type FilterSpec struct {
	// MAC is the interface's own address: IP packets reach vsgate only
	// when sent to it, and frames from it are vsgate's own transmissions
	// (an AF_PACKET socket sees what is sent on its interface too).
	MAC packet.MAC
	// Local are the kernel's own addresses in the namespace: IP packets to
	// them are the host's traffic and stay with the kernel alone.
	Local []netip.Addr
	// ControlOnly passes ARP and neighbour discovery alone: the filter
	// of the socket that reads them beside AF_XDP sockets, which carry
	// the IP packets (LinkConfig.XDP).
	ControlOnly bool
}

// maxFilterAddrs bounds Filter's program: classic BPF jumps reach at most
// 255 instructions ahead.
const maxFilterAddrs = 24

// Filter returns a classic BPF program that gives vsgate what it handles
// and leaves the host's own traffic to the kernel alone:
//
//   - frames sent from spec.MAC are dropped: they are vsgate's (or the
//     host's) own transmissions, which AF_PACKET also delivers;
//   - ARP, and IPv6 neighbour solicitations and advertisements (ICMPv6
//     right after the fixed header), pass: vsgate answers for its
//     addresses and learns its neighbours from them;
//   - IPv4 and IPv6 packets pass when they are sent to spec.MAC and not to
//     one of spec.Local: they are addressed to vsgate's VIPs and
//     masquerade addresses, or routed through it (the real servers'
//     replies, whose default gateway vsgate is). Packets to the kernel's
//     own addresses, broadcasts and multicasts stay with the kernel.
//
// Everything else is dropped. Frames are read untagged: AF_PACKET sees
// VLAN tags as metadata, not in the frame.
func Filter(spec FilterSpec) ([]bpf.RawInstruction, error) {
	if len(spec.Local) > maxFilterAddrs {
		return nil, fmt.Errorf("%d local addresses, at most %d fit one filter", len(spec.Local), maxFilterAddrs)
	}
	var v4, v6 []netip.Addr
	for _, a := range spec.Local {
		if a.Unmap().Is4() {
			v4 = append(v4, a.Unmap())
		} else {
			v6 = append(v6, a)
		}
	}
	macHi, macLo := binary.BigEndian.Uint32(spec.MAC[0:4]), uint32(spec.MAC[4])<<8|uint32(spec.MAC[5])
	const (
		dstMACOff = 0
		srcMACOff = 6
		typeOff   = 12
		v4DstOff  = packet.EthernetMinimumSize + 16
		v6NHOff   = packet.EthernetMinimumSize + 6
		v6DstOff  = packet.EthernetMinimumSize + 24
		icmpOff   = packet.EthernetMinimumSize + packet.IPv6HeaderSize
		accept    = 1 << 18 // bytes of the frame to keep: all of it
	)
	// Jumps name a label; they are resolved once every instruction is
	// placed, because the accept and reject returns come last.
	type jump struct {
		at            int
		val           uint32
		ifTrue, ifNot string
		always        string // an unconditional jump, when set
	}
	var prog []bpf.Instruction
	var jumps []jump
	labels := map[string]int{}
	emit := func(i bpf.Instruction) { prog = append(prog, i) }
	jeq := func(val uint32, ifTrue, ifNot string) {
		jumps = append(jumps, jump{at: len(prog), val: val, ifTrue: ifTrue, ifNot: ifNot})
		emit(nil)
	}
	ja := func(to string) {
		jumps = append(jumps, jump{at: len(prog), always: to})
		emit(nil)
	}
	label := func(name string) { labels[name] = len(prog) }

	emit(bpf.LoadAbsolute{Off: srcMACOff, Size: 4})
	jeq(macHi, "", "type")
	emit(bpf.LoadAbsolute{Off: srcMACOff + 4, Size: 2})
	jeq(macLo, "reject", "type")
	label("type")
	emit(bpf.LoadAbsolute{Off: typeOff, Size: 2})
	jeq(packet.EtherTypeARP, "accept", "")
	jeq(packet.EtherTypeIPv4, "dstmac", "")
	jeq(packet.EtherTypeIPv6, "", "reject")
	emit(bpf.LoadAbsolute{Off: v6NHOff, Size: 1})
	jeq(packet.ProtoICMPv6, "", "dstmac")
	emit(bpf.LoadAbsolute{Off: icmpOff, Size: 1})
	jeq(packet.ICMPv6NeighborSolicit, "accept", "")
	jeq(packet.ICMPv6NeighborAdvert, "accept", "")
	label("dstmac")
	if spec.ControlOnly {
		ja("reject")
	}
	emit(bpf.LoadAbsolute{Off: dstMACOff, Size: 4})
	jeq(macHi, "", "reject")
	emit(bpf.LoadAbsolute{Off: dstMACOff + 4, Size: 2})
	jeq(macLo, "", "reject")
	emit(bpf.LoadAbsolute{Off: typeOff, Size: 2})
	jeq(packet.EtherTypeIPv4, "", "v6dst")
	emit(bpf.LoadAbsolute{Off: v4DstOff, Size: 4})
	for _, a := range v4 {
		jeq(binary.BigEndian.Uint32(a.AsSlice()), "reject", "")
	}
	ja("accept")
	label("v6dst")
	for i, a := range v6 {
		b := a.As16()
		next := fmt.Sprintf("v6local%d", i+1)
		for w := range 4 {
			emit(bpf.LoadAbsolute{Off: uint32(v6DstOff + 4*w), Size: 4})
			ifTrue := ""
			if w == 3 {
				ifTrue = "reject"
			}
			jeq(binary.BigEndian.Uint32(b[4*w:4*w+4]), ifTrue, next)
		}
		label(next)
	}
	ja("accept")
	label("reject")
	emit(bpf.RetConstant{Val: 0})
	label("accept")
	emit(bpf.RetConstant{Val: accept})

	for _, j := range jumps {
		skip := func(l string) (uint8, error) {
			if l == "" {
				return 0, nil
			}
			d := labels[l] - j.at - 1
			if d < 0 || d > 255 {
				return 0, fmt.Errorf("jump of %d instructions", d)
			}
			return uint8(d), nil
		}
		if j.always != "" {
			prog[j.at] = bpf.Jump{Skip: uint32(labels[j.always] - j.at - 1)}
			continue
		}
		t, err := skip(j.ifTrue)
		if err != nil {
			return nil, err
		}
		f, err := skip(j.ifNot)
		if err != nil {
			return nil, err
		}
		prog[j.at] = bpf.JumpIf{Cond: bpf.JumpEqual, Val: j.val, SkipTrue: t, SkipFalse: f}
	}
	return bpf.Assemble(prog)
}
