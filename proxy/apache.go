package proxy

// This file ports, function by function, the parts of Apache httpd 2.4
// (server/util.c, modules/proxy/mod_proxy.c, proxy_util.c,
// mod_proxy_http.c) that decide which URI a reverse-proxied request gets.
// The names in the comments are Apache's. The differential test against a
// real apache2 (apache_test.go) checks them.

import (
	"net/http"
	"strconv"
	"strings"
)

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func x2c(s string) byte { return unhex(s[0])<<4 | unhex(s[1]) }

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// unreserved is RFC 3986's unreserved set (T_URI_UNRESERVED).
func unreserved(c byte) bool { return isAlnum(c) || c == '-' || c == '.' || c == '_' || c == '~' }

// requestPath turns the path of a request target into Apache's r->uri
// (ap_process_request_internal): ap_normalize_path (decode unreserved
// %XX, merge slashes, remove dot segments, not above the root), then
// ap_unescape_url_ex (keep unreserved; %2F as AllowEncodedSlashes says:
// Off forbids it, NoDecode keeps it encoded, On decodes it and normalizes
// again, since "/.%2F" may make new segments). status is 0, or the error
// status Apache gives: 400 for a bad escape or a path above the root, 404
// for %00 or (Off) %2F.
func requestPath(p string, slashes EncodedSlashes) (uri string, status int) {
	if p == "" || p[0] != '/' {
		return "", http.StatusBadRequest
	}
	b, ok := normalizePath([]byte(p), true)
	if !ok {
		return "", http.StatusBadRequest
	}
	out := make([]byte, 0, len(b))
	badesc, badpath := false, false
	for i := 0; i < len(b); i++ {
		if b[i] != '%' {
			out = append(out, b[i])
			continue
		}
		if i+2 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) {
			badesc = true
			out = append(out, '%')
			continue
		}
		c := x2c(string(b[i+1 : i+3]))
		switch {
		case c == 0 || c == '/' && slashes == SlashesOff:
			badpath = true
			out = append(out, c)
			i += 2
		case unreserved(c) || c == '/' && slashes == SlashesNoDecode:
			out = append(out, b[i:i+3]...)
			i += 2
		default:
			out = append(out, c)
			i += 2
		}
	}
	switch {
	case badesc:
		return "", http.StatusBadRequest
	case badpath:
		return "", http.StatusNotFound
	}
	if slashes == SlashesOn {
		// Apache ignores whether this second pass stays below the root.
		out, _ = normalizePath(out, false)
	}
	return string(out), 0
}

// normalizePath is ap_normalize_path with AP_NORMALIZE_NOT_ABOVE_ROOT and
// AP_NORMALIZE_MERGE_SLASHES, and AP_NORMALIZE_DECODE_UNRESERVED when
// decode is set, in place. ok is false for a bad escape (when decoding) or
// a ".." above the root; the path is normalized as far as it goes either
// way.
func normalizePath(b []byte, decode bool) (_ []byte, ok bool) {
	ok = true
	l, w := 1, 1
	at := func(i int) byte {
		if i < len(b) {
			return b[i]
		}
		return 0
	}
	slashOrNul := func(c byte) bool { return c == '/' || c == 0 }
	for l < len(b) {
		if decode && b[l] == '%' {
			if isHex(at(l+1)) && isHex(at(l+2)) {
				if c := x2c(string(b[l+1 : l+3])); unreserved(c) {
					l += 2
					b[l] = c
				}
			} else {
				ok = false
			}
		}
		if w == 0 || b[w-1] == '/' {
			if b[l] == '/' {
				for l < len(b) && b[l] == '/' {
					l++
				}
				continue
			}
			if b[l] == '.' {
				if slashOrNul(at(l + 1)) {
					l++
					if l < len(b) {
						l++
					}
					continue
				}
				n := l + 1
				dot2 := at(n) == '.'
				if decode && !dot2 && at(n) == '%' {
					n++
					if at(n) == '2' {
						n++
						dot2 = at(n) == 'e' || at(n) == 'E'
					}
				}
				if dot2 && slashOrNul(at(n+1)) {
					if w > 1 {
						for {
							w--
							if w == 0 || b[w-1] == '/' {
								break
							}
						}
					} else {
						ok = false
					}
					l = n + 1
					if l < len(b) {
						l++
					}
					continue
				}
			}
		}
		b[w] = b[l]
		w++
		l++
	}
	return b[:w], ok
}

