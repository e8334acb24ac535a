package afpacket

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vsgate/vsgate/packet"
)

// Config says which interface to open and how.
type Config struct {
	// Interface is the Ethernet interface to bind to, in the network
	// namespace Open runs in.
	Interface string

	// FanoutGroup, when non-zero, joins the socket to that PACKET_FANOUT
	// group in hash mode: open one socket per worker with the same group
	// and the kernel spreads flows over them. Group IDs are per network
	// namespace; every socket of a group must be on the same interface.
	FanoutGroup uint16

	// Filter, when set, lets only the frames vsgate handles reach Read
	// (see Filter); nil lets every frame through.
	Filter *FilterSpec

	// VNetHdr turns on PACKET_VNET_HDR: every frame read comes with a
	// virtio-net header (ReadBatch), saying whether its transport checksum
	// is still partial and whether it is a GSO super-packet of up to 64
	// KiB (what a veth hands over from a local TCP stack), and every frame
	// written must start with one (Write). Super-packets then cross the
	// socket whole in both directions.
	VNetHdr bool
}

// Ring geometry. TPACKET_V2, not V3: V3 hands a block to userspace only
// when it is full or its timer (at least 1 ms) expires, which put a
// millisecond into every request-response round trip (HTTP keep-alive
// measured 0.37x kernel DNAT with V3, 0.74x with V2, same run). V2 wakes
// the reader per frame. Every frame slot holds a 64 KiB GSO super-packet
// with its headers, which takes just over 64 KiB; the kernel allocates a
// block in powers of two, so a slot is a 128 KiB block, and 128 of them
// are 16 MiB of ring per socket.
const (
	ringFrameSize = 128 << 10
	ringFrames    = 128
)

// tpacket2_hdr offsets (struct tpacket2_hdr, linux/if_packet.h).
const (
	tpStatus  = 0
	tpLen     = 4
	tpSnaplen = 8
	tpMac     = 12
)

// mmsghdr is struct mmsghdr (sendmmsg(2)); x/sys/unix has no Linux one.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32 // the compiler pads the struct to its alignment, as C does
}

// MaxBatch is the most frames one ReadBatch or WriteBatch moves.
const MaxBatch = 64

// Socket is one AF_PACKET socket bound to an interface, with a
// TPACKET_V2 receive ring read without a system call per frame, and
// batched sends (sendmmsg). It waits in the Go runtime's poller, not in a
// blocked thread. ReadBatch is for one goroutine at a time; WriteBatch,
// Write and SetFilter may run concurrently with it and each other.
type Socket struct {
	name string
	vnet bool
	file *os.File // owns the descriptor; non-blocking, in the runtime poller
	rc   interface {
		Read(func(uintptr) bool) error
		Write(func(uintptr) bool) error
	}
	fd   int
	ring []byte
	next int // the next frame slot to look at; ReadBatch's

	mu     sync.RWMutex // held shared while the ring or fd is in use, exclusively by Close
	closed atomic.Bool

	// Truncated counts frames dropped because they did not fit the ring
	// slot or the caller's buffer; Tagged, VLAN-tagged frames (whose tag
	// the kernel moved out of the frame: vsgate handles untagged traffic
	// only); Refused, frames the kernel would not send.
	Truncated, Tagged, Refused atomic.Uint64

	// ringDrops accumulates the kernel's PACKET_STATISTICS tp_drops
	// (frames the kernel could not put in the ring: it was full), which
	// reading resets (see RingDrops).
	ringDrops atomic.Uint64
	statsMu   sync.Mutex // serialises RingDrops' read-and-reset
}

// RingDrops returns how many frames the kernel dropped because the ring was
// full, since the socket opened: PACKET_STATISTICS' tp_drops, which the
// kernel resets on every read, summed here. Safe for concurrent use.
func (s *Socket) RingDrops() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return s.ringDrops.Load()
	}
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	if st, err := unix.GetsockoptTpacketStats(s.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
		s.ringDrops.Add(uint64(st.Drops))
	}
	return s.ringDrops.Load()
}

// ErrTruncated is returned (wrapped) by Read for a frame that did not fit
// its buffer or the ring.
var ErrTruncated = errors.New("frame truncated")

