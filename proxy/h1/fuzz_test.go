package h1

import (
	"bufio"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzReadRequest: no input panics, and a head ReadRequest takes, written
// out again, is taken by net/http's parser with the same method, target,
// version and field values — where net/http parses that kind of head at
// all (it refuses transfer codings other than a lone chunked, a second
// Host, and targets that are no URL; it ignores a transfer coding on
// HTTP/1.0, which ReadRequest reads chunked and closes after).
func FuzzReadRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /a?b HTTP/1.0\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabc",
		"PUT /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nX: a\r\n b\r\n\r\n",
		"\r\nGET http://h/p HTTP/1.1\r\nHost: h\r\n\r\n",
	} {
		f.Add(s)
	}
	lim := Limits{Line: 200, FieldSize: 200, Fields: 20}
	f.Fuzz(func(t *testing.T, raw string) {
		var req Request
		if err := ReadRequest(bufio.NewReaderSize(strings.NewReader(raw), BufferSize(lim)), lim, &req); err != nil {
			return
		}
		if req.Method == "" || req.Target == "" || req.Major < 1 || len(req.Fields) > lim.Fields {
			t.Fatalf("taken but incomplete: %+v", req)
		}
		hosts := 0
		for _, f := range req.Fields {
			if strings.EqualFold(f.Name, "Host") {
				hosts++
			}
		}
		te, hasTE := req.Values("Transfer-Encoding")
		if _, err := url.ParseRequestURI(req.Target); err != nil || hosts > 1 || hasTE && !strings.EqualFold(te, "chunked") || req.Major != 1 {
			return
		}
		var b strings.Builder
		b.WriteString(req.Method + " " + req.Target + " HTTP/1." + string(rune('0'+req.Minor)) + "\r\n")
		for _, f := range req.Fields {
			b.WriteString(f.Name + ": " + f.Value + "\r\n")
		}
		b.WriteString("\r\n")
		got, err := http.ReadRequest(bufio.NewReader(strings.NewReader(b.String())))
		if err != nil {
			t.Fatalf("net/http refuses what ReadRequest took: %v\n%q", err, b.String())
		}
		if got.Method != req.Method || got.RequestURI != req.Target || got.ProtoMinor != req.Minor {
			t.Fatalf("net/http reads %s %s 1.%d, ReadRequest %s %s 1.%d", got.Method, got.RequestURI, got.ProtoMinor, req.Method, req.Target, req.Minor)
		}
		for _, f := range req.Fields {
			name := http.CanonicalHeaderKey(f.Name)
			switch name {
			case "Host", "Content-Length", "Transfer-Encoding":
				continue
			}
			want, _ := req.Values(f.Name)
			if v := strings.Join(got.Header.Values(name), ", "); v != want {
				t.Fatalf("field %s: net/http %q, ReadRequest %q", name, v, want)
			}
		}
		if req.Minor == 0 && hasTE {
			// net/http ignores a transfer coding on HTTP/1.0; Apache
			// reads it chunked, and RFC 9112 §6.1 has the connection
			// closed after it.
			if !req.Chunked || !req.Close {
				t.Fatalf("HTTP/1.0 with Transfer-Encoding: chunked %v, close %v; want both", req.Chunked, req.Close)
			}
			return
		}
		if req.Length >= 0 && got.ContentLength != req.Length || req.Chunked != (len(got.TransferEncoding) > 0) {
			t.Fatalf("framing: net/http %d %v, ReadRequest %d %v", got.ContentLength, got.TransferEncoding, req.Length, req.Chunked)
		}
	})
}
