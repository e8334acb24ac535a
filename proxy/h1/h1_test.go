package h1

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

func read(t *testing.T, raw string) (*Request, error) {
	t.Helper()
	var req Request
	err := ReadRequest(bufio.NewReaderSize(strings.NewReader(raw), BufferSize(DefaultLimits())), DefaultLimits(), &req)
	return &req, err
}

func status(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return -1
}

func TestReadRequest(t *testing.T) {
	req, err := read(t, "\r\nPOST /a?b HTTP/1.1\r\nHost: h\r\nX-A:  v 1 \r\nx-a: w\r\nContent-Length: 3\r\n\r\nabc")
	if err != nil {
		t.Fatal(err)
	}
	if req.Method != "POST" || req.Target != "/a?b" || req.Major != 1 || req.Minor != 1 || req.Length != 3 || req.Chunked || req.Close {
		t.Fatalf("%+v", req)
	}
	if v, _ := req.Values("X-A"); v != "v 1, w" || req.Get("host") != "h" {
		t.Fatalf("fields %+v", req.Fields)
	}
	// Hop-by-hop: the fixed ones and those Connection names.
	req, err = read(t, "GET / HTTP/1.1\r\nConnection: x-one\r\nX-One: 1\r\nconnection: X-Two, close\r\nX-Two: 2\r\nX-Three: 3\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	for name, hop := range map[string]bool{"X-One": true, "x-two": true, "X-Three": false, "Keep-Alive": true, "TE": true, "Host": false} {
		if req.Hop(name) != hop {
			t.Errorf("Hop(%s) = %v, want %v", name, !hop, hop)
		}
	}
	if !req.Close {
		t.Error("Connection: close in the second Connection field not seen")
	}
}

