package proxy

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		done <- c
	}()
	ca, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cb := <-done
	if cb == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { ca.Close(); cb.Close() })
	return ca.(*net.TCPConn), cb.(*net.TCPConn)
}

// A sock moves a stream larger than the socket buffers both ways intact
// (its writes wait for room), reads io.EOF at the peer's close and times
// out at the connection's deadline.
func TestSock(t *testing.T) {
	a, b := tcpPair(t)
	sa, sb := newSock(a), newSock(b)
	if sa == nil || sb == nil {
		t.Fatal("no raw access to a TCP connection")
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	want := sha256.Sum256(data)
	go func() {
		n, err := sa.Write(data)
		if n != len(data) || err != nil {
			t.Errorf("write: %d of %d, %v", n, len(data), err)
		}
		a.CloseWrite()
	}()
	h := sha256.New()
	buf := make([]byte, 1000)
	var total int
	for {
		n, err := sb.Read(buf)
		h.Write(buf[:n])
		total += n
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read after %d bytes: %v", total, err)
		}
	}
	if total != len(data) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("read %d bytes, want %d with the same digest", total, len(data))
	}

	_, b2 := tcpPair(t)
	s2 := newSock(b2)
	b2.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := s2.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want a deadline error", err)
	}
	var ne net.Error
	if _, err := s2.Read(buf); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v, want a net.Error that is a timeout", err)
	}
}

// A write to a connection the peer reset fails with an *net.OpError whose
// text names the errno, as stale needs.
func TestSockWriteReset(t *testing.T) {
	a, b := tcpPair(t)
	b.SetLinger(0)
	b.Close() // RST
	s := newSock(a)
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = s.Write([]byte("x"))
		time.Sleep(time.Millisecond)
	}
	if err == nil || !stale(err) {
		t.Fatalf("write after the peer's reset: %v, want a stale-connection error", err)
	}
}

// fakeDeadlineConn records the deadlines set on it.
type fakeDeadlineConn struct {
	net.Conn
	reads, writes []time.Time
}

func (f *fakeDeadlineConn) SetReadDeadline(t time.Time) error {
	f.reads = append(f.reads, t)
	return nil
}

func (f *fakeDeadlineConn) SetWriteDeadline(t time.Time) error {
	f.writes = append(f.writes, t)
	return nil
}

// deadlines sets a timeout of d to end between d and d+slack(d) after the
// call, never sooner, and moves the connection's deadline only when the
// one set would end outside that.
func TestDeadlines(t *testing.T) {
	fc := &fakeDeadlineConn{}
	dl := deadlines{c: fc}
	now := time.Unix(1000, 0)
	d := 5 * time.Second // slack 78.125 ms
	dl.setRead(now, d)
	if len(fc.reads) != 1 || fc.reads[0] != now.Add(d+slack(d)) {
		t.Fatalf("first setRead set %v, want one deadline at now+d+slack", fc.reads)
	}
	for step := time.Duration(0); step <= slack(d); step += 10 * time.Millisecond {
		dl.setRead(now.Add(step), d)
	}
	if len(fc.reads) != 1 {
		t.Fatalf("setRead within the slack moved the deadline: %v", fc.reads)
	}
	later := now.Add(slack(d) + time.Millisecond)
	dl.setRead(later, d)
	if len(fc.reads) != 2 || fc.reads[1] != later.Add(d+slack(d)) {
		t.Fatalf("setRead past the slack set %v, want a second deadline at later+d+slack", fc.reads)
	}
	// A shorter timeout than the one set moves it at once (never late by
	// more than the slack).
	dl.setRead(later, time.Second)
	if len(fc.reads) != 3 || fc.reads[2] != later.Add(time.Second+slack(time.Second)) {
		t.Fatalf("a shorter timeout set %v", fc.reads)
	}
	// Exact deadlines and clear go through, once each.
	at := now.Add(time.Hour)
	dl.setReadAt(at)
	dl.setReadAt(at)
	dl.clear()
	dl.clear()
	if len(fc.reads) != 5 || fc.reads[3] != at || !fc.reads[4].IsZero() {
		t.Fatalf("setReadAt and clear set %v", fc.reads)
	}
	if len(fc.writes) != 0 {
		t.Fatalf("clear with no write deadline set one: %v", fc.writes)
	}
	dl.setWrite(now, d)
	dl.setWrite(now.Add(time.Millisecond), d)
	if len(fc.writes) != 1 || fc.writes[0] != now.Add(d+slack(d)) {
		t.Fatalf("setWrite set %v", fc.writes)
	}
}