// aliasMatch is mod_proxy's alias_match: the number of bytes of uri that
// the ProxyPass path matches, 0 for no match. Runs of '/' in the path
// match runs of '/' in uri, and the path's last segment must end at a '/'
// or at the end of uri unless the path itself ends in '/'.
func aliasMatch(uri, fake string) int {
	a, u := 0, 0
	for a < len(fake) && u < len(uri) {
		if fake[a] == '/' {
			if uri[u] != '/' {
				return 0
			}
			for a < len(fake) && fake[a] == '/' {
				a++
			}
			for u < len(uri) && uri[u] == '/' {
				u++
			}
		} else {
			if uri[u] != fake[a] {
				return 0
			}
			u++
			a++
		}
	}
	if u == len(uri) && a != len(fake) {
		return 0
	}
	if a == 0 {
		return 0
	}
	if fake[a-1] != '/' && u < len(uri) && uri[u] != '/' {
		return 0
	}
	return u
}

// pregsub is ap_pregsub: $0..$9 are the submatches (empty if unset), a
// backslash escapes the next character.
func pregsub(tmpl, src string, m []int) string {
	var b strings.Builder
	for i := 0; i < len(tmpl); i++ {
		c := tmpl[i]
		if c == '$' && i+1 < len(tmpl) && tmpl[i+1] >= '0' && tmpl[i+1] <= '9' {
			n := int(tmpl[i+1] - '0')
			i++
			if 2*n+1 < len(m) && m[2*n] >= 0 {
				b.WriteString(src[m[2*n]:m[2*n+1]])
			}
			continue
		}
		if c == '\\' && i+1 < len(tmpl) {
			i++
			c = tmpl[i]
		}
		b.WriteByte(c)
	}
	return b.String()
}

// translate is ap_proxy_trans_match over the routes in order: the proxy
// URL ("http://h/p", "balancer://n/p") or "" when no route maps the
// request (no match, or an exclusion came first). unparsed is the request
// target as the client sent it, uri is r->uri.
func translate(routes []*route, uri, unparsed string) (rt *route, found string, nocanon bool) {
	for _, r := range routes {
		use := uri
		if r.NoCanon {
			use = unparsed
		}
		if r.Regex != nil {
			m := r.Regex.FindStringSubmatchIndex(uri)
			if m == nil {
				continue
			}
			if r.Exclude() {
				return nil, "", false
			}
			mismatch := false
			src := uri
			if r.NoCanon {
				if m1 := r.Regex.FindStringSubmatchIndex(unparsed); m1 == nil {
					mismatch = true
					use = uri
				} else {
					m, src = m1, unparsed
				}
			}
			f := pregsub(r.URL, src, m)
			if f == r.URL {
				f = r.URL + use
			}
			return r, f, r.NoCanon && !mismatch
		}
		n := aliasMatch(uri, r.Path)
		if n == 0 {
			continue
		}
		if r.Exclude() {
			return nil, "", false
		}
		mismatch := false
		if r.NoCanon && n != aliasMatch(unparsed, r.Path) {
			mismatch, use = true, uri
		}
		return r, r.URL + use[n:], r.NoCanon && !mismatch
	}
	return nil, "", false
}

// Encoding sets of ap_proxy_canonenc.
const allowedPath = "~$-_.+!*'(),;:@&="

// canonPath is ap_proxy_canonenc_ex(enc_path) for a reverse proxy: '/' is
// kept, alphanumerics and allowedPath are kept, everything else
// (including '%') becomes %XX with upper-case hex — but for
// AllowEncodedSlashes NoDecode an encoded slash, which r->uri kept, goes
// on as it came (PROXY_CANONENC_NOENCODEDSLASHENCODING).
func canonPath(s string, slashes EncodedSlashes) string {
	const hexdig = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if slashes == SlashesNoDecode && c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) && x2c(s[i+1:i+3]) == '/' {
			b.WriteString(s[i : i+3])
			i += 2
			continue
		}
		if c == '/' || isAlnum(c) || strings.IndexByte(allowedPath, c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexdig[c>>4])
		b.WriteByte(hexdig[c&15])
	}
	return b.String()
}

// target is a parsed proxy URL as proxy_http_canon leaves it.
type target struct {
	scheme string // lower case: http, https, ws, wss
	host   string // lower case; IPv6 in brackets
	port   int
	uri    string // what goes on the request line: "/path?query"
}

