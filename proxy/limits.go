package proxy

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/vsgate/vsgate/proxy/h1"
)

// ClientLimits are the client side's limits and timeouts, from Apache's
// core directives and mod_reqtimeout's RequestReadTimeout, with their
// defaults (DefaultClientLimits).
type ClientLimits struct {
	// Head holds LimitRequestLine, LimitRequestFieldSize and
	// LimitRequestFields.
	Head h1.Limits
	// Body is LimitRequestBody; 0 means no limit.
	Body int64
	// Timeout is Timeout: how long one write to the client may take.
	Timeout time.Duration
	// KeepAlive is KeepAlive On.
	KeepAlive bool
	// KeepAliveTimeout is how long a connection waits for its next
	// request.
	KeepAliveTimeout time.Duration
	// MaxKeepAliveRequests is the number of requests a connection
	// serves; 0 means no limit.
	MaxKeepAliveRequests int
	// HeaderTimeout, HeaderMaxTimeout and HeaderMinRate are
	// RequestReadTimeout header=T-MAX,MinRate=R: a request head must
	// come within T, each R bytes a second earn a second more, up to MAX.
	HeaderTimeout, HeaderMaxTimeout time.Duration
	HeaderMinRate                   int
	// BodyTimeout and BodyMinRate are RequestReadTimeout
	// body=T,MinRate=R.
	BodyTimeout time.Duration
	BodyMinRate int
	// HandshakeTimeout is RequestReadTimeout handshake=T: the TLS
	// handshake's time; 0 (Apache's default) leaves it to Timeout.
	HandshakeTimeout time.Duration
	// H2Streams is H2MaxSessionStreams: the streams an HTTP/2
	// connection may have open at once (mod_http2's default 100).
	H2Streams int
}

// DefaultClientLimits are Apache 2.4's defaults, mod_reqtimeout's
// header=20-40,MinRate=500 body=20,MinRate=500 among them. Body is 0:
// Apache's 1 GiB default LimitRequestBody does not hold for a request
// mod_proxy forwards (Apache 2.4.71 forwards a body over any
// LimitRequestBody; measured), so none holds here unless the directive
// is given — and then vsgate holds it (413), where Apache does not.
func DefaultClientLimits() ClientLimits {
	return ClientLimits{
		Head: h1.DefaultLimits(), Body: 0, Timeout: 60 * time.Second,
		KeepAlive: true, KeepAliveTimeout: 5 * time.Second, MaxKeepAliveRequests: 100,
		HeaderTimeout: 20 * time.Second, HeaderMaxTimeout: 40 * time.Second, HeaderMinRate: 500,
		BodyTimeout: 20 * time.Second, BodyMinRate: 500, H2Streams: 100,
	}
}

// maxLine bounds LimitRequestLine and LimitRequestFieldSize: a line must
// fit a connection's read buffer.
const maxLine = 65534

