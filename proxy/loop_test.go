package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// kindsBackend answers by path: /small (a short body with what it was
// sent), /chunked (three flushed pieces), /big (200 KiB), /sized?n=N (N
// bytes), /empty (204), /echo (the request body back), /interim (103,
// then 200), /close (Connection: close).
func kindsBackend(t testing.TB) string {
	return serveBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			for i := range 3 {
				fmt.Fprintf(w, "piece %d;", i)
				w.(http.Flusher).Flush()
			}
		case "/big":
			w.Header().Set("Content-Length", strconv.Itoa(200<<10))
			w.Write(pattern(200 << 10))
		case "/sized":
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			w.Header().Set("Content-Length", strconv.Itoa(n))
			w.Write(pattern(n))
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/echo":
			io.Copy(w, r.Body)
		case "/interim":
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			io.WriteString(w, "after hints")
		case "/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "closing")
		default:
			fmt.Fprintf(w, "%s %s xff=%s xfh=%s xfs=%s conn=%s", r.Method, r.RequestURI, r.Header.Get("X-Forwarded-For"),
				r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Forwarded-Server"), r.Header.Get("Connection"))
		}
	}))
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%23)
	}
	return b
}

// frontFor serves directives on a loopback listener with a Front of its
// own (event loop unless goroutines).
func frontFor(t testing.TB, directives string, goroutines bool) (string, *Front) {
	t.Helper()
	p := newProxy(t, directives)
	f := NewFront(p, FrontOptions{Goroutines: goroutines})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go f.Serve(ln)
	t.Cleanup(func() { f.Close() })
	return ln.Addr().String(), f
}

// dialAndSend writes raw as it is on a new connection to addr, whose
// reads and writes end within 10 s.
func dialAndSend(t testing.TB, addr, raw string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		c.Close()
		t.Fatal(err)
	}
	return c
}

// exchangeAll writes raw on a new connection and reads until the proxy
// closes it (or 10 s pass).
func exchangeAll(t testing.TB, addr, raw string) string {
	t.Helper()
	c := dialAndSend(t, addr, raw)
	defer c.Close()
	b, _ := io.ReadAll(c)
	return string(b)
}

// TestEventLoopPaths: the loop serves plain requests itself and hands a
// connection to the goroutine path exactly when a request or response is
// beyond it — before a body, in the middle of a chunked, large or
// interim-led exchange — and the client sees every response whole and in
// order either way.
func TestEventLoopPaths(t *testing.T) {
	b := kindsBackend(t)
	addr, f := frontFor(t, "ProxyPass / http://"+b+"/", false)
	type step struct {
		path, method, body string
		want               string // body, or sha256 of it for /big
		loop, handed       uint64 // the counters' growth
	}
	bigSum := fmt.Sprintf("%x", sha256.Sum256(pattern(200<<10)))
	for _, seq := range [][]step{
		{{path: "/small", want: "GET /small xff=127.0.0.1 xfh=" + addr + " xfs=gw.example conn=Keep-Alive", loop: 1},
			{path: "/empty", loop: 1}, {path: "/small?q=1", want: "GET /small?q=1 xff=127.0.0.1 xfh=" + addr + " xfs=gw.example conn=Keep-Alive", loop: 1}},
		// A chunked response leaves the loop in the middle of its
		// exchange; the goroutine serves what follows.
		{{path: "/small", want: "GET /small xff=127.0.0.1 xfh=" + addr + " xfs=gw.example conn=Keep-Alive", loop: 1},
			{path: "/chunked", want: "piece 0;piece 1;piece 2;", loop: 1, handed: 1},
			{path: "/empty"}},
		// A body: handed over before anything is done with it.
		{{path: "/echo", method: "POST", body: "hello, body", want: "hello, body", handed: 1}, {path: "/empty"}},
		{{path: "/big", want: bigSum, loop: 1, handed: 1}},
		{{path: "/interim", want: "after hints", loop: 1}, {path: "/close", want: "closing", loop: 1}, {path: "/empty", loop: 1}},
		{{path: "/small", method: "HEAD", loop: 1}},
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for _, s := range seq {
			before := f.Stats()
			method := s.method
			if method == "" {
				method = "GET"
			}
			req, _ := http.NewRequest(method, "http://"+addr+s.path, strings.NewReader(s.body))
			if s.body == "" {
				req.Body = nil
			}
			if err := req.Write(c); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, req)
			for err == nil && resp.StatusCode/100 == 1 {
				resp, err = http.ReadResponse(br, req) // an interim response came first
			}
			if err != nil {
				t.Fatalf("%s %s: %v", method, s.path, err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("%s %s: body: %v", method, s.path, err)
			}
			got := string(body)
			if s.path == "/big" {
				got = fmt.Sprintf("%x", sha256.Sum256(body))
			}
			if got != s.want {
				t.Errorf("%s %s: body %q, want %q", method, s.path, got, s.want)
			}
			// The counters move before the response is whole.
			after := f.Stats()
			if d := after.LoopRequests - before.LoopRequests; d != s.loop {
				t.Errorf("%s %s: the loop served %d requests, want %d", method, s.path, d, s.loop)
			}
			if d := after.HandedOver - before.HandedOver; d != s.handed {
				t.Errorf("%s %s: %d connections handed over, want %d", method, s.path, d, s.handed)
			}
		}
		c.Close()
	}
}

