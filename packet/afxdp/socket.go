package afxdp

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

// The UMEM's shape. A frame is a page: the kernel puts a received frame
// XDP_PACKET_HEADROOM (256) bytes into its chunk, so 3840 bytes remain,
// more than the largest MTU XDP takes on a veth (about 3.5 KB). A socket
// keeps rxFrames chunks lent to the kernel for receiving (in its fill
// ring, being filled, or in its receive ring), and its send and
// completion rings hold txFrames. The fill ring has room for twice the
// chunks lent: the kernel publishes new receive entries before it
// releases the fill entries it took, so right after a batch is read the
// fill ring may still look full to a ring of the lent chunks' size.
const (
	frameSize = 4096
	rxFrames  = 1024
	txFrames  = 512
	fillSlots = 2 * rxFrames
	// rxDataMax is the longest frame a chunk holds.
	rxDataMax = frameSize - unix.XDP_PACKET_HEADROOM
	// refillStep is how far below rxFrames the chunks lent may fall
	// before ReadBatch takes more from the UMEM's free list: the list
	// is locked once per refillStep frames sent on, not per batch.
	refillStep = 64
	// txCache is the most free chunks a socket keeps to copy frames
	// into; completions beyond it go back to the UMEM's free list, where
	// the readers find them.
	txCache = 2 * MaxBatch
)

// MaxBatch is the most frames one ReadBatch or WriteBatch moves at a time.
const MaxBatch = 64

// Config says where a socket is bound.
type Config struct {
	Interface string
	Queue     int // the interface's receive queue
	// UMEM is the memory the socket shares with others, so that frames
	// move between them without a copy; nil gives the socket one of its
	// own. Open all the sockets of a UMEM before closing any.
	UMEM *UMEM
	// VNetHdr keeps a virtio-net header in front of every frame, as an
	// afpacket socket opened with VNetHdr does: ReadBatch writes one
	// (always "nothing to do": a frame through XDP is never a
	// super-packet and its checksums are whole), and WriteBatch takes
	// one, finishing a partial checksum and cutting a super-packet into
	// frames before they go (the kernel does neither for an AF_XDP
	// socket).
	VNetHdr bool
}

// ring is one of the four rings the kernel shares with the socket:
// producer and consumer indices that run freely (a slot is an index
// modulo the size, a power of two), written by one side each. The
// other side's index is read atomically (an acquire), the entries with
// plain accesses, and this side's index stored atomically after them (a
// release): what the kernel's smp_load_acquire/smp_store_release pairs
// with.
type ring struct {
	prod, cons, flags *uint32
	mask              uint32
	// cached is this side's index, which only this side writes.
	cached uint32
}

func (r *ring) mapIndices(m []byte, off unix.XDPRingOffset, n uint32) {
	r.prod = (*uint32)(unsafe.Pointer(&m[off.Producer]))
	r.cons = (*uint32)(unsafe.Pointer(&m[off.Consumer]))
	r.flags = (*uint32)(unsafe.Pointer(&m[off.Flags]))
	r.mask = n - 1
}

// Socket is one AF_XDP socket bound to one receive queue of an
// interface, in zero-copy mode where the driver has it and copy mode
// elsewhere, on a UMEM of its own or shared: frames reach it
// through the XDP program's redirect (Program.Register) with no system
// call per frame, and it sends with one system call per batch. It waits
// in the Go runtime's poller. ReadBatch is for one goroutine at a time;
// WriteBatch may run concurrently with it and with itself.
type Socket struct {
	name     string
	queue    int
	vnet     bool
	zeroCopy bool
	file     *os.File
	rc       interface {
		Read(func(uintptr) bool) error
	}
	fd                 int
	umem               *UMEM
	mem                []byte // umem.mem
	owner              bool   // the socket registered umem
	fillMap, compMap   []byte
	rxMap, txMap       []byte
	fill, comp, rx, tx ring
	fillAddrs          []uint64
	compAddrs          []uint64
	rxDescs            []unix.XDPDesc
	txDescs            []unix.XDPDesc

	// The reader's: the chunks the last ReadBatch handed out, and how
	// many chunks the kernel has to receive into.
	handed []uint64
	lent   int

	txMu   sync.Mutex
	txFree []uint64 // free chunks to copy frames into; under txMu
	seg    []byte   // scratch for a super-packet's segments; under txMu

	mu     sync.RWMutex // held shared while the rings are in use, exclusively by Close
	closed atomic.Bool

	// Truncated counts frames dropped because they did not fit a
	// chunk; Refused, frames the kernel would not send or a super-packet
	// that could not be cut; Copied, frames WriteBatch copied into a
	// chunk to send them (what vsgate made itself, the segments of a
	// super-packet, frames from another UMEM) rather than sending them
	// where they were read.
	Truncated, Refused, Copied atomic.Uint64
}