// Open opens the socket: ring, filter, fanout group, bound to the
// interface.
func Open(cfg Config) (_ *Socket, err error) {
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("afpacket %s: %w", cfg.Interface, err)
	}
	// Protocol 0: nothing arrives until Bind names the protocol and the
	// interface (with ETH_P_ALL here, frames of every interface would
	// queue up before the bind).
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("afpacket %s: socket: %w", cfg.Interface, err)
	}
	s := &Socket{name: cfg.Interface, vnet: cfg.VNetHdr, fd: fd}
	defer func() {
		if err != nil {
			if s.ring != nil {
				unix.Munmap(s.ring)
			}
			unix.Close(fd)
		}
	}()
	fail := func(what string, err error) error { return fmt.Errorf("afpacket %s: %s: %w", cfg.Interface, what, err) }
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2); err != nil {
		return nil, fail("TPACKET_V2", err)
	}
	if cfg.VNetHdr {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
			return nil, fail("PACKET_VNET_HDR", err)
		}
	}
	// vsgate's own transmissions are not its input (Linux 4.20+; the
	// filter drops them by source MAC too).
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	if cfg.Filter != nil {
		if err := s.setFilter(*cfg.Filter); err != nil {
			return nil, err
		}
	}
	req := unix.TpacketReq{Block_size: ringFrameSize, Block_nr: ringFrames, Frame_size: ringFrameSize, Frame_nr: ringFrames}
	if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return nil, fail("PACKET_RX_RING", err)
	}
	if s.ring, err = unix.Mmap(fd, 0, ringFrameSize*ringFrames, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_LOCKED|unix.MAP_POPULATE); err != nil {
		// MAP_LOCKED needs RLIMIT_MEMLOCK room; the ring works without.
		if s.ring, err = unix.Mmap(fd, 0, ringFrameSize*ringFrames, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
			return nil, fail("mmap", err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		return nil, fail("bind", err)
	}
	if cfg.FanoutGroup != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_FANOUT, int(cfg.FanoutGroup)|unix.PACKET_FANOUT_HASH<<16); err != nil {
			return nil, fail(fmt.Sprintf("fanout group %d", cfg.FanoutGroup), err)
		}
	}
	s.file = os.NewFile(uintptr(fd), "afpacket:"+cfg.Interface)
	rc, err := s.file.SyscallConn()
	if err != nil {
		s.file = nil
		return nil, fail("poller", err)
	}
	s.rc = rc
	return s, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// slot returns frame slot i of the ring.
func (s *Socket) slot(i int) []byte { return s.ring[i*ringFrameSize : (i+1)*ringFrameSize] }

// status is the slot's tp_status, read atomically: the kernel writes it.
func status(slot []byte) *uint32 { return (*uint32)(unsafe.Pointer(&slot[tpStatus])) }

// ReadBatch waits until the ring holds a frame, then copies the ready
// frames, up to len(bufs), in order: frame i to bufs[i][off:], its
// virtio-net header (on a VNetHdr socket) to bufs[i][off-packet.VNetHdrSize:off],
// its length to sizes[i]. A frame larger than its buffer, or than the
// ring slot, is dropped and counted (Truncated). After Close it returns
// an error wrapping net.ErrClosed.
func (s *Socket) ReadBatch(bufs [][]byte, sizes []int, off int) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for {
		if s.closed.Load() {
			return 0, fmt.Errorf("afpacket %s: read: %w", s.name, net.ErrClosed)
		}
		if n := s.take(bufs, sizes, off); n > 0 {
			return n, nil
		}
		err := s.rc.Read(func(uintptr) bool {
			return atomic.LoadUint32(status(s.slot(s.next)))&unix.TP_STATUS_USER != 0
		})
		if err != nil && !s.closed.Load() && !errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, fmt.Errorf("afpacket %s: read: %w", s.name, err)
		}
	}
}

// take copies the ready frames, without waiting. Caller holds s.mu shared.
func (s *Socket) take(bufs [][]byte, sizes []int, off int) int {
	n := 0
	for n < len(bufs) {
		slot := s.slot(s.next)
		st := status(slot)
		v := atomic.LoadUint32(st)
		if v&unix.TP_STATUS_USER == 0 {
			break
		}
		length := int(*(*uint32)(unsafe.Pointer(&slot[tpLen])))
		snap := int(*(*uint32)(unsafe.Pointer(&slot[tpSnaplen])))
		mac := int(*(*uint16)(unsafe.Pointer(&slot[tpMac])))
		buf := bufs[n]
		switch {
		case v&unix.TP_STATUS_VLAN_VALID != 0:
			s.Tagged.Add(1)
		case snap < length || v&unix.TP_STATUS_COPY != 0 || off+snap > len(buf) || mac+snap > len(slot) || (s.vnet && mac < packet.VNetHdrSize):
			s.Truncated.Add(1)
		default:
			copy(buf[off:], slot[mac:mac+snap])
			if s.vnet {
				// The kernel writes the header right in front of the
				// frame (tpacket_rcv: h.raw + macoff - vnet_hdr_sz).
				copy(buf[off-packet.VNetHdrSize:off], slot[mac-packet.VNetHdrSize:mac])
			}
			sizes[n] = snap
			n++
		}
		atomic.StoreUint32(st, unix.TP_STATUS_KERNEL) // the slot goes back to the kernel
		s.next = (s.next + 1) % ringFrames
	}
	return n
}

