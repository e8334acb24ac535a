package netlab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// FRR's files on a Debian machine (package frr).
const (
	FRRBinDir = "/usr/lib/frr"
	// FRRRunDir holds one directory per FRR instance netlab starts,
	// named after its namespace (FRR's "pathspace", -N): the daemons'
	// sockets, pid files and configuration.
	FRRRunDir = "/var/run/frr"
)

// FRRBFDProfile is the BFD profile every FRR instance netlab starts
// has (bfdd's configuration), for a bgpd configuration's "neighbor X bfd
// profile lab": 100 ms intervals, down after 3 missed, so a neighbour
// that stops answering is dropped in 300 ms. The gateways' side of the
// session asks for the same.
const (
	FRRBFDProfile    = "lab"
	FRRBFDInterval   = 100 * time.Millisecond
	FRRBFDMultiplier = 3
)

// CheckFRR reports whether FRR (zebra, bgpd, bfdd, vtysh) is installed.
func CheckFRR() error {
	for _, bin := range []string{filepath.Join(FRRBinDir, "zebra"), filepath.Join(FRRBinDir, "bgpd"), filepath.Join(FRRBinDir, "bfdd")} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("netlab: FRR is not installed (apt-get install frr): %w", err)
		}
	}
	if _, err := exec.LookPath("vtysh"); err != nil {
		return fmt.Errorf("netlab: FRR's vtysh is not installed (apt-get install frr): %w", err)
	}
	return nil
}

// FRR is a routing daemon suite (zebra, bgpd, bfdd) running in one lab
// host, with its own configuration and state directory: a real router.
type FRR struct {
	host *Host
	dir  string // FRRRunDir/NSName
}

