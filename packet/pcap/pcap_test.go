package pcap

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/vsgate/vsgate/internal/netlab/labtest"
)

// udp builds a raw IP packet (no link header) with gopacket.
func udp(tb testing.TB, src, dst string, payload []byte) []byte {
	tb.Helper()
	s, d := net.ParseIP(src), net.ParseIP(dst)
	u := &layers.UDP{SrcPort: 1000, DstPort: 4000}
	var ip gopacket.SerializableLayer
	if s.To4() != nil {
		ip4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: s, DstIP: d}
		u.SetNetworkLayerForChecksum(ip4)
		ip = ip4
	} else {
		ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: s, DstIP: d}
		u.SetNetworkLayerForChecksum(ip6)
		ip = ip6
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		ip, u, gopacket.Payload(payload)); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

type rec struct {
	t   time.Time
	pkt []byte
	dir Direction
}

func samples(tb testing.TB) []rec {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 123456000, time.UTC)
	return []rec{
		{t0, udp(tb, "198.18.0.2", "198.18.0.10", []byte("query")), In},
		{t0.Add(time.Millisecond), udp(tb, "198.18.0.20", "198.18.2.11", []byte("query")), Out},
		{t0.Add(2 * time.Millisecond), udp(tb, "2001:db8::2", "2001:db8::10", []byte("query6")), In},
		{t0.Add(3 * time.Millisecond), udp(tb, "2001:db8:2::11", "2001:db8::2", bytes.Repeat([]byte{'x'}, 300)), Out},
	}
}

// TestRoundTrip writes packets, reads them back with pcapgo and decodes
// the cooked header with gopacket.
func TestRoundTrip(t *testing.T) {
	const snaplen = 200 // cuts the last sample
	var out bytes.Buffer
	var w Writer
	if w.Enabled() {
		t.Fatal("zero Writer is enabled")
	}
	if err := w.Start(&out, snaplen); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(&out, snaplen); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Start: %v, want ErrRunning", err)
	}
	if !w.Enabled() {
		t.Fatal("not enabled after Start")
	}
	in := samples(t)
	for _, r := range in {
		w.WritePacket(r.t, r.pkt, r.dir)
	}
	if n, err := w.Stop(); n != uint64(len(in)) || err != nil {
		t.Fatalf("Stop = %d, %v", n, err)
	}
	w.WritePacket(time.Now(), in[0].pkt, In) // stopped: ignored
	if w.Enabled() {
		t.Fatal("enabled after Stop")
	}

	r, err := pcapgo.NewReader(&out)
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != layers.LinkTypeLinuxSLL || r.Snaplen() != snaplen {
		t.Fatalf("link type %v, snaplen %d", r.LinkType(), r.Snaplen())
	}
	for i, want := range in {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if !ci.Timestamp.Equal(want.t) || ci.Length != sllLen+len(want.pkt) || ci.CaptureLength != len(data) {
			t.Errorf("packet %d: %+v, want time %v length %d", i, ci, want.t, sllLen+len(want.pkt))
		}
		p := gopacket.NewPacket(data, layers.LayerTypeLinuxSLL, gopacket.Default)
		sll, _ := p.Layer(layers.LayerTypeLinuxSLL).(*layers.LinuxSLL)
		if sll == nil {
			t.Fatalf("packet %d: no cooked header: %v", i, p)
		}
		wantType, wantProto := layers.LinuxSLLPacketTypeHost, layers.EthernetTypeIPv4
		if want.dir == Out {
			wantType = layers.LinuxSLLPacketTypeOutgoing
		}
		if want.pkt[0]>>4 == 6 {
			wantProto = layers.EthernetTypeIPv6
		}
		if sll.PacketType != wantType || sll.EthernetType != wantProto || sll.AddrType != arphrdNone {
			t.Errorf("packet %d: cooked header %v %v %d", i, sll.PacketType, sll.EthernetType, sll.AddrType)
		}
		wantData := want.pkt[:min(len(want.pkt), snaplen-sllLen)]
		if !bytes.Equal(data[sllLen:], wantData) {
			t.Errorf("packet %d: bytes differ:\n got %x\nwant %x", i, data[sllLen:], wantData)
		}
		if len(wantData) == len(want.pkt) && p.Layer(layers.LayerTypeUDP) == nil {
			t.Errorf("packet %d: gopacket finds no UDP: %v", i, p)
		}
	}
	if _, _, err := r.ReadPacketData(); err != io.EOF {
		t.Errorf("after the last packet: %v, want EOF", err)
	}
}

