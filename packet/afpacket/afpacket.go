package afpacket

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/gopacket/gopacket/afpacket"
	"golang.org/x/net/bpf"

	"github.com/vsgate/vsgate/packet"
)

// Config says which interface to open and how.
type Config struct {
	// Interface is the Ethernet interface to bind to, in the network
	// namespace Open runs in.
	Interface string

	// FanoutGroup, when non-zero, joins the socket to that PACKET_FANOUT
	// group in hash mode: open one socket per worker with the same group
	// and the kernel spreads flows over them.
	FanoutGroup uint16

	// Addrs are the addresses vsgate owns on this interface (VIPs,
	// masquerade addresses, the gateway address of the server subnet).
	// Only ARP, neighbour discovery and IP packets to these reach Read;
	// empty means every frame does.
	Addrs []netip.Addr
}

// pollTimeout bounds how long one poll of the ring blocks, and so how long
// Close waits for a reader: gopacket's TPacket.Close unmaps the ring
// without waiting for readers, so Socket makes Close wait for the lock
// that every Read and Write holds.
const pollTimeout = 100 * time.Millisecond

// Socket is one AF_PACKET socket with a TPACKET_V3 receive ring. Read and
// Write may run concurrently with each other; Read is for one goroutine.
type Socket struct {
	tp   *afpacket.TPacket
	name string

	mu     sync.RWMutex // held shared by Read and Write, exclusively by Close
	closed bool         // guarded by mu
}

// Open opens the socket, attaches the filter and joins the fanout group.
func Open(cfg Config) (*Socket, error) {
	tp, err := afpacket.NewTPacket(
		afpacket.OptInterface(cfg.Interface),
		afpacket.TPacketVersion3,
		afpacket.OptPollTimeout(pollTimeout),
		afpacket.OptBlockTimeout(time.Millisecond), // a lone packet is not held back for a full block
	)
	if err != nil {
		return nil, fmt.Errorf("afpacket %s: %w", cfg.Interface, err)
	}
	s := &Socket{tp: tp, name: cfg.Interface}
	if len(cfg.Addrs) > 0 {
		prog, err := Filter(cfg.Addrs)
		if err == nil {
			err = tp.SetBPF(prog)
		}
		if err != nil {
			tp.Close()
			return nil, fmt.Errorf("afpacket %s: filter: %w", cfg.Interface, err)
		}
	}
	if cfg.FanoutGroup != 0 {
		if err := tp.SetFanout(afpacket.FanoutHash, cfg.FanoutGroup); err != nil {
			tp.Close()
			return nil, fmt.Errorf("afpacket %s: fanout group %d: %w", cfg.Interface, cfg.FanoutGroup, err)
		}
	}
	return s, nil
}

// Read copies the next frame into buf (truncating it to len(buf)) and
// returns its length. After Close it returns an error wrapping
// net.ErrClosed.
func (s *Socket) Read(buf []byte) (int, error) {
	for {
		n, again, err := s.readOnce(buf)
		if !again {
			return n, err
		}
	}
}

// readOnce polls the ring once, under the shared lock; again reports a
// poll that timed out, after which Read lets a waiting Close in.
func (s *Socket) readOnce(buf []byte) (n int, again bool, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, false, fmt.Errorf("afpacket %s: read: %w", s.name, net.ErrClosed)
	}
	ci, err := s.tp.ReadPacketDataTo(buf)
	switch {
	case err == nil:
		return ci.CaptureLength, false, nil
	case errors.Is(err, afpacket.ErrTimeout), errors.Is(err, afpacket.ErrPoll):
		return 0, true, nil
	default:
		return 0, false, fmt.Errorf("afpacket %s: read: %w", s.name, err)
	}
}

// Write sends one whole Ethernet frame out of the interface. After Close
// it returns an error wrapping net.ErrClosed.
func (s *Socket) Write(frame []byte) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("afpacket %s: write: %w", s.name, net.ErrClosed)
	}
	if err := s.tp.WritePacketData(frame); err != nil {
		return fmt.Errorf("afpacket %s: write: %w", s.name, err)
	}
	return nil
}

// Close closes the socket and releases the ring, waiting (at most about
// pollTimeout) for a Read in progress to let go of it. Closing twice is a
// no-op.
func (s *Socket) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		s.tp.Close()
	}
	return nil
}

// maxFilterAddrs bounds Filter's program: classic BPF jumps reach at most
// 255 instructions ahead.
const maxFilterAddrs = 24

// Filter returns a classic BPF program that accepts ARP, IPv6 neighbour
// solicitations and advertisements (ICMPv6 right after the fixed header),
// and IPv4 or IPv6 packets whose destination is one of addrs; it rejects
// everything else, so the kernel keeps the host's own traffic. Frames are
// read untagged: AF_PACKET sees VLAN tags as metadata, not in the frame.
func Filter(addrs []netip.Addr) ([]bpf.RawInstruction, error) {
	if len(addrs) > maxFilterAddrs {
		return nil, fmt.Errorf("%d addresses, at most %d fit one filter", len(addrs), maxFilterAddrs)
	}
	var v4, v6 []netip.Addr
	for _, a := range addrs {
		if a.Unmap().Is4() {
			v4 = append(v4, a.Unmap())
		} else {
			v6 = append(v6, a)
		}
	}
	const (
		typeOff  = 12
		v4DstOff = packet.EthernetMinimumSize + 16
		v6NHOff  = packet.EthernetMinimumSize + 6
		v6DstOff = packet.EthernetMinimumSize + 24
		icmpOff  = packet.EthernetMinimumSize + packet.IPv6HeaderSize
		accept   = 1 << 18 // bytes of the frame to keep: all of it
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
	label := func(name string) { labels[name] = len(prog) }

	emit(bpf.LoadAbsolute{Off: typeOff, Size: 2})
	jeq(packet.EtherTypeARP, "accept", "")
	jeq(packet.EtherTypeIPv4, "v4", "")
	jeq(packet.EtherTypeIPv6, "v6", "reject")
	label("v4")
	emit(bpf.LoadAbsolute{Off: v4DstOff, Size: 4})
	for _, a := range v4 {
		jeq(uint32FromBytes(a.AsSlice()), "accept", "")
	}
	jumps = append(jumps, jump{at: len(prog), always: "reject"})
	emit(nil)
	label("v6")
	emit(bpf.LoadAbsolute{Off: v6NHOff, Size: 1})
	jeq(packet.ProtoICMPv6, "", "v6dst")
	emit(bpf.LoadAbsolute{Off: icmpOff, Size: 1})
	jeq(packet.ICMPv6NeighborSolicit, "accept", "")
	jeq(packet.ICMPv6NeighborAdvert, "accept", "v6dst")
	label("v6dst")
	for i, a := range v6 {
		b := a.As16()
		next := fmt.Sprintf("v6addr%d", i+1)
		for w := range 4 {
			emit(bpf.LoadAbsolute{Off: uint32(v6DstOff + 4*w), Size: 4})
			ifTrue := ""
			if w == 3 {
				ifTrue = "accept"
			}
			jeq(uint32FromBytes(b[4*w:4*w+4]), ifTrue, next)
		}
		label(next)
	}
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

func uint32FromBytes(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
