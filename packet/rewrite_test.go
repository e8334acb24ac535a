package packet_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/vsgate/vsgate/packet"
)

// TestRewriteAgreesWithGopacket rewrites seeded random packets in place and
// compares them byte for byte with gopacket's serialization, checksums
// computed from scratch, of the same packet with the new tuple. It covers
// every rewrite: source and destination, ICMP echo identifiers, and the
// packet quoted in ICMP errors together with the error's outer header.
func TestRewriteAgreesWithGopacket(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 3))
	var p, again, inner, innerAgain packet.Parsed
	seen := map[string]int{}
	for i := range oracleCount(t) {
		s := gen(r)
		b := s.serialize()
		if reason := packet.Parse(b, &p); reason != packet.ReasonNone {
			t.Fatalf("packet %d: Parse = %v", i, reason)
		}
		countKinds(seen, s, &p)
		want := s.clone()
		newAddr, newPort := randAddr(r, s.v6), uint16(r.Uint32())
		toDst := r.IntN(2) == 0
		if toDst {
			want.dst = newAddr
			packet.SetDst(b, &p, to16(newAddr), newPort)
		} else {
			want.src = newAddr
			packet.SetSrc(b, &p, to16(newAddr), newPort)
		}
		if p.HasPorts() {
			if toDst {
				want.dport = newPort
			} else {
				want.sport = newPort
			}
		}
		if p.IsICMPEcho() && r.IntN(2) == 0 {
			want.icmpID = uint16(r.Uint32())
			packet.SetICMPID(b, &p, want.icmpID)
		}
		if s.isICMPErr() {
			if reason := packet.ParseICMPError(b, &p, &inner); reason != packet.ReasonNone {
				t.Fatalf("packet %d: ParseICMPError = %v", i, reason)
			}
			// The quote is the reverse direction: rewrite its other end,
			// and sometimes both, as FULLNAT does.
			rewriteQuote(r, b, &p, &inner, want.quote)
		}
		if exp := want.serialize(); !bytes.Equal(b, exp) {
			t.Fatalf("packet %d: rewritten packet differs from gopacket's\n got %x\nwant %x", i, b, exp)
		}
		if err := reparseSame(b, &p, &again, &inner, &innerAgain); err != "" {
			t.Fatalf("packet %d: %s", i, err)
		}
	}
	requireKinds(t, seen, oracleCount(t)/1000)
}

// rewriteQuote changes the quoted packet's source, destination or both
// (address and port, or echo identifier) and records it in q.
func rewriteQuote(r *rand.Rand, b []byte, outer, inner *packet.Parsed, q *spec) {
	which := r.IntN(3)
	if which != 1 {
		a, port := randAddr(r, q.v6), uint16(r.Uint32())
		packet.SetInnerSrc(b, outer, inner, to16(a), port)
		q.src = a
		if inner.HasPorts() {
			q.sport = port
		}
	}
	if which != 0 {
		a, port := randAddr(r, q.v6), uint16(r.Uint32())
		packet.SetInnerDst(b, outer, inner, to16(a), port)
		q.dst = a
		if inner.HasPorts() {
			q.dport = port
		}
	}
	if inner.IsICMPEcho() {
		q.icmpID = uint16(r.Uint32())
		packet.SetInnerICMPID(b, outer, inner, q.icmpID)
	}
}

// reparseSame parses b again and reports how the result differs from p,
// which the rewrites kept up to date; for an ICMP error, also the quote.
func reparseSame(b []byte, p, again, inner, innerAgain *packet.Parsed) string {
	if reason := packet.Parse(b, again); reason != packet.ReasonNone {
		return "re-parse failed: " + reason.String()
	}
	if *again != *p {
		return fmt.Sprintf("re-parse differs from the rewritten Parsed:\n got %+v\nwant %+v", *again, *p)
	}
	if !p.IsICMPError() {
		return ""
	}
	if reason := packet.ParseICMPError(b, again, innerAgain); reason != packet.ReasonNone {
		return "re-parse of the quote failed: " + innerAgain.Reason.String()
	}
	if *innerAgain != *inner {
		return fmt.Sprintf("re-parse of the quote differs:\n got %+v\nwant %+v", *innerAgain, *inner)
	}
	return ""
}
