package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vsgate/vsgate/internal/testcert"
	"golang.org/x/net/http2"
)

func newCA(t testing.TB) *testcert.CA {
	t.Helper()
	ca, err := testcert.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t testing.TB, ca *testcert.CA, dir, name string, serial int64) (string, string) {
	t.Helper()
	c, k, err := ca.Issue(dir, name, serial)
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}

// tlsDirectives serves a.example and b.example (serial) to backend b.
func tlsDirectives(t testing.TB, ca *testcert.CA, dir string, serial int64, backend, extra string) string {
	a, ak := issue(t, ca, dir, "a.example", serial)
	b, bk := issue(t, ca, dir, "b.example", serial)
	return fmt.Sprintf("SSLEngine on\nSSLCertificateFile %s\nSSLCertificateKeyFile %s\nSSLCertificateFile %s\nSSLCertificateKeyFile %s\n%sProxyPass / http://%s/\n",
		a, ak, b, bk, extra, backend)
}

func newProxy(t testing.TB, directives string) *Proxy {
	t.Helper()
	cfg, err := ParseDirectives(directives, "t.conf", 1)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(cfg, Options{ServerName: "gw.example"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// frontOn serves f on a loopback listener and returns its address.
func frontOn(t testing.TB, f *Front) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go f.Serve(ln)
	t.Cleanup(func() { f.Close() })
	return ln.Addr().String()
}

// TestTLSSNI: two certificates, each chosen by the client's SNI; requests
// go through over TLS.
func TestTLSSNI(t *testing.T) {
	ca, dir := newCA(t), t.TempDir()
	addr := frontOn(t, NewFront(newProxy(t, tlsDirectives(t, ca, dir, 1, okBackend(t), "")), FrontOptions{}))
	for _, name := range []string{"a.example", "b.example"} {
		c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: name, RootCAs: ca.Pool()})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := c.ConnectionState().PeerCertificates[0].Subject.CommonName; got != name {
			t.Fatalf("SNI %s: certificate of %s", name, got)
		}
		br := bufio.NewReader(c)
		if resp := getOn(t, c, br, "/"); resp.StatusCode != 200 {
			t.Fatalf("%s: %s", name, resp.Status)
		}
		c.Close()
	}
}

// TestTLSSwap: a reload's new certificates serve new connections while an
// open one goes on, and a session ticket from before the reload still
// resumes after it.
func TestTLSSwap(t *testing.T) {
	ca, dir, b := newCA(t), t.TempDir(), okBackend(t)
	f := NewFront(newProxy(t, tlsDirectives(t, ca, dir, 1, b, "")), FrontOptions{})
	addr := frontOn(t, f)
	cache := tls.NewLRUClientSessionCache(8)
	cfg := &tls.Config{ServerName: "a.example", RootCAs: ca.Pool(), ClientSessionCache: cache}
	open, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	br := bufio.NewReader(open)
	getOn(t, open, br, "/") // the ticket comes with the first response
	old := f.Swap(newProxy(t, tlsDirectives(t, ca, dir, 2, b, "")))
	old.Close()
	if resp := getOn(t, open, br, "/"); resp.StatusCode != 200 {
		t.Fatalf("the open connection after the reload: %s", resp.Status)
	}
	if serial := open.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); serial != 1 {
		t.Fatalf("the open connection's certificate changed to %d", serial)
	}
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.ConnectionState().DidResume {
		t.Fatal("a session from before the reload did not resume")
	}
	fresh, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "a.example", RootCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if serial := fresh.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); serial != 2 {
		t.Fatalf("a new connection got certificate %d, want the reloaded 2", serial)
	}
}

