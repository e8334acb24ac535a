package netlab

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// MaxBigBytes bounds /big?bytes=N of the HTTP test server (1 GiB).
const MaxBigBytes = 1 << 30

// Server is a built-in test server running inside a host. Its sockets were
// opened inside the host's namespace; it serves from ordinary goroutines.
//
// The zero value is not usable; get one from Host.StartHTTP, StartUDPEcho or
// StartTCPEcho. Methods are safe for concurrent use; Close may be called
// more than once (the lab calls it on Close).
type Server struct {
	Name  string   // the name it answers with
	Host  *Host    // where it runs
	Addrs []string // listening addresses, e.g. "[::]:80"

	closeOnce sync.Once
	close     func() error
	wg        sync.WaitGroup
	err       error
}

// Close stops the server and waits for its goroutines.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.err = s.close()
		s.wg.Wait()
	})
	return s.err
}

// HTTPReply is what the HTTP test server answers (as JSON, one line) on
// every path except /big and /redirect.
// Plain data; the zero value is an empty reply.
type HTTPReply struct {
	Backend string `json:"backend"`         // the server's name
	Method  string `json:"method"`          // request method
	Path    string `json:"path"`            // URL path as received
	Host    string `json:"host"`            // Host header
	XFF     string `json:"xff,omitempty"`   // X-Forwarded-For header
	Remote  string `json:"remote"`          // TCP peer, ip:port, as the server saw it
	Local   string `json:"local,omitempty"` // local address the connection arrived on
}

// HTTPHandler returns the test HTTP handler of a backend named name:
//
//   - /big?bytes=N streams N bytes of 'x' (N <= MaxBigBytes), text/plain;
//   - /random?bytes=N&seed=S streams N bytes (N <= MaxBigBytes) of
//     ChaCha8 keyed by the number S: data whose every byte is checked
//     (RandomBytes makes the same);
//   - POST /sum answers the SHA-256 of the request body, in hex;
//   - /redirect answers 302 with Location: /redirected;
//   - any other path answers an HTTPReply as JSON.
//
// Every answer carries the header X-Backend: name.
func HTTPHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		switch r.URL.Path {
		case "/big":
			n, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
			if err != nil || n < 0 || n > MaxBigBytes {
				http.Error(w, fmt.Sprintf("%s: bytes must be 0..%d", name, MaxBigBytes), http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
			var chunk [32 << 10]byte
			for i := range chunk {
				chunk[i] = 'x'
			}
			for n > 0 {
				k := min(n, int64(len(chunk)))
				if _, err := w.Write(chunk[:k]); err != nil {
					return
				}
				n -= k
			}
		case "/random":
			n, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
			seed, serr := strconv.ParseUint(r.URL.Query().Get("seed"), 10, 64)
			if err != nil || serr != nil || n < 0 || n > MaxBigBytes {
				http.Error(w, fmt.Sprintf("%s: bytes must be 0..%d and seed a number", name, MaxBigBytes), http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
			_, _ = io.CopyN(w, RandomBytes(seed), n)
		case "/sum":
			h := sha256.New()
			if _, err := io.Copy(h, r.Body); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprintf(w, "%x\n", h.Sum(nil))
		case "/redirect":
			http.Redirect(w, r, "/redirected", http.StatusFound)
		default:
			rep := HTTPReply{
				Backend: name, Method: r.Method, Path: r.URL.Path, Host: r.Host,
				XFF: r.Header.Get("X-Forwarded-For"), Remote: r.RemoteAddr,
			}
			if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
				rep.Local = a.String()
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(rep)
		}
	})
}

// newServer registers s with the lab so Close stops it.
func (h *Host) newServer(name string, addrs []string, closeFn func() error) (*Server, error) {
	s := &Server{Name: name, Host: h, Addrs: addrs, close: closeFn}
	if err := h.lab.onClose(s.Close); err != nil {
		_ = closeFn()
		return nil, err
	}
	return s, nil
}

// StartHTTP starts the test HTTP server (HTTPHandler) on addr (":80"
// listens on all IPv4 and IPv6 addresses of the host). The socket is bound
// before StartHTTP returns, so the server is ready at once.
func (h *Host) StartHTTP(name, addr string) (*Server, error) {
	ln, err := h.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("netlab: host %s: http %s: %w", h.Name, addr, err)
	}
	srv := &http.Server{Handler: HTTPHandler(name), ReadHeaderTimeout: 10 * time.Second}
	s, err := h.newServer(name, []string{ln.Addr().String()}, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			return srv.Close()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.wg.Go(func() {
		_ = srv.Serve(ln) // returns ErrServerClosed after Close; the socket is bound already
	})
	return s, nil
}

// StartUDPEcho starts a UDP echo on addr (":53"): every datagram is
// answered with "<name>: <payload>".
func (h *Host) StartUDPEcho(name, addr string) (*Server, error) {
	pc, err := h.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("netlab: host %s: udp %s: %w", h.Name, addr, err)
	}
	s, err := h.newServer(name, []string{pc.LocalAddr().String()}, pc.Close)
	if err != nil {
		return nil, err
	}
	s.wg.Go(func() {
		buf := make([]byte, 64<<10)
		prefix := []byte(name + ": ")
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(append(prefix[:len(prefix):len(prefix)], buf[:n]...), from)
		}
	})
	return s, nil
}

