package pcap

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Direction says whether the gateway read a packet or wrote it.
type Direction uint8

const (
	// In is a packet the gateway read from its device.
	In Direction = iota
	// Out is a packet the gateway wrote to its device.
	Out
)

func (d Direction) String() string {
	switch d {
	case In:
		return "in"
	case Out:
		return "out"
	}
	return fmt.Sprintf("Direction(%d)", uint8(d))
}

// LinkType is the link type of the files Start writes (IP packets);
// StartEthernet writes layers.LinkTypeEthernet (whole frames).
const LinkType = layers.LinkTypeLinuxSLL

// sllLen is the length of the Linux cooked-capture header.
const sllLen = 16

// Linux cooked-capture header fields (pcap-linktype(7), LINKTYPE_LINUX_SLL):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|          Packet type          |        ARPHRD_ type           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Link-layer address length    |                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//	|              Link-layer address (8 bytes, zero here)          |
//	+                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                               |        Protocol type          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const (
	sllPacketType = 0
	sllHatype     = 2
	sllProtocol   = 14

	sllHost     = 0      // LINUX_SLL_HOST: "In"
	sllOutgoing = 4      // LINUX_SLL_OUTGOING: "Out"
	arphrdNone  = 0xFFFE // ARPHRD_NONE, as a TUN interface reports
	etherIPv4   = 0x0800
	etherIPv6   = 0x86DD
)

// DefaultSnapLen is the snap length Start uses for 0: tcpdump's default,
// enough for any packet whole.
const DefaultSnapLen = 262144

// MinSnapLen is the smallest snap length Start accepts: the cooked header
// and a 60-byte IPv4 header with options.
const MinSnapLen = sllLen + 60

// ErrRunning is returned by Start while a capture is running.
var ErrRunning = errors.New("pcap: capture already running")

// bufSize is the buffer between WritePacket and the destination: a file
// gets a few large writes instead of two small ones per packet.
const bufSize = 64 << 10

// Writer writes the packets it is given as a pcap stream while a capture
// runs, and does nothing while it is stopped.
//
// The zero value is a stopped Writer, ready for Start; a Writer must not
// be copied. It is safe for concurrent use: workers call Enabled and
// WritePacket from any number of goroutines while another goroutine
// calls Start, Flush and Stop. Enabled is one atomic load; WritePacket
// takes a mutex (capture is for debugging, not for line rate) and does
// not allocate.
type Writer struct {
	on atomic.Bool // a capture runs; read without mu by Enabled

	mu      sync.Mutex
	buf     *bufio.Writer  // nil while stopped
	pw      *pcapgo.Writer // writes into buf
	snaplen int
	frames  bool   // an Ethernet capture (StartEthernet): WriteFrame records, WritePacket does not
	scratch []byte // cooked header + packet, snaplen bytes
	packets uint64
	err     error // first write error of this capture; stops it
}

// Start begins a capture into dst: it writes the pcap file header (link
// type LINUX_SLL, microsecond timestamps) and enables WritePacket.
// snaplen 0 means DefaultSnapLen; longer packets are cut to it (the cooked
// header counts). Start returns ErrRunning if a capture runs already.
// The caller owns dst: Stop flushes it but does not close it.
func (w *Writer) Start(dst io.Writer, snaplen int) error {
	return w.start(dst, snaplen, false)
}

// StartEthernet is Start for a gateway whose device carries Ethernet
// frames (AF_PACKET): the file's link type is LINKTYPE_ETHERNET and
// WriteFrame records whole frames, Ethernet header included (tcpdump -e
// shows the MACs, and so the direction); WritePacket records nothing.
func (w *Writer) StartEthernet(dst io.Writer, snaplen int) error {
	return w.start(dst, snaplen, true)
}