// TestTcpdump checks that tcpdump reads the file, directions included.
func TestTcpdump(t *testing.T) {
	tcpdump := labtest.Tool(t, "tcpdump", "tcpdump")
	file := filepath.Join(t.TempDir(), "c.pcap")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	var w Writer
	if err := w.Start(f, 0); err != nil {
		t.Fatal(err)
	}
	in := samples(t)
	for _, r := range in {
		w.WritePacket(r.t, r.pkt, r.dir)
	}
	if _, err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		flags string
		want  []string
	}{
		{"-nr", []string{
			" IP 198.18.0.2.1000 > 198.18.0.10.4000: UDP, length 5",
			" IP 198.18.0.20.1000 > 198.18.2.11.4000: UDP, length 5",
			" IP6 2001:db8::2.1000 > 2001:db8::10.4000: UDP, length 6",
			" IP6 2001:db8:2::11.1000 > 2001:db8::2.4000: UDP, length 300",
		}},
		{"-enr", []string{ // -e shows the direction
			" In ethertype IPv4 (0x0800), length 49: 198.18.0.2.1000 > 198.18.0.10.4000: UDP",
			"Out ethertype IPv4 (0x0800), length 49: 198.18.0.20.1000 > 198.18.2.11.4000: UDP",
			" In ethertype IPv6 (0x86dd), length 70: 2001:db8::2.1000 > 2001:db8::10.4000: UDP",
			"Out ethertype IPv6 (0x86dd), length 364: 2001:db8:2::11.1000 > 2001:db8::2.4000: UDP",
		}},
	} {
		cmd := exec.Command(tcpdump, c.flags, file)
		cmd.Env = append(os.Environ(), "TZ=UTC")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("tcpdump %s: %v\n%s", c.flags, err, stderr.Bytes())
		}
		t.Logf("tcpdump %s:\n%s", c.flags, out)
		if n := strings.Count(string(out), "\n"); n != len(in) {
			t.Errorf("tcpdump %s printed %d packets, want %d", c.flags, n, len(in))
		}
		for _, want := range c.want {
			if !strings.Contains(string(out), want) {
				t.Errorf("tcpdump %s output lacks %q", c.flags, want)
			}
		}
	}
}

type failWriter struct{ after int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.after -= len(p); f.after < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

// TestWriteError: a failing destination stops the capture, and Stop says
// why.
func TestWriteError(t *testing.T) {
	var w Writer
	if err := w.Start(&failWriter{after: 24}, 0); err != nil { // room for the header only
		t.Fatal(err)
	}
	pkt := udp(t, "198.18.0.2", "198.18.0.10", make([]byte, 1000))
	for w.Enabled() {
		w.WritePacket(time.Time{}, pkt, In) // fills the buffer, then fails
	}
	if _, err := w.Stop(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Stop: %v, want disk full", err)
	}
	if err := w.Start(io.Discard, 0); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if n, err := w.Stop(); n != 0 || err != nil {
		t.Fatalf("Stop = %d, %v", n, err)
	}
}

func TestStartRejects(t *testing.T) {
	var w Writer
	for _, s := range []int{-1, MinSnapLen - 1, DefaultSnapLen + 1} {
		if err := w.Start(io.Discard, s); err == nil {
			t.Errorf("Start(snaplen %d) accepted", s)
		}
	}
	if w.Enabled() {
		t.Error("enabled after failed Starts")
	}
}

// TestConcurrent has four workers write while the capture is started and
// stopped under them; every capture is a well-formed file with the
// packets Stop counted (run with -race).
func TestConcurrent(t *testing.T) {
	var w Writer
	pkt := udp(t, "198.18.0.2", "198.18.0.10", []byte("x"))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if w.Enabled() {
					w.WritePacket(time.Now(), pkt, Direction(i%2))
				}
				runtime.Gosched() // let Start and Stop in on two cores
			}
		})
	}
	var total uint64
	for range 10 {
		var out bytes.Buffer
		if err := w.Start(&out, 0); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
		n, err := w.Stop()
		if err != nil {
			t.Fatal(err)
		}
		r, err := pcapgo.NewReader(&out)
		if err != nil {
			t.Fatal(err)
		}
		var got uint64
		for {
			data, _, err := r.ReadPacketData()
			if err == io.EOF {
				break
			}
			if err != nil || !bytes.Equal(data[sllLen:], pkt) {
				t.Fatalf("packet %d: %v %x", got, err, data)
			}
			got++
		}
		if got != n {
			t.Fatalf("file has %d packets, Stop said %d", got, n)
		}
		total += n
	}
	close(stop)
	wg.Wait()
	if total == 0 {
		t.Error("no worker wrote while a capture ran")
	}
	t.Logf("%d packets in 10 captures", total)
}

