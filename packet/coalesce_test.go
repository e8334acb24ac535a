package packet

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// TestCoalesceUDP: a run of one flow's datagrams becomes one UDP GSO
// super-packet whose segments (split as the kernel splits them) are the
// datagrams, byte for byte as gopacket built them; a datagram of another
// flow, a longer one, or a TCP segment ends the run.
func TestCoalesceUDP(t *testing.T) {
	for i := range 4 {
		v6, l2 := i&1 == 1, linkHeaders[i/2]
		offset := VNetHdrSize + l2
		udp := superPacket{v6: v6, udp: true}
		var want [][]byte
		for i, n := range []int{100, 100, 100, 60} {
			want = append(want, udp.serialize(t, bytes.Repeat([]byte{byte(i)}, n), 7+uint16(i), 0, 0))
		}
		longer := udp.serialize(t, make([]byte, 120), 11, 0, 0)
		tcp := superPacket{v6: v6}.serialize(t, []byte("x"), 12, 1, testACK)
		bufs := make([][]byte, 0, 6)
		for _, p := range append(append(want[:3:3], longer), tcp) {
			b := make([]byte, offset+len(p), offset+65535)
			copy(b[offset:], p)
			bufs = append(bufs, b)
		}
		// The second comes with a partial checksum, as from a local stack
		// behind a veth: it joins the run all the same.
		h2 := VNetHdr(bufs[1][:VNetHdrSize])
		h2[0] = VNetNeedsCsum
		binary.NativeEndian.PutUint16(h2[6:], uint16(l2+map[bool]int{false: 20, true: 40}[v6]))
		binary.NativeEndian.PutUint16(h2[8:], 6)
		// The run is the first three (a longer datagram ends it).
		frame, next := CoalesceUDP(bufs, 0, offset, l2, 64)
		if next != 3 {
			t.Fatalf("v6=%v: the run ended before %d, want 3", v6, next)
		}
		h := VNetHdr(frame[:VNetHdrSize])
		if h.GSOType() != GSOUDPL4 || !h.Partial() || h.GSOSize() != 100 {
			t.Fatalf("v6=%v: header %x", v6, []byte(h))
		}
		ip := frame[offset:]
		var got [][]byte
		if !h.Segments(ip, make([]byte, 2048), l2, func(b []byte) { got = append(got, bytes.Clone(b)) }) {
			t.Fatalf("v6=%v: segments refused the super-packet", v6)
		}
		if len(got) != 3 {
			t.Fatalf("v6=%v: %d segments, want 3", v6, len(got))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Errorf("v6=%v datagram %d:\n got %x\nwant %x", v6, i, got[i], want[i])
			}
		}
		// The longer datagram starts a run of its own, which the TCP
		// segment ends: both come back alone.
		if _, next := CoalesceUDP(bufs, 3, offset, l2, 64); next != 4 {
			t.Errorf("v6=%v: a lone datagram merged up to %d", v6, next)
		}
		if f, next := CoalesceUDP(bufs, 4, offset, l2, 64); next != 5 || len(f) != offset+len(tcp) || f[0] != 0 {
			t.Errorf("v6=%v: the TCP segment came back as %d bytes up to %d", v6, len(f), next)
		}

		// A run whose last datagram is shorter ends with it.
		bufs = bufs[:0]
		for _, p := range append(want, want[0]) {
			b := make([]byte, offset+len(p), offset+65535)
			copy(b[offset:], p)
			bufs = append(bufs, b)
		}
		frame, next = CoalesceUDP(bufs, 0, offset, l2, 64)
		if next != 4 {
			t.Errorf("v6=%v: a run with a short last datagram ended before %d, want 4", v6, next)
		}
		total := 0
		for _, w := range want {
			total += len(w)
		}
		hl := 20
		if v6 {
			hl = 40
		}
		if len(frame)-offset != total-3*(hl+8) || binary.NativeEndian.Uint16(frame[4:]) != 100 {
			t.Errorf("v6=%v: super-packet of %d bytes", v6, len(frame)-offset)
		}
	}
}

