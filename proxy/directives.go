package proxy

import (
	"errors"
	"fmt"

	"regexp"
	"strconv"
	"strings"
	"time"
)

// ErrDirective is wrapped by every error ParseDirectives returns: the text
// is not a set of directives this package accepts. The message names
// FILE:LINE, the directive and the fix.
var ErrDirective = errors.New("bad proxy directive")

// DirectiveError is what ParseDirectives returns: where the directive
// that is refused stands and why (with the fix).
type DirectiveError struct {
	File string
	Line int
	Msg  string // what is wrong
	Fix  string // what to write instead; "" when Msg says it all
}

func (e *DirectiveError) Error() string {
	if e.Fix == "" {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Msg, e.Fix)
}

// Unwrap returns ErrDirective.
func (e *DirectiveError) Unwrap() error { return ErrDirective }

// SupportedDirectives lists, for messages, the directives ParseDirectives
// takes.
const SupportedDirectives = "ProxyPass, ProxyPassMatch, ProxyPassReverse, <Proxy balancer://NAME>, BalancerMember, ProxySet, ProxyPreserveHost, ProxyAddHeaders, ProxyTimeout, ProxyRequests Off, AllowEncodedSlashes, ServerName, LimitRequestLine, LimitRequestFieldSize, LimitRequestFields, LimitRequestBody, Timeout, KeepAlive, KeepAliveTimeout, MaxKeepAliveRequests, RequestReadTimeout, SSLEngine, SSLCertificateFile, SSLCertificateKeyFile, SSLProtocol, SSLCipherSuite, SSLProxyEngine, SSLProxyVerify, SSLProxyCACertificateFile, Protocols, H2MaxSessionStreams"

// Defaults, as Apache 2.4 has them.
const (
	// DefaultRetry is how long a worker that failed to connect rests
	// before it is tried again (Apache's retry=60).
	DefaultRetry = 60 * time.Second
	// DefaultTimeout bounds the wait for a backend's response headers when
	// neither ProxyTimeout nor timeout= is given (Apache's Timeout 60).
	DefaultTimeout = 60 * time.Second
)

// Config is the parsed form of a set of Apache 2.4 proxy directives, as
// ParseDirectives returns it. Routes and Reverse are in file order, which
// is the order Apache tries them.
//
// The zero value is an empty configuration: every request gets 404. A
// Config is a plain value that New only reads; do not change it while New
// runs. Proxy keeps what it needs, so a Config may be reused or discarded
// afterwards.
type Config struct {
	// Routes are the ProxyPass and ProxyPassMatch lines, in order.
	Routes []Route
	// Reverse are the ProxyPassReverse lines, in order.
	Reverse []ReverseRule
	// Balancers are the <Proxy balancer://NAME> blocks (and the balancers
	// that BalancerMember or ProxySet name outside a block), in order of
	// first mention.
	Balancers []*Balancer
	// PreserveHost is ProxyPreserveHost: send the client's Host header to
	// the backend instead of the backend's host:port.
	PreserveHost bool
	// NoAddHeaders is ProxyAddHeaders Off: do not add X-Forwarded-For,
	// -Host and -Server.
	NoAddHeaders bool
	// Timeout is ProxyTimeout; 0 means DefaultTimeout.
	Timeout time.Duration
	// EncodedSlashes is AllowEncodedSlashes: what a %2F in a request's
	// path does.
	EncodedSlashes EncodedSlashes
	// ServerName is ServerName's host (its port left out): the front
	// end's name in X-Forwarded-Server; "" leaves it to Options.
	ServerName string
	// Limits are the client side's limits and timeouts; the zero value
	// means DefaultClientLimits.
	Limits ClientLimits
	// TLS is what mod_ssl's directives say.
	TLS TLSConfig
}

// EncodedSlashes is AllowEncodedSlashes's value.
type EncodedSlashes uint8

const (
	// SlashesOff (Apache's default) answers 404 to a path with %2F.
	SlashesOff EncodedSlashes = iota
	// SlashesOn decodes %2F to "/" and normalizes the path again; the
	// real server gets the slash.
	SlashesOn
	// SlashesNoDecode keeps %2F as it came, to the real server.
	SlashesNoDecode
)

