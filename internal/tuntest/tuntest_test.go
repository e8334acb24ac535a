package tuntest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/vsgate/vsgate/packet/device"
)

func bufs(n, size int) ([][]byte, []int) {
	b := make([][]byte, n)
	for i := range b {
		b[i] = make([]byte, size)
	}
	return b, make([]int, n)
}

func TestReadBatches(t *testing.T) {
	d := Start(t, 1500, 4)
	for i := range 6 {
		d.Inbound <- []byte{byte(i), 0xAA}
	}
	b, sizes := bufs(8, 10)
	// batch 4 limits the first Read, len(bufs) does not.
	n, err := d.Read(b, sizes, 3)
	if n != 4 || err != nil {
		t.Fatalf("Read = %d, %v; want 4 (the batch size)", n, err)
	}
	for i := range n {
		if got := b[i][3 : 3+sizes[i]]; !bytes.Equal(got, []byte{byte(i), 0xAA}) {
			t.Errorf("packet %d = %x", i, got)
		}
	}
	// Two left: Read takes them without waiting for more.
	n, err = d.Read(b, sizes, 0)
	if n != 2 || err != nil || b[0][0] != 4 || b[1][0] != 5 {
		t.Fatalf("Read = %d, %v (%x %x); want packets 4 and 5", n, err, b[0][:2], b[1][:2])
	}
	// len(bufs) limits too.
	d.Inbound <- []byte{1}
	d.Inbound <- []byte{2}
	if n, err := d.Read(b[:1], sizes, 0); n != 1 || err != nil {
		t.Fatalf("Read into one buffer = %d, %v", n, err)
	}
	if n, _ := d.Read(b, sizes, 0); n != 1 || b[0][0] != 2 {
		t.Fatalf("second Read = %d (%x)", n, b[0][0])
	}
	if n, err := d.Read(nil, nil, 0); n != 0 || err != nil {
		t.Fatalf("Read(nil) = %d, %v", n, err)
	}
}

func TestReadBlocksAndTruncates(t *testing.T) {
	d := Start(t, 1500, 64)
	got := make(chan int, 1)
	b, sizes := bufs(4, 8)
	go func() {
		n, _ := d.Read(b, sizes, 2)
		got <- n
	}()
	select {
	case n := <-got:
		t.Fatalf("Read returned %d with nothing queued", n)
	case <-time.After(50 * time.Millisecond):
	}
	d.Inbound <- bytes.Repeat([]byte{7}, 20) // longer than 8-2 bytes
	if n := <-got; n != 1 || sizes[0] != 6 {
		t.Fatalf("Read = %d, size %d; want 1 packet cut to 6 bytes", n, sizes[0])
	}
}

func TestWriteCopies(t *testing.T) {
	d := Start(t, 1500, 64)
	p := []byte{0, 0, 1, 2, 3}
	q := []byte{0, 0, 4}
	if n, err := d.Write([][]byte{p, q}, 2); n != 2 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	p[2], q[2] = 9, 9 // the writer reuses its buffers
	if got := d.Recv(t, time.Second); !bytes.Equal(got, []byte{1, 2, 3}) {
		t.Errorf("first packet %x", got)
	}
	if got := d.Recv(t, time.Second); !bytes.Equal(got, []byte{4}) {
		t.Errorf("second packet %x", got)
	}
}

func TestClose(t *testing.T) {
	d := New(1400, 8)
	if mtu, err := d.MTU(); mtu != 1400 || err != nil || d.BatchSize() != 8 || d.Name() != "tuntest" {
		t.Fatalf("MTU %d %v, BatchSize %d, Name %q", mtu, err, d.BatchSize(), d.Name())
	}
	// A Write blocked on a full Outbound and a Read on an empty Inbound.
	for range QueueLen {
		d.Outbound <- nil
	}
	errs := make(chan error, 2)
	go func() {
		b, sizes := bufs(1, 10)
		_, err := d.Read(b, sizes, 0)
		errs <- err
	}()
	go func() {
		n, err := d.Write([][]byte{{1}}, 0)
		if n != 0 {
			err = errors.Join(err, fmt.Errorf("wrote %d", n))
		}
		errs <- err
	}()
	time.Sleep(20 * time.Millisecond)
	d.Close()
	for range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, os.ErrClosed) {
				t.Errorf("after Close: %v, want os.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not unblock Read and Write")
		}
	}
	d.Inbound <- []byte{1} // sending after Close does not panic
	b, sizes := bufs(1, 10)
	if _, err := d.Read(b, sizes, 0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	if _, err := d.MTU(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("MTU after Close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// echo is the shape of a gateway worker: read a batch, handle the n
// packets, write them back, then look at the error.
func echo(d device.Device) error {
	b := make([][]byte, d.BatchSize())
	for i := range b {
		b[i] = make([]byte, 16+1500)
	}
	sizes := make([]int, len(b))
	out := make([][]byte, 0, len(b))
	for {
		n, err := d.Read(b, sizes, 16)
		out = out[:0]
		for i := range n {
			out = append(out, b[i][:16+sizes[i]])
		}
		if _, werr := d.Write(out, 16); werr != nil {
			return werr
		}
		if err != nil {
			return err
		}
	}
}

// TestConcurrentWorkers runs two workers on one device while the test
// feeds it from two goroutines: every packet comes back exactly once (run
// with -race).
func TestConcurrentWorkers(t *testing.T) {
	d := Start(t, 1500, 16)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { echo(d) })
	}
	const perSender = 500
	for s := range 2 {
		go func() {
			for i := range perSender {
				d.Inbound <- []byte{byte(s), byte(i >> 8), byte(i)}
			}
		}()
	}
	seen := map[[3]byte]bool{}
	for range 2 * perSender {
		p := d.Recv(t, 5*time.Second)
		k := [3]byte(p)
		if seen[k] {
			t.Fatalf("packet %x twice", p)
		}
		seen[k] = true
	}
	d.Close()
	wg.Wait()
}
