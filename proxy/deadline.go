package proxy

import (
	"net"
	"time"
)

// deadlines sets a connection's read and write deadlines, each through
// one place that knows what is set. A deadline given with a duration may
// fall up to slack(d) later than asked, so that a connection serving
// request after request moves its runtime timers (a lock and a heap
// update each) once in a while rather than several times per request: a
// timeout fires between d and d+slack(d) after the activity that set it,
// never sooner.
type deadlines struct {
	c           net.Conn
	read, write time.Time // as set on c; zero: none
}

// slack is how much later than asked a deadline of d may fall: 1/64 of
// it, at most a second (Apache's timeouts are whole seconds).
func slack(d time.Duration) time.Duration { return min(d/64, time.Second) }

// within tells whether set already ends a timeout of d from now, at most
// slack(d) late.
func within(set, now time.Time, d time.Duration) bool {
	want := now.Add(d)
	return !set.Before(want) && set.Sub(want) <= slack(d)
}

// setRead makes reads time out d after now (up to slack(d) later).
func (dl *deadlines) setRead(now time.Time, d time.Duration) {
	if !within(dl.read, now, d) {
		dl.setReadAt(now.Add(d + slack(d)))
	}
}

// setWrite makes writes time out d after now (up to slack(d) later).
func (dl *deadlines) setWrite(now time.Time, d time.Duration) {
	if !within(dl.write, now, d) {
		dl.setWriteAt(now.Add(d + slack(d)))
	}
}

// set is setRead and setWrite.
func (dl *deadlines) set(now time.Time, d time.Duration) {
	dl.setRead(now, d)
	dl.setWrite(now, d)
}

// setReadAt makes reads time out at t exactly (zero: never).
func (dl *deadlines) setReadAt(t time.Time) {
	if !t.Equal(dl.read) {
		dl.read = t
		dl.c.SetReadDeadline(t)
	}
}

// setWriteAt makes writes time out at t exactly (zero: never).
func (dl *deadlines) setWriteAt(t time.Time) {
	if !t.Equal(dl.write) {
		dl.write = t
		dl.c.SetWriteDeadline(t)
	}
}

// clear takes both deadlines away.
func (dl *deadlines) clear() {
	dl.setReadAt(time.Time{})
	dl.setWriteAt(time.Time{})
}
