package h1

import (
	"bufio"
	"errors"
	"io"
	"strconv"
	"strings"
)

// Limits bound a request head, as Apache's directives of the same names.
type Limits struct {
	Line      int // LimitRequestLine: bytes of the request line, without its CRLF
	FieldSize int // LimitRequestFieldSize: bytes of one field line, without its CRLF
	Fields    int // LimitRequestFields: number of field lines
}

// Apache's defaults (DEFAULT_LIMIT_REQUEST_LINE and _FIELDSIZE, _FIELDS).
const (
	DefaultLine      = 8190
	DefaultFieldSize = 8190
	DefaultFields    = 100
)

// DefaultLimits are Apache's.
func DefaultLimits() Limits {
	return Limits{Line: DefaultLine, FieldSize: DefaultFieldSize, Fields: DefaultFields}
}

// Error is a message that cannot be taken: Status is what Apache answers a
// client for it (0 when the peer is a server: the proxy answers 502).
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

func bad(status int, msg string) error { return &Error{Status: status, Msg: msg} }

// Field is one header field line, as received: Name in its own case.
type Field struct{ Name, Value string }

// Head is what requests and responses share: the field lines and the
// framing they decide.
type Head struct {
	Fields []Field
	// Major and Minor are the HTTP version.
	Major, Minor int
	// Length is the body's length from Content-Length, or -1.
	Length int64
	// Chunked: the body is chunked (Transfer-Encoding ends in chunked).
	Chunked bool
	// UntilClose: a response whose body runs to the end of the connection.
	UntilClose bool
	// LengthAndChunked: both framings were sent; the body is chunked
	// and the connection must not be reused (RFC 9112 §6.1).
	LengthAndChunked bool
	// Close: Connection: close (or HTTP/1.0 without keep-alive).
	Close bool
	// KeepAlive: Connection: keep-alive was sent.
	KeepAlive bool
	// Upgrade: Connection lists upgrade.
	Upgrade bool

	raw        []byte // the head's bytes as read, reused
	connection string // the Connection fields' values, joined (frameCommon)
}

// Get is the first value of the field name (case-insensitive), "" if none.
func (h *Head) Get(name string) string {
	for i := range h.Fields {
		if strings.EqualFold(h.Fields[i].Name, name) {
			return h.Fields[i].Value
		}
	}
	return ""
}

// Has tells whether a field of that name was sent.
func (h *Head) Has(name string) bool {
	for i := range h.Fields {
		if strings.EqualFold(h.Fields[i].Name, name) {
			return true
		}
	}
	return false
}

// Values joins every value of the field name with ", " (Apache's merged
// form), and tells whether there was one.
func (h *Head) Values(name string) (string, bool) {
	var out string
	found := false
	for i := range h.Fields {
		if strings.EqualFold(h.Fields[i].Name, name) {
			if found {
				out += ", " + h.Fields[i].Value
			} else {
				out, found = h.Fields[i].Value, true
			}
		}
	}
	return out, found
}

// Hop tells whether a field must not be forwarded: a hop-by-hop field, or
// one the Connection field names.
func (h *Head) Hop(name string) bool {
	switch {
	case strings.EqualFold(name, "Connection"), strings.EqualFold(name, "Keep-Alive"),
		strings.EqualFold(name, "Proxy-Connection"), strings.EqualFold(name, "TE"),
		strings.EqualFold(name, "Trailer"), strings.EqualFold(name, "Transfer-Encoding"),
		strings.EqualFold(name, "Upgrade"), strings.EqualFold(name, "Content-Length"):
		return true
	}
	return h.connection != "" && hasToken(h.connection, name)
}

// Request is a request head.
type Request struct {
	Head
	Method, Target, Proto string
}

// Response is a response head.
type Response struct {
	Head
	Status int
	Reason string
}

// BufferSize is the bufio.Reader size that holds a line within lim.
func BufferSize(lim Limits) int {
	return max(lim.Line, lim.FieldSize, 1024) + 3
}

