package gateway

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vsgate/vsgate/packet"
	"github.com/vsgate/vsgate/packet/pcap"
)

// captureIn records what the worker read: IP packets, or on AF_PACKET
// the whole frames (the Ethernet header is in front of each packet, in
// the headroom).
func (g *Gateway) captureIn(bufs, pkts [][]byte, h int) {
	now := time.Now()
	for j, p := range pkts {
		if g.link != nil {
			g.capture.WriteFrame(now, bufs[j][h-packet.EthernetMinimumSize:h+len(p)])
		} else {
			g.capture.WritePacket(now, p, pcap.In)
		}
	}
}

// captureOut records the IP packets the worker writes to a TUN (out as
// Write takes it).
func (g *Gateway) captureOut(out [][]byte, h int) {
	now := time.Now()
	for _, p := range out {
		g.capture.WritePacket(now, p[h:], pcap.Out)
	}
}

// StartCapture writes what enters and leaves the gateway as pcap
// (readable by tcpdump; direction shows with tcpdump -e) to name, a new
// file in Options.PcapDir: a plain file name, or an absolute path whose
// directory is PcapDir. It returns the file's path.
func (g *Gateway) StartCapture(name string) (string, error) {
	dir := g.opts.PcapDir
	if dir == "" {
		return "", errors.New("captures are off: no capture directory (pcap.dir)")
	}
	if filepath.IsAbs(name) && filepath.Dir(name) == dir {
		name = filepath.Base(name)
	}
	if name == "" || name != filepath.Base(name) || name == "." || name == ".." {
		return "", fmt.Errorf("%q: a capture is a new file in %s; give a file name", name, dir)
	}
	// A new file only, never through a symlink, and never outside the
	// directory: the capture holds what every client sent (bodies
	// included). A file that is there already, or a link, is refused
	// rather than truncated or followed.
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", err
	}
	defer root.Close()
	path := filepath.Join(dir, name)
	f, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return "", fmt.Errorf("%s: %w (a capture goes to a new file only)", path, errors.Unwrap(err))
	}
	start := g.capture.Start
	if g.link != nil {
		start = g.capture.StartEthernet // frames, with their Ethernet headers
	}
	if err := start(f, pcap.DefaultSnapLen); err != nil {
		f.Close()
		return "", err
	}
	g.mu.Lock()
	g.captureFile = f
	g.mu.Unlock()
	g.log.Info("capture started", "file", path)
	return path, nil
}

// StopCapture ends the capture and closes its file.
func (g *Gateway) StopCapture() (uint64, error) {
	n, err := g.capture.Stop()
	g.mu.Lock()
	f := g.captureFile
	g.captureFile = nil
	g.mu.Unlock()
	if f != nil {
		err = errors.Join(err, f.Close())
	}
	return n, err
}
