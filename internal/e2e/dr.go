package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/vsgate/vsgate/internal/netlab"
)

// DirectRouting runs vsgate in direct-routing mode (ipvsadm -g) on
// netlab's "dr" topology, AF_PACKET on the gateway's one interface: 30
// HTTP requests to the VIP are answered, spread over the three real
// servers (rr), and a capture on the gateway's interface shows the
// client's packets to the VIP and none of the answers (the real servers
// send those to the client themselves). It returns what it saw.
func DirectRouting(ctx context.Context, exe string) (string, error) {
	if err := netlab.Check(); err != nil {
		return "", err
	}
	lab, err := netlab.Build(ctx, netlab.DR(), netlab.Options{})
	if err != nil {
		return "", err
	}
	defer lab.Close()
	p := lab.Topo.Plan
	for _, b := range p.Backends {
		if _, err := lab.MustHost(b).StartHTTP(b, ":80"); err != nil {
			return "", err
		}
	}
	dir, err := os.MkdirTemp("", "vsgate-dr-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o711); err != nil {
		return "", err
	}
	ifc := lab.IfName(netlab.IfGWOut)
	cfg := fmt.Sprintf(`device: {type: afpacket, interfaces: [%s]}
control: {socket: %s/vsgate.sock}
pcap: {dir: %s/pcap}
metrics: {listen: off}
services:
  - {proto: tcp, vip: %v:80, mode: dr, scheduler: rr, backends: [{addr: 198.18.0.11}, {addr: 198.18.0.12}, {addr: 198.18.0.13}]}
`, ifc, dir, dir, p.VIP4)
	gw, client := lab.MustHost(netlab.HostGW), lab.MustHost(netlab.HostClient)

	// The capture first, so that it sees every request.
	pcapFile := filepath.Join(dir, "gw.pcap")
	var dumpErr lockedBuffer // tcpdump writes it while waitFor reads it
	dump := gw.Command(context.Background(), "tcpdump", "-i", ifc, "--immediate-mode", "-U", "-n", "-s", "128", "-w", pcapFile, "tcp port 80")
	dump.Stderr = &dumpErr
	if err := dump.Start(); err != nil {
		return "", fmt.Errorf("tcpdump: %w", err)
	}
	defer func() { _ = dump.Process.Kill(); _ = dump.Wait() }()
	if err := waitFor(ctx, "tcpdump to listen", func() (bool, error) { return strings.Contains(dumpErr.String(), "listening"), nil }); err != nil {
		return "", err
	}

	g, err := startGateway(ctx, gw, exe, dir, cfg)
	if err != nil {
		return "", err
	}
	defer g.stop()
	listing, err := g.adm(ctx, "-L", "-n")
	if err != nil {
		return "", err
	}

	spread := map[string]int{}
	hc := client.HTTPClient(10 * time.Second)
	for range 30 {
		resp, err := hc.Get("http://" + p.VIP4.String() + "/")
		if err != nil {
			return fmtSpread(spread), fmt.Errorf("a request through direct routing: %w\n%s", err, g.logText())
		}
		var rep netlab.HTTPReply
		err = json.NewDecoder(resp.Body).Decode(&rep)
		resp.Body.Close()
		if err != nil {
			return fmtSpread(spread), err
		}
		if want := netip.AddrPortFrom(p.VIP4, 80).String(); rep.Local != want || hostOf(rep.Remote) != netip.MustParseAddr("198.18.0.2") {
			return fmtSpread(spread), fmt.Errorf("%s saw the connection %s -> %s, want the client's to %s, untouched", rep.Backend, rep.Remote, rep.Local, want)
		}
		spread[rep.Backend]++
	}
	time.Sleep(200 * time.Millisecond) // the last frames into the capture file
	toVIP, fromVIP, err := countDR(pcapFile, p.VIP4.String())
	if err != nil {
		return "", err
	}
	d := fmt.Sprintf("30 requests: %s\ncapture on the gateway's interface: %d packets client -> VIP, %d VIP -> client\n%s",
		fmtSpread(spread), toVIP, fromVIP, strings.TrimSpace(string(listing)))
	switch {
	case len(spread) != 3:
		return d, fmt.Errorf("the requests reached %d real servers, want 3 (rr)", len(spread))
	case toVIP < 30:
		return d, fmt.Errorf("the capture shows %d packets to the VIP, want the requests'", toVIP)
	case fromVIP != 0:
		return d, fmt.Errorf("the gateway's link carried %d answers: the real servers must answer the client themselves", fromVIP)
	case !strings.Contains(string(listing), "Route"):
		return d, errors.New("vsgate adm -L -n does not list the real servers with Route (ipvsadm's name for -g)")
	}
	return d, nil
}

// countDR counts the capture's TCP packets to and from vip.
func countDR(file, vip string) (to, from int, err error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return 0, 0, err
	}
	src := gopacket.NewPacketSource(r, r.LinkType())
	for pkt := range src.Packets() {
		ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if !ok {
			continue
		}
		switch vip {
		case ip.DstIP.String():
			to++
		case ip.SrcIP.String():
			from++
		}
	}
	return to, from, nil
}