// apacheSlack is how much longer than its limit a line Apache takes: a
// line of LimitRequestLine+1 bytes passes, one of +2 is refused (its
// buffer holds the limit, the CRLF and its terminating NUL; measured on
// Apache 2.4.71, and the differential test holds both to it).
const apacheSlack = 1

// ReadRequest reads a request head from br into req (reusing its memory).
// Empty lines before the request line are skipped, as Apache does. An
// *Error says what to answer; io.EOF before any byte means the client
// closed between requests.
func ReadRequest(br *bufio.Reader, lim Limits, req *Request) error {
	// A request that fails has no method of the one before it (a HEAD's
	// would keep the body off the error page).
	req.raw = req.raw[:0]
	req.Method, req.Target, req.Proto = "", "", ""
	var line []byte
	var err error
	for range 10 {
		var too bool
		if line, too, err = readLine(br, lim.Line+apacheSlack, true); err != nil {
			return err
		}
		if too {
			return bad(414, "request line longer than LimitRequestLine")
		}
		if len(line) > 0 {
			break
		}
	}
	if len(line) == 0 {
		return bad(400, "no request line")
	}
	req.raw = append(req.raw, line...)
	lineEnd := len(req.raw)
	if err := readFields(br, lim, &req.Head, true); err != nil {
		return err
	}
	s := string(req.raw) // the one allocation: every string below is part of it
	if err := req.parseLine(s[:lineEnd]); err != nil {
		return err
	}
	if err := req.Head.fields(s[lineEnd:], lim); err != nil {
		return err
	}
	return req.frame()
}

// ReadResponse reads a response head from br into resp.
func ReadResponse(br *bufio.Reader, lim Limits, resp *Response, method string) error {
	resp.raw = resp.raw[:0]
	line, too, err := readLine(br, lim.Line, false)
	if err != nil {
		return err
	}
	if too {
		return bad(0, "status line too long")
	}
	resp.raw = append(resp.raw, line...)
	lineEnd := len(resp.raw)
	if err := readFields(br, lim, &resp.Head, false); err != nil {
		return err
	}
	s := string(resp.raw)
	if err := resp.parseLine(s[:lineEnd]); err != nil {
		return err
	}
	if err := resp.Head.fields(s[lineEnd:], lim); err != nil {
		return err
	}
	return resp.frame(method)
}

// readLine reads one line, without its CRLF (or a bare LF, unless strict:
// Apache refuses a request whose lines end so); too reports a line longer
// than limit bytes. The slice is valid until the next read.
func readLine(br *bufio.Reader, limit int, strict bool) (line []byte, too bool, err error) {
	var acc []byte
	for {
		s, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			if len(acc)+len(s) > limit+2 {
				return nil, true, nil
			}
			acc = append(acc, s...)
			continue
		}
		if err != nil {
			if err == io.EOF && (len(acc) > 0 || len(s) > 0) {
				err = io.ErrUnexpectedEOF
			}
			return nil, false, err
		}
		if acc != nil {
			s = append(acc, s...)
		}
		s = s[:len(s)-1]
		if len(s) > 0 && s[len(s)-1] == '\r' {
			s = s[:len(s)-1]
		} else if strict {
			return nil, false, bad(400, "a line that ends in a bare LF")
		}
		if len(s) > limit {
			return nil, true, nil
		}
		return s, false, nil
	}
}

// readFields appends the field lines to h.raw, each ending in '\n', up to
// the empty line.
func readFields(br *bufio.Reader, lim Limits, h *Head, strict bool) error {
	n := 0
	slack := 0
	if strict {
		slack = apacheSlack
	}
	for {
		line, too, err := readLine(br, lim.FieldSize+slack, strict)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if too {
			return bad(400, "a header field longer than LimitRequestFieldSize")
		}
		h.raw = append(h.raw, '\n')
		if len(line) == 0 {
			return nil
		}
		if n++; n > lim.Fields {
			return bad(400, "more header fields than LimitRequestFields")
		}
		h.raw = append(h.raw, line...)
	}
}