// Open creates the socket, its UMEM and rings, fills the fill ring and
// binds it to the queue. The socket gets frames only once its descriptor
// is in the XDP program's map (Program.Register).
func Open(cfg Config) (_ *Socket, err error) {
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("afxdp: %w", err)
	}
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("afxdp %s: socket: %w", cfg.Interface, err)
	}
	if cfg.UMEM == nil {
		cfg.UMEM = NewUMEM(1)
	}
	s := &Socket{name: cfg.Interface, queue: cfg.Queue, vnet: cfg.VNetHdr, fd: fd, umem: cfg.UMEM, mem: cfg.UMEM.mem,
		handed: make([]uint64, 0, rxFrames), txFree: make([]uint64, 0, txCache+txFrames+MaxBatch)}
	defer func() {
		if err != nil {
			s.release()
		}
	}()
	fail := func(step string, err error) error {
		return fmt.Errorf("afxdp %s queue %d: %s: %w", cfg.Interface, cfg.Queue, step, err)
	}
	owner, first := s.umem.register(fd)
	s.owner = first
	if first {
		reg := unix.XDPUmemReg{Addr: uint64(uintptr(unsafe.Pointer(&s.mem[0]))), Len: uint64(len(s.mem)), Size: frameSize}
		if err := setsockopt(fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
			return nil, fail("umem registration", err)
		}
	}
	for _, o := range [][2]int{{unix.XDP_UMEM_FILL_RING, fillSlots}, {unix.XDP_UMEM_COMPLETION_RING, txFrames},
		{unix.XDP_RX_RING, rxFrames}, {unix.XDP_TX_RING, txFrames}} {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, o[0], o[1]); err != nil {
			return nil, fail("ring sizes", err)
		}
	}
	var off unix.XDPMmapOffsets
	size := uint32(unsafe.Sizeof(off))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_MMAP_OFFSETS,
		uintptr(unsafe.Pointer(&off)), uintptr(unsafe.Pointer(&size)), 0); e != 0 {
		return nil, fail("ring offsets", e)
	}
	mmap := func(pgoff int64, length uint64) ([]byte, error) {
		return unix.Mmap(fd, pgoff, int(length), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	}
	if s.fillMap, err = mmap(unix.XDP_UMEM_PGOFF_FILL_RING, off.Fr.Desc+fillSlots*8); err != nil {
		return nil, fail("fill ring", err)
	}
	if s.compMap, err = mmap(unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr.Desc+txFrames*8); err != nil {
		return nil, fail("completion ring", err)
	}
	if s.rxMap, err = mmap(unix.XDP_PGOFF_RX_RING, off.Rx.Desc+rxFrames*uint64(unsafe.Sizeof(unix.XDPDesc{}))); err != nil {
		return nil, fail("receive ring", err)
	}
	if s.txMap, err = mmap(unix.XDP_PGOFF_TX_RING, off.Tx.Desc+txFrames*uint64(unsafe.Sizeof(unix.XDPDesc{}))); err != nil {
		return nil, fail("send ring", err)
	}
	s.fill.mapIndices(s.fillMap, off.Fr, fillSlots)
	s.comp.mapIndices(s.compMap, off.Cr, txFrames)
	s.rx.mapIndices(s.rxMap, off.Rx, rxFrames)
	s.tx.mapIndices(s.txMap, off.Tx, txFrames)
	s.fillAddrs = unsafe.Slice((*uint64)(unsafe.Pointer(&s.fillMap[off.Fr.Desc])), fillSlots)
	s.compAddrs = unsafe.Slice((*uint64)(unsafe.Pointer(&s.compMap[off.Cr.Desc])), txFrames)
	s.rxDescs = unsafe.Slice((*unix.XDPDesc)(unsafe.Pointer(&s.rxMap[off.Rx.Desc])), rxFrames)
	s.txDescs = unsafe.Slice((*unix.XDPDesc)(unsafe.Pointer(&s.txMap[off.Tx.Desc])), txFrames)
	if s.refill(); s.lent == 0 {
		return nil, fail("fill ring", errors.New("no free chunk in the UMEM"))
	}
	atomic.StoreUint32(s.fill.prod, s.fill.cached)
	// Neither XDP_COPY nor XDP_ZEROCOPY: the kernel binds zero-copy where
	// the driver has it (the driver fills the UMEM itself) and copy mode
	// elsewhere (veth); ZeroCopy says which it chose. A socket sharing
	// the UMEM may give no flags: it binds as the one that registered it.
	sa := &unix.SockaddrXDP{Flags: unix.XDP_USE_NEED_WAKEUP, Ifindex: uint32(ifi.Index), QueueID: uint32(cfg.Queue)}
	if !first {
		sa.Flags, sa.SharedUmemFD = unix.XDP_SHARED_UMEM, uint32(owner)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return nil, fail("bind", err)
	}
	var opts struct{ Flags uint32 } // struct xdp_options
	size = uint32(unsafe.Sizeof(opts))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_OPTIONS,
		uintptr(unsafe.Pointer(&opts)), uintptr(unsafe.Pointer(&size)), 0); e != 0 {
		return nil, fail("bind mode", e)
	}
	s.zeroCopy = opts.Flags&unix.XDP_OPTIONS_ZEROCOPY != 0
	s.file = os.NewFile(uintptr(fd), "afxdp:"+cfg.Interface)
	rc, err := s.file.SyscallConn()
	if err != nil {
		return nil, fail("poller", err)
	}
	s.rc = rc
	return s, nil
}

