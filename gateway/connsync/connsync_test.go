package connsync

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

var key = []byte("0123456789abcdef-shared")

func records() []nat.SyncFlow {
	return []nat.SyncFlow{
		{Proto: packet.ProtoTCP, State: 1, OrigSrc: netip.MustParseAddrPort("198.18.0.2:40000"), OrigDst: netip.MustParseAddrPort("198.18.0.10:80"),
			ReplySrc: netip.MustParseAddrPort("198.18.2.11:80"), ReplyDst: netip.MustParseAddrPort("198.18.0.30:12345")},
		{Proto: packet.ProtoUDP, State: nat.SyncUDP, OrigSrc: netip.MustParseAddrPort("[2001:db8::2]:5353"), OrigDst: netip.MustParseAddrPort("[2001:db8::10]:53"),
			ReplySrc: netip.MustParseAddrPort("[2001:db8:2::11]:53"), ReplyDst: netip.MustParseAddrPort("[2001:db8::2]:5353")},
	}
}

// TestWire: a datagram decodes to what was encoded; any byte changed, a
// byte missing or another key makes it refused, with the reason.
func TestWire(t *testing.T) {
	h := Header{Sender: 42, Seq: 7, Millis: 1234567}
	b := Encode(nil, key, h, records())
	if len(b) != headerLen+2*recordLen+macLen {
		t.Fatalf("datagram of %d bytes", len(b))
	}
	gh, got, err := Decode(b, key, nil)
	if err != nil || gh != h || !reflect.DeepEqual(got, records()) {
		t.Fatalf("Decode = %+v %+v %v", gh, got, err)
	}
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		if _, _, err := Decode(c, key, nil); err == nil {
			t.Fatalf("byte %d changed: accepted", i)
		}
	}
	if _, _, err := Decode(b[:len(b)-1], key, nil); err == nil {
		t.Error("a byte short: accepted")
	}
	if _, _, err := Decode(b, []byte("another key of 16+ bytes"), nil); err != ErrMAC {
		t.Errorf("another key: %v, want %v", err, ErrMAC)
	}
	full := make([]nat.SyncFlow, MaxRecords)
	for i := range full {
		full[i] = records()[i%2]
	}
	if b := Encode(nil, key, h, full); len(b) > MaxDatagram {
		t.Errorf("a full datagram is %d bytes, over %d", len(b), MaxDatagram)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(nil, key, Header{Sender: 1, Seq: 1}, records()))
	f.Add([]byte("VSGS\x01\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, recs, err := Decode(b, key, nil)
		if err != nil {
			return
		}
		if again := Encode(nil, key, h, recs); !bytes.Equal(again, b) {
			t.Fatalf("decoded and encoded again differs:\n%x\n%x", b, again)
		}
	})
}

// engine is a gateway's engine: a NAT service on 198.18.0.10:80 over two
// real servers.
func engine(t *testing.T) *nat.Engine {
	t.Helper()
	e, err := nat.New(nat.Config{Capacity: 256, Services: []nat.Service{{Proto: packet.ProtoTCP, VIP: netip.MustParseAddr("198.18.0.10"), Port: 80,
		Scheduler: "rr", Sloppy: true, SynProxy: nat.SynProxyOff,
		Backends: []nat.Backend{{Addr: netip.MustParseAddr("198.18.2.11"), Port: 80, Weight: 1}, {Addr: netip.MustParseAddr("198.18.2.12"), Port: 80, Weight: 1}}}}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func freeUDP(t *testing.T, ip string) netip.AddrPort {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// eventually polls cond for up to 10 s (a bound on a hang, not a speed
// goal).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// syn is a TCP SYN from src to dst (IPv4), checksums computed.
func syn(src, dst netip.AddrPort) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: 1, SYN: true, Window: 65535}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, tcp); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// TestDaemons: two gateways' daemons on loopback: the flows one makes
// reach the other; a datagram sent again, one under another key, one
// from an address that is no peer and one too old are refused and
// counted; over its rate a daemon drops datagrams and counts them.
func TestDaemons(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ea, eb := engine(t), engine(t)
	la, lb, ld := freeUDP(t, "127.0.0.1"), freeUDP(t, "127.0.0.1"), freeUDP(t, "127.0.0.1")
	da, err := Start(Config{Listen: la, Peers: []netip.AddrPort{lb, ld}, Key: key, Master: true, Backup: true}, ea, log)
	if err != nil {
		t.Fatal(err)
	}
	defer da.Close()
	db, err := Start(Config{Listen: lb, Peers: []netip.AddrPort{la}, Key: key, Master: true, Backup: true}, eb, log)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	wa := ea.NewWorker()
	vip := netip.MustParseAddrPort("198.18.0.10:80")
	for i := range 40 {
		v := []nat.Verdict{0}
		wa.Process([][]byte{syn(netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(100 + i)}), 40000), vip)}, v)
		if v[0] != nat.Forward {
			t.Fatalf("SYN %d: %v", i, v[0])
		}
	}
	eventually(t, "B to import A's 40 flows", func() bool { return db.Stats().Imported == 40 && eb.Flows() == 40 })
	// A counts what it sent after the send: B may have it first.
	eventually(t, "A to count 40 records sent", func() bool {
		s := da.Stats()
		return s.SentRecords >= 40 && s.SentDatagrams >= 3
	})

	// A gateway that starts now asks for the flows and gets them at
	// once, not at A's next refresh (10 s away).
	ed := engine(t)
	dd, err := Start(Config{Listen: ld, Peers: []netip.AddrPort{la}, Key: key, Backup: true}, ed, log)
	if err != nil {
		t.Fatal(err)
	}
	defer dd.Close()
	if !dd.WaitDumps(5 * time.Second) {
		t.Fatal("the new gateway's peer did not send its flows")
	}
	if n := ed.Flows(); n != 40 {
		t.Errorf("the new gateway has %d flows after its peer's dump, want 40", n)
	}

	// A forger on a peer's address: another key, an old datagram, a
	// datagram again.
	forger, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(la.Addr(), 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer forger.Close()
	now := time.Now().UnixMilli()
	sendTo := func(c *net.UDPConn, b []byte) {
		if _, err := c.WriteToUDPAddrPort(b, lb); err != nil {
			t.Fatal(err)
		}
	}
	good := Encode(nil, key, Header{Sender: 99, Seq: 5, Millis: now}, records()[1:])
	sendTo(forger, good)
	sendTo(forger, good)
	sendTo(forger, Encode(nil, []byte("not the shared key at all"), Header{Sender: 99, Seq: 6, Millis: now}, records()[:1]))
	sendTo(forger, Encode(nil, key, Header{Sender: 99, Seq: 7, Millis: now - time.Hour.Milliseconds()}, records()[:1]))
	stranger, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.2:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	sendTo(stranger, Encode(nil, key, Header{Sender: 98, Seq: 1, Millis: now}, records()[:1]))
	eventually(t, "the forgeries refused", func() bool {
		r := db.Stats().Rejected
		return r[reasonReplay] == 1 && r[ErrMAC.Error()] == 1 && r[reasonStale] == 1 && r[reasonNotPeer] == 1
	})
	// The one good datagram's record names a service B has not (UDP,
	// IPv6): refused.
	if r := db.Stats().Rejected; r[reasonNoService] != 1 {
		t.Errorf("rejected %v: want the record of no service here counted", r)
	}

	// Over the rate: a daemon allowed one datagram a second.
	ec := engine(t)
	lc := freeUDP(t, "127.0.0.1")
	dc, err := Start(Config{Listen: lc, Peers: []netip.AddrPort{lb}, Key: key, Master: true, Rate: 1}, ec, log)
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	wc := ec.NewWorker()
	for i := range 200 {
		v := []nat.Verdict{0}
		wc.Process([][]byte{syn(netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 1, byte(i)}), 40000), vip)}, v)
	}
	eventually(t, "datagrams over the rate dropped", func() bool { return dc.Stats().RateLimited > 0 })
}

