package config

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// FuzzParse feeds ParseNames arbitrary files, with the tests' resolver
// (host names: www.fuancn.cn, rs1, rs2, gw-outside, gw-inside). Properties:
//   - it never panics;
//   - a rejected file gives an Errors of *Error, each wrapping ErrInvalid,
//     one line long, with a message, a fix and a line inside the file;
//   - an accepted file gives a Config that Validate accepts, that converts
//     with NAT, that the nat engine accepts, and whose YAML parses back to
//     an equal Config.
func FuzzParse(f *testing.F) {
	// The complete example: every key.
	if b, err := os.ReadFile(example); err == nil {
		f.Add(b)
	}
	// Every bad config of the table: each near a valid one.
	for _, tc := range badConfigs {
		f.Add([]byte(tc.src))
	}
	// Small valid files: empty, flow style, IPv6, masquerade forms.
	f.Add([]byte(""))
	f.Add([]byte("services: [{proto: udp, vip: 198.18.0.10:53, scheduler: sh, scheduler_flags: [sh-port], backends: [{addr: 198.18.2.1}]}]\n"))
	f.Add([]byte("fullnat: {pool: [2001:db8::30]}\nservices:\n  - {proto: tcp, vip: \"[2001:db8::10]:80\", mode: fullnat, backends: [{addr: 2001:db8:2::1}]}\n"))
	f.Add([]byte("masquerade:\n  - {ipchains: \"-A forward -j MASQ -s 198.18.2.0/24\", to: 198.18.0.20, ports: 2000-3000}\n"))
	// YAML corners: anchors, merge keys, tags, multiple documents, tabs.
	f.Add([]byte("services:\n  - &s {proto: tcp, vip: 198.18.0.10:80}\n  - <<: *s\n    vip: 198.18.0.11:80\n"))
	f.Add([]byte("table: {size: !!str 10}\n---\n"))
	f.Add([]byte("device:\n\tname: x\n"))
	// Names: a VIP with both families, backends and masquerade addresses.
	f.Add([]byte("services:\n  - {name: w, proto: tcp, vip: www.fuancn.cn:80, backends: [{addr: rs1}, {addr: rs1:81}]}\n" +
		"masquerade_to: gw-outside\nmasquerade_inside: [gw-inside]\nmasquerade:\n  - {into: 198.18.2.0/24}\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		// A hang (in the YAML library, say) crashes with the input rather
		// than stalling the fuzzer.
		watchdog := time.AfterFunc(10*time.Second, func() { panic(fmt.Sprintf("Parse hangs on %q", data)) })
		defer watchdog.Stop()
		c, err := ParseNames(context.Background(), data, "fuzz.yaml", labNames)
		if err != nil {
			if c != nil {
				t.Fatal("config returned with an error")
			}
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error is not an Errors: %T %v", err, err)
			}
			lines := strings.Count(string(data), "\n") + strings.Count(string(data), "\r") + 2
			for _, e := range es {
				if e.Msg == "" || e.Fix == "" || e.File != "fuzz.yaml" || e.Line < 0 || e.Line > lines {
					t.Fatalf("bad error %#v (file has %d lines)", e, lines)
				}
				if strings.ContainsAny(e.Msg+e.Fix, "\n\r") {
					t.Fatalf("error spans lines: %q", e.Error())
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted what Validate rejects: %v", err)
		}
		small := true // Maglev tables of millions of slots take seconds to fill
		for _, s := range c.Services {
			small = small && s.Sched.TableSize <= 1<<17
		}
		if small {
			newEngine(t, c)
		}
		roundTrip(t, c)
	})
}
