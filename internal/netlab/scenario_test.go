package netlab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// Scenarios run against the kernel reference gateway (nftables in the gw
// namespace). The same functions are meant to run against vsgate later.

// kernelRefLab builds basic, starts the backends and the kernel reference.
func kernelRefLab(t *testing.T) *Lab {
	t.Helper()
	requireNamespaces(t)
	requireCommand(t, "ip", "iproute2")
	requireCommand(t, "nft", "nftables")
	lab := buildLab(t, Basic())
	if err := lab.StartBackends(); err != nil {
		t.Fatal(err)
	}
	ref, err := lab.KernelRefFor()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := lab.StartKernelRef(ctx, ref); err != nil {
		t.Fatal(err)
	}
	return lab
}

func TestKernelRef(t *testing.T) {
	lab := kernelRefLab(t)
	p := lab.Topo.Plan
	ctx := context.Background()
	for _, fam := range []struct {
		name      string
		vip, masq netip.Addr
	}{
		{"ipv4", p.VIP4, p.Masq4},
		{"ipv6", p.VIP6, p.Masq6},
	} {
		t.Run(fam.name, func(t *testing.T) {
			t.Run("http-rr", func(t *testing.T) {
				counts, err := lab.ScenarioHTTPRoundRobin(ctx, fam.vip, 10)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("spread %v", counts)
			})
			t.Run("udp", func(t *testing.T) {
				if err := lab.ScenarioUDP(ctx, fam.vip); err != nil {
					t.Fatal(err)
				}
			})
			t.Run("tcp-echo", func(t *testing.T) {
				if err := lab.ScenarioTCPEcho(ctx, fam.vip); err != nil {
					t.Fatal(err)
				}
			})
			t.Run("masquerade", func(t *testing.T) {
				if err := lab.ScenarioMasquerade(ctx, fam.masq); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

// TestScenariosFailWithoutGateway runs the scenarios with no system under
// test in the gateway: each must fail (with ErrScenario), or the scenarios
// prove nothing.
func TestScenariosFailWithoutGateway(t *testing.T) {
	requireNamespaces(t)
	lab := buildLab(t, Basic())
	if err := lab.StartBackends(); err != nil {
		t.Fatal(err)
	}
	vip, masq := lab.Topo.Plan.VIP4, lab.Topo.Plan.Masq4
	// Nothing answers for the VIP: keep the wait for that short.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	short := func() context.Context {
		c, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		t.Cleanup(cancel)
		return c
	}
	if _, err := lab.ScenarioHTTPRoundRobin(short(), vip, 1); !errors.Is(err, ErrScenario) {
		t.Errorf("http-rr: %v, want ErrScenario", err)
	}
	if err := lab.ScenarioUDP(short(), vip); !errors.Is(err, ErrScenario) {
		t.Errorf("udp: %v, want ErrScenario", err)
	}
	if err := lab.ScenarioTCPEcho(short(), vip); !errors.Is(err, ErrScenario) {
		t.Errorf("tcp-echo: %v, want ErrScenario", err)
	}
	// Without masquerade the backends reach the client with their own
	// source (the gateway forwards), so the check itself must fail.
	if err := lab.ScenarioMasquerade(ctx, masq); !errors.Is(err, ErrScenario) {
		t.Errorf("masquerade: %v, want ErrScenario", err)
	}
}

// TestHTTPServerPaths checks /big and /redirect directly (gw to b1).
func TestHTTPServerPaths(t *testing.T) {
	requireNamespaces(t)
	lab := buildLab(t, Basic())
	b1 := lab.MustHost("b1")
	if _, err := b1.StartHTTP("b1", ":80"); err != nil {
		t.Fatal(err)
	}
	hc := lab.MustHost(HostGW).HTTPClient(10 * time.Second)
	const n = 3<<20 + 17
	resp, err := hc.Get("http://198.18.2.11/big?bytes=3145745")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || got != n || resp.Header.Get("X-Backend") != "b1" {
		t.Errorf("/big: %d bytes, %v, backend %q; want %d", got, err, resp.Header.Get("X-Backend"), n)
	}
	resp, err = hc.Get("http://[2001:db8:2::11]/redirect")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || !strings.HasSuffix(resp.Header.Get("Location"), "/redirected") {
		t.Errorf("/redirect: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	req, _ := http.NewRequest("GET", "http://198.18.2.11/x", nil)
	req.Header.Set("X-Forwarded-For", "198.18.0.2")
	req.Host = "sales.example"
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var rep HTTPReply
	err = json.NewDecoder(resp.Body).Decode(&rep)
	resp.Body.Close()
	if err != nil || rep.XFF != "198.18.0.2" || rep.Host != "sales.example" || rep.Backend != "b1" {
		t.Errorf("reply %+v, %v", rep, err)
	}
}

// TestKernelRefClients: every client of "clients" reaches the VIP; three
// clients, one request each, one per backend.
func TestKernelRefClients(t *testing.T) {
	requireNamespaces(t)
	requireCommand(t, "ip", "iproute2")
	requireCommand(t, "nft", "nftables")
	topo, err := Clients(3)
	if err != nil {
		t.Fatal(err)
	}
	lab := buildLab(t, topo)
	if err := lab.StartBackends(); err != nil {
		t.Fatal(err)
	}
	ref, err := lab.KernelRefFor()
	if err != nil {
		t.Fatal(err)
	}
	if err := lab.StartKernelRef(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i, c := range topo.Plan.Clients {
		resp, err := lab.MustHost(c).HTTPClient(5 * time.Second).Get("http://198.18.0.10/")
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		var rep HTTPReply
		err = json.NewDecoder(resp.Body).Decode(&rep)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("198.18.0.%d", 101+i)
		if ap, err := netip.ParseAddrPort(rep.Remote); err != nil || ap.Addr().String() != want {
			t.Errorf("%s: backend saw %q, want %s", c, rep.Remote, want)
		}
		seen[rep.Backend] = true
	}
	if len(seen) != 3 {
		t.Errorf("backends %v, want all three", seen)
	}
	if err := lab.StopKernelRef(context.Background(), ref); err != nil {
		t.Error(err)
	}
}
