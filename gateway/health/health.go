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
	onChange func(key string, up bool, why string)
	dialer   net.Dialer

	mu      sync.Mutex
	probers map[string]*prober
}

type prober struct {
	t      Target
	cancel context.CancelFunc
	done   chan struct{}
	up     bool
}

// New returns a checker that calls onChange (from the prober's goroutine)
// whenever a target changes state, with the reason of the last probe.
func New(onChange func(key string, up bool, why string)) *Checker {
	return &Checker{onChange: onChange, probers: map[string]*prober{}}
}

// Set makes the checked targets exactly ts: new ones start (as up, as
// HAProxy starts servers, so traffic flows until checks say otherwise),
// removed ones stop, changed ones restart with their state kept.
func (c *Checker) Set(ts []Target) {
	c.mu.Lock()
	defer c.mu.Unlock()
	want := map[string]Target{}
	for _, t := range ts {
		want[t.Key] = t
	}
	for k, p := range c.probers {
		if t, ok := want[k]; !ok || t != p.t {
			p.stop()
			delete(c.probers, k)
		}
	}
	for k, t := range want {
		if _, ok := c.probers[k]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		p := &prober{t: t, cancel: cancel, done: make(chan struct{}), up: true}
		c.probers[k] = p
		go c.run(ctx, p)
	}
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

// Close stops every prober and waits for them.
func (c *Checker) Close() {
	c.Set(nil)
}

func (p *prober) stop() {
	p.cancel()
	<-p.done
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
		if err == nil {
			okRun, failRun = okRun+1, 0
		} else {
			okRun, failRun = 0, failRun+1
		}
		c.mu.Lock()
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
			why := "passed"
			if err != nil {
				why = err.Error()
			}
			c.onChange(p.t.Key, now, why)
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
