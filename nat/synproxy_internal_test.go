package nat

import (
	"testing"
	"time"
)

// TestSipHash checks sipHash against the reference vectors of the SipHash
// paper (key 00..0f, message 00 01 02 ...) for messages of whole words.
func TestSipHash(t *testing.T) {
	k0, k1 := uint64(0x0706050403020100), uint64(0x0f0e0d0c0b0a0908)
	if got := sipHash(k0, k1); got != 0x726fdb47dd0e0e31 {
		t.Errorf("empty message: %#x", got)
	}
	if got := sipHash(k0, k1, 0x0706050403020100); got != 0x93f5f5799a932462 {
		t.Errorf("8 bytes: %#x", got)
	}
	if got := sipHash(k0, k1, 0x0706050403020100, 0x0f0e0d0c0b0a0908); got != 0x3f2acc7f57c29bdb {
		t.Errorf("16 bytes: %#x", got)
	}
}

// TestCookie: a cookie carries its MSS index back for the flow and ISN it
// was made for, in its period and the next; not for another flow, another
// ISN, or once two periods have passed.
func TestCookie(t *testing.T) {
	e, err := New(Config{Capacity: 16})
	if err != nil {
		t.Fatal(err)
	}
	kw := tupleWords{1, 2, 3, 4, 5}
	other := tupleWords{1, 2, 3, 4, 6}
	for mss := range uint32(4) {
		isn := 0xfffffff0 + mss // across the wrap too
		c := e.cookies.Load().cookie(&kw, isn, mss)
		if got, ok := e.cookies.Load().check(&kw, isn, c); !ok || got != mss {
			t.Fatalf("mss %d: check says %d, %v", mss, got, ok)
		}
		if _, ok := e.cookies.Load().check(&other, isn, c); ok {
			t.Fatalf("mss %d: valid for another flow", mss)
		}
		// (An ISN a few below or above moves the MSS index, as in
		// Linux's cookies; one further off fails.)
		if _, ok := e.cookies.Load().check(&kw, isn+100, c); ok {
			t.Fatalf("mss %d: valid for another ISN", mss)
		}
	}
	c := e.cookies.Load().cookie(&kw, 7, 3)
	e.Advance(cookiePeriod)
	if got, ok := e.cookies.Load().check(&kw, 7, c); !ok || got != 3 {
		t.Fatalf("a period later: %d, %v", got, ok)
	}
	if e.cookies.Load().cookie(&kw, 7, 3) == c {
		t.Fatal("the secret did not rotate")
	}
	e.Advance(2*cookiePeriod + time.Second)
	if _, ok := e.cookies.Load().check(&kw, 7, c); ok {
		t.Fatal("valid two periods later")
	}
}

// TestCookieForgery: of a million random cookies for one flow, about as
// many pass as chance allows (4 MSS values of 2^24 in each of 2 periods:
// 2^-21 each), which bounds what a blind ACK flood achieves.
func TestCookieForgery(t *testing.T) {
	e, err := New(Config{Capacity: 16})
	if err != nil {
		t.Fatal(err)
	}
	kw := tupleWords{9, 8, 7, 6, 5}
	k := e.cookies.Load()
	x := uint32(12345)
	passed := 0
	for range 1 << 20 {
		x = x*1664525 + 1013904223
		if _, ok := k.check(&kw, 1000, x); ok {
			passed++
		}
	}
	if passed > 8 {
		t.Fatalf("%d of 2^20 random cookies passed", passed)
	}
}
