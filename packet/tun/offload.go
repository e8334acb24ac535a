package tun

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vsgate/vsgate/packet"
	"github.com/vsgate/vsgate/packet/device"
)

// OffloadHeadroom is the Headroom of an *OffloadTUN: the 10-byte
// virtio-net header in front of every packet, rounded up to 16 so that
// the IP header stays 8-byte aligned.
const OffloadHeadroom = 16

// OffloadBatchSize is the BatchSize of an *OffloadTUN.
const OffloadBatchSize = 128

// The offloads asked for with TUNSETOFFLOAD. USO (UDP segmentation,
// Linux 6.2+) is asked for first and left out if the kernel refuses.
const (
	offloadsTCP = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6
	offloadsUSO = 0x20 | 0x40 // TUN_F_USO4 | TUN_F_USO6 (include/uapi/linux/if_tun.h)
)

// ErrNoOffload means the kernel refused the virtio-net header or TCP
// segmentation offload (TUNSETOFFLOAD with TSO4/TSO6): use Open instead.
var ErrNoOffload = errors.New("TUN offloads not supported by this kernel")

// OffloadTUN is one queue of a Linux TUN interface opened with the
// virtio-net header (IFF_VNET_HDR) and segmentation offloads (TSO4/TSO6,
// and USO4/USO6 where the kernel has them): the kernel hands it TCP (and
// UDP) super-packets of up to 64 KiB and takes them back, and packets may
// carry a partial checksum (the pseudo-header sum, finished by the kernel
// or the NIC later). Read returns packets as they come, super-packets
// whole, with their virtio-net header in the headroom; Write refreshes a
// partial checksum for what the engine rewrote and writes each packet
// with its header, merging runs of one flow's small UDP datagrams into a
// UDP GSO super-packet where the kernel has USO. Segments splits a
// super-packet for consumers that take only plain packets (the L7
// netstack). It implements device.Device.
//
// The zero value is not usable; get one from OpenOffload. An OffloadTUN
// is safe for concurrent use as a TUN is; Segments is not safe for
// concurrent use with itself. Read and Write do not allocate.
type OffloadTUN struct {
	*TUN
	uso    bool       // the kernel took USO4/USO6: merge UDP runs on Write
	fmu    sync.Mutex // serialises Writes (TUN.Write's own lock is inside)
	frames [][]byte   // Write's scratch: the frames after merging; guarded by fmu
	seg    []byte     // Segments' scratch for one segment
}

var _ device.Device = (*OffloadTUN)(nil)

// OpenOffload is Open with offloads: it opens (creating it if needed) the
// TUN interface name with the virtio-net header and the given number of
// queues (IFF_MULTI_QUEUE when more than one), in the network namespace of
// the calling thread, and enables TSO4/TSO6 (and USO4/USO6 when the
// kernel has them, Linux 6.2+). An error wrapping ErrNoOffload means the
// kernel refused; the caller may fall back to Open. An existing interface
// of that name must have the same flags.
func OpenOffload(name string, queues int) ([]device.Device, error) {
	return openQueues(name, queues, openOffloadQueue)
}

// openOffloadQueue opens queue i: /dev/net/tun, TUNSETIFF with
// IFF_VNET_HDR, TUNSETOFFLOAD, then the descriptor goes non-blocking into
// the runtime poller as an *os.File, as water does for a plain TUN.
func openOffloadQueue(name string, i int, multi bool, ctl *control) (*OffloadTUN, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("tun %q: open queue %d: %w", name, i, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tun %q: %w", name, err)
	}
	flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if multi {
		flags |= unix.IFF_MULTI_QUEUE
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		hint := ""
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EBUSY) {
			hint = " (an existing interface of that name must be a TUN with the same multi-queue and vnet-header setting)"
		}
		return nil, fmt.Errorf("tun %q: open queue %d: %w%s", name, i, err, hint)
	}
	uso := true
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, offloadsTCP|offloadsUSO); err != nil {
		uso = false
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, offloadsTCP); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("tun %q: queue %d: TUNSETOFFLOAD: %w (%w)", name, i, ErrNoOffload, err)
		}
	}
	f := os.NewFile(uintptr(fd), "/dev/net/tun") // non-blocking: it joins the runtime poller
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("tun %q: queue %d: %w", name, i, err)
	}
	t := newTUN(ifr.Name(), i, ctl, f, rc)
	return &OffloadTUN{TUN: t, uso: uso, frames: make([][]byte, 0, OffloadBatchSize)}, nil
}