// setsockopt sets an SOL_XDP option from a struct (x/sys/unix has no
// typed call for the UMEM's).
func setsockopt(fd, opt int, p unsafe.Pointer, size uintptr) error {
	if _, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), size, 0); e != 0 {
		return e
	}
	return nil
}

// FD is the socket's descriptor, for the XDP program's map.
func (s *Socket) FD() int { return s.fd }

// ZeroCopy reports whether the socket is bound in zero-copy mode (the
// driver receives into and sends from the UMEM), rather than copy mode
// (the kernel copies each frame between its buffers and the UMEM: veth,
// and any driver without AF_XDP support of its own).
func (s *Socket) ZeroCopy() bool { return s.zeroCopy }

// Queue is the receive queue the socket is bound to.
func (s *Socket) Queue() int { return s.queue }

// ReadBatch waits until the receive ring holds a frame, then hands out
// the ready frames, up to len(bufs), in order and where the kernel put
// them: bufs[i] is replaced by a slice of the UMEM holding frame i at
// bufs[i][off:], its length goes to sizes[i], and on a VNetHdr socket an
// empty virtio-net header goes to bufs[i][off-packet.VNetHdrSize:off].
// The slice ends with the frame's chunk (its capacity is the room a
// frame may grow into) and is the caller's until its next ReadBatch,
// which gives the chunks back to the kernel — except those a WriteBatch
// on a socket of the same UMEM sent meanwhile. off may be at most
// XDP_PACKET_HEADROOM (the room the kernel leaves in front of a frame).
// A frame too long for a chunk is dropped and counted (Truncated).
// After Close it returns an error wrapping net.ErrClosed.
func (s *Socket) ReadBatch(bufs [][]byte, sizes []int, off int) (int, error) {
	least := 0
	if s.vnet {
		least = packet.VNetHdrSize // room for the header
	}
	if off < least || off > unix.XDP_PACKET_HEADROOM {
		return 0, fmt.Errorf("afxdp %s: read offset %d, want %d to %d", s.name, off, least, unix.XDP_PACKET_HEADROOM)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	s.giveBack()
	for {
		if s.closed.Load() {
			return 0, fmt.Errorf("afxdp %s: read: %w", s.name, net.ErrClosed)
		}
		if n := s.take(bufs, sizes, off); n > 0 {
			return n, nil
		}
		err := s.rc.Read(func(uintptr) bool {
			return atomic.LoadUint32(s.rx.prod) != s.rx.cached
		})
		if err != nil && !s.closed.Load() && !errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, fmt.Errorf("afxdp %s: read: %w", s.name, err)
		}
	}
}

