package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vsgate/vsgate/gateway"
	"github.com/vsgate/vsgate/gateway/config"
	"github.com/vsgate/vsgate/gateway/names"
	"github.com/vsgate/vsgate/internal/cli"
	"github.com/vsgate/vsgate/internal/privilege"
)

const runUsage = `usage: vsgate run -c FILE [--pcap NAME]
  Run the gateway in this network namespace: create the TUN device, route
  the configured VIPs, masquerade and FULLNAT addresses into it, steer the
  real servers' traffic through it, and translate. Once set up it runs as
  the configuration's user (default nobody) with only CAP_NET_ADMIN (and
  CAP_NET_RAW on AF_PACKET, CAP_NET_BIND_SERVICE with l7.stack: kernel). SIGHUP reloads FILE (a bad file leaves the
  running configuration in place); SIGINT and SIGTERM stop it and remove
  every route, rule and setting it added. --pcap NAME captures to a new
  file NAME in pcap.dir.
`

// runRun is `vsgate run`.
func runRun(args []string, stdout, stderr io.Writer) (code int) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, runUsage) }
	file := fs.String("c", "", "configuration file")
	pcapFile := fs.String("pcap", "", "write what enters and leaves the gateway to this new pcap file in pcap.dir")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *file == "" || fs.NArg() != 0 {
		fmt.Fprint(stderr, runUsage)
		return 2
	}
	cfg, err := config.Load(*file)
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	log := newLogger(stderr, cfg.Log)
	// The files the configuration names (TLS keys) are kept as read now,
	// as root: a reload after the privilege drop takes them again while
	// they have not changed.
	files := &gateway.FileCache{}
	opts, err := gateway.FromConfig(cfg, log, files.Read)
	if err != nil {
		log.Error("configuration", "err", err)
		return 1
	}
	// Who to become is known before anything is set up: an unknown user
	// stops vsgate before it touches the network.
	var who *privilege.Identity
	if os.Geteuid() == 0 {
		id, err := privilege.Lookup(cfg.User)
		if err != nil {
			log.Error("configuration", "err", err)
			return 1
		}
		who = &id
		opts.Owner = &gateway.Owner{UID: id.UID, GID: id.GID}
	}
	opts.Source = &gateway.Source{
		Path:  *file,
		Files: files,
		Read:  func() ([]byte, error) { return config.Read(*file) },
		Parse: func(data []byte, readFile func(string) ([]byte, error)) (gateway.Options, error) {
			c, err := config.ParseNames(context.Background(), data, *file, &names.System{})
			if err != nil {
				return gateway.Options{}, err
			}
			o, err := gateway.FromConfig(c, log, readFile)
			o.Owner = opts.Owner
			return o, err
		},
	}
	opts.Version = cli.Version("vsgate")
	g, err := gateway.New(opts)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	// A stop that could not undo everything fails the exit status too.
	defer func() {
		if err := g.Close(); err != nil {
			log.Error("stop", "err", err)
			code = max(code, 1)
		}
	}()
	if *pcapFile != "" {
		if _, err := g.StartCapture(*pcapFile); err != nil {
			log.Error("pcap", "err", err)
			return 1
		}
	}
	if err := dropPrivileges(who, opts.AFPacket != nil, !opts.L7Netstack, cfg.Seccomp, log); err != nil {
		log.Error("dropping privileges", "err", err)
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if err := g.ReloadFromSource(); err != nil {
				log.Error("reload refused: the running configuration stays", "err", err)
			}
		}
	}()
	device := opts.Device
	if opts.AFPacket != nil {
		device = "afpacket " + strings.Join(opts.AFPacket.Interfaces, ",")
	}
	log.Info("vsgate running", "config", *file, "device", device, "queues", opts.Queues,
		"services", len(opts.NAT.Services), "control", opts.ControlSocket, "metrics", opts.MetricsListen)
	if err := g.Run(ctx); err != nil {
		log.Error("run", "err", err)
		return 1
	}
	log.Info("vsgate stopped")
	return 0
}

// newLogger builds the slog logger the configuration asks for.
func newLogger(w io.Writer, c config.Log) *slog.Logger {
	ho := &slog.HandlerOptions{Level: c.Level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

// printConfigError prints a configuration error one problem per line.
func printConfigError(w io.Writer, err error) {
	var problems config.Errors
	if errors.As(err, &problems) {
		for _, p := range problems {
			fmt.Fprintln(w, p)
		}
		return
	}
	fmt.Fprintf(w, "vsgate: %v\n", err)
}

// dropPrivileges makes vsgate run as who once the device, sockets and
// routes are set up, keeping CAP_NET_ADMIN (reloads and the teardown at
// exit change routes, rules, nftables and sysctls), on AF_PACKET
// CAP_NET_RAW, and with L7 services on the kernel's TCP
// CAP_NET_BIND_SERVICE (a reload that adds one listens on its port, often
// 80 or 443); then, with seccomp, confines it to the system calls a
// running gateway makes. A vsgate started by a user other than root (who
// is nil) has nothing to give up and says so. A failed drop is fatal: the
// process may be half way.
func dropPrivileges(who *privilege.Identity, afpacket, kernelL7, seccomp bool, log *slog.Logger) error {
	if who == nil {
		log.Warn("not started as root: running as this user, user: is not applied", "uid", os.Getuid())
		return nil
	}
	keep := privileges(afpacket, kernelL7)
	if err := privilege.Drop(*who, keep); err != nil {
		return err
	}
	var names []string
	for _, c := range keep {
		names = append(names, c.Name())
	}
	log.Info("privileges dropped", "user", who.Name, "uid", who.UID, "gid", who.GID, "capabilities", strings.Join(names, ","))
	if !seccomp {
		log.Warn("seccomp: off (seccomp: false in the configuration)")
		return nil
	}
	switch err := privilege.Confine(); {
	case errors.Is(err, privilege.ErrNoSeccompList):
		log.Warn("seccomp: not applied", "err", err)
	case err != nil:
		return err
	default:
		log.Info("seccomp: system calls outside the gateway's list fail with EPERM")
	}
	return nil
}

// privileges are the capabilities the running gateway keeps.
func privileges(afpacket, kernelL7 bool) []privilege.Cap {
	keep := []privilege.Cap{unix.CAP_NET_ADMIN}
	if afpacket {
		keep = append(keep, unix.CAP_NET_RAW)
	}
	if kernelL7 {
		keep = append(keep, unix.CAP_NET_BIND_SERVICE)
	}
	return keep
}