// StartTCPEcho starts a line service on addr (":7"): each line received is
// sent back as "<name>: <line>\n" (the telnet-style service). A connection
// that sends no line for a minute is closed.
func (h *Host) StartTCPEcho(name, addr string) (*Server, error) {
	ln, err := h.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("netlab: host %s: tcp %s: %w", h.Name, addr, err)
	}
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	s, err := h.newServer(name, []string{ln.Addr().String()}, func() error {
		err := ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		return err
	})
	if err != nil {
		return nil, err
	}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			s.wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				echoLines(c, name)
			})
		}
	})
	return s, nil
}

// echoLines answers each line of c with "<name>: <line>\n".
func echoLines(c net.Conn, name string) {
	r := bufio.NewReader(c)
	for {
		_ = c.SetReadDeadline(time.Now().Add(time.Minute))
		line, err := r.ReadString('\n')
		if len(line) > 0 {
			if line[len(line)-1] != '\n' {
				line += "\n"
			}
			if _, werr := io.WriteString(c, name+": "+line); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// HTTPClient returns an HTTP client whose connections are dialed inside the
// host, without keep-alive (every request is a new connection, so a
// scheduler sees each one), not following redirects, with a timeout.
func (h *Host) HTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:       h.DialContext,
			DisableKeepAlives: true,
			Proxy:             nil,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// WaitTCP polls until a TCP connection from the host to addr succeeds, or
// ctx ends: readiness for servers started outside this process.
func (h *Host) WaitTCP(ctx context.Context, addr string) error {
	for {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := h.DialContext(dctx, "tcp", addr)
		cancel()
		if err == nil {
			return c.Close()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("netlab: host %s: %s not ready: %w", h.Name, addr, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// StartBackends starts on every backend of the plan the HTTP server on :80,
// the UDP echo on :53 and the TCP echo on :7, each named after its host.
func (l *Lab) StartBackends() error {
	for _, b := range l.Topo.Plan.Backends {
		h := l.Host(b)
		if h == nil {
			return fmt.Errorf("netlab: no backend host %s", b)
		}
		if _, err := h.StartHTTP(b, ":80"); err != nil {
			return err
		}
		if _, err := h.StartUDPEcho(b, ":53"); err != nil {
			return err
		}
		if _, err := h.StartTCPEcho(b, ":7"); err != nil {
			return err
		}
	}
	// Readiness: each TCP server answers a connect over the host's loopback.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, b := range l.Topo.Plan.Backends {
		for _, port := range []uint16{80, 7} {
			if err := l.Host(b).WaitTCP(ctx, netip.AddrPortFrom(netip.IPv6Loopback(), port).String()); err != nil {
				return err
			}
		}
	}
	return nil
}

// RandomBytes is the endless stream /random?seed=seed serves: ChaCha8
// keyed by seed.
func RandomBytes(seed uint64) io.Reader {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	return rand.NewChaCha8(key)
}
