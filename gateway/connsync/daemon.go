package connsync

import (
	"cmp"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/vsgate/vsgate/nat"
)

// Defaults of Config.
const (
	DefaultPort     = 8848 // IPVS's sync port
	DefaultInterval = 5 * time.Millisecond
	DefaultRefresh  = 10 * time.Second
	DefaultRate     = 10000
	DefaultMaxAge   = 30 * time.Second
)

// Config is one gateway's sync.
type Config struct {
	// Listen is where peers' datagrams arrive, and the source of this
	// gateway's (its port is every peer's destination port too).
	Listen netip.AddrPort
	// Peers are the other gateways' Listen addresses.
	Peers []netip.AddrPort
	// Key authenticates every datagram (HMAC-SHA-256); at least 16
	// bytes, the same on every gateway.
	Key []byte
	// Interval is how often new flows and state changes go out;
	// Refresh how often every flow does.
	Interval, Refresh time.Duration
	// Rate bounds the datagrams sent a second (to all peers together).
	Rate int
	// MaxAge is how old (by the sender's clock) a datagram may be.
	MaxAge time.Duration
	// Master sends this gateway's flows; Backup takes the peers' (IPVS's
	// roles; a gateway behind ECMP is both).
	Master, Backup bool
}

// Counters names, for Stats.Rejected beside Decode's errors.
const (
	reasonReplay    = "replay"
	reasonStale     = "stale"
	reasonNotPeer   = "not_peer"
	reasonNoService = "no_service"
	reasonNoBackend = "no_backend"
	reasonBadFlow   = "bad_flow"
	reasonTable     = "table"
)

// Reasons lists every reason Stats.Rejected counts by.
var Reasons = []string{ErrShort.Error(), ErrMagic.Error(), ErrVersion.Error(), ErrLength.Error(), ErrMAC.Error(), ErrRecord.Error(),
	reasonReplay, reasonStale, reasonNotPeer, reasonNoService, reasonNoBackend, reasonBadFlow, reasonTable}

// Stats are a daemon's counters.
type Stats struct {
	SentDatagrams, SentRecords         uint64
	ReceivedDatagrams, ReceivedRecords uint64
	Imported                           uint64 // records that made a flow here
	RateLimited                        uint64 // datagrams not sent: over Rate
	// Rejected counts refused datagrams (and, for no_service,
	// no_backend, bad_flow and table, refused records) by reason.
	Rejected map[string]uint64
}

// Daemon is a running sync. Methods are safe for concurrent use.
type Daemon struct {
	cfg     Config
	engine  *nat.Engine
	conn    *net.UDPConn
	log     *slog.Logger
	id      uint64
	nextSeq atomic.Uint64

	master, backup atomic.Bool
	refreshNow     atomic.Bool // a peer said hello: send every flow at the next tick
	done           chan struct{}
	wg             sync.WaitGroup
	dumped         chan struct{} // closed when every peer has sent its flows since start

	// noteMu serialises sending the noted flows (Flush, from a worker or
	// the ticker), whose records and datagram are built in noteRecs and
	// noteBuf.
	noteMu   sync.Mutex
	noteRecs []nat.SyncFlow
	noteBuf  []byte
	raw      syscall.RawConn
	peerSA   []unix.Sockaddr // cfg.Peers, for sendto(2)

	mu       sync.Mutex // guards the counters below and latest
	stats    Stats
	latest   map[netip.Addr]Header // by peer: the newest datagram's header taken (one entry a peer, whatever its restarts)
	limiter  *rate.Limiter
	peerAddr map[netip.Addr]bool
	dumpsDue map[netip.Addr]bool // peers whose flows have not all come since start
}

// Start opens the socket and starts the roles cfg asks for.
func Start(cfg Config, engine *nat.Engine, log *slog.Logger) (*Daemon, error) {
	if len(cfg.Key) < 16 {
		return nil, ErrKeyLength
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.Rate <= 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(cfg.Listen))
	if err != nil {
		return nil, fmt.Errorf("connsync: %w", err)
	}
	var idb [8]byte
	_, _ = rand.Read(idb[:])
	d := &Daemon{cfg: cfg, engine: engine, conn: conn, log: log, id: binary.BigEndian.Uint64(idb[:]),
		done: make(chan struct{}), dumped: make(chan struct{}), latest: map[netip.Addr]Header{}, dumpsDue: map[netip.Addr]bool{},
		limiter:  rate.NewLimiter(rate.Limit(cfg.Rate), max(cfg.Rate/100, 1)),
		peerAddr: map[netip.Addr]bool{}}
	d.stats.Rejected = map[string]uint64{}
	domain := unix.AF_INET6
	if d.raw, err = conn.SyscallConn(); err == nil {
		cerr := d.raw.Control(func(fd uintptr) { domain, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN) })
		err = cmp.Or(cerr, err)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("connsync: %w", err)
	}
	d.noteBuf = make([]byte, 0, MaxDatagram)
	for _, p := range cfg.Peers {
		d.peerAddr[p.Addr().Unmap()] = true
		d.dumpsDue[p.Addr().Unmap()] = true
		d.peerSA = append(d.peerSA, sockaddr(p, domain == unix.AF_INET6))
	}
	d.SetRoles(cfg.Master, cfg.Backup)
	w := engine.NewWorker()
	d.wg.Go(d.send)
	d.wg.Go(func() { d.receive(w) })
	if cfg.Backup {
		d.wg.Go(d.hello)
	}
	return d, nil
}

