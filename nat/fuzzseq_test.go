package nat_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// FuzzEngineSequence drives the engine with packet sequences decoded from
// the fuzz input: connections from a handful of clients (SYN, ACK, FIN,
// RST both ways), UDP, masquerade, clock steps with expiry, and raw bytes.
// Properties: no panic; the table's invariants hold after every step;
// every translated packet parses; once everything has expired no flow is
// left and the backends' connection counts are back to zero.
func FuzzEngineSequence(f *testing.F) {
	f.Add([]byte{0, 1, 2, 1, 1, 1, 3, 1, 7, 200})
	f.Add([]byte{0, 0, 0, 1, 0, 2, 4, 0, 5, 3, 6, 9, 7, 50, 2, 0})
	f.Add([]byte{8, 0x45, 0, 0, 20, 7, 255})
	f.Fuzz(func(t *testing.T, in []byte) {
		e := engine(t, nat.ModeNAT, 32)
		w := e.NewWorker()
		backend := map[int]netip.AddrPort{} // client index -> backend seen
		now := time.Duration(0)
		next := func() int {
			if len(in) == 0 {
				return 0
			}
			b := in[0]
			in = in[1:]
			return int(b)
		}
		for steps := 0; len(in) > 0 && steps < 200; steps++ {
			op, arg := next()%9, next()
			c := netip.AddrPortFrom(client.Addr(), uint16(1000+arg%8))
			var pkt []byte
			switch op {
			case 0:
				pkt = tcp(c, vip, syn, 0)
			case 1:
				pkt = tcp(c, vip, ack, arg%3)
			case 2, 3, 4:
				d, ok := backend[arg%8]
				if !ok {
					d = netip.AddrPortFrom(rips[arg%3], 8080)
				}
				flags := []uint8{synack, finack, rst}[op-2]
				if arg&0x80 != 0 { // from the client instead
					pkt = tcp(c, vip, flags&^packet.TCPFlagSYN|packet.TCPFlagACK, 0)
				} else {
					pkt = tcp(d, c, flags, 0)
				}
			case 5:
				pkt = udp(c, netip.AddrPortFrom(vip.Addr(), 53), arg%5)
			case 6:
				pkt = udp(netip.AddrPortFrom(rips[arg%3], uint16(2000+arg%4)), outside, 1)
			case 7:
				now += time.Duration(arg) * time.Second
				e.Advance(now)
				e.Expire()
			case 8:
				n := min(arg%64, len(in))
				pkt = append([]byte(nil), in[:n]...)
				in = in[n:]
			}
			if pkt != nil {
				v := one(w, pkt)
				if v == nat.Forward && op == 0 {
					var p packet.Parsed
					if packet.Parse(pkt, &p) != packet.ReasonNone {
						t.Fatalf("translated packet does not parse")
					}
					backend[arg%8] = netip.AddrPortFrom(netip.AddrFrom16(p.Dst).Unmap(), p.DstPort)
				}
			}
			if err := e.CheckInvariants(); err != nil {
				t.Fatalf("step %d (op %d): %v", steps, op, err)
			}
		}
		e.Advance(now + 24*time.Hour)
		e.Expire()
		if e.Flows() != 0 {
			t.Fatalf("%d flows after a day", e.Flows())
		}
		if a, i := e.BackendConns(vip, packet.ProtoTCP); a != 0 || i != 0 {
			t.Fatalf("backends still count %d active, %d inactive connections", a, i)
		}
	})
}