// take hands out the ready frames without waiting. Caller holds s.mu
// shared.
func (s *Socket) take(bufs [][]byte, sizes []int, off int) int {
	avail := atomic.LoadUint32(s.rx.prod) - s.rx.cached
	if avail == 0 {
		return 0
	}
	m := min(int(avail), len(bufs), len(sizes))
	n := 0
	for i := range m {
		d := s.rxDescs[(s.rx.cached+uint32(i))&s.rx.mask]
		chunk := d.Addr &^ (frameSize - 1)
		s.lent--
		if int(d.Len) > rxDataMax || d.Addr+uint64(d.Len) > uint64(len(s.mem)) || d.Addr-chunk < uint64(off) {
			s.Truncated.Add(1)
			s.toFill(chunk)
			continue
		}
		end := chunk + frameSize
		bufs[n] = s.mem[d.Addr-uint64(off) : end : end]
		if s.vnet {
			clear(bufs[n][off-packet.VNetHdrSize : off])
		}
		sizes[n] = int(d.Len)
		s.umem.hand(chunk)
		s.handed = append(s.handed, chunk)
		n++
	}
	s.rx.cached += uint32(m)
	atomic.StoreUint32(s.rx.cons, s.rx.cached)
	s.publishFill()
	return n
}

// giveBack returns to the fill ring the chunks the last ReadBatch handed
// out that were not sent, and tops the chunks lent up from the UMEM's
// free list once they are refillStep short. Caller holds s.mu shared.
func (s *Socket) giveBack() {
	for _, c := range s.handed {
		if s.umem.reclaim(c) {
			s.toFill(c)
		}
	}
	s.handed = s.handed[:0]
	if s.lent <= rxFrames-refillStep {
		s.refill()
	}
	s.publishFill()
}

// refill lends the kernel chunks from the UMEM's free list, up to
// rxFrames.
func (s *Socket) refill() {
	var spare [refillStep]uint64
	for s.lent < rxFrames {
		got := s.umem.take(spare[:0], min(refillStep, rxFrames-s.lent))
		if len(got) == 0 {
			return // the rest are in flight; the next ReadBatch tries again
		}
		for _, c := range got {
			s.toFill(c)
		}
	}
}

// toFill puts a chunk in the fill ring, unpublished.
func (s *Socket) toFill(chunk uint64) {
	s.fillAddrs[s.fill.cached&s.fill.mask] = chunk
	s.fill.cached++
	s.lent++
}

