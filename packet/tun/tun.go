package tun

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/songgao/water"
	"github.com/vsgate/vsgate/packet/device"
	"golang.org/x/sys/unix"
)

// MaxQueues is the most queues one TUN interface can have (the kernel's
// MAX_TAP_QUEUES).
const MaxQueues = 256

// DefaultBatchSize is the BatchSize of a *TUN. A batch costs one read or
// write system call per packet either way (see the package doc); the size
// bounds the work a worker does between two looks at shared state.
const DefaultBatchSize = 64

// TUN is one queue of a Linux TUN interface opened without packet
// information (IFF_NO_PI) and without a virtio-net header, so every packet
// starts with its IP header. It implements device.Device.
//
// The zero value is not usable; get one from Open. A TUN is safe for
// concurrent use: Reads are serialised with each other, Writes with each
// other, and one Read and one Write run in parallel. Read and Write do not
// allocate.
type TUN struct {
	name      string
	index     int
	queue     int
	ctl       *control // shared by the queues of one Open or OpenOffload
	errClosed error    // preallocated "closed" error
	closed    atomic.Bool

	file *os.File        // non-blocking, in the runtime poller
	rc   syscall.RawConn // file's, for reads and writes without allocation

	// Read state: rfn is readBatch bound once, so that rc.Read does not
	// allocate a closure per call; the fields below pass its arguments and
	// results. Guarded by rmu.
	rmu    sync.Mutex
	rfn    func(fd uintptr) bool
	rbufs  [][]byte
	rsizes []int
	roff   int
	rn     int
	rerr   error

	// Write state, as for Read. Guarded by wmu.
	wmu   sync.Mutex
	wfn   func(fd uintptr) bool
	wbufs [][]byte
	woff  int
	wi    int // next packet to write
	wn    int // packets written
	werr  error
	wbad  int // index of the packet werr is about
}

var _ device.Device = (*TUN)(nil)

// Open opens (creating it if needed) the TUN interface name with the given
// number of queues, one device.Device per queue, in the network namespace of the
// calling thread: callers that work in a namespace lock their thread and
// switch it before calling (netlab's Host.Do does this). The queues keep
// working from any goroutine afterwards. With queues > 1 the interface is
// multi-queue (IFF_MULTI_QUEUE) and the kernel spreads packets over the
// queues by flow hash; an existing interface of that name must have the
// same setting. An empty name lets the kernel pick one ("tun0").
//
// Open neither brings the link up nor sets its MTU, addresses or routes:
// the caller does that over netlink, by Name or Index. A non-persistent
// interface disappears when its last queue is closed.
func Open(name string, queues int) ([]device.Device, error) {
	return openQueues(name, queues, openQueue)
}

// queue is one opened queue of either kind, as openQueues handles it.
type queue interface {
	device.Device
	setIndex(int)
}

// openQueues opens queues queues of the interface name with open — shared
// by Open and OpenOffload — and gives each the interface index. The
// control socket is referenced by every queue it opens; on failure the
// opened queues are closed.
func openQueues[Q queue](name string, queues int, open func(name string, i int, multi bool, ctl *control) (Q, error)) ([]device.Device, error) {
	if len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("tun %q: name longer than %d bytes", name, unix.IFNAMSIZ-1)
	}
	if queues < 1 || queues > MaxQueues {
		return nil, fmt.Errorf("tun %q: %d queues: want 1..%d", name, queues, MaxQueues)
	}
	ctl, err := newControl()
	if err != nil {
		return nil, fmt.Errorf("tun %q: control socket: %w", name, err)
	}
	devs := make([]device.Device, 0, queues)
	fail := func(err error) ([]device.Device, error) {
		for _, d := range devs {
			d.Close()
		}
		ctl.release()
		return nil, err
	}
	for i := range queues {
		ctl.acquire()
		q, err := open(name, i, queues > 1, ctl)
		if err != nil {
			ctl.release()
			return fail(err)
		}
		name = q.Name() // the kernel's choice if name was empty
		devs = append(devs, q)
	}
	index, err := ctl.index(name)
	if err != nil {
		return fail(fmt.Errorf("tun %s: interface index: %w", name, err))
	}
	for _, d := range devs {
		d.(queue).setIndex(index)
	}
	ctl.release() // the queues hold their own references
	return devs, nil
}

