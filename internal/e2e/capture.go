package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// backendCaptures is tcpdump on every real server's link, for steps that
// must show what reached the real servers (or that nothing did).
type backendCaptures struct {
	dir     string
	names   []string // backends, in the order of cmds and files
	cmds    []*exec.Cmd
	stderrs []*lockedBuffer
}

// lockedBuffer is tcpdump's standard error, read while tcpdump writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// captureBackends starts tcpdump with filter on the link of every real
// server and returns once each says it is listening.
func (e *Env) captureBackends(ctx context.Context, filter string) (*backendCaptures, error) {
	dir, err := os.MkdirTemp("", "vsgate-capture-")
	if err != nil {
		return nil, err
	}
	c := &backendCaptures{dir: dir}
	for _, b := range e.Lab.Topo.Plan.Backends {
		h := e.Lab.MustHost(b)
		links, err := h.Netlink().LinkList()
		if err != nil {
			c.stop()
			return nil, err
		}
		ifc := ""
		for _, l := range links {
			if l.Attrs().Name != "lo" {
				ifc = l.Attrs().Name
			}
		}
		// Not bound to ctx: stop ends it with SIGINT, so that the file
		// is complete.
		cmd := h.Command(context.Background(), "tcpdump", "-i", ifc, "--immediate-mode", "-U", "-n", "-s", "0", "-w", filepath.Join(dir, b+".pcap"), filter)
		stderr := &lockedBuffer{}
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			c.stop()
			return nil, fmt.Errorf("tcpdump in %s: %w", b, err)
		}
		c.names, c.cmds, c.stderrs = append(c.names, b), append(c.cmds, cmd), append(c.stderrs, stderr)
	}
	for i, s := range c.stderrs {
		for start := time.Now(); !strings.Contains(s.String(), "listening on"); time.Sleep(10 * time.Millisecond) {
			if time.Since(start) > 10*time.Second || ctx.Err() != nil {
				c.stop()
				return nil, fmt.Errorf("tcpdump in %s did not start listening: %s", c.names[i], s.String())
			}
		}
	}
	return c, nil
}

// stop ends the captures and returns the IP length of every packet each
// real server's link carried, by backend.
func (c *backendCaptures) stop() (map[string][]capturedPacket, error) {
	running := c.cmds
	c.cmds = nil
	for _, cmd := range running {
		_ = cmd.Process.Signal(syscall.SIGINT)
		_ = cmd.Wait()
	}
	defer os.RemoveAll(c.dir)
	if len(running) == 0 || len(running) < len(c.names) {
		return nil, errors.New("no capture running")
	}
	out := map[string][]capturedPacket{}
	for i, b := range c.names {
		f, err := os.Open(filepath.Join(c.dir, b+".pcap"))
		if err != nil {
			return nil, fmt.Errorf("%s's capture (tcpdump said: %s): %w", b, strings.TrimSpace(c.stderrs[i].String()), err)
		}
		r, err := pcapgo.NewReader(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s's capture: %w", b, err)
		}
		out[b] = []capturedPacket{}
		for {
			data, ci, err := r.ReadPacketData()
			if err == io.EOF {
				break
			}
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("%s's capture: %w", b, err)
			}
			out[b] = append(out[b], capturedPacket{Length: ci.Length - 14, Summary: summarize(data)}) // Ethernet
		}
		f.Close()
	}
	return out, nil
}

// capturedPacket is one packet of a capture: its IP length and a line
// that says what it was, for a failure's message.
type capturedPacket struct {
	Length  int
	Summary string
}

// summarize describes an Ethernet frame in a line: addresses, ports,
// TCP flags or ICMP type.
func summarize(frame []byte) string {
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.NoCopy)
	var b strings.Builder
	if n := p.NetworkLayer(); n != nil {
		f := n.NetworkFlow()
		fmt.Fprintf(&b, "%v > %v", f.Src(), f.Dst())
	}
	switch t := p.TransportLayer().(type) {
	case *layers.TCP:
		fmt.Fprintf(&b, " tcp %d > %d", t.SrcPort, t.DstPort)
		for _, f := range []struct {
			on   bool
			name string
		}{{t.SYN, "S"}, {t.ACK, "."}, {t.FIN, "F"}, {t.RST, "R"}, {t.PSH, "P"}} {
			if f.on {
				b.WriteString(" " + f.name)
			}
		}
	case *layers.UDP:
		fmt.Fprintf(&b, " udp %d > %d", t.SrcPort, t.DstPort)
	default:
		if l := p.Layer(layers.LayerTypeICMPv4); l != nil {
			fmt.Fprintf(&b, " icmp %v", l.(*layers.ICMPv4).TypeCode)
		} else if l := p.Layer(layers.LayerTypeICMPv6); l != nil {
			fmt.Fprintf(&b, " icmp6 %v", l.(*layers.ICMPv6).TypeCode)
		}
	}
	if b.Len() == 0 {
		return fmt.Sprintf("%d bytes, not IP", len(frame))
	}
	return b.String()
}