// publishFill tells the kernel what toFill put in the fill ring.
func (s *Socket) publishFill() {
	if atomic.LoadUint32(s.fill.prod) == s.fill.cached {
		return
	}
	atomic.StoreUint32(s.fill.prod, s.fill.cached)
	if atomic.LoadUint32(s.fill.flags)&unix.XDP_RING_NEED_WAKEUP != 0 {
		// A zero-copy driver waits to be told the fill ring has room;
		// copy mode never asks.
		_, _, _ = unix.Syscall6(unix.SYS_RECVFROM, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	}
}

// WriteBatch sends frames, each a whole Ethernet frame (on a VNetHdr
// socket preceded by its virtio-net header: a partial checksum is
// finished and a super-packet cut into frames here), and returns how
// many it sent. A frame in a chunk a ReadBatch handed out from this
// socket's UMEM is sent from where it is, and its chunk is no longer
// the reader's; any other frame is copied into a free chunk (Copied).
// The kernel is told once per batch; while the send ring is full, or no
// chunk is free to copy into, it waits for the kernel to finish sending.
// A frame that cannot go (too long for a chunk, a super-packet it cannot
// cut) is skipped and counted, with the first such error returned.
func (s *Socket) WriteBatch(frames [][]byte) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return 0, fmt.Errorf("afxdp %s: write: %w", s.name, net.ErrClosed)
	}
	s.txMu.Lock()
	defer s.txMu.Unlock()
	var first error
	sent := 0
	queued := uint32(0)
	put := func(frame []byte) bool {
		addr, inPlace := s.umem.claim(frame)
		if !inPlace && len(frame) > frameSize {
			s.Truncated.Add(1)
			if first == nil {
				first = fmt.Errorf("afxdp %s: write: frame of %d bytes: %w", s.name, len(frame), unix.EMSGSIZE)
			}
			return false
		}
		for !inPlace && len(s.txFree) == 0 || s.tx.cached+queued-atomic.LoadUint32(s.tx.cons) == txFrames {
			if queued > 0 {
				s.publish(&queued)
			}
			err := s.kick()
			if err == nil {
				s.reap()
				if !inPlace && len(s.txFree) == 0 {
					s.txFree = s.umem.take(s.txFree, MaxBatch)
				}
				if !inPlace && len(s.txFree) == 0 || s.tx.cached-atomic.LoadUint32(s.tx.cons) == txFrames {
					if err = s.waitWritable(); err == nil {
						s.reap()
					}
				}
			}
			if err != nil {
				if first == nil {
					first = err
				}
				if inPlace {
					s.txFree = append(s.txFree, addr&^(frameSize-1)) // a free chunk now
				}
				return false
			}
		}
		if !inPlace {
			addr = s.txFree[len(s.txFree)-1]
			s.txFree = s.txFree[:len(s.txFree)-1]
			copy(s.mem[addr:addr+frameSize], frame)
			s.Copied.Add(1)
		}
		s.txDescs[(s.tx.cached+queued)&s.tx.mask] = unix.XDPDesc{Addr: addr, Len: uint32(len(frame))}
		queued++
		return true
	}
	s.reap()
	for _, f := range frames {
		if !s.vnet {
			if put(f) {
				sent++
			}
			continue
		}
		if len(f) < packet.VNetHdrSize+packet.EthernetMinimumSize {
			s.Refused.Add(1)
			continue
		}
		h := packet.VNetHdr(f[:packet.VNetHdrSize])
		frame := f[packet.VNetHdrSize:]
		if h.GSOType() == packet.GSONone && !h.Partial() {
			if put(frame) {
				sent++
			}
			continue
		}
		if s.seg == nil {
			s.seg = make([]byte, frameSize)
		}
		eth := frame[:packet.EthernetMinimumSize]
		ok := true
		if !h.Segments(frame[packet.EthernetMinimumSize:], s.seg[packet.EthernetMinimumSize:], packet.EthernetMinimumSize, func(ip []byte) {
			copy(s.seg, eth)
			ok = put(s.seg[:packet.EthernetMinimumSize+len(ip)]) && ok
		}) {
			s.Refused.Add(1)
			continue
		}
		if ok {
			sent++
		}
	}
	if queued > 0 {
		s.publish(&queued)
	}
	if err := s.kick(); err != nil && first == nil {
		first = err
	}
	return sent, first
}

// publish hands the queued send descriptors to the kernel.
func (s *Socket) publish(queued *uint32) {
	s.tx.cached += *queued
	*queued = 0
	atomic.StoreUint32(s.tx.prod, s.tx.cached)
}

// reap takes the chunks the kernel has finished sending back from the
// completion ring, keeping up to txCache to copy into and giving the rest
// to the UMEM's free list. Caller holds txMu.
func (s *Socket) reap() {
	n := atomic.LoadUint32(s.comp.prod) - s.comp.cached
	for i := range n {
		s.txFree = append(s.txFree, s.compAddrs[(s.comp.cached+i)&s.comp.mask]&^(frameSize-1))
	}
	s.comp.cached += n
	atomic.StoreUint32(s.comp.cons, s.comp.cached)
	if len(s.txFree) > txCache {
		s.umem.give(s.txFree[txCache/2:])
		s.txFree = s.txFree[:txCache/2]
	}
}