// TestEventLoopPipelined: requests sent in one write are answered in
// order, the loop's and the goroutine path's alike.
func TestEventLoopPipelined(t *testing.T) {
	b := kindsBackend(t)
	addr, f := frontFor(t, "ProxyPass / http://"+b+"/", false)
	var raw strings.Builder
	for i := range 5 {
		fmt.Fprintf(&raw, "GET /small?i=%d HTTP/1.1\r\nHost: h\r\n\r\n", i)
	}
	raw.WriteString("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody")
	raw.WriteString("GET /small?i=last HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	out := exchangeAll(t, addr, raw.String())
	br := bufio.NewReader(strings.NewReader(out))
	var bodies []string
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		b, _ := io.ReadAll(resp.Body)
		bodies = append(bodies, string(b))
	}
	want := []string{"i=0", "i=1", "i=2", "i=3", "i=4", "body", "i=last"}
	if len(bodies) != len(want) {
		t.Fatalf("%d responses, want %d:\n%s", len(bodies), len(want), out)
	}
	for i, w := range want {
		if !strings.Contains(bodies[i], w) {
			t.Errorf("response %d: %q, want it to hold %q", i, bodies[i], w)
		}
	}
	if st := f.Stats(); st.LoopRequests != 5 || st.HandedOver != 1 {
		t.Errorf("loop served %d, handed over %d; want 5 and 1", st.LoopRequests, st.HandedOver)
	}
}

var dateField = regexp.MustCompile(`(?m)^Date: [^\r]*\r\n`)