// Route is one ProxyPass or ProxyPassMatch line. The zero value is a
// route that matches nothing useful; Routes come from ParseDirectives and
// are plain values, read-only once given to New.
type Route struct {
	Pos   string         // "FILE:LINE" of the directive, for messages
	Path  string         // the first argument: a path prefix, or a regex source
	Regex *regexp.Regexp // non-nil for ProxyPassMatch and ProxyPass ~
	// URL is the target as written ("http://host:port/path",
	// "balancer://name/path", with $N references for regex routes), or
	// "!" for an exclusion.
	URL      string
	NoCanon  bool   // nocanon: pass the client's raw URI path on
	NoQuery  bool   // noquery (accepted; no effect for http, as in Apache)
	Worker   Worker // worker parameters (plain URL targets)
	Balancer string // lower-case balancer name for balancer:// targets
}

// Exclude reports whether the route is an exclusion ("ProxyPass /path !").
func (r *Route) Exclude() bool { return r.URL == "!" }

// ReverseRule is one ProxyPassReverse line: response headers Location,
// Content-Location and URI that start with URL get Path instead. Plain
// value; the zero value rewrites nothing.
type ReverseRule struct {
	Pos  string
	Path string
	URL  string
}

// Worker holds the parameters of one backend URL (ProxyPass key=value or
// BalancerMember key=value). The zero value is Apache's defaults. Plain
// value.
type Worker struct {
	Retry          time.Duration // retry=: rest after a failure; -1 means retry=0
	Timeout        time.Duration // timeout=: wait for response headers
	ConnectTimeout time.Duration // connectiontimeout=
	LoadFactor     int           // loadfactor= times 100 (100..10000); 0 means 100
	HotStandby     bool          // status=+H
	Disabled       bool          // status=+D
	Upgrade        string        // upgrade=: protocols passed through (e.g. "websocket", "*")
}

// Balancer is one balancer://NAME. The zero value has no members and
// fails validation; Balancers come from ParseDirectives and are read-only
// once given to New.
type Balancer struct {
	Pos         string
	Name        string // lower case, without "balancer://"
	Members     []Member
	LBMethod    string // byrequests (default), bybusyness or bytraffic
	MaxAttempts int    // maxattempts=; -1 means unset (members-1)
	NoFailover  bool
}

// Member is one BalancerMember. Plain value.
type Member struct {
	Pos    string
	URL    string // as written, e.g. "http://198.18.7.1:8080/app"
	Worker Worker
}

// ParseDirectives parses Apache 2.4 proxy directives as they are written in
// httpd.conf. filename and firstLine, the line of filename where text
// begins (1 for a file of its own), are for error messages only. The supported
// directives are SupportedDirectives: mod_proxy's, the core's limits and
// timeouts (limits.go) and mod_ssl's (tls.go). Anything else is an error,
// so that a directive is never silently ignored.
func ParseDirectives(text, filename string, firstLine int) (*Config, error) {
	p := &parser{file: filename, first: max(firstLine, 1), cfg: &Config{Limits: DefaultClientLimits()}, bal: map[string]*Balancer{}}
	if err := p.run(text); err != nil {
		return nil, err
	}
	return p.cfg, nil
}

type parser struct {
	file   string
	first  int // the file's line of the text's first line
	cfg    *Config
	bal    map[string]*Balancer
	inside *Balancer // current <Proxy balancer://...> block
	line   int
}

// errf is the error at the line being read. format is "what: fix" (the
// fix may be left out); the first ": " in it separates the two.
func (p *parser) errf(format string, a ...any) error {
	e := &DirectiveError{File: p.file, Line: p.fileLine()}
	what, fix, ok := strings.Cut(format, ": ")
	if !ok {
		e.Msg = fmt.Sprintf(format, a...)
		return e
	}
	n := strings.Count(what, "%") - 2*strings.Count(what, "%%") // the verbs what uses
	e.Msg, e.Fix = fmt.Sprintf(what, a[:n]...), fmt.Sprintf(fix, a[n:]...)
	return e
}