// limit parses the limit and timeout directives; handled is false for any
// other directive.
func (p *parser) limit(orig, name string, args []string) (handled bool, err error) {
	l := &p.cfg.Limits
	number := func(lo, hi int64) (int64, error) {
		if len(args) != 1 {
			return 0, p.errf("%s takes one number", orig)
		}
		n, err := strconv.ParseInt(args[0], 10, 64)
		if err != nil || n < lo || n > hi {
			return 0, p.errf("%s %q: write a whole number from %d to %d", orig, args[0], lo, hi)
		}
		return n, nil
	}
	var n int64
	switch name {
	case "limitrequestline":
		if n, err = number(1, maxLine); err == nil {
			l.Head.Line = int(n)
		}
	case "limitrequestfieldsize":
		if n, err = number(1, maxLine); err == nil {
			l.Head.FieldSize = int(n)
		}
	case "limitrequestfields":
		if n, err = number(0, 32767); err == nil {
			l.Head.Fields = int(n)
			if n == 0 {
				l.Head.Fields = math.MaxInt32 // Apache: 0 is no limit
			}
		}
	case "limitrequestbody":
		if n, err = number(0, math.MaxInt32); err == nil {
			l.Body = n
		}
	case "timeout":
		if n, err = number(1, 1<<30); err == nil {
			l.Timeout = time.Duration(n) * time.Second
		}
	case "h2maxsessionstreams":
		if n, err = number(1, 1<<16); err == nil {
			l.H2Streams = int(n)
		}
	case "maxkeepaliverequests":
		if n, err = number(0, 1<<30); err == nil {
			l.MaxKeepAliveRequests = int(n)
		}
	case "keepalive":
		if len(args) != 1 || !strings.EqualFold(args[0], "on") && !strings.EqualFold(args[0], "off") {
			return true, p.errf("KeepAlive takes On or Off")
		}
		l.KeepAlive = strings.EqualFold(args[0], "on")
	case "keepalivetimeout":
		// "KeepAliveTimeout 5" is seconds; "KeepAliveTimeout 500 ms", or
		// "500ms", milliseconds.
		v := strings.Join(args, "")
		unit := time.Second
		if s, ok := strings.CutSuffix(v, "ms"); ok {
			v, unit = s, time.Millisecond
		}
		k, cerr := strconv.Atoi(v)
		if len(args) == 0 || len(args) > 2 || cerr != nil || k <= 0 || k > 1<<30 {
			return true, p.errf("KeepAliveTimeout %q: write a number of seconds, or of milliseconds with ms", strings.Join(args, " "))
		}
		l.KeepAliveTimeout = time.Duration(k) * unit
	case "requestreadtimeout":
		err = p.requestReadTimeout(orig, args)
	default:
		return false, nil
	}
	return true, err
}

// requestReadTimeout parses mod_reqtimeout's
// "handshake=T header=T[-MAX][,MinRate=R] body=T[-MAX][,MinRate=R]"; T 0
// turns the limit off (a handshake's falls back to Timeout).
func (p *parser) requestReadTimeout(orig string, args []string) error {
	l := &p.cfg.Limits
	if len(args) == 0 {
		return p.errf("RequestReadTimeout takes header=... and/or body=...")
	}
	for _, a := range args {
		stage, spec, ok := strings.Cut(strings.ToLower(a), "=")
		if !ok || stage != "header" && stage != "body" && stage != "handshake" {
			return p.errf("RequestReadTimeout %q: write header=T[-MAX][,MinRate=R] or body=...", a)
		}
		times, rate, hasRate := strings.Cut(spec, ",minrate=")
		lo, hi, ranged := strings.Cut(times, "-")
		t, err1 := strconv.Atoi(lo)
		m := t
		var err2 error
		if ranged {
			m, err2 = strconv.Atoi(hi)
		}
		r := 0
		var err3 error
		if hasRate {
			r, err3 = strconv.Atoi(rate)
		}
		if err1 != nil || err2 != nil || err3 != nil || t < 0 || m < t || r < 0 || ranged && !hasRate || hasRate && r == 0 {
			return p.errf("RequestReadTimeout %q: write %s=T, %s=T-MAX,MinRate=R (a range needs MinRate)", a, stage, stage)
		}
		off := time.Duration(1 << 62) // T 0: no limit
		d, dm := time.Duration(t)*time.Second, time.Duration(m)*time.Second
		if t == 0 {
			d, dm, r = off, 0, 0
		}
		switch stage {
		case "header":
			l.HeaderTimeout, l.HeaderMaxTimeout, l.HeaderMinRate = d, dm, r
			if !ranged && hasRate {
				l.HeaderMaxTimeout = 0 // no ceiling
			}
		case "body":
			l.BodyTimeout, l.BodyMinRate = d, r
		case "handshake":
			l.HandshakeTimeout = time.Duration(t) * time.Second
		}
	}
	return nil
}
