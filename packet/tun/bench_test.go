package tun

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/vsgate/vsgate/packet/device"
)

// BenchmarkTUNReadWrite measures a TUN loop in a lab namespace: a 64-byte
// IPv4 UDP packet written to the TUN for 198.18.9.9 is forwarded by the
// kernel straight back into the TUN and read again, so one packet costs a
// write (which runs the kernel's receive and forwarding path inline) and
// a read. pkt/s counts packets that made the whole loop.
//
//   - naive: the *os.File water hands out, one Write and one Read call per
//     packet (the baseline);
//   - batch=N: device.Device.Write of N packets, then device.Device.Read until all N are
//     back;
//   - queues=2: the same on two queues of one interface, one goroutine each,
//     each with its own flows.
//
// The kernel sends a flow to the queue that last wrote a packet of it (the
// TUN flow table), but learns that only after the first packet has been
// forwarded: warm writes each flow once and drains every queue, so that
// afterwards every packet comes back on the queue that wrote it.
//
// Each run is bounded by b.N and by the lab watchdog, reset at the start
// of each run (a lost packet makes the benchmark fail after a minute, not
// hang; -benchtime must stay well below that minute).
func BenchmarkTUNReadWrite(b *testing.B) {
	lt := openLabTUN(b, 2, false)
	q0, q1 := lt.devs[0].(*TUN), lt.devs[1].(*TUN)

	b.Run("naive", func(b *testing.B) {
		lt.watchdog.Reset(watchdogTimeout)
		pkt := loopPacket(b, 1000, 0)
		buf := make([]byte, 1500)
		warm(b, lt.devs, q0, [][]byte{pkt}, 0)
		b.ResetTimer()
		b.ReportAllocs()
		b.SetBytes(int64(len(pkt)))
		var tw, tr time.Duration
		for range b.N {
			t0 := time.Now()
			if _, err := q0.file.Write(pkt); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			if _, err := q0.file.Read(buf); err != nil {
				b.Fatal(err)
			}
			tw, tr = tw+t1.Sub(t0), tr+time.Since(t1)
		}
		reportPPS(b)
		reportSplit(b, tw, tr)
	})
	for _, batch := range []int{1, 8, DefaultBatchSize} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			lt.watchdog.Reset(watchdogTimeout)
			l := newLoop(b, q0, batch, 2000)
			warm(b, lt.devs, q0, l.wbufs, loopHeadroom)
			b.ResetTimer()
			b.ReportAllocs()
			b.SetBytes(int64(len(l.wbufs[0]) - loopHeadroom))
			if err := l.run(b.N); err != nil {
				b.Fatal(err)
			}
			reportPPS(b)
			reportSplit(b, l.tw, l.tr)
		})
	}
	b.Run(fmt.Sprintf("queues=2/batch=%d", DefaultBatchSize), func(b *testing.B) {
		lt.watchdog.Reset(watchdogTimeout)
		loops := []*loop{newLoop(b, q0, DefaultBatchSize, 3000), newLoop(b, q1, DefaultBatchSize, 4000)}
		for _, l := range loops {
			warm(b, lt.devs, l.d, l.wbufs, loopHeadroom)
		}
		b.ResetTimer()
		b.ReportAllocs()
		b.SetBytes(int64(len(loops[0].wbufs[0]) - loopHeadroom))
		var wg sync.WaitGroup
		errs := make([]error, len(loops))
		for i, l := range loops {
			wg.Go(func() { errs[i] = l.run((b.N + i) / len(loops)) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
		reportPPS(b)
	})
}

func reportPPS(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkt/s")
}

// reportSplit reports the time spent in writes (which include the
// kernel's forwarding) and in reads, per packet.
func reportSplit(b *testing.B, tw, tr time.Duration) {
	b.ReportMetric(float64(tw.Nanoseconds())/float64(b.N), "write-ns/pkt")
	b.ReportMetric(float64(tr.Nanoseconds())/float64(b.N), "read-ns/pkt")
}

// loopPacket is a 64-byte IPv4 UDP packet from 198.18.9.1:port to
// 198.18.9.9:9, with headroom bytes in front of it.
func loopPacket(tb testing.TB, port uint16, headroom int) []byte {
	pkt := udpPacket(tb, netip.AddrPortFrom(netip.MustParseAddr("198.18.9.1"), port),
		netip.AddrPortFrom(far4, 9), make([]byte, 64-20-8))
	return append(make([]byte, headroom), pkt...)
}

// loopHeadroom is the offset the loops use, as a gateway would for a
// virtio-net header.
const loopHeadroom = 16

// warm writes pkts (each bufs[i][offset:]) on q once, so that the kernel
// learns their flows are q's, and then drains every queue.
func warm(tb testing.TB, all []device.Device, q *TUN, pkts [][]byte, offset int) {
	tb.Helper()
	if _, err := q.Write(pkts, offset); err != nil {
		tb.Fatal(err)
	}
	buf := make([]byte, 1500)
	for _, d := range all {
		f := d.(*TUN).file
		f.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		for {
			if _, err := f.Read(buf); err != nil {
				break
			}
		}
		f.SetReadDeadline(time.Time{})
	}
}

// loop writes batches to one queue and reads them back.
type loop struct {
	d     *TUN
	wbufs [][]byte
	rbufs [][]byte
	sizes []int
	tw    time.Duration // time in Write
	tr    time.Duration // time in Read
}

// newLoop prepares batch packets of one flow per source port base+i%4
// (four flows: all of them stay on d's queue, see the benchmark doc).
func newLoop(tb testing.TB, d *TUN, batch int, base uint16) *loop {
	const headroom = loopHeadroom
	l := &loop{d: d, wbufs: make([][]byte, batch), rbufs: make([][]byte, d.BatchSize()), sizes: make([]int, d.BatchSize())}
	for i := range l.wbufs {
		l.wbufs[i] = loopPacket(tb, base+uint16(i%4), headroom)
	}
	for i := range l.rbufs {
		l.rbufs[i] = make([]byte, headroom+1500)
	}
	return l
}

// run sends n packets around the loop.
func (l *loop) run(n int) error {
	const headroom = loopHeadroom
	written, read := 0, 0
	for written < n {
		k := min(len(l.wbufs), n-written)
		t0 := time.Now()
		w, err := l.d.Write(l.wbufs[:k], headroom)
		written += w
		if err != nil {
			return err
		}
		t1 := time.Now()
		for read < written {
			r, err := l.d.Read(l.rbufs, l.sizes, headroom)
			read += r
			if err != nil {
				return err
			}
		}
		l.tw, l.tr = l.tw+t1.Sub(t0), l.tr+time.Since(t1)
	}
	return nil
}