// hostPort is the dial address.
func (t *target) hostPort() string { return t.host + ":" + strconv.Itoa(t.port) }

// hostHeader is the Host header Apache sends with ProxyPreserveHost Off:
// the port only when it is not the scheme's default.
func (t *target) hostHeader() string {
	if t.port == defaultPort(t.scheme) {
		return t.host
	}
	return t.host + ":" + strconv.Itoa(t.port)
}

func defaultPort(scheme string) int {
	if scheme == "https" || scheme == "wss" {
		return 443
	}
	return 80
}

// canonURL is proxy_http_canon: split u (without "proxy:") into scheme,
// host, port and path, canonicalise the path unless nocanon, and append
// the query (args, hasArgs: r->args) unless nocanon. status is 0, or 400
// for a URL whose host or port does not parse, 403 for control characters
// or spaces.
func canonURL(u, args string, hasArgs, nocanon bool, slashes EncodedSlashes) (t target, status int) {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return t, http.StatusBadRequest
	}
	t.scheme = strings.ToLower(scheme)
	hp, path, _ := strings.Cut(rest, "/")
	if i := strings.LastIndexByte(hp, '@'); i >= 0 {
		hp = hp[i+1:]
	}
	host, port, ok := parseAddrPort(hp)
	if !ok {
		return t, http.StatusBadRequest
	}
	t.host = strings.ToLower(host)
	if strings.Contains(t.host, ":") {
		t.host = "[" + t.host + "]"
	}
	t.port = defaultPort(t.scheme)
	if port != 0 {
		t.port = port
	}
	if nocanon {
		if badChars(path) {
			return t, http.StatusForbidden
		}
		t.uri = "/" + path
		return t, 0
	}
	t.uri = "/" + canonPath(path, slashes)
	if hasArgs {
		if badChars(args) {
			return t, http.StatusForbidden
		}
		t.uri += "?" + args
	}
	return t, 0
}

// badChars is *ap_scan_vchar_obstext(s) != 0: a control character or a
// space.
func badChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return true
		}
	}
	return false
}

// parseAddrPort is apr_parse_addr_port for "host[:port]" ("[v6][:port]").
func parseAddrPort(s string) (host string, port int, ok bool) {
	if s == "" {
		return "", 0, false
	}
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", 0, false
		}
		host, s = s[1:end], s[end+1:]
		if s == "" {
			return host, 0, host != ""
		}
		if s[0] != ':' {
			return "", 0, false
		}
		s = s[1:]
	} else if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, s = s[:i], s[i+1:]
	} else {
		return s, 0, true
	}
	if host == "" || s == "" || len(s) > 5 {
		return "", 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return "", 0, false
		}
	}
	port, _ = strconv.Atoi(s)
	if port < 1 || port > 65535 {
		return "", 0, false
	}
	return host, port, true
}

// workerName is the name Apache gives a worker URL (apr_uri_unparse after
// ap_proxy_define_worker): scheme and host lower case, the default port
// dropped.
func workerName(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	scheme = strings.ToLower(scheme)
	hp, path, hasPath := strings.Cut(rest, "/")
	host, port, ok := parseAddrPort(hp)
	if !ok {
		return u
	}
	host = strings.ToLower(host)
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != 0 && port != defaultPort(scheme) {
		host += ":" + strconv.Itoa(port)
	}
	s := scheme + "://" + host
	if hasPath {
		s += "/" + path
	}
	return s
}