// TestFlush: a worker's notes go out when Flush is called, not at the
// next tick (an hour away here), and the peer takes them; the sender
// listens on [::] (a dual-stack socket), its IPv4 peer reached at its
// mapped address.
func TestFlush(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ea, eb := engine(t), engine(t)
	la, lb := freeUDP(t, "::"), freeUDP(t, "127.0.0.1")
	da, err := Start(Config{Listen: la, Peers: []netip.AddrPort{lb}, Key: key, Master: true, Interval: time.Hour, Refresh: time.Hour}, ea, log)
	if err != nil {
		t.Fatal(err)
	}
	defer da.Close()
	db, err := Start(Config{Listen: lb, Peers: []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), la.Port())}, Key: key, Backup: true}, eb, log)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	wa := ea.NewWorker()
	if wa.SyncPending() {
		t.Fatal("a worker that noted nothing has notes pending")
	}
	v := []nat.Verdict{0}
	wa.Process([][]byte{syn(netip.MustParseAddrPort("198.18.0.100:40000"), netip.MustParseAddrPort("198.18.0.10:80"))}, v)
	if v[0] != nat.Forward || !wa.SyncPending() {
		t.Fatalf("SYN: %v, notes pending %v: want Forward and a note", v[0], wa.SyncPending())
	}
	da.Flush()
	if wa.SyncPending() {
		t.Error("notes still pending after Flush")
	}
	eventually(t, "B to import the flushed flow", func() bool { return db.Stats().Imported == 1 && eb.Flows() == 1 })
	if s := da.Stats(); s.SentDatagrams != 1 || s.SentRecords != 1 {
		t.Errorf("sent %d datagrams, %d records: want the one flushed", s.SentDatagrams, s.SentRecords)
	}
}

func TestKeyTooShort(t *testing.T) {
	if _, err := Start(Config{Key: []byte("short")}, engine(t), slog.Default()); err != ErrKeyLength {
		t.Fatalf("a 5-byte key: %v", err)
	}
}

// TestNewer: a peer's datagram is taken when it follows the newest one
// from that peer: the same sender's later sequence number, or a sender
// that started since; not one of the sender it was before.
func TestNewer(t *testing.T) {
	last := Header{Sender: 1, Seq: 10, Millis: 5000}
	for _, c := range []struct {
		h    Header
		want bool
	}{
		{Header{Sender: 1, Seq: 11, Millis: 5001}, true},
		{Header{Sender: 1, Seq: 10, Millis: 5002}, false},
		{Header{Sender: 1, Seq: 9, Millis: 5003}, false},
		{Header{Sender: 2, Seq: 1, Millis: 6000}, true},   // restarted
		{Header{Sender: 2, Seq: 50, Millis: 4000}, false}, // a sender it was before
	} {
		if got := newer(c.h, last); got != c.want {
			t.Errorf("newer(%+v, %+v) = %t", c.h, last, got)
		}
	}
}
