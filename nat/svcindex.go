package nat

import (
	"encoding/binary"
	"math/bits"
)

// svcIndex finds a virtual service by (VIP, port, protocol) for the first
// packet of every flow: an open-addressing table, at most half full, whose
// keys are the words the flow key already holds. It replaces a Go map
// lookup, which hashed the 19-byte key with the runtime's generic hash
// (26 ns of a 210 ns new flow, measured); this is a multiply, a masked
// index and a three-word compare. Built once per Update, read-only after.
type svcIndex struct {
	slots []svcSlot
	mask  uint64
}

type svcSlot struct {
	dst   [2]uint64 // the VIP as key words (tupleWords 2 and 3)
	ports uint32    // port << 16 | protocol, as in tupleWords 4's low half
	svc   *service  // nil: empty
}

// newSvcIndex indexes the services.
func newSvcIndex(services map[svcKey]*service) svcIndex {
	n := 8
	for n < 2*len(services) {
		n *= 2
	}
	x := svcIndex{slots: make([]svcSlot, n), mask: uint64(n - 1)}
	for k, svc := range services {
		d0, d1 := binary.LittleEndian.Uint64(k.addr[0:8]), binary.LittleEndian.Uint64(k.addr[8:16])
		ports := uint32(k.port)<<16 | uint32(k.proto)
		i := svcHash(d0, d1, ports) & x.mask
		for x.slots[i].svc != nil {
			i = (i + 1) & x.mask
		}
		x.slots[i] = svcSlot{dst: [2]uint64{d0, d1}, ports: ports, svc: svc}
	}
	return x
}

func svcHash(d0, d1 uint64, ports uint32) uint64 {
	hi, lo := bits.Mul64(d0^d1*0x9e3779b97f4a7c15^uint64(ports), 0xbf58476d1ce4e5b9)
	return hi ^ lo
}

// lookup returns the service of destination words d0, d1 (a flow key's
// words 2 and 3), port and protocol, or nil.
func (x *svcIndex) lookup(d0, d1 uint64, port uint16, proto uint8) *service {
	ports := uint32(port)<<16 | uint32(proto)
	for i := svcHash(d0, d1, ports) & x.mask; ; i = (i + 1) & x.mask {
		s := &x.slots[i]
		if s.svc == nil || s.dst[0] == d0 && s.dst[1] == d1 && s.ports == ports {
			return s.svc
		}
	}
}
