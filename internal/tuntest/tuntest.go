package tuntest

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/vsgate/vsgate/packet/device"
)

// QueueLen is the capacity of a ChanDevice's Inbound and Outbound
// channels: a test can queue that many packets before anyone reads them.
const QueueLen = 1024

// ChanDevice is a device.Device backed by channels. Packets the test sends
// on Inbound come out of Read; packets written with Write come out on
// Outbound, copied (the writer may reuse its buffers at once).
//
// The zero value is not usable; get one from New or Start. A ChanDevice
// is safe for concurrent use. Close never closes Inbound or Outbound, so a
// test may keep sending after Close; Read and Write then return an error
// wrapping os.ErrClosed.
type ChanDevice struct {
	// Inbound carries packets from the test to Read. Read takes what is
	// queued: at least one packet (it blocks for the first), then whatever
	// is immediately available, up to BatchSize and len(bufs). Read does
	// not keep the slice.
	Inbound chan []byte
	// Outbound carries packets from Write to the test, one fresh slice per
	// packet. Write blocks while Outbound is full.
	Outbound chan []byte

	mtu, batch int
	closed     chan struct{}
	closeOnce  sync.Once
	errClosed  error
}

var _ device.Device = (*ChanDevice)(nil)

// New returns a ChanDevice that reports the given MTU and batch size
// (batch < 1 means 1). It does not enforce the MTU: a fake passes on what
// it is given.
func New(mtu, batch int) *ChanDevice {
	return &ChanDevice{
		Inbound:   make(chan []byte, QueueLen),
		Outbound:  make(chan []byte, QueueLen),
		mtu:       mtu,
		batch:     max(batch, 1),
		closed:    make(chan struct{}),
		errClosed: fmt.Errorf("tuntest: %w", os.ErrClosed),
	}
}

// Start is New with tb.Cleanup(d.Close).
func Start(tb testing.TB, mtu, batch int) *ChanDevice {
	tb.Helper()
	d := New(mtu, batch)
	tb.Cleanup(func() { d.Close() })
	return d
}

// Read implements device.Device. A packet longer than its buffer is cut to
// the buffer, as a TUN does.
func (d *ChanDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	limit := min(len(bufs), len(sizes), d.batch)
	if limit == 0 {
		return 0, nil
	}
	select {
	case <-d.closed: // closed wins over queued packets
		return 0, d.errClosed
	default:
	}
	var p []byte
	select {
	case p = <-d.Inbound:
	case <-d.closed:
		return 0, d.errClosed
	}
	n := 0
	for {
		sizes[n] = copy(bufs[n][offset:], p)
		n++
		if n == limit {
			return n, nil
		}
		select {
		case p = <-d.Inbound:
		default:
			return n, nil
		}
	}
}

// Write implements device.Device: it sends a copy of each bufs[i][offset:] on
// Outbound, blocking while Outbound is full, and returns how many it sent
// (fewer, with an error wrapping os.ErrClosed, if the device is closed
// meanwhile).
func (d *ChanDevice) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		select {
		case <-d.closed:
			return i, d.errClosed
		default:
		}
		p := append([]byte(nil), b[offset:]...)
		select {
		case d.Outbound <- p:
		case <-d.closed:
			return i, d.errClosed
		}
	}
	return len(bufs), nil
}

// Headroom implements device.Device: 0.
func (d *ChanDevice) Headroom() int { return 0 }

// BatchSize implements device.Device.
func (d *ChanDevice) BatchSize() int { return d.batch }

// MTU implements device.Device: the MTU given to New, or an error wrapping
// os.ErrClosed after Close.
func (d *ChanDevice) MTU() (int, error) {
	select {
	case <-d.closed:
		return 0, d.errClosed
	default:
		return d.mtu, nil
	}
}

// Name implements device.Device: "tuntest".
func (d *ChanDevice) Name() string { return "tuntest" }

// Close implements device.Device: it unblocks pending Reads and Writes. It
// may be called more than once.
func (d *ChanDevice) Close() error {
	d.closeOnce.Do(func() { close(d.closed) })
	return nil
}

// Recv returns the next packet written to d, failing the test if none
// comes within timeout. Call it from the test's goroutine.
func (d *ChanDevice) Recv(tb testing.TB, timeout time.Duration) []byte {
	tb.Helper()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case p := <-d.Outbound:
		return p
	case <-t.C:
		tb.Fatalf("tuntest: no packet written within %v", timeout)
		return nil
	}
}
