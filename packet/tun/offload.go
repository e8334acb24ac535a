package tun

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
	wgtun "golang.zx2c4.com/wireguard/tun"
)

// OffloadHeadroom is the Headroom of an *OffloadTUN: the 10-byte
// virtio-net header in front of every packet, rounded up to 16 so that
// the IP header stays 8-byte aligned.
const OffloadHeadroom = 16

// MaxPacket is the largest packet a device with offloads moves whole: a
// TCP or UDP super-packet of up to 64 KiB. Buffers given to an
// *OffloadTUN's Write should have OffloadHeadroom+MaxPacket bytes of
// capacity, so that it can coalesce segments in place.
const MaxPacket = 65535

// OffloadBatchSize is the BatchSize of an *OffloadTUN: room for a few
// super-packets split into MTU-sized segments (a 64 KiB TCP super-packet
// at MSS 1448 is 46 segments), as wireguard-go's IdealBatchSize.
const OffloadBatchSize = 128

// minSegmentRoom is the room a Read keeps for one more super-packet
// before it reads again in the same batch; a super-packet that does not
// fit is lost (wireguard's ErrTooManySegments), so this is generous.
const minSegmentRoom = 64

// ErrNoOffload means the kernel refused the virtio-net header or TCP
// segmentation offload (TUNSETOFFLOAD with TSO4/TSO6): use Open instead.
var ErrNoOffload = errors.New("TUN offloads not supported by this kernel")

// OffloadTUN is one queue of a Linux TUN interface opened with the
// virtio-net header (IFF_VNET_HDR) and segmentation offloads (TSO4/TSO6,
// and USO4/USO6 where the kernel has them): the kernel hands it TCP (and
// UDP) super-packets of up to 64 KiB and takes them back. The header and
// the GSO/GRO work are wireguard-go's tun (golang.zx2c4.com/wireguard/tun):
// Read splits each super-packet into MTU-sized segments with full
// checksums, Write coalesces the segments of a flow back into
// super-packets (GRO) before it writes them. It implements Device.
//
// The zero value is not usable; get one from OpenOffload. An OffloadTUN
// is safe for concurrent use: Reads are serialised with each other,
// Writes with each other, one Read and one Write run in parallel. Read
// and Write do not allocate.
type OffloadTUN struct {
	queueState
	fd  int           // for poll(2) only; wg owns it
	wg  wgtun.Device  // the queue, with the virtio-net header
	rmu sync.Mutex    // guards pfd
	pfd []unix.PollFd // one entry, for the "more to read?" poll
}

var _ Device = (*OffloadTUN)(nil)

// OpenOffload is Open with offloads: it opens (creating it if needed) the
// TUN interface name with the virtio-net header and the given number of
// queues (IFF_MULTI_QUEUE when more than one), in the network namespace of
// the calling thread, and enables TSO4/TSO6 (and USO4/USO6 when the
// kernel has them, Linux 6.2+). An error wrapping ErrNoOffload means the
// kernel refused; the caller may fall back to Open. An existing interface
// of that name must have the same flags.
func OpenOffload(name string, queues int) ([]Device, error) {
	return openQueues(name, queues, openOffloadQueue)
}

// openOffloadQueue opens queue i: /dev/net/tun, TUNSETIFF with
// IFF_VNET_HDR, a TUNSETOFFLOAD probe, then wireguard's tun takes the
// descriptor (it makes it non-blocking, puts it in the runtime poller and
// sets the offloads itself).
func openOffloadQueue(name string, i int, multi bool, ctl *control) (*OffloadTUN, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
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
	// Probe before wireguard's tun owns the descriptor: after that a
	// failure leaves the descriptor to its *os.File's finalizer.
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, unix.TUN_F_CSUM|unix.TUN_F_TSO4|unix.TUN_F_TSO6); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tun %q: queue %d: TUNSETOFFLOAD: %w (%w)", name, i, ErrNoOffload, err)
	}
	wg, kname, err := wgtun.CreateUnmonitoredTUNFromFD(fd)
	if err != nil {
		return nil, fmt.Errorf("tun %q: queue %d: %w", name, i, err)
	}
	if wg.BatchSize() < 2 { // wireguard found no IFF_VNET_HDR
		wg.Close()
		return nil, fmt.Errorf("tun %q: queue %d: %w (no virtio-net header)", name, i, ErrNoOffload)
	}
	t := &OffloadTUN{queueState: newQueueState(kname, i, ctl), fd: fd, wg: wg, pfd: []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}}
	return t, nil
}

// Read implements Device. offset must be at least the 10-byte virtio-net
// header (pass Headroom). Each
// read(2) takes one packet or super-packet from the kernel; a super-packet
// is split into segments, one per buffer, each with its IP and TCP/UDP
// checksums complete. Read goes on reading while the queue has more and
// at least minSegmentRoom buffers are free, so a batch may hold several
// super-packets; it blocks only for the first.
func (t *OffloadTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(sizes) < len(bufs) {
		bufs = bufs[:len(sizes)]
	}
	if len(bufs) == 0 {
		return 0, nil
	}
	t.rmu.Lock()
	defer t.rmu.Unlock()
	n, err := t.wg.Read(bufs, sizes, offset)
	for err == nil && len(bufs)-n >= minSegmentRoom && t.readable() {
		var m int
		m, err = t.wg.Read(bufs[n:], sizes[n:], offset)
		n += m
	}
	if err != nil {
		return n, t.wrap("read", err)
	}
	return n, nil
}

// readable says whether a read would find a packet now (poll(2), no wait).
func (t *OffloadTUN) readable() bool {
	if t.closed.Load() {
		return false
	}
	for {
		n, err := unix.Poll(t.pfd, 0)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0 && t.pfd[0].Revents&unix.POLLIN != 0
	}
}

// Write implements Device. offset must be at least the 10-byte
// virtio-net header (use Headroom). Write coalesces runs of TCP segments
// (and UDP datagrams of one size, where the kernel has USO) of the same
// flow into super-packets: it writes the header into the headroom, may
// extend bufs[i] into its spare capacity and may reorder the elements of
// bufs; it writes each resulting packet with one write(2). It returns
// len(bufs) when every write succeeded; otherwise 0 and the joined errors
// of the writes that failed (wireguard's tun does not say which).
func (t *OffloadTUN) Write(bufs [][]byte, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	if _, err := t.wg.Write(bufs, offset); err != nil {
		return 0, t.wrap("write", err)
	}
	return len(bufs), nil
}

// wrap names the device in an error; closed devices give an error
// wrapping os.ErrClosed.
func (t *OffloadTUN) wrap(op string, err error) error {
	if t.closed.Load() || errors.Is(err, os.ErrClosed) || errors.Is(err, unix.EBADFD) {
		return t.errClosed
	}
	return fmt.Errorf("tun %s queue %d: %s: %w", t.name, t.queue, op, err)
}

// Headroom implements Device: OffloadHeadroom.
func (t *OffloadTUN) Headroom() int { return OffloadHeadroom }

// BatchSize implements Device: OffloadBatchSize.
func (t *OffloadTUN) BatchSize() int { return OffloadBatchSize }

// Close implements Device, as (*TUN).Close.
func (t *OffloadTUN) Close() error { return t.close(t.wg) }
