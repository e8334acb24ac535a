package nat_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// TestScenarios walks TCP connections through each mode (NAT, FULLNAT,
// masquerade): handshake, data, FIN both ways and TIME_WAIT's timeout;
// then a connection that a reset ends, from either side, and CLOSE's
// timeout. Each answer is built from the translated packet (the server
// answers whom it saw) and must come back to the client as from whom it
// addressed. States and their time left are read from AllFlows.
func TestScenarios(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mode     nat.Mode
		src, dst netip.AddrPort
	}{
		{"nat", nat.ModeNAT, client, vip},
		{"fullnat", nat.ModeFullNAT, client, vip},
		{"masquerade", nat.ModeNAT, netip.AddrPortFrom(rips[0], 40000), far},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := engine(t, tc.mode, 64)
			w := e.NewWorker()
			now := time.Duration(0)
			state := func(src netip.AddrPort) (string, time.Duration) {
				for f := range e.AllFlows() {
					if f.OrigSrc == src {
						return f.State, f.Expires
					}
				}
				return "gone", 0
			}
			expect := func(src netip.AddrPort, st string, left time.Duration) {
				t.Helper()
				if got, l := state(src); got != st || l != left {
					t.Fatalf("flow from %v: %s with %v left, want %s with %v", src, got, l, st, left)
				}
			}
			// connect runs the handshake from src and returns the
			// translated tuple the server sees.
			connect := func(src netip.AddrPort) (seenSrc, seenDst netip.AddrPort) {
				t.Helper()
				b := tcp(src, tc.dst, syn, 0)
				if v := one(w, b); v != nat.Forward {
					t.Fatalf("SYN: %v", v)
				}
				checksumsValid(t, b)
				seenSrc, seenDst = endpoints(t, b)
				b = tcp(seenDst, seenSrc, synack, 0)
				if v := one(w, b); v != nat.Forward {
					t.Fatalf("SYN-ACK: %v", v)
				}
				checksumsValid(t, b)
				if s, d := endpoints(t, b); s != tc.dst || d != src {
					t.Fatalf("SYN-ACK reached the client as %v > %v, want %v > %v", s, d, tc.dst, src)
				}
				one(w, tcp(src, tc.dst, ack, 0))
				expect(src, "ESTABLISHED", 15*time.Minute)
				return seenSrc, seenDst
			}
			src := tc.src
			sSrc, sDst := connect(src)
			b := tcp(src, tc.dst, ack, 100)
			if v := one(w, b); v != nat.Forward {
				t.Fatalf("data: %v", v)
			}
			checksumsValid(t, b)
			if s, d := endpoints(t, b); s != sSrc || d != sDst {
				t.Fatalf("data went %v > %v, want the handshake's %v > %v", s, d, sSrc, sDst)
			}
			// IPVS's states are the server's: the client's FIN puts the
			// connection in CLOSE_WAIT (60 s), the server's in TIME_WAIT.
			one(w, tcp(src, tc.dst, finack, 0))
			expect(src, "CLOSE_WAIT", time.Minute)
			one(w, tcp(sDst, sSrc, finack, 0))
			expect(src, "TIME_WAIT", 2*time.Minute)
			one(w, tcp(src, tc.dst, ack, 0))
			expect(src, "TIME_WAIT", 2*time.Minute)
			now += 2*time.Minute + time.Second
			e.Advance(now)
			if n := e.Expire(); n != 1 {
				t.Fatalf("TIME_WAIT: Expire removed %d", n)
			}
			expect(src, "gone", 0)

			for i, fromServer := range []bool{true, false} {
				src := netip.AddrPortFrom(tc.src.Addr(), tc.src.Port()+uint16(1+i))
				sSrc, sDst := connect(src)
				if fromServer {
					one(w, tcp(sDst, sSrc, rst, 0))
				} else {
					one(w, tcp(src, tc.dst, rst, 0))
				}
				expect(src, "CLOSE", 10*time.Second)
				now += 11 * time.Second
				e.Advance(now)
				if n := e.Expire(); n != 1 {
					t.Fatalf("CLOSE after a reset (from the server: %v): Expire removed %d", fromServer, n)
				}
			}
			if tc.name != "masquerade" {
				if a, in := e.BackendConns(vip, packet.ProtoTCP); a != 0 || in != 0 {
					t.Fatalf("after every connection ended the backends count %d active, %d inactive", a, in)
				}
			}
		})
	}
}
