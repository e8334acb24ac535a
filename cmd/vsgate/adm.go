package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/vsgate/vsgate/gateway"
	"github.com/vsgate/vsgate/gateway/adm"
	"github.com/vsgate/vsgate/gateway/config"
)

const admUsage = `usage: vsgate adm [--socket PATH] [ipvsadm] IPVSADM-ARGS...
       vsgate adm help (this text; -h is ipvsadm's help, -v its version)
       vsgate adm [--socket PATH] ipmasqadm -A VIP:PORT -R RIP:PORT [-R RIP:PORT ...]
       vsgate adm [--socket PATH] ipmasqadm portfw -a -P tcp -L VIP PORT -R RIP PORT [-p PREF]
       vsgate adm [--socket PATH] ipchains -A forward -j MASQ -s|-d NET [--to ADDR]
       vsgate adm [--socket PATH] iptables|ip6tables -t mangle -A PREROUTING -d DST [-p tcp|udp] [--dport P[:P]] -j MARK --set-mark N

  Sends the command to the running gateway (vsgate run) over its control
  socket (default ` + config.DefaultSocket + `, or $VSGATE_SOCKET) and prints
  its answer, with ipvsadm 1.31's messages and exit statuses (2: refused
  by ipvsadm's own checks; 255: refused by the gateway, as by ipvsadm's
  kernel; 1: a listing that fails). Without arguments it lists the table,
  as ipvsadm does. The commands are ipvsadm's:
    -A|-E -t|-u VIP[:PORT]|-f MARK [-6] [-s SCHED] [-p [SECS]] [-M MASK] [-o] [-b FLAGS]
    -D -t|-u VIP:PORT|-f MARK  -C (clear)        -Z (zero counters)
    -a|-e -t|-u VIP:PORT|-f MARK -r RIP[:PORT] [-m|--fullnat|-g] [-w WEIGHT] [-x UPPER] [-y LOWER]
    -d -t|-u VIP:PORT|-f MARK -r RIP[:PORT]
    -L|-l [-n] [--stats|--rate|--thresholds|--persistent-conn|-c|--timeout] [--exact]
    -S (save: ipvsadm-save format)   -R (restore from standard input)
    --set TCP TCPFIN UDP (timeouts, seconds)
    --start-daemon|--stop-daemon master|backup   -L --daemon
      (the connection sync with the peer gateways of the configuration's
      sync: block: unicast, authenticated; no multicast interface)
  and ipmasqadm portfw's and ipchains' forward chain, as the old
  virtual-server handbook writes them ("vsgate adm ipmasqadm -h" and
  "vsgate adm ipchains -h" say how they map onto ipvsadm's services), and
  iptables' mangle MARK rules for firewall-mark services ("vsgate adm
  iptables -h").
  Addresses may be host names: the gateway resolves them once, when it
  reads the command (hosts file, then DNS), and a name stands for every
  address it has; -L without -n shows names. Changes are live; -S saves them.
  Also: reload (reread the configuration file, as SIGHUP does; a file
  vsgate's user may not read is read by this command and sent),
  pcap start NAME (a new file in pcap.dir), pcap stop, drops (every drop: vsgate's by reason, and
  the device's, lost before vsgate read them), bgp (the BGP sessions, and each
  route: announced or not, and why).
`

// runAdm is `vsgate adm`.
func runAdm(args []string, stdout, stderr io.Writer) int {
	sock := os.Getenv("VSGATE_SOCKET")
	if sock == "" {
		sock = config.DefaultSocket
	}
	if len(args) >= 2 && (args[0] == "--socket" || args[0] == "-socket") {
		sock, args = args[1], args[2:]
	}
	switch {
	case len(args) == 1 && args[0] == "help":
		fmt.Fprint(stdout, admUsage)
		return 0
	case len(args) > 0 && (args[0] == "-h" || args[0] == "--help"):
		fmt.Fprint(stdout, adm.IpvsadmHelp)
		return 0
	case len(args) > 0 && (args[0] == "-v" || args[0] == "--version"):
		fmt.Fprint(stdout, adm.IpvsadmVersion)
		return 0
	}
	// The old tools' help needs no gateway.
	if c, err := adm.Parse(context.Background(), args, nil); err == nil && c.Op == adm.OpHelp {
		fmt.Fprint(stdout, c.Help())
		return 0
	}
	req := gateway.Request{Args: args}
	for _, a := range args {
		if a == "-R" || a == "--restore" {
			b, err := io.ReadAll(io.LimitReader(os.Stdin, 16<<20))
			if err != nil {
				fmt.Fprintf(stderr, "vsgate adm: reading the restore script: %v\n", err)
				return 1
			}
			req.Stdin = string(b)
		}
	}
	// A reload sends at most this many files the gateway cannot read.
	const maxSentFiles = 64
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := gateway.Call(ctx, sock, req)
	for sent := 0; err == nil && (resp.ReadFile != "" || resp.ReadNamed != "") && len(args) == 1 && args[0] == "reload"; sent++ {
		// The gateway's user may not read its own configuration file, or
		// a key it names: send it, read with this caller's rights.
		if sent == maxSentFiles {
			break
		}
		if resp.ReadFile != "" {
			data, rerr := config.Read(resp.ReadFile)
			if rerr != nil {
				fmt.Fprintf(stderr, "vsgate adm: reload: %v\n", rerr)
				return 1
			}
			req.Stdin = string(data)
		} else {
			if _, dup := req.Files[resp.ReadNamed]; dup {
				break
			}
			data, rerr := os.ReadFile(resp.ReadNamed)
			if rerr != nil {
				fmt.Fprintf(stderr, "vsgate adm: reload: %v\n", rerr)
				return 1
			}
			if req.Files == nil {
				req.Files = map[string]string{}
			}
			req.Files[resp.ReadNamed] = string(data)
		}
		resp, err = gateway.Call(ctx, sock, req)
	}
	if err != nil {
		fmt.Fprintf(stderr, "vsgate adm: %v\n", err)
		return 1
	}
	fmt.Fprint(stdout, resp.Output)
	if resp.Error != "" {
		fmt.Fprintln(stderr, resp.Error)
	}
	return resp.Status
}
