package packet

// IP protocol numbers vsgate treats specially (IANA "Assigned Internet
// Protocol Numbers").
const (
	ProtoICMPv4 = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

// TCP is a view of a TCP header (RFC 9293 §3.1).
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|          Source Port          |       Destination Port        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                        Sequence Number                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Acknowledgment Number                      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Data |       |C|E|U|A|P|R|S|F|                               |
//	| Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
//	|       |       |R|E|G|K|H|T|N|N|                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|           Checksum            |         Urgent Pointer        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Options                    |    Padding    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type TCP []byte

// Offsets of TCP header fields.
const (
	tcpSrcPort     = 0
	tcpDstPort     = 2
	tcpSeq         = 4
	tcpAck         = 8
	tcpDataOffset  = 12
	tcpFlags       = 13
	tcpWindow      = 14
	tcpChecksum    = 16
	tcpUrgent      = 18
	TCPMinimumSize = 20
)

// TCP flags (RFC 9293 §3.1, RFC 3168 for ECE and CWR).
const (
	TCPFlagFIN = 1 << iota
	TCPFlagSYN
	TCPFlagRST
	TCPFlagPSH
	TCPFlagACK
	TCPFlagURG
	TCPFlagECE
	TCPFlagCWR
)

// SrcPort is the source port.
func (h TCP) SrcPort() uint16 { return be16(h[tcpSrcPort:]) }

// DstPort is the destination port.
func (h TCP) DstPort() uint16 { return be16(h[tcpDstPort:]) }

// Seq is the sequence number.
func (h TCP) Seq() uint32 { return be32(h[tcpSeq:]) }

// Ack is the acknowledgment number.
func (h TCP) Ack() uint32 { return be32(h[tcpAck:]) }

// DataOffset is the header length in bytes, options included.
func (h TCP) DataOffset() int { return int(h[tcpDataOffset]>>4) * 4 }

// Flags is the flags byte (TCPFlagFIN ... TCPFlagCWR).
func (h TCP) Flags() uint8 { return h[tcpFlags] }

// Checksum is the checksum field.
func (h TCP) Checksum() uint16 { return be16(h[tcpChecksum:]) }

// Window is the window field, unscaled.
func (h TCP) Window() uint16 { return be16(h[tcpWindow:]) }

// TCP option kinds vsgate reads (RFC 9293 §3.2, RFC 7323).
const (
	tcpOptEnd    = 0
	tcpOptNOP    = 1
	tcpOptWScale = 3
	// TCPMaxWindowScale is the largest shift RFC 7323 §2.3 allows; larger
	// values are taken as 14.
	TCPMaxWindowScale = 14
)

// WindowScale returns the shift of the window scale option (RFC 7323
// §2.2), at most TCPMaxWindowScale, and whether the header carries one.
// It walks the options the data offset covers; a malformed option list
// ends the walk.
func (h TCP) WindowScale() (uint8, bool) {
	var shift uint8
	var ok bool
	h.walkOptions(func(o []byte) bool {
		if o[0] == tcpOptWScale && len(o) == 3 {
			shift, ok = min(o[2], TCPMaxWindowScale), true
			return false
		}
		return true
	})
	return shift, ok
}

// walkOptions calls fn with each option the data offset covers (its
// bytes, kind and length included; never End or NOP) until fn returns
// false. A malformed list ends the walk.
func (h TCP) walkOptions(fn func(opt []byte) bool) {
	if len(h) < TCPMinimumSize {
		return
	}
	opts := h[TCPMinimumSize:min(max(h.DataOffset(), TCPMinimumSize), len(h))]
	for len(opts) > 0 {
		switch opts[0] {
		case tcpOptEnd:
			return
		case tcpOptNOP:
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 || opts[1] < 2 || int(opts[1]) > len(opts) {
			return
		}
		if !fn(opts[:opts[1]]) {
			return
		}
		opts = opts[opts[1]:]
	}
}

// UDP is a view of a UDP header (RFC 768).
//
//	 0      7 8     15 16    23 24    31
//	+--------+--------+--------+--------+
//	|     Source      |   Destination   |
//	|      Port       |      Port       |
//	+--------+--------+--------+--------+
//	|                 |                 |
//	|     Length      |    Checksum     |
//	+--------+--------+--------+--------+
type UDP []byte

// Offsets of UDP header fields.
const (
	udpSrcPort     = 0
	udpDstPort     = 2
	udpLength      = 4
	udpChecksum    = 6
	UDPMinimumSize = 8
)

// SrcPort is the source port.
func (h UDP) SrcPort() uint16 { return be16(h[udpSrcPort:]) }

// DstPort is the destination port.
func (h UDP) DstPort() uint16 { return be16(h[udpDstPort:]) }

// Length is the length field: header plus data.
func (h UDP) Length() uint16 { return be16(h[udpLength:]) }

// Checksum is the checksum field; over IPv4, 0 means "no checksum".
func (h UDP) Checksum() uint16 { return be16(h[udpChecksum:]) }

// ICMP is a view of an ICMPv4 (RFC 792) or ICMPv6 (RFC 4443 §2.1) header.
// Both share the first four bytes; echo messages carry an identifier and a
// sequence number, error messages quote the packet that caused them
// starting at byte 8 (after 4 unused or type-specific bytes).
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     Type      |     Code      |          Checksum             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   Identifier (echo) / unused  | Sequence (echo) / MTU (PTB)   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     Internet header + leading data bytes (errors only)  ...
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type ICMP []byte

// Offsets of ICMP header fields.
const (
	icmpType        = 0
	icmpCode        = 1
	icmpChecksum    = 2
	icmpIdent       = 4
	icmpSeq         = 6
	ICMPMinimumSize = 8 // the quoted packet of an error starts here
)

// ICMPv4 types (RFC 792, RFC 1191) that vsgate handles.
const (
	ICMPv4EchoReply      = 0
	ICMPv4DestUnreach    = 3
	ICMPv4SourceQuench   = 4
	ICMPv4Echo           = 8
	ICMPv4TimeExceeded   = 11
	ICMPv4ParamProblem   = 12
	ICMPv4CodeFragNeeded = 4 // with ICMPv4DestUnreach: path MTU discovery
)

// ICMPv6 types (RFC 4443) that vsgate handles.
const (
	ICMPv6DestUnreach  = 1
	ICMPv6PacketTooBig = 2
	ICMPv6TimeExceeded = 3
	ICMPv6ParamProblem = 4
	ICMPv6EchoRequest  = 128
	ICMPv6EchoReply    = 129
)

// Type is the message type.
func (h ICMP) Type() uint8 { return h[icmpType] }

// Code is the message code.
func (h ICMP) Code() uint8 { return h[icmpCode] }

// Checksum is the checksum field.
func (h ICMP) Checksum() uint16 { return be16(h[icmpChecksum:]) }

// Ident is the echo identifier.
func (h ICMP) Ident() uint16 { return be16(h[icmpIdent:]) }

// isICMPEcho reports whether an ICMP type of the given IP version is an
// echo request or reply (the messages that carry an identifier).
func isICMPEcho(version, typ uint8) bool {
	if version == 4 {
		return typ == ICMPv4Echo || typ == ICMPv4EchoReply
	}
	return typ == ICMPv6EchoRequest || typ == ICMPv6EchoReply
}

// IsICMPError reports whether an ICMP type of the given IP version is an
// error that quotes the offending packet and so must be translated with the
// flow it belongs to (the set Linux conntrack treats as related).
func IsICMPError(version, typ uint8) bool {
	if version == 4 {
		return typ == ICMPv4DestUnreach || typ == ICMPv4SourceQuench ||
			typ == ICMPv4TimeExceeded || typ == ICMPv4ParamProblem
	}
	return typ >= ICMPv6DestUnreach && typ <= ICMPv6ParamProblem
}
