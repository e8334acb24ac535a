package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// conn dials addr with a generous deadline (a hung proxy fails the test
// instead of hanging it).
func dialProxy(t testing.TB, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c, bufio.NewReader(c)
}

// get sends a GET on c and reads its response.
func getOn(t testing.TB, c net.Conn, br *bufio.Reader, path string) *http.Response {
	t.Helper()
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// closed tells whether the peer closed c (EOF) rather than sending more.
func closed(br *bufio.Reader) bool {
	_, err := br.ReadByte()
	return err == io.EOF
}

func okBackend(t testing.TB) string {
	return serveBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
}

// TestKeepAliveLimits: MaxKeepAliveRequests ends a connection with its
// last request (Connection: close, then the close); KeepAlive Off after
// the first; KeepAliveTimeout closes an idle connection.
func TestKeepAliveLimits(t *testing.T) {
	b := okBackend(t)
	addr, _ := serveProxy(t, "MaxKeepAliveRequests 3\nProxyPass / http://"+b+"/", Options{})
	c, br := dialProxy(t, addr)
	for i := 1; i <= 3; i++ {
		resp := getOn(t, c, br, "/")
		if resp.StatusCode != 200 || resp.Close != (i == 3) {
			t.Fatalf("request %d: %s, close %v", i, resp.Status, resp.Close)
		}
	}
	if !closed(br) {
		t.Fatal("the connection stayed open after MaxKeepAliveRequests")
	}

	addr, _ = serveProxy(t, "KeepAlive Off\nProxyPass / http://"+b+"/", Options{})
	c, br = dialProxy(t, addr)
	if resp := getOn(t, c, br, "/"); !resp.Close || !closed(br) {
		t.Fatal("KeepAlive Off kept the connection")
	}

	addr, _ = serveProxy(t, "KeepAliveTimeout 100 ms\nProxyPass / http://"+b+"/", Options{})
	c, br = dialProxy(t, addr)
	if resp := getOn(t, c, br, "/"); resp.Close {
		t.Fatal("the first response closes")
	}
	if !closed(br) {
		t.Fatal("an idle connection outlived KeepAliveTimeout")
	}
}

// TestRequestReadTimeout: a client that sends part of a head and stops is
// answered 408 and closed when RequestReadTimeout's header time runs out;
// one that sends nothing is closed without an answer.
func TestRequestReadTimeout(t *testing.T) {
	b := okBackend(t)
	addr, _ := serveProxy(t, "RequestReadTimeout header=1\nProxyPass / http://"+b+"/", Options{})
	c, br := dialProxy(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\nX-Slow: ")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Fatalf("a slow head: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	if !closed(br) {
		t.Fatal("the connection stayed open after 408")
	}
	_, br = dialProxy(t, addr)
	if !closed(br) {
		t.Fatal("a silent connection was answered")
	}
}

// TestConnectionCap: at FrontOptions.MaxConnections the front accepts no
// more; a client waiting in the backlog is served once one closes.
func TestConnectionCap(t *testing.T) {
	addr, f := serveFront(t, "ProxyPass / http://"+okBackend(t)+"/", FrontOptions{MaxConnections: 2})
	c1, br1 := dialProxy(t, addr)
	getOn(t, c1, br1, "/")
	c2, br2 := dialProxy(t, addr)
	getOn(t, c2, br2, "/")
	c3, br3 := dialProxy(t, addr)
	io.WriteString(c3, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	if n := f.Connections(); n != 2 {
		t.Fatalf("%d connections served at a cap of 2", n)
	}
	c1.Close()
	resp, err := http.ReadResponse(br3, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the waiting client: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	// A request line over LimitRequestLine: the proxy's own 414.
	if resp := getOn(t, c3, br3, "/"+strings.Repeat("x", 9000)); resp.StatusCode != http.StatusRequestURITooLong {
		t.Fatalf("a long request line: %s", resp.Status)
	}
	st := f.Stats()
	want := []ResponseCount{{Status: 200, Count: 3}, {Status: 414, FromProxy: true, Count: 1}}
	if st.Accepted != 3 || st.Paused < 1 || !slices.Equal(st.Responses, want) {
		t.Fatalf("stats %+v, want 3 accepted, accepting paused at least once, responses %v", st, want)
	}
}

// TestIdleKeepAlives: 10,000 idle keep-alive connections (from a client
// process of their own) are held; after a reload to KeepAliveTimeout 1,
// each one's next request is answered and the connection closed when it
// has been idle that long.
func TestIdleKeepAlives(t *testing.T) {
	b := okBackend(t)
	addr, f := serveFront(t, "KeepAliveTimeout 600\nProxyPass / http://"+b+"/", FrontOptions{})
	client := startIdleClient(t, addr, 10000)
	if n := f.Connections(); n != 10000 {
		t.Fatalf("%d connections held, want 10000", n)
	}
	// The client has its answers before every server goroutine is back
	// waiting; the reload must come after, or a connection would wait
	// under the new timeout before its next request comes.
	for start := time.Now(); f.Waiting() != 10000; time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > time.Minute {
			t.Fatalf("%d of 10000 connections waiting for a request", f.Waiting())
		}
	}
	f.Swap(newProxy(t, "KeepAliveTimeout 1\nProxyPass / http://"+b+"/")).Close()
	io.WriteString(client.stdin, "wait\n")
	if line, err := client.out.ReadString('\n'); err != nil || line != "closed 10000\n" {
		t.Fatalf("the client: %q %v, want every connection closed by the proxy", line, err)
	}
}

// serveFront serves directives through a Front with opts on loopback.
func serveFront(t testing.TB, directives string, opts FrontOptions) (string, *Front) {
	t.Helper()
	cfg, err := ParseDirectives(directives, "t.conf", 1)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := NewFront(p, opts)
	go f.Serve(ln)
	t.Cleanup(func() { f.Close(); p.Close() })
	return ln.Addr().String(), f
}

// idleClient is a child process (this test binary, run by
// startIdleClient) holding n idle connections to the proxy at addr: it
// says "ready" once each has had its response, and on "wait" sends one
// more request on each, reads every one to its end and says how many
// the proxy closed after answering.
type idleClient struct {
	stdin io.WriteCloser
	out   *bufio.Reader
}

func startIdleClient(t testing.TB, addr string, n int) *idleClient {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "VSGATE_IDLE_CLIENT="+addr, "VSGATE_IDLE_N="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		if cmd.Wait() != nil {
			cmd.Process.Kill()
		}
	})
	c := &idleClient{stdin: stdin, out: bufio.NewReader(stdout)}
	if line, err := c.out.ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("the idle client: %q %v", line, err)
	}
	return c
}

