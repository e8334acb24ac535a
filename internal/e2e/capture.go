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
func (c *backendCaptures) stop() (map[string][]int, error) {
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
	out := map[string][]int{}
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
		out[b] = []int{}
		for {
			_, ci, err := r.ReadPacketData()
			if err == io.EOF {
				break
			}
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("%s's capture: %w", b, err)
			}
			out[b] = append(out[b], ci.Length-14) // Ethernet
		}
		f.Close()
	}
	return out, nil
}
