package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/vsgate/vsgate/internal/tuntest"
	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
	"github.com/vsgate/vsgate/packet/device"
)

// lockedBuffer is a log destination the test reads while the gateway
// writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// flowLines returns the flow lines logged so far, decoded.
func (b *lockedBuffer) flowLines(t *testing.T) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.buf.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if m["msg"] == "flow" {
			out = append(out, m)
		}
	}
	return out
}

// TestFlowLogFlood: a spoofed SYN flood at a service with flow logs, into
// a table it fills (every new flow evicts a half-open one), logs no more
// lines than the service's rate allows over the flood's time; every
// record is either written or counted as held back; each line names the
// flow, even with log.level error; and the flows still open when the
// gateway stops are logged as ended by the shutdown.
func TestFlowLogFlood(t *testing.T) {
	const rate, flood = 50, 3000
	dev := tuntest.Start(t, 1500, 64)
	logs := &lockedBuffer{}
	vip := netip.MustParseAddrPort("198.18.0.10:80")
	rip := netip.MustParseAddrPort("198.18.2.11:80")
	g, err := New(Options{
		// Flow lines are written whatever the log's level (a service's
		// flow_log asked for them).
		Devices: []device.Device{dev}, Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelError})),
		NAT: nat.Config{Capacity: 256, Services: []nat.Service{{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: vip.Port(), Scheduler: "rr",
			SynProxy: nat.SynProxyOff, FlowLog: nat.FlowLog{Every: 1, Rate: rate},
			Backends: []nat.Backend{{Addr: rip.Addr(), Port: rip.Port(), Weight: 1}}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- g.Run(ctx) }()
	stop := sync.OnceValue(func() error {
		cancel()
		return <-ran
	})
	defer func() {
		stop()
		g.Close()
	}()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for {
			select {
			case <-dev.Outbound:
			case <-time.After(2 * time.Second):
				return
			}
		}
	}()
	start := time.Now()
	for i := range flood {
		dev.Inbound <- syn(netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), 1024), vip)
	}
	accounted := func() uint64 {
		return g.flows.written.Load() + g.flows.queueFull.Load() + g.engine.FlowLogs().Suppressed
	}
	// Every SYN makes a flow, which evicts one once the table is full.
	done := func() bool {
		ev := g.engine.Evictions()
		return uint64(g.engine.Flows())+ev == flood && accounted() == ev
	}
	for deadline := time.Now().Add(20 * time.Second); !done(); {
		if time.Now().After(deadline) {
			t.Fatalf("after the flood: %d flows, %d evictions, %d records accounted for", g.engine.Flows(), g.engine.Evictions(), accounted())
		}
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start)
	written, held := g.flows.written.Load(), g.engine.FlowLogs().Suppressed
	if limit := uint64(rate*(elapsed.Seconds()+1)) + 1; written > limit || written == 0 {
		t.Errorf("%d lines written in %v at %d a second; want 1..%d", written, elapsed, rate, limit)
	}
	if ev := g.engine.Evictions(); held+g.flows.queueFull.Load()+written != ev || held == 0 {
		t.Errorf("%d written, %d held back, %d lost in the queue; want them to add up to the %d evicted flows, some held back",
			written, held, g.flows.queueFull.Load(), ev)
	}
	lines := logs.flowLines(t)
	if uint64(len(lines)) != written {
		t.Errorf("%d flow lines in the log, %d counted written", len(lines), written)
	}
	for _, l := range lines {
		if l["service"] != "tcp 198.18.0.10:80" || l["vip"] != vip.String() || l["real_server"] != rip.String() ||
			l["reason"] != "evicted" || l["state"] != "SYN_RECV" || l["packets_in"] != 1.0 || l["bytes_in"] != 40.0 || l["packets_out"] != 0.0 {
			t.Fatalf("flow line %v", l)
		}
	}
	<-drained

	// Stopping logs the open flows, as far as the rate lets it.
	live := uint64(g.engine.Flows())
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	g.flows.Close()
	more := g.flows.written.Load() + g.engine.FlowLogs().Suppressed - written - held
	if live == 0 || more != live {
		t.Errorf("%d flows open at the stop, %d more records given; want one each", live, more)
	}
	shutdown := 0
	for _, l := range logs.flowLines(t)[len(lines):] {
		if l["reason"] == "shutdown" {
			shutdown++
		}
	}
	if uint64(shutdown) != g.flows.written.Load()-written {
		t.Errorf("%d shutdown lines, %d written after the stop", shutdown, g.flows.written.Load()-written)
	}
}