// openQueue opens queue i of the interface through water.
func openQueue(name string, i int, multi bool, ctl *control) (*TUN, error) {
	ifce, err := water.New(water.Config{
		DeviceType: water.TUN,
		PlatformSpecificParams: water.PlatformSpecificParams{
			Name:       name,
			MultiQueue: multi,
		},
	})
	if err != nil {
		hint := ""
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EBUSY) {
			hint = " (an existing interface of that name must be a TUN with the same multi-queue setting)"
		}
		return nil, fmt.Errorf("tun %q: open queue %d: %w%s", name, i, err, hint)
	}
	f, ok := ifce.ReadWriteCloser.(*os.File)
	if !ok {
		ifce.Close()
		return nil, fmt.Errorf("tun %q: queue %d: water returned %T, want *os.File", name, i, ifce.ReadWriteCloser)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("tun %q: queue %d: %w", name, i, err)
	}
	return newTUN(ifce.Name(), i, ctl, f, rc), nil
}

// newTUN makes queue i of interface name from its non-blocking file.
func newTUN(name string, i int, ctl *control, f *os.File, rc syscall.RawConn) *TUN {
	t := &TUN{name: name, queue: i, ctl: ctl, errClosed: fmt.Errorf("tun %s queue %d: %w", name, i, os.ErrClosed), file: f, rc: rc}
	t.rfn = t.readBatch
	t.wfn = t.writeBatch
	return t
}

// Read implements device.Device. Packets longer than a buffer are cut to it (the
// kernel's choice); give every buffer MTU bytes past offset.
func (t *TUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	t.rmu.Lock()
	defer t.rmu.Unlock()
	if len(sizes) < len(bufs) {
		bufs = bufs[:len(sizes)]
	}
	if len(bufs) == 0 {
		return 0, nil
	}
	t.rbufs, t.rsizes, t.roff, t.rn, t.rerr = bufs, sizes, offset, 0, nil
	err := t.rc.Read(t.rfn)
	n, rerr := t.rn, t.rerr
	t.rbufs, t.rsizes, t.rerr = nil, nil, nil // keep no caller memory
	if err == nil {
		err = rerr
	}
	if err != nil {
		return n, t.wrap("read", err)
	}
	return n, nil
}

// readBatch reads packets until the batch is full or the queue is empty.
// It returns false (wait for readability) only when it read nothing.
func (t *TUN) readBatch(fd uintptr) bool {
	for t.rn < len(t.rbufs) {
		b := t.rbufs[t.rn][t.roff:]
		n, err := unix.Read(int(fd), b)
		switch err {
		case nil:
			t.rsizes[t.rn] = min(n, len(b))
			t.rn++
		case unix.EINTR:
		case unix.EAGAIN:
			return t.rn > 0
		default:
			t.rerr = err
			return true
		}
	}
	return true
}

// Write implements device.Device. A packet the kernel rejects (EINVAL for a
// malformed header, EIO while the link is down) is dropped and does not
// count; Write goes on with the rest and returns the first such error
// with the number written. After Close it stops and returns an error
// wrapping os.ErrClosed.
func (t *TUN) Write(bufs [][]byte, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.wbufs, t.woff, t.wi, t.wn, t.werr = bufs, offset, 0, 0, nil
	err := t.rc.Write(t.wfn)
	n, werr, bad := t.wn, t.werr, t.wbad
	t.wbufs, t.werr = nil, nil
	switch {
	case err != nil:
		return n, t.wrap("write", err)
	case errors.Is(werr, unix.EBADFD):
		return n, t.wrap("write", werr)
	case werr != nil:
		return n, fmt.Errorf("tun %s queue %d: write packet %d of %d (%d bytes): %w",
			t.name, t.queue, bad, len(bufs), len(bufs[bad])-offset, werr)
	}
	return n, nil
}