// Read implements device.Device. offset must be at least the 10-byte virtio-net
// header (pass Headroom): each packet's header lands in front of it, where
// Write and Segments find it again. Each read(2) takes one packet or
// super-packet; Read goes on reading until the batch is full or the queue
// is empty, and blocks only for the first.
func (t *OffloadTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if offset < packet.VNetHdrSize {
		return 0, fmt.Errorf("tun %s: read offset %d, want at least %d", t.name, offset, packet.VNetHdrSize)
	}
	n, err := t.TUN.Read(bufs, sizes, offset-packet.VNetHdrSize)
	for i := range n {
		sizes[i] = max(sizes[i]-packet.VNetHdrSize, 0) // the kernel writes the header whole
	}
	return n, err
}

// Write implements device.Device. offset must be at least the 10-byte virtio-net
// header (use Headroom), and bufs[i][offset-10:offset] must hold the
// header Read left there, or zeros for a packet made here with complete
// checksums. A partial checksum is refreshed for the packet's addresses
// now. Where the kernel has USO, a run of one flow's UDP datagrams of one
// size is merged into one super-packet in the first one's spare capacity
// (packet.CoalesceUDP). Each packet or super-packet is one write(2). It
// returns len(bufs) when every write succeeded; otherwise the number of
// writes that did (a merged run counts once) and the first error, as
// (*TUN).Write words it (its packet index counts writes too).
func (t *OffloadTUN) Write(bufs [][]byte, offset int) (int, error) {
	if offset < packet.VNetHdrSize {
		return 0, fmt.Errorf("tun %s: write offset %d, want at least %d", t.name, offset, packet.VNetHdrSize)
	}
	t.fmu.Lock()
	defer t.fmu.Unlock()
	frames := t.frames[:0]
	for i := 0; i < len(bufs); {
		b, next := bufs[i][offset-packet.VNetHdrSize:], i+1
		if t.uso {
			b, next = packet.CoalesceUDP(bufs, i, offset, 0, OffloadBatchSize)
		}
		packet.VNetHdr(b[:packet.VNetHdrSize]).RefreshPartial(b[packet.VNetHdrSize:], 0)
		frames = append(frames, b)
		i = next
	}
	n, err := t.TUN.Write(frames, 0)
	clear(frames) // keep no caller memory
	t.frames = frames[:0]
	if n == len(frames) {
		n = len(bufs)
	}
	return n, err
}

// Segments calls fn with the plain packets that the n-byte packet Read
// left at buf[offset:] stands for: the segments of a super-packet, or the
// packet itself, each with complete checksums. It is for consumers that
// take only such packets (the L7 netstack); fn must not keep its
// argument. It reports false, having called fn for nothing, when the
// virtio-net header describes a super-packet it cannot follow. Not safe
// for concurrent use with itself.
func (t *OffloadTUN) Segments(buf []byte, offset, n int, fn func([]byte)) bool {
	if t.seg == nil {
		t.seg = make([]byte, device.MaxPacket)
	}
	return packet.VNetHdr(buf[offset-packet.VNetHdrSize:offset]).Segments(buf[offset:offset+n], t.seg, 0, fn)
}

// ChecksumTrusted reports whether the kernel vouched for the transport
// checksum of the packet Read left at buf[offset:] (packet.VNetHdr's
// ChecksumTrusted).
func (t *OffloadTUN) ChecksumTrusted(buf []byte, offset int) bool {
	return packet.VNetHdr(buf[offset-packet.VNetHdrSize : offset]).ChecksumTrusted()
}

// SegmentCount is how many packets the n-byte packet Read left at
// buf[offset:] stands for: a super-packet's segments, else 1.
func (t *OffloadTUN) SegmentCount(buf []byte, offset, n int) int {
	return packet.VNetHdr(buf[offset-packet.VNetHdrSize:offset]).SegmentCount(buf[offset:offset+n], 0)
}

// SetOffload writes into buf's headroom how the kernel is to finish the
// packet at buf[offset:] (a partial checksum, segmentation), for a packet
// made elsewhere: the L7 netstack's TCP with host GSO.
func (t *OffloadTUN) SetOffload(buf []byte, offset int, o packet.Offload) {
	packet.VNetHdr(buf[offset-packet.VNetHdrSize:offset]).SetOffload(o, 0)
}

// Headroom implements device.Device: OffloadHeadroom.
func (t *OffloadTUN) Headroom() int { return OffloadHeadroom }

// BatchSize implements device.Device: OffloadBatchSize.
func (t *OffloadTUN) BatchSize() int { return OffloadBatchSize }