// FuzzCoalesceUDP: whatever the packets, coalescing never panics or
// writes past a buffer, and a super-packet it makes splits back into the
// payloads it merged, in order.
func FuzzCoalesceUDP(f *testing.F) {
	t := &testing.T{}
	udp := superPacket{udp: true}
	a, b := udp.serialize(t, make([]byte, 50), 1, 0, 0), udp.serialize(t, make([]byte, 30), 2, 0, 0)
	f.Add(append(append([]byte{byte(len(a))}, a...), b...), byte(0))
	udp6 := superPacket{udp: true, v6: true}
	c := udp6.serialize(t, []byte("abc"), 0, 0, 0)
	f.Add(append(append([]byte{byte(len(c))}, c...), c...), byte(1))
	f.Fuzz(func(t *testing.T, data []byte, flags byte) {
		if len(data) < 2 {
			return
		}
		// data[0] cuts the rest into packets of that length (the last
		// gets what remains); flags sets the first's virtio-net flags.
		size := max(int(data[0]), 1)
		l2 := linkHeaders[int(flags>>7)]
		offset := VNetHdrSize + l2
		var bufs [][]byte
		for rest := data[1:]; len(rest) > 0 && len(bufs) < 8; {
			n := min(size, len(rest))
			b := make([]byte, offset+n, offset+n+4096)
			copy(b[offset:], rest[:n])
			bufs = append(bufs, b)
			rest = rest[n:]
		}
		bufs[0][0] = flags &^ 0x80
		var payloads []byte
		for _, b := range bufs {
			if l4, ok := plainUDP(b, offset, l2); ok {
				payloads = append(payloads, b[offset+l4+8:]...)
			}
		}
		for i := 0; i < len(bufs); {
			frame, next := CoalesceUDP(bufs, i, offset, l2, 64)
			if next <= i || next > len(bufs) {
				t.Fatalf("CoalesceUDP(%d) = next %d of %d", i, next, len(bufs))
			}
			if next > i+1 {
				h := VNetHdr(frame[:VNetHdrSize])
				ip := frame[offset:]
				var got []byte
				if !h.Segments(ip, make([]byte, 65536), l2, func(s []byte) {
					got = append(got, s[h.HdrLen()-l2:]...)
				}) {
					t.Fatalf("a super-packet of %d datagrams does not split", next-i)
				}
				if !bytes.Contains(payloads, got) {
					t.Fatalf("the super-packet's segments carry %d bytes that were not the datagrams' payloads", len(got))
				}
			}
			i = next
		}
	})
}

// TestCoalesceUDPChecksums: a datagram whose complete checksum is wrong
// never joins a run (merging would give it a fresh, valid one); one the
// kernel marked DATA_VALID joins without being summed again.
func TestCoalesceUDPChecksums(t *testing.T) {
	for _, l2 := range linkHeaders {
		offset := VNetHdrSize + l2
		udp := superPacket{udp: true}
		var bufs [][]byte
		for i := range 3 {
			p := udp.serialize(t, bytes.Repeat([]byte{byte(i)}, 100), uint16(i), 0, 0)
			b := make([]byte, offset+len(p), offset+65535)
			copy(b[offset:], p)
			bufs = append(bufs, b)
		}
		bufs[1][offset+IPv4MinimumSize+8+5] ^= 0xff // corrupt the second one's payload
		if _, next := CoalesceUDP(bufs, 0, offset, l2, 64); next != 1 {
			t.Errorf("l2=%d: a datagram with a wrong checksum was merged (run up to %d)", l2, next)
		}
		VNetHdr(bufs[1][:VNetHdrSize]).SetFlags(VNetDataValid) // the kernel vouches for it
		if _, next := CoalesceUDP(bufs, 0, offset, l2, 64); next != 3 {
			t.Errorf("l2=%d: DATA_VALID datagram not merged (run up to %d, want 3)", l2, next)
		}
	}
}