// TestEventLoopMatchesGoroutines runs the same byte streams through a
// Front with the event loop and one without: the clients must get the
// same bytes (but the Date), whatever path each request takes.
func TestEventLoopMatchesGoroutines(t *testing.T) {
	b := kindsBackend(t)
	directives := "ProxyPass /dead http://127.0.0.1:1/\n" +
		"<Proxy balancer://pool>\nBalancerMember http://127.0.0.1:1\nBalancerMember http://" + b + "\n</Proxy>\n" +
		"ProxyPass /lb balancer://pool/\n" +
		"ProxyPass /named http://localhost:1/\n" +
		"ProxyPass / http://" + b + "/\n" +
		"ProxyPassReverse / http://" + b + "/\n"
	loopAddr, _ := frontFor(t, directives, false)
	goAddr, _ := frontFor(t, directives, true)
	get := func(target string, extra ...string) string {
		return "GET " + target + " HTTP/1.1\r\nHost: h.example\r\n" + strings.Join(extra, "") + "\r\n"
	}
	closing := "Connection: close\r\n"
	for _, raw := range []string{
		get("/small") + get("/small?x=%41%2f", closing),
		"HEAD /small HTTP/1.1\r\nHost: h\r\n\r\n" + get("/empty", closing),
		get("/dead/x", closing),
		get("/dead/x") + get("/small", closing), // 503 closes the connection, as Apache
		get("/lb/a") + get("/lb/b") + get("/lb/c", closing),
		get("/named/x", closing),
		get("/a#frag", closing),
		get("/%zz", closing),
		"GET http://other.example/abs?q HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
		"GET /small HTTP/1.0\r\n\r\n",
		"GET /small HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + "GET /small HTTP/1.0\r\n\r\n",
		"GET /small HTTP/1.1\r\n\r\n", // no Host
		"GET /small HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"BAD\r\n\r\n",
		get("/small", "Expect: 100-continue\r\n", closing),
		get("/small", "Expect: something\r\n", closing),
		get("/small", "Upgrade: websocket\r\nConnection: Upgrade\r\n") + get("/small", closing),
		"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + get("/small", closing),
		get("/chunked") + get("/interim") + get("/close") + get("/small", closing),
		get("/sized?n=65536") + get("/sized?n=65537", closing),
		get("/small", "X-Forwarded-For: 198.18.9.9\r\nX-Forwarded-Host: xf\r\n", closing),
		get("/small", "Connection: Keep-Alive, X-Drop\r\nX-Drop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\n", closing),
		"\r\n\r\n" + get("/small", closing),
		get("/"+strings.Repeat("x", 9000), closing),
		get("/small", "X-Long: "+strings.Repeat("y", 9000)+"\r\n", closing),
		get("/small", "Content-Length: 0\r\n", closing),
		get("/redirect", closing),
	} {
		got := dateField.ReplaceAllString(exchangeAll(t, loopAddr, raw), "")
		want := dateField.ReplaceAllString(exchangeAll(t, goAddr, raw), "")
		// The real server's own answers carry its address and Date.
		if got != want {
			t.Errorf("request stream %q:\nevent loop:\n%s\ngoroutines:\n%s", raw, got, want)
		}
		if want == "" {
			t.Errorf("request stream %q: no answer", raw)
		}
	}
}

// TestEventLoopBackendGoesAway: a real server that closes each connection
// right after its response, without saying so, costs no request (the
// loop drops the idle connection, or sends again on a new one); one that
// closes without an answer gets the client Apache's 502.
func TestEventLoopBackendGoesAway(t *testing.T) {
	closer, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	go func() {
		for {
			c, err := closer.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				if req.URL.Path == "/silent" {
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}()
		}
	}()
	addr, f := frontFor(t, "ProxyPass / http://"+closer.Addr().String()+"/", false)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i := range 50 {
		fmt.Fprintf(c, "GET /r%d HTTP/1.1\r\nHost: h\r\n\r\n", i)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	io.WriteString(c, "GET /silent HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("a real server that closed without an answer: %d, want 502", resp.StatusCode)
	}
	if st := f.Stats(); st.LoopRequests != 51 || st.HandedOver != 0 {
		t.Errorf("loop served %d, handed over %d; want 51 and 0", st.LoopRequests, st.HandedOver)
	}
}

// TestEventLoopSlowReader: a response the client's socket cannot take at
// once waits in the loop for room, and arrives whole.
func TestEventLoopSlowReader(t *testing.T) {
	b := kindsBackend(t)
	addr, _ := frontFor(t, "ProxyPass / http://"+b+"/", false)
	d := net.Dialer{Control: nil}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4096)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	const n = 60000
	for range 3 {
		fmt.Fprintf(c, "GET /sized?n=%d HTTP/1.1\r\nHost: h\r\n\r\n", n)
	}
	// Read nothing for a while: the proxy's writes meet a full socket.
	time.Sleep(200 * time.Millisecond)
	br := bufio.NewReader(c)
	for i := range 3 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if !bytes.Equal(body, pattern(n)) {
			t.Fatalf("response %d: %d bytes, not the %d sent", i, len(body), n)
		}
	}
}

