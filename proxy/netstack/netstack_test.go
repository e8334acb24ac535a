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
	"testing"
	"time"
)

// pair wires two stacks back to back: what one sends, the other receives.
// Addresses are bytes inside the two stacks; nothing touches a real
// network.
func pair(t *testing.T) (client, server *Stack) {
	t.Helper()
	var c, s *Stack
	ready := make(chan struct{})
	var err error
	forward := func(to **Stack) func([]byte) {
		return func(p []byte) {
			<-ready
			(*to).Inject(p)
		}
	}
	if c, err = New(Options{Output: forward(&s)}); err != nil {
		t.Fatal(err)
	}
	if s, err = New(Options{Output: forward(&c)}); err != nil {
		t.Fatal(err)
	}
	close(ready)
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// TestHTTPThroughStacks: an HTTP server on a VIP in one stack answers a
// client in another, over IPv4 and IPv6, including a 20 MB body intact.
func TestHTTPThroughStacks(t *testing.T) {
	client, server := pair(t)
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
				io.Copy(w, io.LimitReader(zeroes{}, 20<<20))
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
		io.Copy(want, io.LimitReader(zeroes{}, 20<<20))
		if err != nil || n != 20<<20 || string(h.Sum(nil)) != string(want.Sum(nil)) {
			t.Fatalf("%s: big body %d bytes, %v", tc.vip, n, err)
		}
		srv.Close()
	}
}

type zeroes struct{}

func (zeroes) Read(p []byte) (int, error) { clear(p); return len(p), nil }