// kick tells the kernel the send ring has frames. In copy mode it sends
// at most 32 a call and answers EAGAIN while more remain, or while the
// socket's buffers are all in flight: then a short poll (which sends too:
// xsk_poll) lets them complete before the next try, so that nothing is
// left in the ring until some later write. EBUSY is a frame the driver
// dropped (its descriptor is done with), counted. Caller holds txMu.
func (s *Socket) kick() error {
	for range kickTries {
		before := atomic.LoadUint32(s.tx.cons)
		if before == s.tx.cached {
			return nil
		}
		_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0, unix.EAGAIN, unix.EINTR:
		case unix.EBUSY:
			s.Refused.Add(1)
		default:
			return fmt.Errorf("afxdp %s: write: %w", s.name, e)
		}
		if atomic.LoadUint32(s.tx.cons) == before {
			pfd := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLOUT}}
			_, _ = unix.Poll(pfd, 1)
		}
	}
	s.Refused.Add(uint64(s.tx.cached - atomic.LoadUint32(s.tx.cons)))
	return fmt.Errorf("afxdp %s: write: the kernel took no frame in %d tries", s.name, kickTries)
}

// kickTries bounds kick's loop: about 100 ms of polls.
const kickTries = 100

// waitWritable waits until the kernel has finished sending something (a
// completion), or Close. It polls in steps, in this thread: a send ring
// without a free chunk is rare.
func (s *Socket) waitWritable() error {
	for deadline := time.Now().Add(time.Second); !s.closed.Load(); {
		if atomic.LoadUint32(s.comp.prod) != s.comp.cached {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("afxdp %s: write: no send buffer freed in 1 s", s.name)
		}
		pfd := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLOUT}}
		if _, err := unix.Poll(pfd, 10); err != nil && err != unix.EINTR {
			return fmt.Errorf("afxdp %s: write: poll: %w", s.name, err)
		}
	}
	return fmt.Errorf("afxdp %s: write: %w", s.name, net.ErrClosed)
}

// Stats are the kernel's counters of the socket (XDP_STATISTICS), since
// it opened.
type Stats struct {
	// RxDropped: frames the socket could not take (too long for a chunk);
	// RxRingFull: frames dropped because the receive ring was full;
	// FillRingEmpty: times the kernel found no chunk to receive into.
	RxDropped, RxRingFull, FillRingEmpty uint64
	// InvalidDescs: descriptors the kernel refused, receive and send.
	InvalidDescs uint64
}

// Stats reads the kernel's counters.
func (s *Socket) Stats() (Stats, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return Stats{}, fmt.Errorf("afxdp %s: stats: %w", s.name, net.ErrClosed)
	}
	var st unix.XDPStatistics
	size := uint32(unsafe.Sizeof(st))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(s.fd), unix.SOL_XDP, unix.XDP_STATISTICS,
		uintptr(unsafe.Pointer(&st)), uintptr(unsafe.Pointer(&size)), 0); e != 0 {
		return Stats{}, fmt.Errorf("afxdp %s: stats: %w", s.name, e)
	}
	return Stats{RxDropped: st.Rx_dropped, RxRingFull: st.Rx_ring_full, FillRingEmpty: st.Rx_fill_ring_empty_descs,
		InvalidDescs: st.Rx_invalid_descs + st.Tx_invalid_descs}, nil
}

// RingDrops is how many frames the kernel could not give the socket
// (the receive ring full, or no chunk to receive into), since it opened:
// as afpacket.Socket's, for the gateway's device drop counters.
func (s *Socket) RingDrops() uint64 {
	st, err := s.Stats()
	if err != nil {
		return 0
	}
	return st.RxRingFull + st.RxDropped
}

// Close wakes a waiting ReadBatch or WriteBatch, waits for them to let go
// of the rings, closes the socket (which takes it out of the program's
// map) and unmaps the rings. The UMEM stays valid memory: a frame handed
// out still reads and writes (to no effect). Closing twice is a no-op.
func (s *Socket) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if s.file != nil {
		_ = s.file.SetDeadline(time.Unix(1, 0))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.release()
}

// release closes the descriptor and unmaps the rings. A socket that
// registered the UMEM stops being the one the next socket shares it
// through (the kernel keeps it for those that do).
func (s *Socket) release() error {
	if s.owner {
		s.umem.unregister(s.fd)
	}
	var err error
	if s.file != nil {
		err = s.file.Close()
	} else if s.fd > 0 {
		err = unix.Close(s.fd)
	}
	for _, m := range [][]byte{s.fillMap, s.compMap, s.rxMap, s.txMap} {
		if m != nil {
			if merr := unix.Munmap(m); err == nil {
				err = merr
			}
		}
	}
	return err
}