// TestRequestDurations: every request is timed once, on the loop and on
// the goroutine path, and a slow real server's requests land above the
// bucket their time cannot fit in.
func TestRequestDurations(t *testing.T) {
	fast := kindsBackend(t)
	slow := serveBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "slow")
	}))
	for _, goroutines := range []bool{false, true} {
		addr, f := frontFor(t, "ProxyPass /slow http://"+slow+"/\nProxyPass / http://"+fast+"/", goroutines)
		raw := "GET /small HTTP/1.1\r\nHost: h\r\n\r\n" +
			"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi" +
			"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n" +
			"GET /nowhere%zz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
		if out := exchangeAll(t, addr, raw); strings.Count(out, "HTTP/1.1 ") != 4 {
			t.Fatalf("goroutines %v: want 4 responses:\n%s", goroutines, out)
		}
		var h Histogram
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if h = f.Stats().Durations; h.Count == 4 || time.Now().After(deadline) {
				break
			}
		}
		if h.Count != 4 {
			t.Fatalf("goroutines %v: %d requests timed, want 4", goroutines, h.Count)
		}
		for i, b := range h.Bounds {
			if i > 0 && h.Counts[i] < h.Counts[i-1] {
				t.Errorf("goroutines %v: buckets not cumulative: %v", goroutines, h.Counts)
			}
			if b == 250*time.Millisecond && h.Counts[i] > 3 {
				t.Errorf("goroutines %v: %d requests within 250 ms, but one waited 300 ms for its real server", goroutines, h.Counts[i])
			}
		}
		if h.Sum < 300*time.Millisecond {
			t.Errorf("goroutines %v: the durations sum to %v, less than the slow request's 300 ms", goroutines, h.Sum)
		}
	}
}

// FuzzEventLoop sends the same bytes (then the end of the client's
// writing) through a Front with the event loop and one without: no input
// may crash either, and the client must get the same bytes from both
// (but the Date).
func FuzzEventLoop(f *testing.F) {
	for _, s := range []string{
		"GET /small HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /small HTTP/1.1\r\nHost: h\r\n\r\nGET /chunked HTTP/1.1\r\nHost: h\r\n\r\nGET /empty HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /small HTTP/1.1\r\nHost: h\r\n\r\n",
		"HEAD /sized?n=70000 HTTP/1.1\r\nHost: h\r\n\r\nGET /interim HTTP/1.0\r\n\r\n",
		"GET /dead HTTP/1.1\r\nHost: h\r\n\r\nGET /lb/x HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /small HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /small HTTP/1.1\r\n",
		"GET /small HTTP/1.1\r\nHo",
	} {
		f.Add(s)
	}
	b := kindsBackend(f)
	directives := "ProxyPass /dead http://127.0.0.1:1/\n" +
		"<Proxy balancer://pool>\nBalancerMember http://127.0.0.1:1\nBalancerMember http://" + b + "\n</Proxy>\n" +
		"ProxyPass /lb balancer://pool/\nProxyPass / http://" + b + "/\n"
	// The two Fronts see the same inputs in the same order, so their
	// state (a dead member's rest, retry=) moves alike.
	loopAddr, _ := frontFor(f, directives, false)
	goAddr, _ := frontFor(f, directives, true)
	send := func(t *testing.T, addr, raw string) string {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, raw)
		c.(*net.TCPConn).CloseWrite()
		out, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("%s: input %q: %v after %q", addr, raw, err, out)
		}
		return dateField.ReplaceAllString(string(out), "")
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if len(raw) > 16<<10 {
			return
		}
		if got, want := send(t, loopAddr, raw), send(t, goAddr, raw); got != want {
			t.Fatalf("input %q:\nevent loop:\n%s\ngoroutines:\n%s", raw, got, want)
		}
	})
}
