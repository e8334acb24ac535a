package netstack

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vsgate/vsgate/packet"
)

// pair wires two stacks back to back: what one sends, the other receives.
// Addresses are bytes inside the two stacks; nothing touches a real
// network. With gso the server's stack sends with host GSO, and its
// packets go through a virtio-net header and packet.VNetHdr.Segments on
// the way, as a device with offloads would cut and finish them; *supers
// counts the super-packets it sent.
func pair(t *testing.T, gso bool, supers *atomic.Int64) (client, server *Stack) {
	t.Helper()
	var c, s *Stack
	ready := make(chan struct{})
	var err error
	forward := func(to **Stack) func([][]byte, []packet.Offload) {
		return func(pkts [][]byte, _ []packet.Offload) {
			<-ready
			for _, p := range pkts {
				(*to).Inject(p)
			}
		}
	}
	if c, err = New(Options{Output: forward(&s)}); err != nil {
		t.Fatal(err)
	}
	opts := Options{Output: forward(&c)}
	if gso {
		hdr := make(packet.VNetHdr, packet.VNetHdrSize)
		seg := make([]byte, 65536)
		toClient := func(p []byte) { <-ready; c.Inject(p) }
		opts.GSO, opts.Output = true, func(pkts [][]byte, offs []packet.Offload) {
			for i, p := range pkts {
				o := offs[i]
				if o.GSOType != packet.GSONone {
					supers.Add(1)
				}
				hdr.SetOffload(o, 0)
				if !hdr.Segments(p, seg, 0, toClient) {
					t.Errorf("a packet the stack sent with %+v does not split", o)
				}
			}
		}
	}
	if s, err = New(opts); err != nil {
		t.Fatal(err)
	}
	close(ready)
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// TestHTTPThroughStacks: an HTTP server on a VIP in one stack answers a
// client in another, over IPv4 and IPv6, including a 20 MB body intact.
func TestHTTPThroughStacks(t *testing.T) { testHTTPThroughStacks(t, false) }

// TestHostGSO is TestHTTPThroughStacks with the server's stack sending
// super-packets with partial checksums (Options.GSO): cut and finished by
// the same code the devices use, they arrive intact (the client stack
// checks every checksum), and the 20 MB bodies did go as super-packets.
func TestHostGSO(t *testing.T) { testHTTPThroughStacks(t, true) }

func testHTTPThroughStacks(t *testing.T, gso bool) {
	var supers atomic.Int64
	client, server := pair(t, gso, &supers)
	for _, tc := range []struct{ vip, cl string }{{"198.18.0.10:80", "198.18.0.2"}, {"[2001:db8::10]:80", "2001:db8::2"}} {
		vip := netip.MustParseAddrPort(tc.vip)
		if err := client.AddAddress(netip.MustParseAddr(tc.cl)); err != nil {
			t.Fatal(err)
		}
		ln, err := server.Listen(vip)
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/big" {
				io.Copy(w, io.LimitReader(&pattern{}, 20<<20))
				return
			}
			fmt.Fprintf(w, "hello %s from %s", r.URL.Path, r.RemoteAddr)
		})}
		go srv.Serve(ln)
		hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return client.Dial(ctx, vip)
		}}, Timeout: 30 * time.Second}
		resp, err := hc.Get("http://" + tc.vip + "/x")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.HasPrefix(string(b), "hello /x from "+netip.AddrPortFrom(netip.MustParseAddr(tc.cl), 0).Addr().String()) &&
			!strings.Contains(string(b), tc.cl) {
			t.Fatalf("%s: %q", tc.vip, b)
		}
		resp, err = hc.Get("http://" + tc.vip + "/big")
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		resp.Body.Close()
		want := sha256.New()
		io.Copy(want, io.LimitReader(&pattern{}, 20<<20))
		if err != nil || n != 20<<20 || string(h.Sum(nil)) != string(want.Sum(nil)) {
			t.Fatalf("%s: big body %d bytes, %v", tc.vip, n, err)
		}
		srv.Close()
	}
	if gso && supers.Load() < (20<<20)/(32<<10) {
		t.Errorf("%d super-packets for 2 x 20 MB, want at least one per 32 KiB of one body", supers.Load())
	}
}

// pattern is the bodies' content: a byte pattern by offset (not zeros: a
// checksum over zeros would not notice bytes in the wrong place).
type pattern struct{ off int }

func (r *pattern) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r.off*7 + r.off>>11)
		r.off++
	}
	return len(p), nil
}