// TestSSLProtocolAndCiphers: SSLProtocol's range holds (a TLS 1.2 client
// is refused by a TLSv1.3-only service), SSLCipherSuite's list is what a
// TLS 1.2 client gets, and what Go cannot offer is refused with the
// reason.
func TestSSLProtocolAndCiphers(t *testing.T) {
	ca, dir, b := newCA(t), t.TempDir(), okBackend(t)
	addr := frontOn(t, NewFront(newProxy(t, tlsDirectives(t, ca, dir, 1, b, "SSLProtocol TLSv1.3\n")), FrontOptions{}))
	if c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "a.example", RootCAs: ca.Pool(), MaxVersion: tls.VersionTLS12}); err == nil {
		c.Close()
		t.Fatal("a TLS 1.2 client got through SSLProtocol TLSv1.3")
	}
	addr = frontOn(t, NewFront(newProxy(t, tlsDirectives(t, ca, dir, 2, b, "SSLProtocol all -TLSv1.3\nSSLCipherSuite ECDHE-ECDSA-AES256-GCM-SHA384:HIGH:!aNULL:!MD5\n")), FrontOptions{}))
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "a.example", RootCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	st := c.ConnectionState()
	c.Close()
	if st.Version != tls.VersionTLS12 || st.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 {
		t.Fatalf("version %x suite %s", st.Version, tls.CipherSuiteName(st.CipherSuite))
	}
	for _, bad := range []string{"SSLProtocol SSLv3", "SSLProtocol TLSv1 TLSv1.2", "SSLProtocol all -TLSv1.2 -TLSv1.3", "SSLCipherSuite RC4-SHA",
		"SSLCipherSuite TLSv1.3 TLS_AES_128_GCM_SHA256", "SSLCipherSuite ECDHE+AESGCM", "Protocols h2c http/1.1", "SSLProxyVerify optional"} {
		if _, err := ParseDirectives(bad+"\nProxyPass / http://127.0.0.1:1/", "t.conf", 1); err == nil || !strings.Contains(err.Error(), "t.conf:1") {
			t.Errorf("%q: %v, want refused at t.conf:1", bad, err)
		}
	}
}

// TestHTTPSBackend: https:// real servers need SSLProxyEngine on (500
// without, as Apache); SSLProxyVerify require checks their certificate
// against SSLProxyCACertificateFile (502 for one it refuses), none does
// not.
func TestHTTPSBackend(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "secure") }))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.pem")
	os.WriteFile(good, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	wrong := filepath.Join(dir, "wrong.pem")
	os.WriteFile(wrong, newCA(t).PEM, 0o600)
	backend := strings.TrimPrefix(srv.URL, "https://")
	for _, c := range []struct {
		directives string
		want       int
	}{
		{"", 500},
		{"SSLProxyEngine on\nSSLProxyVerify require\nSSLProxyCACertificateFile " + good + "\n", 200},
		{"SSLProxyEngine on\nSSLProxyVerify require\nSSLProxyCACertificateFile " + wrong + "\n", 502},
		{"SSLProxyEngine on\nSSLProxyCACertificateFile " + wrong + "\n", 200},
	} {
		addr, _ := serveProxy(t, c.directives+"ProxyPass / https://"+backend+"/", Options{})
		conn, br := dialProxy(t, addr)
		if resp := getOn(t, conn, br, "/"); resp.StatusCode != c.want {
			t.Errorf("%q: %s, want %d", c.directives, resp.Status, c.want)
		}
	}
}