// fileLine is the line being read, counted in the file.
func (p *parser) fileLine() int { return p.first + p.line - 1 }

func (p *parser) pos() string { return fmt.Sprintf("%s:%d", p.file, p.fileLine()) }

func (p *parser) run(text string) error {
	lines := strings.Split(text, "\n")
	blockLine := 0
	for i := 0; i < len(lines); i++ {
		p.line = i + 1
		l := strings.TrimRight(lines[i], "\r")
		for strings.HasSuffix(l, "\\") && i+1 < len(lines) { // continuation
			i++
			l = l[:len(l)-1] + strings.TrimRight(lines[i], "\r")
		}
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' {
			continue
		}
		words, err := splitWords(l)
		if err != nil {
			return p.errf("%v", err)
		}
		name, args := strings.ToLower(words[0]), words[1:]
		switch {
		case strings.HasPrefix(name, "<proxy"):
			if p.inside != nil {
				return p.errf("<Proxy> blocks do not nest: close the block of line %d with </Proxy> first", p.first+blockLine-1)
			}
			arg := strings.TrimSuffix(strings.TrimSpace(l[len("<proxy"):]), ">")
			if name != "<proxy" && name != "<proxy>" || !strings.HasSuffix(l, ">") {
				return p.errf("%s: write <Proxy balancer://NAME>", words[0])
			}
			arg = strings.Trim(strings.TrimSpace(arg), `"'`)
			b, err := p.balancer(arg)
			if err != nil {
				return err
			}
			p.inside, blockLine = b, p.line
			continue
		case name == "</proxy>":
			if p.inside == nil {
				return p.errf("</Proxy> without <Proxy balancer://NAME>")
			}
			p.inside = nil
			continue
		}
		if err := p.directive(words[0], name, args); err != nil {
			return err
		}
	}
	if p.inside != nil {
		p.line = blockLine
		return p.errf("<Proxy %s> is not closed: add </Proxy>", "balancer://"+p.inside.Name)
	}
	for i := range p.cfg.Routes {
		r := &p.cfg.Routes[i]
		if r.Balancer != "" {
			if b := p.bal[r.Balancer]; b == nil || len(b.Members) == 0 {
				p.line = lineOf(r.Pos) - p.first + 1
				return p.errf("ProxyPass: balancer://%s has no members: add <Proxy balancer://%s> with BalancerMember lines", r.Balancer, r.Balancer)
			}
		}
	}
	return nil
}