// Read waits for the next frame and copies it into buf (on a VNetHdr
// socket: the virtio-net header into buf[:packet.VNetHdrSize], the frame after
// it). It returns the frame's length (header not counted). A frame that
// does not fit is an error wrapping ErrTruncated.
func (s *Socket) Read(buf []byte) (int, error) {
	off := 0
	if s.vnet {
		off = packet.VNetHdrSize
	}
	before := s.Truncated.Load()
	var size [1]int
	n, err := s.ReadBatch([][]byte{buf}, size[:], off)
	if n == 0 && err == nil && s.Truncated.Load() != before {
		return 0, fmt.Errorf("afpacket %s: read: %w", s.name, ErrTruncated)
	}
	return size[0], err
}

// Write sends one whole Ethernet frame out of the interface; on a socket
// opened with VNetHdr the frame must start with its packet.VNetHdrSize-byte
// virtio-net header. After Close it returns an error wrapping
// net.ErrClosed.
func (s *Socket) Write(frame []byte) error {
	_, err := s.WriteBatch([][]byte{frame})
	return err
}

// WriteBatch sends frames (each as Write takes it), up to MaxBatch at a
// time, with sendmmsg(2): one system call for the batch. A frame the
// kernel refuses (too long, a bad virtio-net header, no buffer) is skipped
// and counted (Refused), so it does not stop the rest; WriteBatch returns
// how many frames it sent and the first such error. While the socket's
// send buffer is full it waits.
func (s *Socket) WriteBatch(frames [][]byte) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return 0, fmt.Errorf("afpacket %s: write: %w", s.name, net.ErrClosed)
	}
	var msgs [MaxBatch]mmsghdr
	var iovs [MaxBatch]unix.Iovec
	var first error
	done, sent := 0, 0
	for done < len(frames) {
		batch := frames[done:min(len(frames), done+MaxBatch)]
		for i, f := range batch {
			iovs[i] = unix.Iovec{Base: unsafe.SliceData(f)}
			iovs[i].SetLen(len(f))
			msgs[i] = mmsghdr{hdr: unix.Msghdr{Iov: &iovs[i], Iovlen: 1}}
		}
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(batch)), 0, 0, 0)
		switch errno {
		case 0:
			done, sent = done+int(r), sent+int(r)
		case unix.EAGAIN:
			if err := s.waitWritable(); err != nil {
				return sent, err
			}
		case unix.EINTR:
		default:
			// sendmmsg fails only when the batch's first frame does.
			s.Refused.Add(1)
			if first == nil {
				first = fmt.Errorf("afpacket %s: write: %w", s.name, errno)
			}
			done++
		}
	}
	return sent, first
}

// waitWritable waits until the socket can take a frame again, or Close.
// It polls in steps, in this thread: a full send buffer is rare, and a
// wait in the runtime poller would need a closure per call.
func (s *Socket) waitWritable() error {
	pfd := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLOUT}}
	for !s.closed.Load() {
		n, err := unix.Poll(pfd, 10)
		if err != nil && err != unix.EINTR {
			return fmt.Errorf("afpacket %s: write: poll: %w", s.name, err)
		}
		if n > 0 {
			return nil
		}
	}
	return fmt.Errorf("afpacket %s: write: %w", s.name, net.ErrClosed)
}

// SetFilter replaces the socket's filter (the kernel swaps it atomically):
// the gateway calls it when the host's addresses change.
func (s *Socket) SetFilter(spec FilterSpec) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return fmt.Errorf("afpacket %s: filter: %w", s.name, net.ErrClosed)
	}
	return s.setFilter(spec)
}

func (s *Socket) setFilter(spec FilterSpec) error {
	prog, err := Filter(spec)
	if err != nil {
		return fmt.Errorf("afpacket %s: filter: %w", s.name, err)
	}
	insns := make([]unix.SockFilter, len(prog))
	for i, r := range prog {
		insns[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(insns)), Filter: &insns[0]}
	if err := unix.SetsockoptSockFprog(s.fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		return fmt.Errorf("afpacket %s: filter: %w", s.name, err)
	}
	return nil
}

// Close wakes a waiting ReadBatch or WriteBatch, waits for them to let go
// of the ring, closes the socket and unmaps the ring. Closing twice is a
// no-op.
func (s *Socket) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	// A deadline in the past wakes the waiters without closing the
	// descriptor under them; they see closed and let go of the lock.
	_ = s.file.SetDeadline(time.Unix(1, 0))
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.file.Close()
	if merr := unix.Munmap(s.ring); err == nil {
		err = merr
	}
	return err
}
