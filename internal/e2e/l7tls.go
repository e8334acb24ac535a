package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vsgate/vsgate/internal/netlab"
	"golang.org/x/net/http2"
)

// tlsPort is the HTTPS L7 service's port on VIP4.
const tlsPort = 443

// writeCerts issues a.example's and b.example's certificates with serial
// number serial and puts them where the HTTPS service's directives name
// them (tls/a.pem, a.key, b.pem, b.key), owned by uid (0: root only; the
// gateway, which runs as nobody, then cannot read them itself).
func (e *Env) writeCerts(serial int64, uid int) error {
	dir := filepath.Join(e.Dir, "tls")
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	for _, name := range []string{"a", "b"} {
		cert, key, err := e.ca.Issue(dir, name+".example", serial)
		if err != nil {
			return err
		}
		for from, to := range map[string]string{cert: name + ".pem", key: name + ".key"} {
			to = filepath.Join(dir, to)
			if err := os.Chown(from, uid, uid); err != nil {
				return err
			}
			if err := os.Rename(from, to); err != nil {
				return err
			}
		}
	}
	return nil
}

// tlsDirectives are the HTTPS service's.
func (e *Env) tlsDirectives() string {
	dir := filepath.Join(e.Dir, "tls")
	return fmt.Sprintf(`SSLEngine on
        SSLCertificateFile %[1]s/a.pem
        SSLCertificateKeyFile %[1]s/a.key
        SSLCertificateFile %[1]s/b.pem
        SSLCertificateKeyFile %[1]s/b.key
        Protocols h2 http/1.1
        ProxyPass / http://198.18.2.11/`, dir)
}

// stepL7TLS: HTTPS with SNI (two certificates), HTTP/2 with concurrent
// streams on one connection, certificates swapped by SIGHUP while a
// connection stays open, and root-only keys reloaded by vsgate adm reload
// (which reads them with its caller's rights for the gateway, which runs
// as nobody).
func stepL7TLS(ctx context.Context, e *Env) (string, error) {
	vip := netip.AddrPortFrom(e.Lab.Topo.Plan.VIP4, tlsPort).String()
	var parts []string
	say := func(f string, a ...any) { parts = append(parts, fmt.Sprintf(f, a...)) }
	done := func(err error) (string, error) { return strings.Join(parts, "; "), err }
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return e.client.DialContext(ctx, "tcp", vip)
	}
	client := func(name string, dials *atomic.Int64) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				dials.Add(1)
				return dial(ctx, network, addr)
			},
			TLSClientConfig: &tls.Config{ServerName: name, RootCAs: e.ca.Pool()}}}
	}
	// get fetches path and says which certificate (name, serial) served it
	// and which real server answered.
	get := func(hc *http.Client, path string) (string, int64, string, error) {
		resp, err := hc.Get("https://" + vip + path)
		if err != nil {
			return "", 0, "", err
		}
		defer resp.Body.Close()
		var rep netlab.HTTPReply
		if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
			return "", 0, "", fmt.Errorf("%s: %w", resp.Status, err)
		}
		c := resp.TLS.PeerCertificates[0]
		return c.Subject.CommonName, c.SerialNumber.Int64(), rep.Backend, nil
	}
	for _, name := range []string{"a.example", "b.example"} {
		var dials atomic.Int64
		cn, serial, backend, err := get(client(name, &dials), "/sni")
		if err != nil {
			return done(fmt.Errorf("SNI %s: %w", name, err))
		}
		say("SNI %s: certificate %s (serial %d), answered by %s", name, cn, serial, backend)
		if cn != name || serial != 1 || backend != "b1" {
			return done(fmt.Errorf("SNI %s got %s serial %d from %s", name, cn, serial, backend))
		}
	}

	// HTTP/2: concurrent streams on one connection.
	var h2dials atomic.Int64
	h2t := &http2.Transport{TLSClientConfig: &tls.Config{ServerName: "a.example", RootCAs: e.ca.Pool()},
		DialTLSContext: func(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
			h2dials.Add(1)
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(c, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				c.Close()
				return nil, err
			}
			return tc, nil
		}}
	defer h2t.CloseIdleConnections()
	h2c := &http.Client{Timeout: 10 * time.Second, Transport: h2t}
	const streams = 32
	var wg sync.WaitGroup
	var h2ok atomic.Int64
	errs := make(chan error, streams)
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := h2c.Get(fmt.Sprintf("https://a.example/h2/%d", i))
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 || !strings.Contains(string(b), fmt.Sprintf(`"path":"/h2/%d"`, i)) {
				errs <- fmt.Errorf("stream %d: %s %q", i, resp.Proto, b)
				return
			}
			h2ok.Add(1)
		}()
	}
	wg.Wait()
	close(errs)
	say("HTTP/2: %d of %d concurrent streams answered over %d connection(s)", h2ok.Load(), streams, h2dials.Load())
	if err := <-errs; err != nil || h2ok.Load() != streams || h2dials.Load() != 1 {
		return done(fmt.Errorf("HTTP/2: %v", err))
	}

	// Certificates swapped by SIGHUP (files the gateway may read) while a
	// connection stays open.
	var openDials atomic.Int64
	open := client("a.example", &openDials)
	if _, _, _, err := get(open, "/before"); err != nil {
		return done(err)
	}
	if err := e.writeCerts(2, 65534); err != nil {
		return done(err)
	}
	// The gateway rereads the configuration itself on SIGHUP.
	if err := os.Chmod(e.Config, 0o644); err != nil {
		return done(err)
	}
	reloads := strings.Count(e.Log(), "configuration reloaded")
	if err := e.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return done(err)
	}
	for start := time.Now(); strings.Count(e.Log(), "configuration reloaded") == reloads; time.Sleep(50 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			return done(errors.New("no reload logged after SIGHUP"))
		}
	}
	var freshDials atomic.Int64
	_, fresh, _, err := get(client("a.example", &freshDials), "/fresh")
	if err != nil {
		return done(err)
	}
	_, kept, _, err := get(open, "/after")
	say("SIGHUP with new certificates: a new connection got serial %d, the open one (%d connection) still serial %d and answered", fresh, openDials.Load(), kept)
	if err != nil || fresh != 2 || kept != 1 || openDials.Load() != 1 {
		return done(fmt.Errorf("after SIGHUP: %v", err))
	}

	// Root-only keys: vsgate adm reload sends them.
	if err := e.writeCerts(3, 0); err != nil {
		return done(err)
	}
	out, err := e.admCommand(ctx, "reload")
	if err != nil {
		return done(fmt.Errorf("vsgate adm reload with root-only keys: %w", err))
	}
	_, third, _, err := get(client("b.example", &freshDials), "/third")
	say("root-only keys: %s; a new connection got serial %d", strings.TrimSpace(out), third)
	if err != nil || third != 3 {
		return done(fmt.Errorf("after vsgate adm reload: %v", err))
	}
	return done(nil)
}
