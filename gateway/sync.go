package gateway

import (
	"fmt"
	"io"
	"reflect"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vsgate/vsgate/gateway/adm"
	"github.com/vsgate/vsgate/gateway/connsync"
)

// The connection sync (gateway/connsync) as the gateway runs it: started
// with the gateway from Options.Sync, its roles switched by `vsgate adm
// --start-daemon` and `--stop-daemon` as ipvsadm's are, listed by `vsgate
// adm -L --daemon`, counted in metrics.

var (
	descSyncDatagrams = prometheus.NewDesc("vsgate_sync_datagrams_total", "Connection sync datagrams sent to peers (each peer counted once per datagram sent to all) and received.", []string{"direction"}, nil)
	descSyncRecords   = prometheus.NewDesc("vsgate_sync_records_total", "Connection sync flow records sent and received.", []string{"direction"}, nil)
	descSyncImported  = prometheus.NewDesc("vsgate_sync_imported_total", "Flows made from peers' records.", nil, nil)
	descSyncRejected  = prometheus.NewDesc("vsgate_sync_rejected_total", "Connection sync datagrams (and records: no_service, no_backend, bad_flow, table) refused, by reason.", []string{"reason"}, nil)
	descSyncLimited   = prometheus.NewDesc("vsgate_sync_rate_limited_total", "Connection sync datagrams not sent: over sync.rate.", nil, nil)
	descSyncLost      = prometheus.NewDesc("vsgate_sync_lost_total", "Flow notes lost before the sync sent them (a worker's ring was full); the next refresh sends those flows.", nil, nil)
	descSyncRole      = prometheus.NewDesc("vsgate_sync_role", "1 if the connection sync's role runs.", []string{"role"}, nil)
)

// syncDescs are the sync's metric descriptions.
var syncDescs = []*prometheus.Desc{descSyncDatagrams, descSyncRecords, descSyncImported, descSyncRejected, descSyncLimited, descSyncLost, descSyncRole}

// collectSync reports the sync's counters, if it runs.
func (g *Gateway) collectSync(ch chan<- prometheus.Metric) {
	if g.sync == nil {
		return
	}
	s := g.sync.Stats()
	c := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	c(descSyncDatagrams, s.SentDatagrams, "sent")
	c(descSyncDatagrams, s.ReceivedDatagrams, "received")
	c(descSyncRecords, s.SentRecords, "sent")
	c(descSyncRecords, s.ReceivedRecords, "received")
	c(descSyncImported, s.Imported)
	c(descSyncLimited, s.RateLimited)
	c(descSyncLost, g.engine.SyncStats().Lost)
	for _, r := range connsync.Reasons {
		c(descSyncRejected, s.Rejected[r], r)
	}
	master, backup := g.sync.Roles()
	for role, on := range map[string]bool{"master": master, "backup": backup} {
		v := 0.0
		if on {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descSyncRole, prometheus.GaugeValue, v, role)
	}
}

// daemon runs ipvsadm's --start-daemon and --stop-daemon: the state word
// (master: send this gateway's flows; backup: take the peers') switches
// the connection sync's role on or off, and refusals are ipvsadm's kernel
// errors (exit 255). --mcast-interface and --syncid, which scripts pass
// by habit, are accepted and mean nothing here: vsgate's sync is unicast
// to sync.peers, authenticated with sync.key; the multicast group, port,
// TTL and message length are refused, since they cannot apply.
func (g *Gateway) daemon(c *adm.Command) error {
	start := c.Op == adm.OpStartDaemon
	if len(c.DaemonMulticast) > 0 {
		return adm.KernelError(fmt.Sprintf("%s: vsgate's sync sends by unicast to the configuration's sync.peers, authenticated with sync.key: there is no multicast group, port, TTL or message length to set", strings.Join(c.DaemonMulticast, " ")))
	}
	if g.sync == nil {
		if !start {
			return adm.KernelError("No daemon is running")
		}
		return adm.KernelError("the configuration has no sync: block (listen, peers, key): add one and restart vsgate")
	}
	// Read and written whole: two daemon commands at once must not each
	// write back a role the other changed. Not g.mu: -R runs this with
	// it held.
	g.daemonMu.Lock()
	defer g.daemonMu.Unlock()
	master, backup := g.sync.Roles()
	running := &master
	if c.DaemonState == "backup" {
		running = &backup
	}
	switch {
	case start && *running:
		return adm.KernelError("Daemon has already run") // the kernel's EEXIST
	case !start && !*running:
		return adm.KernelError("No daemon is running") // the kernel's ESRCH
	}
	*running = start
	g.sync.SetRoles(master, backup)
	g.log.Info("sync daemon", "role", c.DaemonState, "running", start)
	return nil
}

// writeDaemons is `-L --daemon`: the running roles, in ipvsadm's form.
func (g *Gateway) writeDaemons(w io.Writer) {
	if g.sync == nil {
		return
	}
	master, backup := g.sync.Roles()
	cfg := g.sync.Config()
	var peers []string
	for _, p := range g.sync.PeerList() {
		peers = append(peers, p.String())
	}
	if master {
		fmt.Fprintf(w, "master sync daemon (unicast=%s, listen=%v)\n", strings.Join(peers, ","), cfg.Listen)
	}
	if backup {
		fmt.Fprintf(w, "backup sync daemon (unicast=%s, listen=%v)\n", strings.Join(peers, ","), cfg.Listen)
	}
}

// checkSyncReload refuses a reload that changes the sync (its socket and
// key are set up at start).
func (g *Gateway) checkSyncReload(next *connsync.Config) error {
	cur := g.opts.Sync
	switch {
	case cur == nil && next == nil:
		return nil
	case cur == nil || next == nil:
		return fmt.Errorf("sync: adding or removing the sync block needs a restart")
	}
	a, b := *cur, *next
	a.Master, a.Backup, b.Master, b.Backup = false, false, false, false // roles are adm's to change
	if !reflect.DeepEqual(a, b) {
		return fmt.Errorf("sync: its settings (listen, peers, key, interval, refresh, rate) changed: that needs a restart")
	}
	return nil
}
