// Package health checks real servers the way keepalived and HAProxy do: a
// TCP connect or an HTTP GET with an expected status, every interval, with
// a timeout; a server goes down after Fall failures in a row and comes back
// after Rise successes. The gateway turns state changes into scheduler
// updates.
//
// What it must not do: touch the engine or the configuration itself (it
// reports through a callback), or send anything but its probes.
package health

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Spec is how to check one server.
type Spec struct {
	Type     string        // "tcp" (connect) or "http" (GET)
	Interval time.Duration // between probes
	Timeout  time.Duration // per probe
	Rise     int           // successes in a row to come up
	Fall     int           // failures in a row to go down
	Path     string        // http: the path to GET
	Expect   int           // http: the status expected; 0 means any 2xx or 3xx
	Host     string        // http: the Host header; empty means the address
	Port     uint16        // the port to probe; 0 means the server's own
}

// Target is one server to check: Key names it to the caller (a service and
// backend), Addr is where the probe goes.
type Target struct {
	Key  string
	Addr netip.AddrPort
	Spec Spec
}

// Checker runs one prober per target. The zero value is not usable: use New.
// Methods are safe for concurrent use.
type Checker struct {
	onChange func(v Verdict)
	dialer   net.Dialer

	mu      sync.Mutex
	probers map[string]*prober
	// stopped are probers Set cancelled and did not wait for: Close
	// waits for them (done closes when one has returned).
	stopped []*prober
}

type prober struct {
	t      Target
	cancel context.CancelFunc
	done   chan struct{}
	// Guarded by Checker.mu: the state, and the last probe's result and
	// time, and how many probes passed and failed.
	up           bool
	last         string
	lastAt       time.Time
	passed, fail uint64
}

// State is one checked target as the checker sees it now.
type State struct {
	Target
	Up           bool
	Last         string    // the last probe's result: "passed", or why it failed ("" before the first)
	LastAt       time.Time // when it finished (zero before the first)
	Passed, Fail uint64    // probes that passed and failed since the target was set
}

// Verdict is a target's change of state, as a prober saw it.
type Verdict struct {
	Key string
	Up  bool
	Why string // the last probe's result
	// Current reports whether the prober that saw this is still the
	// target's: a verdict may arrive after a Set replaced or removed it,
	// and then it must be ignored. The caller asks under the lock that
	// serialises its own Set calls, so the answer holds while it acts.
	Current func() bool
}

// New returns a checker that calls onChange (from the prober's goroutine)
// whenever a target changes state. onChange may take locks that callers of
// Set hold: Set never waits for a prober.
func New(onChange func(Verdict)) *Checker {
	return &Checker{onChange: onChange, probers: map[string]*prober{}}
}

// Set makes the checked targets exactly ts: new ones start (as up, as
// HAProxy starts servers, so traffic flows until checks say otherwise),
// removed ones stop, changed ones restart with their state kept. It
// cancels the probers it stops without waiting for them (one may be
// delivering a verdict that waits for a lock Set's caller holds); their
// late verdicts are not Current.
func (c *Checker) Set(ts []Target) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setLocked(ts)
}

func (c *Checker) setLocked(ts []Target) {
	running := c.stopped[:0]
	for _, p := range c.stopped {
		select {
		case <-p.done:
		default:
			running = append(running, p)
		}
	}
	clear(c.stopped[len(running):])
	c.stopped = running
	want := map[string]Target{}
	for _, t := range ts {
		want[t.Key] = t
	}
	kept := map[string]bool{}
	for k, p := range c.probers {
		if t, ok := want[k]; !ok || t != p.t {
			p.cancel()
			c.stopped = append(c.stopped, p)
			delete(c.probers, k)
			kept[k] = p.up
		}
	}
	for k, t := range want {
		if _, ok := c.probers[k]; ok {
			continue
		}
		up, ok := kept[k]
		if !ok {
			up = true
		}
		ctx, cancel := context.WithCancel(context.Background())
		p := &prober{t: t, cancel: cancel, done: make(chan struct{}), up: up}
		c.probers[k] = p
		go c.run(ctx, p)
	}
}

// States lists every checked target, in no order.
func (c *Checker) States() []State {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]State, 0, len(c.probers))
	for _, p := range c.probers {
		out = append(out, State{Target: p.t, Up: p.up, Last: p.last, LastAt: p.lastAt, Passed: p.passed, Fail: p.fail})
	}
	return out
}

// Up reports a target's current state (true for unknown targets).
func (c *Checker) Up(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.probers[key]; ok {
		return p.up
	}
	return true
}

// Close stops every prober and waits for them. Its caller must not hold
// a lock onChange takes.
func (c *Checker) Close() {
	c.mu.Lock()
	c.setLocked(nil)
	stopped := c.stopped
	c.stopped = nil
	c.mu.Unlock()
	for _, p := range stopped {
		<-p.done
	}
}

func (c *Checker) run(ctx context.Context, p *prober) {
	defer close(p.done)
	s := p.t.Spec
	rise, fall := max(s.Rise, 1), max(s.Fall, 1)
	interval := max(s.Interval, 10*time.Millisecond)
	okRun, failRun := 0, 0
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		err := c.probe(ctx, p.t)
		if ctx.Err() != nil {
			return
		}
		why := "passed"
		if err == nil {
			okRun, failRun = okRun+1, 0
		} else {
			okRun, failRun = 0, failRun+1
			why = err.Error()
		}
		c.mu.Lock()
		p.last, p.lastAt = why, time.Now()
		if err == nil {
			p.passed++
		} else {
			p.fail++
		}
		was := p.up
		switch {
		case !was && okRun >= rise:
			p.up = true
		case was && failRun >= fall:
			p.up = false
		}
		now := p.up
		c.mu.Unlock()
		if now != was {
			c.onChange(Verdict{Key: p.t.Key, Up: now, Why: why, Current: func() bool {
				c.mu.Lock()
				defer c.mu.Unlock()
				return c.probers[p.t.Key] == p
			}})
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// probe runs one check.
func (c *Checker) probe(ctx context.Context, t Target) error {
	timeout := t.Spec.Timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	addr := t.Addr.String()
	if t.Spec.Type != "http" {
		conn, err := c.dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	path := t.Spec.Path
	if path == "" {
		path = "/"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	if t.Spec.Host != "" {
		req.Host = t.Spec.Host
	}
	tr := &http.Transport{DialContext: c.dialer.DialContext, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch want := t.Spec.Expect; {
	case want == 0 && resp.StatusCode >= 200 && resp.StatusCode < 400:
		return nil
	case resp.StatusCode == want:
		return nil
	}
	return fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
}
