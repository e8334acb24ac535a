package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/vsgate/vsgate/gateway/config"
	"github.com/vsgate/vsgate/internal/privilege"
)

const checkUsage = `usage: vsgate check -c FILE
  Read and validate a configuration file without running anything: no
  device, no netlink, no sockets (host names in it are looked up, in the
  hosts file and DNS, as vsgate run would look them up; each is printed
  as FILE:LINE: KEY NAME -> ADDRESSES). For each sloppy NAT service it
  says whether a gateway that did not see a client's packets (behind
  ECMP) can translate the real servers' answers.
  Prints "FILE: ok (...)" and exits 0, or
  prints every problem, one per line as FILE:LINE: what is wrong: the fix,
  and exits 1. The schema: gateway/config/doc.go and the commented
  example gateway/config/testdata/vsgate.yaml.
`

// runCheck is "vsgate check -c FILE".
// count writes n things: "1 service", "2 services".
func count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

func runCheck(args []string, stdout, stderr io.Writer) int {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help":
			fmt.Fprint(stdout, checkUsage)
			return 0
		}
	}
	fs := flag.NewFlagSet("vsgate check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), checkUsage) }
	file := fs.String("c", "", "the configuration `FILE` to check")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *file == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	c, err := config.Load(*file)
	if err != nil {
		var problems config.Errors
		if errors.As(err, &problems) {
			for _, p := range problems {
				fmt.Fprintln(stderr, p)
			}
		} else {
			fmt.Fprintf(stderr, "vsgate check: %v\n", err)
		}
		return 1
	}
	// The user vsgate would run as must exist here, as vsgate run
	// requires before it sets anything up.
	if _, err := privilege.Lookup(c.User); err != nil {
		fmt.Fprintf(stderr, "%s: user: %v\n", *file, err)
		return 1
	}
	for _, r := range c.Resolved {
		addrs := make([]string, len(r.Addrs))
		for i, a := range r.Addrs {
			addrs[i] = a.String()
		}
		fmt.Fprintf(stdout, "%s:%d: %s %s -> %s\n", *file, r.Line, r.Key, r.Name, strings.Join(addrs, " "))
	}
	// Behind ECMP a real server's answer may reach a gateway that did
	// not see the client: which services' answers that gateway can
	// still translate.
	for _, r := range c.ReplyAdoptions() {
		if r.SharedBy == "" {
			fmt.Fprintf(stdout, "%s: %s: its real servers' answers are translated on any gateway (each serves only this service)\n", *file, r.Service)
		} else {
			fmt.Fprintf(stdout, "%s: %s: its real servers' answers need the gateway that saw the client: %s (behind ECMP, give each service real server ports of its own, or use fullnat)\n", *file, r.Service, r.SharedBy)
		}
	}
	services, backends, masq := c.Counts()
	fmt.Fprintf(stdout, "%s: ok (%s, %s, %s)\n", *file, count(services, "service"), count(backends, "backend"), count(masq, "masquerade rule"))
	return 0
}