// TestMain runs the idle client when this binary is one.
func TestMain(m *testing.M) {
	if addr := os.Getenv("VSGATE_IDLE_CLIENT"); addr != "" {
		os.Exit(runIdleClient(addr))
	}
	os.Exit(m.Run())
}

func runIdleClient(addr string) int {
	n, _ := strconv.Atoi(os.Getenv("VSGATE_IDLE_N"))
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	lim.Cur = max(lim.Cur, min(lim.Max, uint64(n+256)))
	unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	conns := make([]net.Conn, 0, n)
	req := []byte("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	buf := make([]byte, 4096)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "idle client:", err)
			return 1
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(10 * time.Minute)) // a bound, not a measure: the test waits on the proxy's timeouts
		if _, err := c.Write(req); err != nil {
			fmt.Fprintln(os.Stderr, "idle client:", err)
			return 1
		}
		if k, err := c.Read(buf); err != nil || !strings.HasSuffix(string(buf[:k]), "\r\n\r\nok") {
			fmt.Fprintf(os.Stderr, "idle client: %q %v\n", buf[:k], err)
			return 1
		}
	}
	fmt.Println("ready")
	in := bufio.NewReader(os.Stdin)
	if line, _ := in.ReadString('\n'); line != "wait\n" {
		return 0
	}
	// One request at a time: the proxy holds one connection to its real
	// server, not thousands at once.
	answered := make([]bool, len(conns))
	for i, c := range conns {
		if _, err := c.Write(req); err != nil {
			fmt.Fprintln(os.Stderr, "idle client:", err)
			return 1
		}
		k, err := c.Read(buf)
		if answered[i] = err == nil && strings.HasSuffix(string(buf[:k]), "\r\n\r\nok"); !answered[i] {
			fmt.Fprintf(os.Stderr, "idle client: connection %d: the second request got %q %v\n", i, buf[:k], err)
		}
	}
	closed := 0
	for i, c := range conns {
		k, err := c.Read(buf)
		if err == io.EOF && answered[i] {
			closed++
		} else if answered[i] {
			fmt.Fprintf(os.Stderr, "idle client: connection %d: after its answer %q %v, not the proxy's close\n", i, buf[:k], err)
		}
	}
	fmt.Printf("closed %d\n", closed)
	return 0
}