func firstOr(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

func lineOf(pos string) int {
	n, _ := strconv.Atoi(pos[strings.LastIndexByte(pos, ':')+1:])
	return n
}

// balancer returns the balancer named by a "balancer://NAME" URL, creating
// it on first mention.
func (p *parser) balancer(u string) (*Balancer, error) {
	name, ok := balancerName(u)
	if !ok {
		return nil, p.errf("%q is not a balancer URL: write balancer://NAME", u)
	}
	b := p.bal[name]
	if b == nil {
		b = &Balancer{Pos: p.pos(), Name: name, LBMethod: "byrequests", MaxAttempts: -1}
		p.bal[name] = b
		p.cfg.Balancers = append(p.cfg.Balancers, b)
	}
	return b, nil
}

// balancerName returns NAME of balancer://NAME[/path], lower-cased.
func balancerName(u string) (string, bool) {
	if len(u) < 11 || !strings.EqualFold(u[:11], "balancer://") {
		return "", false
	}
	name := u[11:]
	if i := strings.IndexByte(name, '/'); i >= 0 {
		name = name[:i]
	}
	if name == "" {
		return "", false
	}
	return strings.ToLower(name), true
}

// directiveName reports whether w looks like an Apache directive's name:
// a letter, then letters and digits, at most 40 in all.
func directiveName(w string) bool {
	if w == "" || len(w) > 40 {
		return false
	}
	for i, c := range w {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

func (p *parser) directive(orig, name string, args []string) error {
	switch name {
	case "proxypass", "proxypassmatch":
		return p.proxyPass(orig, name == "proxypassmatch", args)
	case "proxypassreverse":
		if len(args) == 1 && p.inside == nil {
			return p.errf("%s needs a path and a URL: write ProxyPassReverse /path http://backend/path", orig)
		}
		if len(args) != 2 {
			return p.errf("%s takes two arguments, a path and a URL (interpolate is not supported)", orig)
		}
		if p.inside != nil {
			return p.errf("%s inside <Proxy>: move it out of the block", orig)
		}
		p.cfg.Reverse = append(p.cfg.Reverse, ReverseRule{Pos: p.pos(), Path: args[0], URL: args[1]})
		return nil
	case "balancermember":
		b := p.inside
		if b == nil {
			if _, ok := balancerName(firstOr(args)); !ok {
				return p.errf("BalancerMember outside <Proxy>: write BalancerMember balancer://NAME URL, or put it in a <Proxy balancer://NAME> block")
			}
			var err error
			if b, err = p.balancer(args[0]); err != nil {
				return err
			}
			args = args[1:]
		}
		if len(args) == 0 {
			return p.errf("BalancerMember needs a URL: write BalancerMember http://host:port")
		}
		if _, err := p.checkURL(args[0], false); err != nil {
			return err
		}
		m := Member{Pos: p.pos(), URL: args[0]}
		for _, kv := range args[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return p.errf("BalancerMember parameter %q: write key=value", kv)
			}
			if err := p.workerParam(&m.Worker, strings.ToLower(k), v, true); err != nil {
				return err
			}
		}
		b.Members = append(b.Members, m)
		return nil
	case "proxyset":
		b := p.inside
		if b == nil {
			if len(args) == 0 || !strings.HasPrefix(strings.ToLower(args[0]), "balancer://") {
				return p.errf("ProxySet outside <Proxy>: write ProxySet balancer://NAME key=value")
			}
			var err error
			if b, err = p.balancer(args[0]); err != nil {
				return err
			}
			args = args[1:]
		}
		for _, kv := range args {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return p.errf("ProxySet parameter %q: write key=value", kv)
			}
			if err := p.balancerParam(b, strings.ToLower(k), v); err != nil {
				return err
			}
		}
		return nil
	case "proxypreservehost", "proxyaddheaders", "proxyrequests":
		if len(args) != 1 || !strings.EqualFold(args[0], "on") && !strings.EqualFold(args[0], "off") {
			return p.errf("%s takes On or Off", orig)
		}
		on := strings.EqualFold(args[0], "on")
		switch name {
		case "proxypreservehost":
			p.cfg.PreserveHost = on
		case "proxyaddheaders":
			p.cfg.NoAddHeaders = !on
		default:
			if on {
				return p.errf("ProxyRequests On (a forward proxy) is not supported: write ProxyRequests Off or remove the line")
			}
		}
		return nil
	case "allowencodedslashes":
		if len(args) != 1 {
			return p.errf("AllowEncodedSlashes takes one of On, Off, NoDecode")
		}
		switch strings.ToLower(args[0]) {
		case "off":
			p.cfg.EncodedSlashes = SlashesOff
		case "on":
			p.cfg.EncodedSlashes = SlashesOn
		case "nodecode":
			p.cfg.EncodedSlashes = SlashesNoDecode
		default:
			return p.errf("AllowEncodedSlashes %q: write On, Off or NoDecode", args[0])
		}
		return nil
	case "servername":
		if len(args) != 1 {
			return p.errf("ServerName takes one name: write ServerName www.example.com[:port]")
		}
		host, _, ok := parseAddrPort(strings.TrimPrefix(strings.TrimPrefix(args[0], "https://"), "http://"))
		if !ok || host == "" || strings.ContainsAny(host, " /?#@%\\\"'") {
			return p.errf("ServerName %q: write a host name, with :port if you like", args[0])
		}
		p.cfg.ServerName = host
		return nil
	case "proxytimeout":
		if len(args) != 1 {
			return p.errf("ProxyTimeout takes one number of seconds")
		}
		d, err := seconds(args[0])
		if err != nil || d <= 0 {
			return p.errf("ProxyTimeout %q: write a positive number of seconds", args[0])
		}
		p.cfg.Timeout = d
		return nil
	}
	if handled, err := p.limit(orig, name, args); handled {
		return err
	}
	if handled, err := p.tlsDirective(orig, name, args); handled {
		return err
	}
	if !directiveName(orig) {
		// Not a directive at all: the file named may be anything (read
		// as root), so its text is not repeated in the error.
		return p.errf("not an Apache directive (the line is not shown): vsgate's proxy takes %s", SupportedDirectives)
	}
	return p.errf("unknown or unsupported directive %q: vsgate's proxy takes %s", orig, SupportedDirectives)
}

func (p *parser) proxyPass(orig string, match bool, args []string) error {
	if p.inside != nil {
		return p.errf("%s inside <Proxy>: move it out of the block", orig)
	}
	r := Route{Pos: p.pos()}
	regex := match
	if !match && len(args) > 0 && args[0] == "~" {
		regex, args = true, args[1:]
	}
	if len(args) < 2 {
		return p.errf("%s needs a path and a URL: write %s /path http://backend:port/path", orig, orig)
	}
	r.Path, r.URL = args[0], args[1]
	if regex {
		re, err := regexp.Compile(r.Path)
		if err != nil {
			return p.errf("%s: regular expression %q: %v", orig, r.Path, err)
		}
		r.Regex = re
	} else if !strings.HasPrefix(r.Path, "/") {
		return p.errf("%s path %q must start with /", orig, r.Path)
	}
	if r.Exclude() {
		if len(args) > 2 {
			return p.errf("%s %s !: an exclusion takes no parameters", orig, r.Path)
		}
		p.cfg.Routes = append(p.cfg.Routes, r)
		return nil
	}
	bal, err := p.checkURL(r.URL, regex)
	if err != nil {
		return err
	}
	var b *Balancer
	if bal != "" {
		r.Balancer = bal
		if b, err = p.balancer("balancer://" + bal); err != nil {
			return err
		}
	}
	for _, w := range args[2:] {
		switch strings.ToLower(w) {
		case "nocanon":
			r.NoCanon = true
			continue
		case "noquery":
			r.NoQuery = true
			continue
		case "interpolate":
			return p.errf("%s: interpolate is not supported: remove it", orig)
		}
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			return p.errf("%s parameter %q: write key=value, or nocanon", orig, w)
		}
		k = strings.ToLower(k)
		if k == "mapping" {
			return p.errf("%s: mapping=%s is not supported: remove it", orig, v)
		}
		if b != nil {
			err = p.balancerParam(b, k, v)
		} else {
			err = p.workerParam(&r.Worker, k, v, false)
		}
		if err != nil {
			return err
		}
	}
	p.cfg.Routes = append(p.cfg.Routes, r)
	return nil
}