func (w *Writer) start(dst io.Writer, snaplen int, frames bool) error {
	if snaplen == 0 {
		snaplen = DefaultSnapLen
	}
	if snaplen < MinSnapLen || snaplen > DefaultSnapLen {
		return fmt.Errorf("pcap: snap length %d: want %d..%d, or 0 for %d", snaplen, MinSnapLen, DefaultSnapLen, DefaultSnapLen)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf != nil {
		return ErrRunning
	}
	buf := bufio.NewWriterSize(dst, bufSize)
	pw := pcapgo.NewWriter(buf)
	lt := LinkType
	if frames {
		lt = layers.LinkTypeEthernet
	}
	if err := pw.WriteFileHeader(uint32(snaplen), lt); err != nil {
		return fmt.Errorf("pcap: file header: %w", err)
	}
	if len(w.scratch) != snaplen {
		w.scratch = make([]byte, snaplen)
	}
	w.buf, w.pw, w.snaplen, w.packets, w.err, w.frames = buf, pw, snaplen, 0, nil, frames
	w.on.Store(true)
	return nil
}

// Enabled reports whether a capture runs: one atomic load, for workers to
// skip WritePacket (and the time.Now it needs) while it does not.
func (w *Writer) Enabled() bool { return w.on.Load() }

// WritePacket records pkt, a raw IP packet, with its time and direction,
// if a capture runs; otherwise it does nothing. The zero time means now.
// It does not keep pkt. A write error stops the capture; Stop returns it.
func (w *Writer) WritePacket(t time.Time, pkt []byte, dir Direction) {
	if !w.on.Load() {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf == nil || w.err != nil || w.frames {
		return // stopped since the load above, or a capture of frames
	}
	rec := w.scratch[:sllLen+min(len(pkt), w.snaplen-sllLen)]
	clear(rec[:sllLen])
	typ := uint16(sllHost)
	if dir == Out {
		typ = sllOutgoing
	}
	binary.BigEndian.PutUint16(rec[sllPacketType:], typ)
	binary.BigEndian.PutUint16(rec[sllHatype:], arphrdNone)
	var proto uint16
	if len(pkt) > 0 {
		switch pkt[0] >> 4 {
		case 4:
			proto = etherIPv4
		case 6:
			proto = etherIPv6
		}
	}
	binary.BigEndian.PutUint16(rec[sllProtocol:], proto)
	copy(rec[sllLen:], pkt)
	w.write(gopacket.CaptureInfo{Timestamp: t, CaptureLength: len(rec), Length: sllLen + len(pkt)}, rec)
}

// WriteFrame records frame, a whole Ethernet frame, with its time, if an
// Ethernet capture (StartEthernet) runs; otherwise it does nothing. The
// zero time means now. It does not keep frame.
func (w *Writer) WriteFrame(t time.Time, frame []byte) {
	if !w.on.Load() {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf == nil || w.err != nil || !w.frames {
		return
	}
	rec := frame[:min(len(frame), w.snaplen)]
	w.write(gopacket.CaptureInfo{Timestamp: t, CaptureLength: len(rec), Length: len(frame)}, rec)
}

// write writes one record. Caller holds w.mu.
func (w *Writer) write(ci gopacket.CaptureInfo, rec []byte) {
	if ci.Timestamp.IsZero() {
		ci.Timestamp = time.Now()
	}
	if err := w.pw.WritePacket(ci, rec); err != nil {
		w.err = err
		w.on.Store(false)
		return
	}
	w.packets++
}

// Flush pushes buffered packets to the destination, for a reader that
// follows the file while the capture runs. It returns the capture's first
// write error, if any.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf == nil {
		return nil
	}
	if w.err == nil {
		w.err = w.buf.Flush()
	}
	if w.err != nil {
		w.on.Store(false)
		return fmt.Errorf("pcap: %w", w.err)
	}
	return nil
}

// Stop ends the capture: it flushes the buffered packets, disables
// WritePacket and returns how many packets the capture recorded and its
// first write error. Stopping a stopped Writer returns 0, nil. The
// Writer can be started again.
func (w *Writer) Stop() (packets uint64, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.on.Store(false)
	if w.buf == nil {
		return 0, nil
	}
	err = w.err
	if err == nil {
		err = w.buf.Flush()
	}
	packets = w.packets
	w.buf, w.pw, w.err = nil, nil, nil
	if err != nil {
		return packets, fmt.Errorf("pcap: %w", err)
	}
	return packets, nil
}