// BenchmarkIdleConnMemory reports the Go memory (heap and stacks) each
// idle keep-alive connection holds in the proxy, at 10,000 of them (their
// client is another process).
func BenchmarkIdleConnMemory(b *testing.B) {
	backend := okBackend(b)
	addr, _ := serveFront(b, "KeepAliveTimeout 600\nProxyPass / http://"+backend+"/", FrontOptions{})
	for range b.N {
		before := goMemory()
		client := startIdleClient(b, addr, 10000)
		after := goMemory()
		b.ReportMetric(float64(after-before)/10000, "B/idle-conn")
		client.stdin.Close()
	}
}

func goMemory() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// TestCloseDelimitedBody: a real server's body that ends with its
// connection reaches an HTTP/1.1 client chunked (its connection kept) and
// an HTTP/1.0 client as it is, the connection closed after it.
func TestCloseDelimitedBody(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				http.ReadRequest(bufio.NewReader(c))
				io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
			}()
		}
	}()
	addr, _ := serveProxy(t, "ProxyPass / http://"+ln.Addr().String()+"/", Options{})
	c, br := dialProxy(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "until the end" || len(resp.TransferEncoding) != 1 || resp.Close {
		t.Fatalf("HTTP/1.1: %q %v, transfer encoding %v, close %v", body, err, resp.TransferEncoding, resp.Close)
	}
	c, br = dialProxy(t, addr)
	io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err = io.ReadAll(resp.Body)
	if err != nil || string(body) != "until the end" || len(resp.TransferEncoding) != 0 || !resp.Close {
		t.Fatalf("HTTP/1.0: %q %v, transfer encoding %v, close %v", body, err, resp.TransferEncoding, resp.Close)
	}
}

// TestShutdown: Shutdown closes the listener and the connections waiting
// for a request, lets a request in flight finish (its response says
// Connection: close and the connection ends after it), and Drained is
// closed once that last connection ended.
func TestShutdown(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	b := serveBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(arrived)
			<-release
		}
		io.WriteString(w, "ok")
	}))
	addr, f := serveFront(t, "ProxyPass / http://"+b+"/", FrontOptions{})
	idle, idleBR := dialProxy(t, addr)
	if resp := getOn(t, idle, idleBR, "/"); resp.StatusCode != 200 || resp.Close {
		t.Fatalf("the first connection's request: %s, close %v", resp.Status, resp.Close)
	}
	_, freshBR := dialProxy(t, addr)
	busy, busyBR := dialProxy(t, addr)
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
	<-arrived
	for f.Connections() != 3 {
		time.Sleep(time.Millisecond) // the fresh connection's accept
	}
	f.Shutdown()
	if !closed(idleBR) || !closed(freshBR) {
		t.Fatal("a connection waiting for a request outlived Shutdown")
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("the listener still accepts after Shutdown")
	}
	select {
	case <-f.Drained():
		t.Fatal("drained with a request in flight")
	default:
	}
	close(release)
	resp, err := http.ReadResponse(busyBR, nil)
	if err != nil {
		t.Fatalf("the request in flight: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "ok" || !resp.Close {
		t.Fatalf("the request in flight: %s %q, close %v; want 200 ok with Connection: close", resp.Status, body, resp.Close)
	}
	if !closed(busyBR) {
		t.Fatal("the connection stayed open after its last response")
	}
	select {
	case <-f.Drained():
	case <-time.After(30 * time.Second):
		t.Fatalf("not drained with %d connections left", f.Connections())
	}
}
