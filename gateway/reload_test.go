package gateway

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/vsgate/vsgate/gateway/adm"
	"github.com/vsgate/vsgate/gateway/health"
	"github.com/vsgate/vsgate/internal/tuntest"
	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
	"github.com/vsgate/vsgate/packet/device"
)

// TestReloadWhileHealthChecking: reloads, adm commands and health checks
// whose verdicts flip all at once, with packets flowing. Under -race (make
// test; `go test -race -run TestReloadWhileHealthChecking -count 50`
// for the fifty runs) nothing races, and at the end the gateway
// holds the last configuration, with the health checks' verdicts applied
// to it.
func TestReloadWhileHealthChecking(t *testing.T) {
	// Two real servers on loopback: one answers health checks
	// throughout; the other's listener comes and goes, so its verdict
	// flips while reloads run.
	steady, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer steady.Close()
	go func() {
		for {
			c, err := steady.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	steadyAddr := netip.MustParseAddrPort(steady.Addr().String())
	flappy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	flappyAddr := netip.MustParseAddrPort(flappy.Addr().String())
	flappy.Close()

	vip := netip.MustParseAddrPort("198.18.0.10:80")
	service := func(sched string, backends ...netip.AddrPort) nat.Config {
		var bs []nat.Backend
		for _, b := range backends {
			bs = append(bs, nat.Backend{Addr: b.Addr(), Port: b.Port(), Weight: 1})
		}
		return nat.Config{Capacity: 1024, Services: []nat.Service{{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: vip.Port(), Scheduler: sched, Backends: bs}}}
	}
	spec := health.Spec{Type: "tcp", Interval: 5 * time.Millisecond, Timeout: 20 * time.Millisecond, Rise: 1, Fall: 1}
	optsFor := func(c nat.Config) Options {
		return Options{NAT: c, Health: map[string]health.Spec{adm.ServiceKey(c.Services[0]): spec}}
	}
	dev := tuntest.Start(t, 1500, 64)
	first := optsFor(service("rr", steadyAddr, flappyAddr))
	first.Devices = []device.Device{dev}
	first.ControlSocket = t.TempDir() + "/vsgate.sock"
	verdicts := &countingHandler{counts: map[string]int{}}
	first.Logger = slog.New(verdicts)
	g, err := New(first)
	if err != nil {
		t.Fatal(err)
	}
	runGateway(t, g)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	run := func(f func(i int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				f(i)
			}
		}()
	}
	// The flapping listener.
	run(func(i int) {
		ln, err := net.Listen("tcp", flappyAddr.String())
		if err != nil {
			time.Sleep(time.Millisecond)
			return
		}
		time.Sleep(15 * time.Millisecond)
		ln.Close()
		time.Sleep(15 * time.Millisecond)
	})
	// Reloads between two configurations.
	scheds := []string{"rr", "wlc"}
	run(func(i int) {
		if err := g.Reload(optsFor(service(scheds[i%2], steadyAddr, flappyAddr))); err != nil {
			t.Errorf("reload %d: %v", i, err)
		}
	})
	// adm commands: listings and a weight change.
	run(func(i int) {
		for _, args := range [][]string{{"-L", "-n"}, {"-e", "-t", vip.String(), "-r", steadyAddr.String(), "-m", "-w", "2"}, {"-S", "-n"}} {
			if r := g.handle(context.Background(), Request{Args: args}); r.Status != 0 {
				t.Errorf("adm %v: %+v", args, r)
			}
		}
	})
	// Packets.
	run(func(i int) {
		dev.Inbound <- syn(netip.AddrPortFrom(netip.MustParseAddr("198.18.0.2"), uint16(1024+i%60000)), vip)
		select {
		case <-dev.Outbound:
		case <-time.After(100 * time.Millisecond):
		}
	})
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()

	// The last word: a reload to wlc with the steady server only.
	last := service("wlc", steadyAddr)
	if err := g.Reload(optsFor(last)); err != nil {
		t.Fatal(err)
	}
	want := "-A -t 198.18.0.10:80 -s wlc\n-a -t 198.18.0.10:80 -r " + steadyAddr.String() + " -m -w 1\n"
	if r := g.handle(context.Background(), Request{Args: []string{"-S", "-n"}}); r.Output != want {
		t.Fatalf("after the reloads -S is\n%s\nwant\n%s", r.Output, want)
	}
	// The checks' verdicts did flip meanwhile: the test raced them.
	if down, up := verdicts.count("backend down"), verdicts.count("backend up"); down == 0 || up == 0 {
		t.Fatalf("health verdicts during the reloads: %d down, %d up; want both", down, up)
	}
}

// countingHandler is a slog handler that counts messages.
type countingHandler struct {
	mu     sync.Mutex
	counts map[string]int
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *countingHandler) WithGroup(string) slog.Handler            { return h }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.counts[r.Message]++
	h.mu.Unlock()
	return nil
}

func (h *countingHandler) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.counts[msg]
}
