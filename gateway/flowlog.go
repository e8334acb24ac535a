package gateway

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/vsgate/vsgate/nat"
)

// flowLogQueue is how many flow records wait to be written: records come
// in bursts (an Expire pass ends many flows at once) and the services'
// rate limits bound how many a second.
const flowLogQueue = 4096

// flowLog writes the engine's flow records (nat.FlowLogger) through the
// gateway's logger, one line each, as text or JSON as log.format says.
// The engine hands a record over with its table's locks held, so LogFlow
// only queues it: a full queue drops the record, counted.
type flowLog struct {
	queue     chan nat.FlowEnd
	log       *slog.Logger
	stop      chan struct{}
	stopped   sync.WaitGroup
	stopOnce  sync.Once
	written   atomic.Uint64
	queueFull atomic.Uint64
	failed    atomic.Uint64 // the handler's writes that failed
}

// newFlowLog starts the writer.
func newFlowLog(log *slog.Logger) *flowLog {
	l := &flowLog{queue: make(chan nat.FlowEnd, flowLogQueue), log: log, stop: make(chan struct{})}
	l.stopped.Add(1)
	go l.run()
	return l
}

// LogFlow queues a record (nat.FlowLogger).
func (l *flowLog) LogFlow(r nat.FlowEnd) {
	select {
	case l.queue <- r:
	default:
		l.queueFull.Add(1)
	}
}

func (l *flowLog) run() {
	defer l.stopped.Done()
	for {
		select {
		case r := <-l.queue:
			l.write(&r)
		case <-l.stop:
			for {
				select {
				case r := <-l.queue:
					l.write(&r)
				default:
					return
				}
			}
		}
	}
}

// Close writes what is queued and stops the writer. Records that come
// after are queued and never written.
func (l *flowLog) Close() {
	l.stopOnce.Do(func() { close(l.stop) })
	l.stopped.Wait()
}

// write logs one record, at level info whatever log.level says: a
// service's flow_log asked for it. The attributes' names are the ones
// ipvsadm's --stats columns use for the directions: in is from the
// client.
func (l *flowLog) write(r *nat.FlowEnd) {
	attrs := []slog.Attr{
		slog.String("service", r.Service),
		slog.String("client", r.Client.String()),
		slog.String("vip", r.VIP.String()),
		slog.String("real_server", r.RealServer.String()),
	}
	if r.Local != r.Client {
		attrs = append(attrs, slog.String("local", r.Local.String()))
	}
	attrs = append(attrs,
		slog.Time("start", r.Start),
		slog.Float64("duration", r.Duration().Seconds()),
		slog.Uint64("packets_in", r.Packets[nat.DirOriginal]),
		slog.Uint64("packets_out", r.Packets[nat.DirReply]),
		slog.Uint64("bytes_in", r.Bytes[nat.DirOriginal]),
		slog.Uint64("bytes_out", r.Bytes[nat.DirReply]),
		slog.String("reason", r.Reason.String()),
		slog.String("state", r.State),
	)
	rec := slog.NewRecord(r.End, slog.LevelInfo, "flow", 0)
	rec.AddAttrs(attrs...)
	if err := l.log.Handler().Handle(context.Background(), rec); err != nil {
		l.failed.Add(1)
		return
	}
	l.written.Add(1)
}