// TestHTTP2: with Protocols h2 http/1.1, 64 concurrent streams of one
// HTTP/2 connection are in flight at once (the real server holds each
// until all 64 have come), each forwarded to the real server with its
// body; the server's SETTINGS carry H2MaxSessionStreams and a header list
// limit.
func TestHTTP2(t *testing.T) {
	ca, dir := newCA(t), t.TempDir()
	const streams = 64
	var arrived atomic.Int64
	all := make(chan struct{})
	b := serveBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if arrived.Add(1) == streams {
			close(all)
		}
		select {
		case <-all:
		case <-time.After(20 * time.Second):
			http.Error(w, "not all streams came at once", http.StatusGatewayTimeout)
			return
		}
		fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.Path, len(body))
	}))
	addr := frontOn(t, NewFront(newProxy(t, tlsDirectives(t, ca, dir, 1, b, "Protocols h2 http/1.1\n")), FrontOptions{}))
	var dials atomic.Int64
	tr := &http2.Transport{TLSClientConfig: &tls.Config{ServerName: "a.example", RootCAs: ca.Pool()},
		DialTLSContext: func(ctx context.Context, network, a string, cfg *tls.Config) (net.Conn, error) {
			dials.Add(1)
			return (&tls.Dialer{Config: cfg}).DialContext(ctx, network, addr)
		}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := hc.Post(fmt.Sprintf("https://a.example/s%d", i), "text/plain", strings.NewReader(strings.Repeat("x", i)))
			if err != nil {
				errs <- err
				return
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("POST /s%d %d", i, i); resp.ProtoMajor != 2 || string(got) != want {
				errs <- fmt.Errorf("stream %d: %s %q, want HTTP/2 and %q", i, resp.Proto, got, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if dials.Load() != 1 {
		t.Fatalf("%d connections for %d streams, want 1", dials.Load(), streams)
	}
	// The server's SETTINGS.
	addr = frontOn(t, NewFront(newProxy(t, tlsDirectives(t, ca, dir, 2, b, "Protocols h2 http/1.1\nH2MaxSessionStreams 16\n")), FrontOptions{}))
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "a.example", RootCAs: ca.Pool(), NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	for {
		frame, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if s, ok := frame.(*http2.SettingsFrame); ok && !s.IsAck() {
			if v, ok := s.Value(http2.SettingMaxConcurrentStreams); !ok || v != 16 {
				t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS %d, want H2MaxSessionStreams 16", v)
			}
			if v, ok := s.Value(http2.SettingMaxHeaderListSize); !ok || v == 0 {
				t.Errorf("no SETTINGS_MAX_HEADER_LIST_SIZE")
			}
			break
		}
	}
}

// TestShutdownHTTP2: Front.Shutdown sends an HTTP/2 connection GOAWAY:
// the stream running finishes, the client opens no new stream on it (and
// finds the listener closed), and the front drains.
func TestShutdownHTTP2(t *testing.T) {
	ca, dir := newCA(t), t.TempDir()
	arrived, release := make(chan struct{}), make(chan struct{})
	b := serveBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(arrived)
			<-release
		}
		io.WriteString(w, "ok")
	}))
	f := NewFront(newProxy(t, tlsDirectives(t, ca, dir, 1, b, "Protocols h2 http/1.1\n")), FrontOptions{})
	addr := frontOn(t, f)
	tr := &http2.Transport{TLSClientConfig: &tls.Config{ServerName: "a.example", RootCAs: ca.Pool()},
		DialTLSContext: func(ctx context.Context, network, a string, cfg *tls.Config) (net.Conn, error) {
			return (&tls.Dialer{Config: cfg}).DialContext(ctx, network, addr)
		}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	type answer struct {
		body string
		err  error
	}
	slow := make(chan answer, 1)
	go func() {
		resp, err := hc.Get("https://a.example/slow")
		if err != nil {
			slow <- answer{err: err}
			return
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- answer{string(got), err}
	}()
	<-arrived
	f.Shutdown()
	// GOAWAY reaches the client before its next stream only eventually:
	// a stream it opens meanwhile is refused by the server (REFUSED_STREAM,
	// which the transport retries on a new connection), so either way the
	// request must not be served by the shut-down front.
	if resp, err := hc.Get("https://a.example/after"); err == nil {
		resp.Body.Close()
		t.Fatalf("a request after Shutdown was answered: %s", resp.Status)
	}
	close(release)
	if a := <-slow; a.err != nil || a.body != "ok" {
		t.Fatalf("the stream running at Shutdown: %q, %v", a.body, a.err)
	}
	select {
	case <-f.Drained():
	case <-time.After(30 * time.Second):
		t.Fatalf("not drained with %d connections left", f.Connections())
	}
}