// StartFRR starts zebra, bgpd and bfdd in h, with bgpdConf as bgpd's
// configuration (FRR's own syntax). zebra installs what bgpd learns in the
// host's kernel routing table; bfdd runs the BFD sessions bgpdConf asks
// for, with the profile FRRBFDProfile. The lab's Close stops them (by
// PID) and removes their directory.
func (h *Host) StartFRR(ctx context.Context, bgpdConf string) (*FRR, error) {
	if err := CheckFRR(); err != nil {
		return nil, err
	}
	f := &FRR{host: h, dir: filepath.Join(FRRRunDir, h.NSName)}
	// The daemons drop to the frr user, which must own their directory.
	uid, gid, err := frrOwner()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(f.dir, 0o755); err != nil {
		return nil, fmt.Errorf("netlab: frr: %w", err)
	}
	if err := h.lab.onClose(func() error { return os.RemoveAll(f.dir) }); err != nil {
		os.RemoveAll(f.dir)
		return nil, err
	}
	if err := os.Chown(f.dir, uid, gid); err != nil {
		return nil, fmt.Errorf("netlab: frr: %w", err)
	}
	for name, text := range map[string]string{
		"zebra.conf": "hostname " + h.Name + "\n",
		"bgpd.conf":  bgpdConf,
		"bfdd.conf": fmt.Sprintf("bfd\n profile %s\n  detect-multiplier %d\n  receive-interval %d\n  transmit-interval %d\n !\n!\n",
			FRRBFDProfile, FRRBFDMultiplier, FRRBFDInterval.Milliseconds(), FRRBFDInterval.Milliseconds()),
		"vtysh.conf":  "",
		"daemons.log": "",
	} {
		if err := os.WriteFile(filepath.Join(f.dir, name), []byte(text), 0o644); err != nil {
			return nil, fmt.Errorf("netlab: frr: %w", err)
		}
	}
	logFile, err := os.OpenFile(filepath.Join(f.dir, "daemons.log"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	// bfdd first: bgpd registers its sessions with it (through zebra)
	// as it reads its configuration.
	for _, d := range []string{"zebra", "bfdd", "bgpd"} {
		args := []string{"-N", h.NSName, "-f", filepath.Join(f.dir, d+".conf"), "-i", filepath.Join(f.dir, d+".pid")}
		if d == "bfdd" {
			// Its control socket is not under the pathspace by itself.
			args = append(args, "--bfdctl", filepath.Join(f.dir, "bfdd.sock"))
		}
		cmd := h.Command(context.Background(), filepath.Join(FRRBinDir, d), args...)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		if err := h.Start(cmd); err != nil {
			return nil, fmt.Errorf("netlab: frr: %s: %w", d, err)
		}
		// bgpd connects to zebra's socket: wait for it.
		if d == "zebra" {
			if err := waitFile(ctx, filepath.Join(f.dir, "zserv.api")); err != nil {
				return nil, fmt.Errorf("netlab: frr: zebra did not start: %w; its log: %s", err, f.Log())
			}
		}
	}
	for _, d := range []string{"bfdd", "bgpd"} {
		if err := waitFile(ctx, filepath.Join(f.dir, d+".vty")); err != nil {
			return nil, fmt.Errorf("netlab: frr: %s did not start: %w; its log: %s", d, err, f.Log())
		}
	}
	return f, nil
}

func frrOwner() (uid, gid int, err error) {
	u, err := user.Lookup("frr")
	if err != nil {
		return 0, 0, fmt.Errorf("netlab: frr: %w (is the frr package installed?)", err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, nil
}

// waitFile waits until path exists, polling, or ctx ends (10 s at most:
// the daemons start in well under a second).
func waitFile(ctx context.Context, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", path, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Log is what the daemons wrote to standard output and error.
func (f *FRR) Log() string {
	b, _ := os.ReadFile(filepath.Join(f.dir, "daemons.log"))
	return string(b)
}

// VTY runs vtysh commands against this instance and returns the output.
func (f *FRR) VTY(ctx context.Context, cmds ...string) (string, error) {
	args := []string{"-N", f.host.NSName}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := exec.CommandContext(ctx, "vtysh", args...).Output()
	if err != nil {
		return string(out), fmt.Errorf("netlab: vtysh %s: %w", strings.Join(cmds, "; "), err)
	}
	return string(out), nil
}

// Neighbors returns the state of every BGP neighbour by address
// ("Established", "Active", ...), IPv4 and IPv6 sessions alike.
func (f *FRR) Neighbors(ctx context.Context) (map[string]string, error) {
	out, err := f.VTY(ctx, "show bgp neighbors json")
	if err != nil {
		return nil, err
	}
	var ns map[string]struct {
		State string `json:"bgpState"`
	}
	if err := json.Unmarshal([]byte(out), &ns); err != nil {
		return nil, fmt.Errorf("netlab: show bgp neighbors json: %w", err)
	}
	st := map[string]string{}
	for a, n := range ns {
		st[a] = n.State
	}
	return st, nil
}

// Connections counts the times the BGP session with neighbour addr
// was established, and says whether it is now.
func (f *FRR) Connections(ctx context.Context, addr string) (n int, established bool, err error) {
	out, err := f.VTY(ctx, "show bgp neighbors "+addr+" json")
	if err != nil {
		return 0, false, err
	}
	var ns map[string]struct {
		State       string `json:"bgpState"`
		Established int    `json:"connectionsEstablished"`
	}
	if err := json.Unmarshal([]byte(out), &ns); err != nil {
		return 0, false, fmt.Errorf("netlab: show bgp neighbors %s json: %w", addr, err)
	}
	nb, ok := ns[addr]
	if !ok {
		return 0, false, fmt.Errorf("netlab: bgpd has no neighbour %s", addr)
	}
	return nb.Established, nb.State == "Established", nil
}

// LastReset is why the BGP session with neighbour addr last went down,
// in bgpd's words ("BGP Notification send", "Hold Timer Expired", ...)
// with the notification's reason if one was sent or received ("Cease/BFD
// Down"), or "" if it never did.
func (f *FRR) LastReset(ctx context.Context, addr string) (string, error) {
	out, err := f.VTY(ctx, "show bgp neighbors "+addr+" json")
	if err != nil {
		return "", err
	}
	var ns map[string]struct {
		Reason       string `json:"lastResetDueTo"`
		Notification string `json:"lastNotificationReason"`
	}
	if err := json.Unmarshal([]byte(out), &ns); err != nil {
		return "", fmt.Errorf("netlab: show bgp neighbors %s json: %w", addr, err)
	}
	n, ok := ns[addr]
	if !ok {
		return "", fmt.Errorf("netlab: bgpd has no neighbour %s", addr)
	}
	if n.Notification != "" {
		return n.Reason + ": " + n.Notification, nil
	}
	return n.Reason, nil
}

// BFDPeer is the state of one of bfdd's sessions.
type BFDPeer struct {
	Status     string `json:"status"`     // "up", "down", "init"
	Diagnostic string `json:"diagnostic"` // why it last went down: "control detection time expired", ...
}

// BFDPeers returns every BFD session by peer address.
func (f *FRR) BFDPeers(ctx context.Context) (map[string]BFDPeer, error) {
	out, err := f.VTY(ctx, "show bfd peers json")
	if err != nil {
		return nil, err
	}
	var ps []struct {
		Peer string `json:"peer"`
		BFDPeer
	}
	if err := json.Unmarshal([]byte(out), &ps); err != nil {
		return nil, fmt.Errorf("netlab: show bfd peers json: %w", err)
	}
	st := map[string]BFDPeer{}
	for _, p := range ps {
		st[p.Peer] = p.BFDPeer
	}
	return st, nil
}

// Established counts the BGP neighbours in state Established.
func (f *FRR) Established(ctx context.Context) (int, error) {
	ns, err := f.Neighbors(ctx)
	n := 0
	for _, s := range ns {
		if s == "Established" {
			n++
		}
	}
	return n, err
}

// cleanFRR stops the daemons of FRR instances a crashed run left (their
// pid files name them; a pid is only signalled if that process is still
// the instance's daemon) and removes their directories.
func cleanFRR(prefix string) (removed []string, errs []error) {
	dirs, _ := filepath.Glob(filepath.Join(FRRRunDir, prefix+"*"))
	for _, dir := range dirs {
		name := filepath.Base(dir)
		if len(name) < PrefixLen || !validPrefix(name[:PrefixLen]) || InUse(name[:PrefixLen]) {
			continue
		}
		pids, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
		for _, pf := range pids {
			b, err := os.ReadFile(pf)
			if err != nil {
				continue
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil || pid <= 1 {
				continue
			}
			cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if err != nil || !strings.Contains(string(cmdline), "\x00-N\x00"+name+"\x00") {
				continue // gone, or the pid is another process's now
			}
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("netlab: clean: frr pid %d: %w", pid, err))
				continue
			}
			removed = append(removed, fmt.Sprintf("frr %s pid %d", filepath.Base(pf), pid))
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "frr dir "+dir)
	}
	return removed, errs
}
