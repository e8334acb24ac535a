package health

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type event struct {
	key string
	up  bool
}

// waitEvent waits for the next state change (the test's bound is generous:
// it waits for behaviour, it does not time it).
func waitEvent(t *testing.T, ch <-chan event) event {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no state change")
	}
	return event{}
}

// TestTCPCheck: a listener that goes away takes its target down after Fall
// failures; listening again brings it up after Rise successes.
func TestTCPCheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(ln.Addr().String())
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	ch := make(chan event, 10)
	c := New(func(v Verdict) { ch <- event{v.Key, v.Up} })
	defer c.Close()
	spec := Spec{Type: "tcp", Interval: 20 * time.Millisecond, Timeout: 200 * time.Millisecond, Rise: 2, Fall: 2}
	c.Set([]Target{{Key: "b1", Addr: addr, Spec: spec}})
	if !c.Up("b1") {
		t.Fatal("a new target starts down")
	}
	ln.Close()
	if e := waitEvent(t, ch); e.up || e.key != "b1" {
		t.Fatalf("got %+v, want b1 down", e)
	}
	if st := c.States(); len(st) != 1 || st[0].Key != "b1" || st[0].Addr != addr || st[0].Up || st[0].Fail < 2 ||
		st[0].Last == "passed" || st[0].Last == "" || st[0].LastAt.IsZero() {
		t.Fatalf("States after b1 went down: %+v", st)
	}
	ln2, err := net.Listen("tcp", addr.String())
	if err != nil {
		t.Skipf("cannot listen again on %v: %v", addr, err)
	}
	defer ln2.Close()
	go func() {
		for {
			c, err := ln2.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if e := waitEvent(t, ch); !e.up {
		t.Fatalf("got %+v, want up", e)
	}
	if !c.Up("b1") {
		t.Fatal("Up disagrees with the event")
	}
	if st := c.States(); len(st) != 1 || !st[0].Up || st[0].Passed < 2 || st[0].Last != "passed" {
		t.Fatalf("States after b1 came back: %+v", st)
	}
}

// TestHTTPCheck: the expected status keeps a server up (no events over
// several probes); 503s take it down; 200 brings it back.
func TestHTTPCheck(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path != "/health" {
			w.WriteHeader(404)
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	addr := netip.MustParseAddrPort(srv.Listener.Addr().String())
	ch := make(chan event, 10)
	c := New(func(v Verdict) { ch <- event{v.Key, v.Up} })
	defer c.Close()
	c.Set([]Target{{Key: "web", Addr: addr, Spec: Spec{Type: "http", Path: "/health", Expect: 200,
		Interval: 20 * time.Millisecond, Timeout: time.Second, Rise: 1, Fall: 3}}})
	for hits.Load() < 5 {
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case e := <-ch:
		t.Fatalf("state changed while healthy: %+v", e)
	default:
	}
	status.Store(503)
	if e := waitEvent(t, ch); e.up {
		t.Fatalf("got %+v after 503s", e)
	}
	status.Store(200)
	if e := waitEvent(t, ch); !e.up {
		t.Fatalf("got %+v after recovery", e)
	}
	c.Set(nil)
	if n := hits.Load(); n == 0 {
		t.Fatal("no probes")
	}
}

// TestSetNeverWaitsForAProber: a verdict on its way to a caller that holds
// a lock (the gateway applies verdicts under the lock its reloads hold
// while they call Set) does not stop Set from returning, and once Set has
// replaced the prober the verdict is no longer Current.
func TestSetNeverWaitsForAProber(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close() // nothing listens: the first probe fails
	var mu sync.Mutex
	entered := make(chan Verdict, 1)
	applied := make(chan bool, 1)
	c := New(func(v Verdict) {
		entered <- v
		mu.Lock() // as the gateway's healthChanged takes its lock
		applied <- v.Current()
		mu.Unlock()
	})
	mu.Lock()
	c.Set([]Target{{Key: "b1", Addr: addr, Spec: Spec{Type: "tcp", Interval: 10 * time.Millisecond, Timeout: 100 * time.Millisecond, Rise: 1, Fall: 1}}})
	var v Verdict
	select {
	case v = <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no verdict for a server nobody listens for")
	}
	if v.Up || !v.Current() {
		t.Fatalf("verdict %+v (current %v), want down and current", v, v.Current())
	}
	returned := make(chan struct{})
	go func() {
		c.Set(nil) // with mu held, as a reload holds the gateway's lock
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("Set waited for a prober that waits for the lock Set's caller holds: deadlock")
	}
	mu.Unlock()
	if <-applied {
		t.Fatal("a verdict from a prober Set removed is still Current")
	}
	c.Close() // waits for the stopped prober, which can finish now
}