// writeBatch writes the packets from wi on; it returns false (wait for
// writability) on EAGAIN, which a TUN does not return in practice.
func (t *TUN) writeBatch(fd uintptr) bool {
	for t.wi < len(t.wbufs) {
		_, err := unix.Write(int(fd), t.wbufs[t.wi][t.woff:])
		switch err {
		case nil:
			t.wn++
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		case unix.EBADFD:
			t.werr = err
			return true
		default:
			if t.werr == nil {
				t.werr, t.wbad = err, t.wi
			}
		}
		t.wi++
	}
	return true
}

// wrap turns an error of the poller or the kernel into one that names the
// device; closed devices (ours, or an interface deleted under us: EBADFD)
// give an error wrapping os.ErrClosed.
func (t *TUN) wrap(op string, err error) error {
	if t.closed.Load() || errors.Is(err, os.ErrClosed) {
		return t.errClosed
	}
	if errors.Is(err, unix.EBADFD) {
		return fmt.Errorf("tun %s queue %d: %s: interface gone: %w (%w)", t.name, t.queue, op, os.ErrClosed, err)
	}
	return fmt.Errorf("tun %s queue %d: %s: %w", t.name, t.queue, op, err)
}

// Headroom implements device.Device: 0, a TUN has no header in front of packets.
func (t *TUN) Headroom() int { return 0 }

// BatchSize implements device.Device: DefaultBatchSize.
func (t *TUN) BatchSize() int { return DefaultBatchSize }

// Close implements device.Device: it unblocks a pending Read (which returns an
// error wrapping os.ErrClosed) and closes the queue. Closing the last
// queue of a non-persistent interface deletes the interface. Close may be
// called more than once; later calls return nil.
func (t *TUN) Close() error {
	if t.closed.Swap(true) {
		return nil
	}
	err := t.file.Close()
	t.ctl.release() // the queue's reference to the control socket
	if err != nil {
		return fmt.Errorf("tun %s queue %d: close: %w", t.name, t.queue, err)
	}
	return nil
}

// Name implements device.Device.
func (t *TUN) Name() string { return t.name }

// Index is the interface index, in the namespace Open ran in.
func (t *TUN) Index() int { return t.index }

// Queue is the number of this queue, 0..queues-1, in Open's order.
func (t *TUN) Queue() int { return t.queue }

func (t *TUN) setIndex(i int) { t.index = i }

// MTU implements device.Device. It asks the kernel each time (SIOCGIFMTU on a
// socket opened in Open's namespace), so it sees changes made later.
func (t *TUN) MTU() (int, error) {
	if t.closed.Load() {
		return 0, t.errClosed
	}
	mtu, err := t.ctl.mtu(t.name)
	if err != nil {
		return 0, fmt.Errorf("tun %s: mtu: %w", t.name, err)
	}
	return mtu, nil
}

// control is a datagram socket opened in Open's network namespace, for
// interface ioctls (index, MTU) that must be asked in that namespace
// whatever thread asks later. Shared by the queues of one Open and closed
// with the last of them. Safe for concurrent use.
type control struct {
	mu   sync.Mutex
	fd   int // -1 once closed
	refs int
}

// newControl opens the socket with one reference, held by Open.
func newControl() (*control, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return &control{fd: fd, refs: 1}, nil
}

func (c *control) acquire() {
	c.mu.Lock()
	c.refs++
	c.mu.Unlock()
}

func (c *control) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refs--
	if c.refs == 0 && c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
}

// ioctl runs one interface ioctl by name and returns the result's uint32.
func (c *control) ioctl(name string, req uint) (int, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return 0, os.ErrClosed
	}
	if err := unix.IoctlIfreq(c.fd, req, ifr); err != nil {
		return 0, err
	}
	return int(ifr.Uint32()), nil
}

func (c *control) index(name string) (int, error) { return c.ioctl(name, unix.SIOCGIFINDEX) }
func (c *control) mtu(name string) (int, error)   { return c.ioctl(name, unix.SIOCGIFMTU) }