func TestFraming(t *testing.T) {
	for _, c := range []struct {
		raw                    string
		length                 int64
		chunked, close, keep   bool
		lengthAndChunked, fail bool
	}{
		{raw: "GET / HTTP/1.1\r\nHost: h\r\n\r\n", length: -1},
		{raw: "GET / HTTP/1.0\r\n\r\n", length: -1, close: true},
		{raw: "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", length: -1, keep: true},
		{raw: "GET / HTTP/1.1\r\nConnection: x, close\r\n\r\n", length: -1, close: true},
		{raw: "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", length: -1, chunked: true},
		{raw: "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", length: -1, chunked: true, close: true, lengthAndChunked: true},
		// HTTP/1.0 with a transfer coding: read chunked, as Apache does,
		// and the connection closed after it (RFC 9112 §6.1), keep-alive
		// or not.
		{raw: "POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n", length: -1, chunked: true, close: true, keep: true},
		{raw: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", fail: true},
		{raw: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", fail: true},
		{raw: "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", fail: true},
		{raw: "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", fail: true},
		{raw: "POST / HTTP/1.1\r\nContent-Length: 1234567890123456789\r\n\r\n", fail: true},
	} {
		req, err := read(t, c.raw)
		if c.fail {
			if status(err) != 400 {
				t.Errorf("%q: %v, want 400", c.raw, err)
			}
			continue
		}
		if err != nil || req.Length != c.length || req.Chunked != c.chunked || req.Close != c.close || req.KeepAlive != c.keep || req.LengthAndChunked != c.lengthAndChunked {
			t.Errorf("%q: %+v %v", c.raw, req.Head, err)
		}
	}
}

func TestRefused(t *testing.T) {
	lim := DefaultLimits()
	for _, c := range []struct {
		raw  string
		want int
	}{
		{"GET /" + strings.Repeat("a", lim.Line-14+2) + " HTTP/1.1\r\n\r\n", 414},
		{"GET / HTTP/1.1\r\nX: " + strings.Repeat("a", lim.FieldSize) + "\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\n" + strings.Repeat("X: a\r\n", lim.Fields+1) + "\r\n", 400},
		{"GET / HTTP/1.1\nHost: h\n\n", 400},
		{"GET  / HTTP/1.1\r\n\r\n", 400},
		{"GET / HTTP/1.1 \r\n\r\n", 400},
		{"GET / HTTP/x.1\r\n\r\n", 400},
		{"G(T / HTTP/1.1\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nX : a\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\n: a\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nX: a\x00\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\n a\r\n\r\n", 400},
		{"GET /\x7f HTTP/1.1\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nX: " + strings.Repeat("a", lim.FieldSize/2) + "\r\n " + strings.Repeat("a", lim.FieldSize/2) + "\r\n\r\n", 400},
	} {
		if _, err := read(t, c.raw); status(err) != c.want {
			t.Errorf("%.60q: %v, want %d", c.raw, err, c.want)
		}
	}
	// A line of the limit and one byte more passes, as in Apache.
	if _, err := read(t, "GET /"+strings.Repeat("a", lim.Line-14+1)+" HTTP/1.1\r\n\r\n"); err != nil {
		t.Errorf("a request line of LimitRequestLine+1: %v", err)
	}
	// Folding joins the line to the field before it.
	req, err := read(t, "GET / HTTP/1.1\r\nX: a\r\n\t b \r\n\r\n")
	if err != nil || req.Get("X") != "a b" {
		t.Errorf("folded: %q %v", req.Get("X"), err)
	}
	if _, err := read(t, ""); err != io.EOF {
		t.Errorf("nothing: %v, want EOF", err)
	}
	if _, err := read(t, "GET / HTTP/1.1\r\nHost"); err != io.ErrUnexpectedEOF {
		t.Errorf("cut short: %v, want ErrUnexpectedEOF", err)
	}
}

func TestReadResponse(t *testing.T) {
	for _, c := range []struct {
		raw, method string
		length      int64
		chunked     bool
		untilClose  bool
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "GET", 5, false, false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD", 0, false, false},
		{"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", "GET", 0, false, false},
		{"HTTP/1.1 204\r\n\r\n", "GET", 0, false, false},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET", -1, true, false},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "GET", -1, false, true},
		{"HTTP/1.0 200 OK\n\n", "GET", -1, false, true},
	} {
		var resp Response
		err := ReadResponse(bufio.NewReader(strings.NewReader(c.raw)), DefaultLimits(), &resp, c.method)
		if err != nil || resp.Length != c.length || resp.Chunked != c.chunked || resp.UntilClose != c.untilClose {
			t.Errorf("%q %s: %+v %v", c.raw, c.method, resp.Head, err)
		}
	}
	for _, raw := range []string{"HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 -20 OK\r\n\r\n", "ICY 200 OK\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"} {
		var resp Response
		if err := ReadResponse(bufio.NewReader(strings.NewReader(raw)), DefaultLimits(), &resp, "GET"); err == nil {
			t.Errorf("%q taken: %+v", raw, resp)
		}
	}
}

func TestCopyChunked(t *testing.T) {
	in := "4;ext=1\r\nabcd\r\nA \r\n0123456789\r\n0\r\nX-T: v\r\n\r\nNEXT"
	src := bufio.NewReader(strings.NewReader(in))
	var out strings.Builder
	dst := bufio.NewWriter(&out)
	n, err := CopyChunked(dst, src, -1, DefaultLimits())
	dst.Flush()
	if err != nil || n != 14 || out.String() != "4\r\nabcd\r\na\r\n0123456789\r\n0\r\nX-T: v\r\n\r\n" {
		t.Fatalf("%d %v %q", n, err, out.String())
	}
	if rest, _ := io.ReadAll(src); string(rest) != "NEXT" {
		t.Fatalf("left %q", rest)
	}
	// Through Go's own reader: the same data.
	body, err := io.ReadAll(httpChunked(out.String()))
	if err != nil || string(body) != "abcd0123456789" {
		t.Fatalf("%q %v", body, err)
	}
	for _, bad := range []string{"x\r\n", "4\r\nabcde\r\n", "4\r\nab", "ffffffffffffffff1\r\n"} {
		dst := bufio.NewWriter(io.Discard)
		if _, err := CopyChunked(dst, bufio.NewReader(strings.NewReader(bad)), -1, DefaultLimits()); err == nil {
			t.Errorf("%q taken", bad)
		}
	}
	if _, err := CopyChunked(bufio.NewWriter(io.Discard), bufio.NewReader(strings.NewReader(in)), 13, DefaultLimits()); err != ErrBodyTooLarge {
		t.Errorf("over the limit: %v", err)
	}
}

// httpChunked reads a chunked body with net/http's reader.
func httpChunked(s string) io.Reader {
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"+s)), nil)
	if err != nil {
		return strings.NewReader("")
	}
	return resp.Body
}