// hello asks the peers for their flows: three times, 100 ms apart, for a
// datagram lost.
func (d *Daemon) hello() {
	for range 3 {
		select {
		case <-d.dumped:
			return
		default:
		}
		d.sendDatagram(make([]byte, 0, MaxDatagram), Header{Flags: FlagHello}, nil)
		select {
		case <-d.done:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitDumps waits until every peer has sent all its flows since this
// daemon started, or for at most timeout (a peer that is down never
// does). It reports whether every peer did.
func (d *Daemon) WaitDumps(timeout time.Duration) bool {
	select {
	case <-d.dumped:
		return true
	case <-time.After(timeout):
		return false
	case <-d.done:
		return false
	}
}

// SetRoles starts or stops sending (master) and taking (backup).
func (d *Daemon) SetRoles(master, backup bool) {
	d.master.Store(master)
	d.backup.Store(backup)
	d.engine.SetSync(master)
}

// Roles reports the roles running.
func (d *Daemon) Roles() (master, backup bool) { return d.master.Load(), d.backup.Load() }

// Config returns the daemon's configuration, defaults filled in.
func (d *Daemon) Config() Config { return d.cfg }

// Stats returns the counters.
func (d *Daemon) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats
	s.Rejected = map[string]uint64{}
	for k, v := range d.stats.Rejected {
		s.Rejected[k] = v
	}
	return s
}

// Close stops the daemon.
func (d *Daemon) Close() error {
	select {
	case <-d.done:
		return nil
	default:
	}
	close(d.done)
	err := d.conn.Close()
	d.wg.Wait()
	d.engine.SetSync(false)
	return err
}

// send is the master's loop: every Interval the noted flows (those no
// worker has flushed yet), every Refresh all of them.
func (d *Daemon) send() {
	tick := time.NewTicker(d.cfg.Interval)
	defer tick.Stop()
	lastRefresh := time.Now()
	var recs []nat.SyncFlow
	buf := make([]byte, 0, MaxDatagram)
	for {
		select {
		case <-d.done:
			return
		case <-tick.C:
		}
		if !d.master.Load() {
			lastRefresh = time.Time{} // a master that starts sends everything first
			continue
		}
		d.Flush()
		if !d.refreshNow.Swap(false) && time.Since(lastRefresh) < d.cfg.Refresh {
			continue
		}
		lastRefresh = time.Now()
		recs = recs[:0]
		d.engine.SyncAll(func(f nat.SyncFlow) { recs = append(recs, f) })
		for {
			n := min(len(recs), MaxRecords)
			var h Header
			if n == len(recs) {
				h.Flags = FlagDumpEnd // the last datagram of the pass, empty if no flow
			}
			d.sendDatagram(buf, h, recs[:n])
			if recs = recs[n:]; len(recs) == 0 {
				break
			}
		}
	}
}

// Flush sends the flows the workers noted (new ones, state changes) now,
// rather than at the next tick. A worker calls it before it sends the
// packets of a batch that noted some, so that no packet of a flow leaves
// this gateway before the peers were told of the flow: a gateway lost a
// moment later leaves no flow the others cannot continue. It does not
// wait for the socket (a full send buffer drops the datagram, counted as
// a send error by the kernel's statistics, and the refresh sends it
// again). A daemon that is not a master sends nothing.
func (d *Daemon) Flush() {
	if !d.master.Load() {
		return
	}
	d.noteMu.Lock()
	defer d.noteMu.Unlock()
	recs := d.noteRecs[:0]
	d.engine.DrainSync(func(f nat.SyncFlow) { recs = append(recs, f) })
	d.noteRecs = recs
	for len(recs) > 0 {
		n := min(len(recs), MaxRecords)
		d.sendDatagram(d.noteBuf, Header{}, recs[:n])
		recs = recs[n:]
	}
}

// sendDatagram sends one datagram of recs with h's flags to every peer,
// within the rate, built in buf (the caller's: several goroutines send).
// The sequence number is taken atomically.
func (d *Daemon) sendDatagram(buf []byte, h Header, recs []nat.SyncFlow) {
	h.Sender, h.Seq, h.Millis = d.id, d.nextSeq.Add(1), time.Now().UnixMilli()
	buf = Encode(buf[:0], d.cfg.Key, h, recs)
	if !d.limiter.Allow() {
		d.count(func(s *Stats) { s.RateLimited++ })
		return
	}
	for i, sa := range d.peerSA {
		var serr error
		err := d.raw.Write(func(fd uintptr) bool {
			serr = unix.Sendto(int(fd), buf, unix.MSG_DONTWAIT, sa)
			return true // never wait for room: a packet worker may be the caller
		})
		if err = cmp.Or(err, serr); err != nil && !errors.Is(err, net.ErrClosed) {
			d.log.Debug("sync: send", "peer", d.cfg.Peers[i], "err", err)
		}
	}
	d.count(func(s *Stats) { s.SentDatagrams++; s.SentRecords += uint64(len(recs)) })
}

// sockaddr is p for sendto(2) on a socket of the family v6 says (an
// IPv4 peer of an IPv6 socket as a mapped address).
func sockaddr(p netip.AddrPort, v6 bool) unix.Sockaddr {
	if !v6 && p.Addr().Unmap().Is4() {
		return &unix.SockaddrInet4{Port: int(p.Port()), Addr: p.Addr().Unmap().As4()}
	}
	return &unix.SockaddrInet6{Port: int(p.Port()), Addr: p.Addr().As16()}
}

func (d *Daemon) count(f func(*Stats)) {
	d.mu.Lock()
	f(&d.stats)
	d.mu.Unlock()
}

func (d *Daemon) reject(reason string, n int) {
	d.mu.Lock()
	d.stats.Rejected[reason] += uint64(n)
	d.mu.Unlock()
}

// receive is the backup's loop: it checks each datagram and imports its
// records with w, a worker of its own.
func (d *Daemon) receive(w *nat.Worker) {
	buf := make([]byte, 64<<10)
	var recs []nat.SyncFlow
	for {
		n, from, err := d.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if !d.backup.Load() {
			continue
		}
		d.count(func(s *Stats) { s.ReceivedDatagrams++ })
		if !d.peerAddr[from.Addr().Unmap()] {
			d.reject(reasonNotPeer, 1)
			continue
		}
		var h Header
		h, recs, err = Decode(buf[:n], d.cfg.Key, recs[:0])
		if err != nil {
			d.reject(err.Error(), 1)
			continue
		}
		if age := time.Since(time.UnixMilli(h.Millis)); age > d.cfg.MaxAge || age < -d.cfg.MaxAge {
			d.reject(reasonStale, 1)
			continue
		}
		d.mu.Lock()
		last, seen := d.latest[from.Addr().Unmap()]
		fresh := !seen || newer(h, last)
		if fresh {
			d.latest[from.Addr().Unmap()] = h
		}
		d.stats.ReceivedRecords += uint64(len(recs))
		d.mu.Unlock()
		if !fresh {
			d.reject(reasonReplay, 1)
			continue
		}
		if h.Flags&FlagHello != 0 && d.master.Load() {
			d.refreshNow.Store(true)
		}
		for _, r := range recs {
			made, err := w.ImportFlow(r)
			switch {
			case made:
				d.count(func(s *Stats) { s.Imported++ })
			case errors.Is(err, nat.ErrSyncNoService):
				d.reject(reasonNoService, 1)
			case errors.Is(err, nat.ErrSyncNoBackend):
				d.reject(reasonNoBackend, 1)
			case errors.Is(err, nat.ErrSyncBadFlow):
				d.reject(reasonBadFlow, 1)
			case err != nil:
				d.reject(reasonTable, 1)
			}
		}
		if h.Flags&FlagDumpEnd != 0 {
			d.dumpDone(from.Addr().Unmap())
		}
	}
}

// dumpDone records that peer a has sent all its flows, and closes dumped
// once every peer has.
func (d *Daemon) dumpDone(a netip.Addr) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.dumpsDue[a] {
		return
	}
	delete(d.dumpsDue, a)
	if len(d.dumpsDue) == 0 {
		close(d.dumped)
	}
}

// PeerList is the peers, sorted, for listings.
func (d *Daemon) PeerList() []netip.AddrPort {
	ps := slices.Clone(d.cfg.Peers)
	slices.SortFunc(ps, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return ps
}

// newer reports whether datagram header h comes after last, the newest
// taken from the same peer: a later sequence number of the same sender,
// or a sender that started since (another id, a clock not behind the
// last datagram's). A datagram of a sender the peer was before it
// restarted is not newer.
func newer(h, last Header) bool {
	if h.Sender == last.Sender {
		return h.Seq > last.Seq
	}
	return h.Millis >= last.Millis
}
