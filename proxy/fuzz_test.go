package proxy

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// FuzzParseDirectives: no input panics; an accepted config builds a Proxy
// that answers requests without panicking (every backend is unreachable,
// so no traffic leaves the process).
func FuzzParseDirectives(f *testing.F) {
	for _, s := range []string{
		"ProxyPass / http://127.0.0.1:1/",                           // the simplest route
		"ProxyPass /a !\nProxyPass /a http://127.0.0.1:1/b nocanon", // exclusion, nocanon
		"ProxyPassMatch ^/(.*)$ http://127.0.0.1:1/$1$9\\$",         // backrefs, escapes
		"<Proxy balancer://p>\nBalancerMember http://127.0.0.1:1 loadfactor=3 status=+H\nProxySet lbmethod=bytraffic\n</Proxy>\nProxyPass /lb balancer://p/", // balancer
		"ProxyPassReverse / http://127.0.0.1:1/\nProxyPreserveHost On",                                                                                       // reverse map
		"ProxyPass \"/a b\" 'http://[::1]:1/x' \\\n retry=0",                                                                                                 // quotes, IPv6, continuation
	} {
		f.Add(s, "/a/b?c")
	}
	f.Fuzz(func(t *testing.T, text, target string) {
		cfg, err := ParseDirectives(text, "fuzz.conf", 1)
		if err != nil {
			return
		}
		p, err := New(cfg, Options{DialContext: refuseDial})
		if err != nil {
			t.Fatalf("accepted config does not build: %v\n%s", err, text)
		}
		if len(target) == 0 || target[0] != '/' {
			target = "/" + target
		}
		if strings.ContainsAny(target, " \r\n") {
			return
		}
		resp := exchangeRaw(t, p, "GET "+target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if !strings.HasPrefix(resp, "HTTP/1.1 ") {
			t.Fatalf("%q: answer %q", target, resp)
		}
	})
}

// exchangeRaw serves one connection that sends raw and returns all the
// proxy wrote back.
func exchangeRaw(t testing.TB, p *Proxy, raw string) string {
	t.Helper()
	f := NewFront(p, FrontOptions{})
	client, server := net.Pipe()
	f.slots <- struct{}{}
	go f.serveConn(server, f.track(server), nil)
	go func() {
		io.WriteString(client, raw)
	}()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(client)
	client.Close()
	return string(b)
}