// checkURL validates a target URL and returns the balancer name if it is
// a balancer:// URL.
func (p *parser) checkURL(u string, regex bool) (string, error) {
	if name, ok := balancerName(u); ok {
		return name, nil
	}
	scheme, rest, ok := strings.Cut(u, "://")
	switch strings.ToLower(scheme) {
	case "http", "https", "ws", "wss":
	default:
		return "", p.errf("URL %q: scheme must be http, https, ws, wss or balancer (write http://host:port/path)", u)
	}
	if !ok {
		return "", p.errf("URL %q: write scheme://host:port/path", u)
	}
	host := rest
	if i := strings.IndexByte(host, '/'); i >= 0 {
		host = host[:i]
	}
	if regex && strings.Contains(host, "$") {
		return "", p.errf("URL %q: $N references are supported in the path only", u)
	}
	if h, _, ok := parseAddrPort(host); !ok || strings.ContainsAny(h, " /?#@%\\\"'") {
		return "", p.errf("URL %q: bad host or port: write scheme://host:port/path", u)
	}
	return "", nil
}

func seconds(v string) (time.Duration, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 1<<30 {
		return 0, errors.New("bad seconds")
	}
	return time.Duration(n) * time.Second, nil
}

func (p *parser) workerParam(w *Worker, k, v string, member bool) error {
	var err error
	switch k {
	case "retry":
		if w.Retry, err = seconds(v); err != nil {
			return p.errf("retry=%s: write a number of seconds (0 or more)", v)
		}
		if w.Retry == 0 {
			w.Retry = -1
		}
	case "timeout":
		if w.Timeout, err = seconds(v); err != nil || w.Timeout == 0 {
			return p.errf("timeout=%s: write a positive number of seconds", v)
		}
	case "connectiontimeout":
		if w.ConnectTimeout, err = seconds(v); err != nil || w.ConnectTimeout == 0 {
			return p.errf("connectiontimeout=%s: write a positive number of seconds", v)
		}
	case "loadfactor":
		if !member {
			return p.errf("loadfactor=%s applies to BalancerMember only", v)
		}
		f, err := strconv.ParseFloat(v, 64)
		n := int(f * 100)
		if err != nil || n < 100 || n > 10000 {
			return p.errf("loadfactor=%s: LoadFactor must be a number between 1..100", v)
		}
		w.LoadFactor = n
	case "status":
		on := true
		for _, c := range v {
			switch c {
			case '+':
				on = true
			case '-':
				on = false
			case 'H', 'h':
				w.HotStandby = on
			case 'D', 'd':
				w.Disabled = on
			default:
				return p.errf("status=%s: vsgate supports +H (hot standby) and +D (disabled)", v)
			}
		}
	case "upgrade":
		w.Upgrade = v
	case "keepalive", "ttl", "max", "smax", "min", "acquire", "flushpackets", "flushwait", "ping", "route", "redirect":
		// Accepted: connection tuning and sticky-session labels with no
		// effect on routing here.
	default:
		return p.errf("unknown or unsupported worker parameter %q", k+"="+v)
	}
	return nil
}

