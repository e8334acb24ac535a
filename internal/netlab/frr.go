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

// CheckFRR reports whether FRR (zebra, bgpd, vtysh) is installed.
func CheckFRR() error {
	for _, bin := range []string{filepath.Join(FRRBinDir, "zebra"), filepath.Join(FRRBinDir, "bgpd")} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("netlab: FRR is not installed (apt-get install frr): %w", err)
		}
	}
	if _, err := exec.LookPath("vtysh"); err != nil {
		return fmt.Errorf("netlab: FRR's vtysh is not installed (apt-get install frr): %w", err)
	}
	return nil
}

// FRR is a routing daemon suite (zebra, bgpd) running in one lab host,
// with its own configuration and state directory: a real router.
type FRR struct {
	host *Host
	dir  string // FRRRunDir/NSName
}

// StartFRR starts zebra and bgpd in h, with bgpdConf as bgpd's
// configuration (FRR's own syntax). zebra installs what bgpd learns in the
// host's kernel routing table. The lab's Close stops both (by PID) and
// removes their directory.
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
		"zebra.conf":  "hostname " + h.Name + "\n",
		"bgpd.conf":   bgpdConf,
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
	for _, d := range []string{"zebra", "bgpd"} {
		cmd := h.Command(context.Background(), filepath.Join(FRRBinDir, d),
			"-N", h.NSName, "-f", filepath.Join(f.dir, d+".conf"), "-i", filepath.Join(f.dir, d+".pid"))
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
	if err := waitFile(ctx, filepath.Join(f.dir, "bgpd.vty")); err != nil {
		return nil, fmt.Errorf("netlab: frr: bgpd did not start: %w; its log: %s", err, f.Log())
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
