package connsync

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/vsgate/vsgate/nat"
)

// The datagram: header, records, MAC.
//
//	0   4  magic "VSGS"
//	4   1  version (1)
//	5   1  record count
//	6   1  flags: FlagHello, FlagDumpEnd
//	7   1  zero
//	8   8  sender id (random, chosen when the sender starts)
//	16  8  sequence number (per sender id, from 1)
//	24  8  sender's clock, Unix milliseconds
//	32  76 × count records
//	..  32 HMAC-SHA-256 of everything before it
//
// A record: proto (1), state (1), zero (2), then OrigSrc, OrigDst,
// ReplySrc, ReplyDst, each 16 bytes of address (IPv4 as IPv4-mapped
// IPv6) and 2 of port, big-endian.
const (
	headerLen  = 32
	recordLen  = 4 + 4*18
	macLen     = sha256.Size
	MaxRecords = (MaxDatagram - headerLen - macLen) / recordLen
	// MaxDatagram keeps a datagram under a 1,500-byte MTU with IPv6 and
	// UDP headers.
	MaxDatagram = 1400
	version     = 1
)

var magic = [4]byte{'V', 'S', 'G', 'S'}

// Header is a datagram's header.
type Header struct {
	Sender uint64
	Seq    uint64
	Millis int64 // the sender's clock, Unix milliseconds
	Flags  uint8
}

// Header flags.
const (
	// FlagHello: the sender has just started and asks for every flow.
	FlagHello = 1 << iota
	// FlagDumpEnd: the sender has sent every flow it has (its refresh is
	// done), up to this datagram.
	FlagDumpEnd
	knownFlags = FlagHello | FlagDumpEnd
)

// Why a datagram is refused (Decode's errors; the receiver counts them by
// these names).
var (
	ErrShort     = errors.New("short")
	ErrMagic     = errors.New("not_sync")
	ErrVersion   = errors.New("version")
	ErrLength    = errors.New("length")
	ErrMAC       = errors.New("bad_mac")
	ErrRecord    = errors.New("bad_record")
	ErrKeyLength = errors.New("connsync: the key must be at least 16 bytes")
)

// Encode appends a datagram of h and recs (at most MaxRecords) to dst,
// authenticated with key.
func Encode(dst []byte, key []byte, h Header, recs []nat.SyncFlow) []byte {
	start := len(dst)
	dst = append(dst, magic[:]...)
	dst = append(dst, version, byte(len(recs)), h.Flags, 0)
	dst = binary.BigEndian.AppendUint64(dst, h.Sender)
	dst = binary.BigEndian.AppendUint64(dst, h.Seq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.Millis))
	for _, r := range recs {
		dst = append(dst, r.Proto, r.State, 0, 0)
		for _, ap := range []netip.AddrPort{r.OrigSrc, r.OrigDst, r.ReplySrc, r.ReplyDst} {
			a := ap.Addr().As16()
			dst = append(dst, a[:]...)
			dst = binary.BigEndian.AppendUint16(dst, ap.Port())
		}
	}
	m := hmac.New(sha256.New, key)
	m.Write(dst[start:])
	return m.Sum(dst)
}

// Decode checks datagram b's form and MAC under key and returns its
// header and records (appended to recs). It never panics on any input.
func Decode(b []byte, key []byte, recs []nat.SyncFlow) (Header, []nat.SyncFlow, error) {
	var h Header
	switch {
	case len(b) < headerLen+macLen:
		return h, recs, ErrShort
	case [4]byte(b[:4]) != magic:
		return h, recs, ErrMagic
	case b[4] != version:
		return h, recs, ErrVersion
	}
	n := int(b[5])
	if len(b) != headerLen+n*recordLen+macLen || b[6]&^knownFlags != 0 || b[7] != 0 {
		return h, recs, ErrLength
	}
	body := b[:len(b)-macLen]
	m := hmac.New(sha256.New, key)
	m.Write(body)
	if !hmac.Equal(m.Sum(nil), b[len(body):]) {
		return h, recs, ErrMAC
	}
	h = Header{Sender: binary.BigEndian.Uint64(b[8:]), Seq: binary.BigEndian.Uint64(b[16:]), Millis: int64(binary.BigEndian.Uint64(b[24:])), Flags: b[6]}
	for i := range n {
		r := body[headerLen+i*recordLen:][:recordLen]
		if r[2] != 0 || r[3] != 0 {
			return h, recs, ErrRecord
		}
		f := nat.SyncFlow{Proto: r[0], State: r[1]}
		aps := [4]*netip.AddrPort{&f.OrigSrc, &f.OrigDst, &f.ReplySrc, &f.ReplyDst}
		for j, ap := range aps {
			o := 4 + j*18
			*ap = netip.AddrPortFrom(netip.AddrFrom16([16]byte(r[o:o+16])).Unmap(), binary.BigEndian.Uint16(r[o+16:]))
		}
		recs = append(recs, f)
	}
	return h, recs, nil
}