func (p *parser) balancerParam(b *Balancer, k, v string) error {
	switch k {
	case "lbmethod":
		switch strings.ToLower(v) {
		case "byrequests", "bybusyness", "bytraffic":
			b.LBMethod = strings.ToLower(v)
		default:
			return p.errf("lbmethod=%s: use byrequests, bybusyness or bytraffic", v)
		}
	case "maxattempts":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 1000 {
			return p.errf("maxattempts=%s: write a number 0..1000", v)
		}
		b.MaxAttempts = n
	case "nofailover":
		switch strings.ToLower(v) {
		case "on":
			b.NoFailover = true
		case "off":
			b.NoFailover = false
		default:
			return p.errf("nofailover=%s: write On or Off", v)
		}
	case "timeout", "growth", "failonstatus", "failontimeout", "forcerecovery":
		// accepted, no effect here
	default:
		return p.errf("unknown or unsupported balancer parameter %q (stickysession is not supported)", k+"="+v)
	}
	return nil
}

// splitWords splits a line as Apache's ap_getword_conf does: words
// separated by blanks, "double" or 'single' quoted with backslash escapes.
func splitWords(l string) ([]string, error) {
	var words []string
	for {
		l = strings.TrimLeft(l, " \t")
		if l == "" {
			return words, nil
		}
		if q := l[0]; q == '"' || q == '\'' {
			var b strings.Builder
			i := 1
			for ; i < len(l) && l[i] != q; i++ {
				if l[i] == '\\' && i+1 < len(l) && (l[i+1] == q || l[i+1] == '\\') {
					i++
				}
				b.WriteByte(l[i])
			}
			if i == len(l) {
				return nil, errors.New("unterminated quote: close it")
			}
			words = append(words, b.String())
			l = l[i+1:]
			continue
		}
		i := strings.IndexAny(l, " \t")
		if i < 0 {
			i = len(l)
		}
		words = append(words, l[:i])
		l = l[i:]
	}
}