// reverseMap is ap_proxy_location_reverse_map: rewrite a Location,
// Content-Location or URI header value that starts (case-insensitively)
// with a ProxyPassReverse URL. self is the scheme://host[:port] of the
// client's request, for ap_construct_url.
func reverseMap(rules []ReverseRule, bals map[string]*balancer, v, self string) string {
	construct := func(u string) string {
		if isURL(u) {
			return u
		}
		return self + u
	}
	for _, e := range rules {
		real := e.URL
		if name, ok := balancerName(real); ok {
			b := bals[name]
			if b == nil {
				continue
			}
			urlpart := ""
			if i := strings.IndexByte(real[len("balancer://"):], '/'); i >= 0 {
				urlpart = real[len("balancer://")+i:]
				if urlpart == "/" {
					urlpart = ""
				}
			}
			for _, m := range b.members {
				name := m.name
				if urlpart != "" {
					if strings.HasSuffix(name, "/") {
						name = name[:len(name)-1]
					}
					l2, l3 := len(name), len(urlpart)
					if len(v) >= l2+l3 && strings.EqualFold(v[:l2], name) && v[l2:l2+l3] == urlpart {
						return construct(e.Path + v[l2+l3:])
					}
				} else if len(v) >= len(name) && strings.EqualFold(v[:len(name)], name) {
					if e.Path == "/" && len(v) > len(name) && v[len(name)] == '/' {
						return construct(v[len(name):])
					}
					return construct(e.Path + v[len(name):])
				}
			}
			continue
		}
		part := v
		if strings.HasPrefix(real, "/") {
			if i := strings.Index(v, "://"); i >= 0 {
				if j := strings.IndexByte(v[i+3:], '/'); j >= 0 {
					part = v[i+3+j:]
				}
			}
		}
		if len(real) > 0 && len(part) >= len(real) && strings.EqualFold(part[:len(real)], real) {
			return construct(e.Path + part[len(real):])
		}
	}
	return v
}

// isURL is ap_is_url: a scheme of letters, digits, '+', '-', '.' then ':'.
func isURL(u string) bool {
	for i := 0; i < len(u); i++ {
		c := u[i]
		if c == ':' {
			return i > 0
		}
		if !isAlnum(c) && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return false
}

// apacheWorker is one worker of Apache's server-wide table, as add_pass
// defines them for ProxyPass and ProxyPassMatch lines in order: a line
// whose URL an earlier worker already matches shares that worker (and its
// parameters) instead of defining its own.
type apacheWorker struct {
	name  string // workerName of the URL as written ($N kept)
	match bool   // a ProxyPassMatch worker: $N in its name match anything
	reuse bool   // connections to the real server are kept: not for a match worker with a $N (ap_proxy_define_worker_ex)
}

// defineWorkers is add_pass's worker definitions over the routes (not
// exclusions or balancers, whose members live in their balancer).
func defineWorkers(routes []Route) []apacheWorker {
	var ws []apacheWorker
	for _, r := range routes {
		if r.Exclude() || r.Balancer != "" {
			continue
		}
		name := workerName(r.URL)
		match := r.Regex != nil
		if findWorker(ws, name, !match, match) != nil {
			continue
		}
		ws = append(ws, apacheWorker{name: name, match: match, reuse: !match || !strings.Contains(name, "$")})
	}
	return ws
}

// findWorker is ap_proxy_get_worker_ex over ws: the worker whose name
// matches url longest — a prefix worker by prefix, a match worker with
// its $N as wildcards — and at least covers url's scheme://host[:port].
func findWorker(ws []apacheWorker, url string, prefix, match bool) *apacheWorker {
	minMatch := len(url)
	if i := strings.Index(url, "://"); i >= 0 {
		if j := strings.IndexByte(url[i+3:], '/'); j >= 0 {
			minMatch = i + 3 + j
		}
	}
	url = strings.ToLower(url[:minMatch]) + url[minMatch:]
	var best *apacheWorker
	longest := 0
	for i := range ws {
		w := &ws[i]
		n := len(w.name)
		if n > len(url) || n <= longest || n < minMatch {
			continue
		}
		if w.match && match && ematch(url, w.name) == 0 || !w.match && prefix && strings.HasPrefix(url, w.name) {
			best, longest = w, n
		}
	}
	return best
}

// ematch is ap_proxy_strcmp_ematch: 0 when str matches expected, in which
// a run of $N matches any string and a backslash escapes the next byte;
// 1 for no match, -1 to abort (str ran out), -2 for a trailing backslash.
func ematch(str, expected string) int {
	x := 0
	for y := 0; y < len(expected); y, x = y+1, x+1 {
		if expected[y] == '$' && y+1 < len(expected) && expected[y+1] >= '0' && expected[y+1] <= '9' {
			for y+1 < len(expected) && expected[y] == '$' && expected[y+1] >= '0' && expected[y+1] <= '9' {
				y += 2
			}
			if y == len(expected) {
				return 0
			}
			for x < len(str) {
				ret := ematch(str[x:], expected[y:])
				x++
				if ret != 1 {
					return ret
				}
			}
			return -1
		}
		if x == len(str) {
			return -1
		}
		if expected[y] == '\\' {
			y++
			if y == len(expected) {
				return -2
			}
		}
		if str[x] != expected[y] {
			return 1
		}
	}
	return 0
}