// TestNoAllocs: WritePacket allocates nothing, stopped or running.
func TestNoAllocs(t *testing.T) {
	var w Writer
	pkt := udp(t, "198.18.0.2", "198.18.0.10", make([]byte, 100))
	now := time.Now()
	if a := testing.AllocsPerRun(1000, func() { w.WritePacket(now, pkt, In) }); a != 0 {
		t.Errorf("stopped: %v allocations", a)
	}
	if err := w.Start(io.Discard, 0); err != nil {
		t.Fatal(err)
	}
	if a := testing.AllocsPerRun(1000, func() { w.WritePacket(now, pkt, Out) }); a != 0 {
		t.Errorf("running: %v allocations", a)
	}
	w.Stop()
}

func BenchmarkWritePacket(b *testing.B) {
	pkt := make([]byte, 64)
	pkt[0] = 0x45
	now := time.Now()
	b.Run("stopped", func(b *testing.B) {
		var w Writer
		b.ReportAllocs()
		for range b.N {
			if w.Enabled() {
				w.WritePacket(now, pkt, In)
			}
		}
	})
	b.Run("running", func(b *testing.B) {
		var w Writer
		if err := w.Start(io.Discard, 0); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.SetBytes(int64(len(pkt)))
		for range b.N {
			w.WritePacket(now, pkt, In)
		}
		w.Stop()
	})
}

// TestEthernetFrames: an Ethernet capture records whole frames under
// LINKTYPE_ETHERNET, cut to the snap length, and ignores WritePacket; an
// IP capture ignores WriteFrame.
func TestEthernetFrames(t *testing.T) {
	frame := make([]byte, 14+100)
	copy(frame, []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00, 0x45})
	var out bytes.Buffer
	var w Writer
	if err := w.StartEthernet(&out, MinSnapLen); err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1700000000, 0)
	w.WriteFrame(at, frame)
	w.WritePacket(at, frame[14:], In) // not a frame: ignored
	if n, err := w.Stop(); n != 1 || err != nil {
		t.Fatalf("Stop = %d, %v; want 1 frame", n, err)
	}
	r, err := pcapgo.NewReader(&out)
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != layers.LinkTypeEthernet {
		t.Fatalf("link type %v, want Ethernet", r.LinkType())
	}
	data, ci, err := r.ReadPacketData()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, frame[:MinSnapLen]) || ci.Length != len(frame) || !ci.Timestamp.Equal(at) {
		t.Errorf("record %x (%+v), want the frame cut to %d bytes", data, ci, MinSnapLen)
	}

	out.Reset()
	if err := w.Start(&out, 0); err != nil {
		t.Fatal(err)
	}
	w.WriteFrame(at, frame)
	if n, _ := w.Stop(); n != 0 {
		t.Errorf("an IP capture recorded %d frames", n)
	}
}
