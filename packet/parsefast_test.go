package packet

import (
	"math/rand/v2"
	"testing"
)

// TestParseFastMatchesGeneral: on packets of the kind the fast path takes,
// and on random mutations of them, parse (fast path first) and the general
// parser agree field for field.
func TestParseFastMatchesGeneral(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 7))
	var fast, general Parsed
	took := 0
	for i := range 200000 {
		b := make([]byte, 20+r.IntN(120))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		// Make most of them plausible: a version, lengths that fit, TCP or UDP.
		if r.IntN(2) == 0 {
			b[0], b[6], b[7], b[9] = 0x45, 0, 0, []byte{6, 17}[r.IntN(2)]
			b[2], b[3] = byte(len(b)>>8), byte(len(b)-r.IntN(4))
		} else if len(b) >= 48 {
			b[0], b[6] = 0x60, []byte{6, 17}[r.IntN(2)]
			pl := len(b) - 40 - r.IntN(4)
			b[4], b[5] = byte(pl>>8), byte(pl)
		}
		if i%3 == 0 && len(b) >= 60 { // a sane TCP data offset / UDP length
			l4 := 20
			if b[0]>>4 == 6 {
				l4 = 40
			}
			b[l4+12] = 0x50
			b[l4+4], b[l4+5] = 0, 8
		}
		fast, general = Parsed{Reason: 99}, Parsed{Reason: 99}
		fast.parse(b)
		general.parseGeneral(b)
		if general.Reason == ReasonNone && general.HasPorts() && !general.IsFragment() &&
			general.L4Off == map[uint8]int{4: 20, 6: 40}[general.Version] {
			took++ // a packet of the kind the fast path takes
		}
		if fast != general {
			t.Fatalf("packet %d %x:\nfast    %+v\ngeneral %+v", i, b, fast, general)
		}
	}
	if took < 10000 {
		t.Fatalf("only %d packets of the fast path's kind: the test does not exercise it", took)
	}
}