// fields parses the field lines in s ("\nname: value\n...\n").
func (h *Head) fields(s string, lim Limits) error {
	h.Fields = h.Fields[:0]
	h.Length, h.Chunked, h.UntilClose, h.LengthAndChunked = -1, false, false, false
	h.Close, h.KeepAlive, h.Upgrade, h.connection = false, false, false, ""
	for rest := s[1:]; rest != ""; {
		var line string
		line, rest, _ = strings.Cut(rest, "\n")
		if line == "" {
			continue
		}
		for i := 0; i < len(line); i++ {
			if c := line[i]; c < ' ' && c != '\t' || c == 0x7f {
				return bad(400, "a control character in a header field")
			}
		}
		if line[0] == ' ' || line[0] == '\t' {
			// Obsolete line folding: Apache joins the line to the field
			// before it with one space (RFC 9112 §5.2 allows it).
			if len(h.Fields) == 0 {
				return bad(400, "a folded line before any field")
			}
			f := &h.Fields[len(h.Fields)-1]
			f.Value = strings.Trim(f.Value+" "+strings.Trim(line, " \t"), " \t")
			if len(f.Name)+2+len(f.Value) > lim.FieldSize+apacheSlack {
				// Apache: "header exceeds LimitRequestFieldSize after
				// merging" — the folded field is held to the limit too.
				return bad(400, "a folded header field longer than LimitRequestFieldSize")
			}
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || !isToken(name) {
			return bad(400, "a header field without a valid name")
		}
		value = strings.Trim(value, " \t")
		h.Fields = append(h.Fields, Field{name, value})
	}
	return nil
}

// frameCommon reads Connection, Content-Length and Transfer-Encoding.
func (h *Head) frameCommon() (te string, hasTE bool, err error) {
	lengths := 0
	for i := range h.Fields {
		f := &h.Fields[i]
		switch {
		case strings.EqualFold(f.Name, "Connection"):
			if h.connection != "" {
				h.connection += ","
			}
			h.connection += f.Value
			h.Close = h.Close || hasToken(f.Value, "close")
			h.KeepAlive = h.KeepAlive || hasToken(f.Value, "keep-alive")
			h.Upgrade = h.Upgrade || hasToken(f.Value, "upgrade")
		case strings.EqualFold(f.Name, "Content-Length"):
			if lengths++; lengths > 1 {
				return "", false, bad(400, "more than one Content-Length")
			}
			n, ok := parseLength(f.Value)
			if !ok {
				return "", false, bad(400, "a bad Content-Length")
			}
			h.Length = n
		case strings.EqualFold(f.Name, "Transfer-Encoding"):
			if hasTE {
				te += ", " + f.Value
			} else {
				te, hasTE = f.Value, true
			}
		}
	}
	if h.Major == 1 && h.Minor == 0 && !h.KeepAlive {
		h.Close = true
	}
	return te, hasTE, nil
}

func (r *Request) frame() error {
	te, hasTE, err := r.frameCommon()
	if err != nil {
		return err
	}
	if hasTE {
		if !chunkedLast(te) {
			return bad(400, "a Transfer-Encoding that does not end in chunked")
		}
		r.Chunked = true
		if r.Length >= 0 {
			r.LengthAndChunked, r.Length, r.Close = true, -1, true
		}
		// RFC 9112 §6.1: HTTP/1.0 has no transfer codings, so the
		// framing is suspect: read chunked (as Apache does), then close.
		if r.Major == 1 && r.Minor == 0 {
			r.Close = true
		}
	}
	return nil
}

func (r *Response) frame(method string) error {
	te, hasTE, err := r.frameCommon()
	if err != nil {
		return &Error{Msg: err.Error()}
	}
	switch {
	case method == "HEAD" || r.Status/100 == 1 || r.Status == 204 || r.Status == 304:
		r.Length, r.Chunked = 0, false
	case hasTE && chunkedLast(te):
		r.Chunked = true
		if r.Length >= 0 {
			r.LengthAndChunked, r.Length, r.Close = true, -1, true
		}
	case hasTE:
		r.UntilClose, r.Length, r.Close = true, -1, true
	case r.Length < 0:
		r.UntilClose, r.Close = true, true
	}
	return nil
}

// parseLine parses "METHOD SP target SP HTTP/x.y", one space each (Apache's
// strict request line).
func (r *Request) parseLine(s string) error {
	m, rest, ok1 := strings.Cut(s, " ")
	t, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || m == "" || t == "" || !isToken(m) {
		return bad(400, "a malformed request line")
	}
	for i := 0; i < len(t); i++ {
		if t[i] <= ' ' || t[i] == 0x7f {
			return bad(400, "a malformed request target")
		}
	}
	major, minor, ok := parseVersion(proto)
	if !ok {
		return bad(400, "a malformed protocol")
	}
	if major == 0 {
		return bad(400, "HTTP/0.x")
	}
	if major > 1 {
		// Apache answers an HTTP/2.0 or later request line in HTTP/1.1.
		minor = 1
	}
	r.Method, r.Target, r.Proto, r.Major, r.Minor = m, t, proto, major, minor
	return nil
}

// parseLine parses "HTTP/x.y SP 3DIGIT SP reason".
func (r *Response) parseLine(s string) error {
	proto, rest, ok := strings.Cut(s, " ")
	major, minor, vok := parseVersion(proto)
	if !ok || !vok || major != 1 || len(rest) < 3 {
		return bad(0, "a malformed status line")
	}
	code, reason := rest[:3], ""
	if len(rest) > 3 {
		if rest[3] != ' ' {
			return bad(0, "a malformed status line")
		}
		reason = rest[4:]
	}
	st, err := strconv.Atoi(code)
	if err != nil || st < 100 || code[0] == '+' || code[0] == '-' {
		return bad(0, "a malformed status code")
	}
	r.Status, r.Reason, r.Major, r.Minor = st, reason, major, minor
	return nil
}

func parseVersion(p string) (major, minor int, ok bool) {
	if len(p) != 8 || !strings.HasPrefix(p, "HTTP/") || p[6] != '.' || !isDigit(p[5]) || !isDigit(p[7]) {
		return 0, 0, false
	}
	return int(p[5] - '0'), int(p[7] - '0'), true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// parseLength is a Content-Length: digits only, no sign, no overflow
// (Apache's ap_parse_strict_length).
func parseLength(v string) (int64, bool) {
	if v == "" || len(v) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		if !isDigit(v[i]) {
			return 0, false
		}
		n = n*10 + int64(v[i]-'0')
	}
	return n, true
}

// chunkedLast tells whether a Transfer-Encoding list ends in chunked, and
// has it only there (Apache's ap_is_chunked).
func chunkedLast(te string) bool {
	parts := strings.Split(te, ",")
	for i, p := range parts {
		c := strings.EqualFold(strings.Trim(p, " \t"), "chunked")
		if c != (i == len(parts)-1) {
			return false
		}
	}
	return true
}

// hasToken tells whether a comma-separated list holds token
// (case-insensitive).
func hasToken(list, token string) bool {
	for list != "" {
		var item string
		item, list, _ = strings.Cut(list, ",")
		if strings.EqualFold(strings.Trim(item, " \t"), token) {
			return true
		}
	}
	return false
}

// isToken: RFC 9110 token characters only.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return s != ""
}

func isTokenChar(c byte) bool {
	switch {
	case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// ErrBodyTooLarge is a body beyond the limit given to a copy.
var ErrBodyTooLarge = errors.New("request body larger than LimitRequestBody")
