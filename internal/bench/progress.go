package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress shows how far a run is: a single line redrawn with \r on a
// terminal, one plain line per step otherwise. A nil writer shows nothing.
//
// The zero value shows nothing. Methods are safe for concurrent use.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	total int
	done  int
	start time.Time
	label string
	stop  chan struct{}
	wg    sync.WaitGroup
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// newProgress starts a progress display of total steps on w.
func newProgress(w io.Writer, total int) *progress {
	p := &progress{w: w, tty: isTerminal(w), total: total, start: time.Now(), stop: make(chan struct{})}
	if p.w != nil && p.tty {
		// Redraw every second so the elapsed time moves during a step.
		p.wg.Go(func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-p.stop:
					return
				case <-t.C:
					p.mu.Lock()
					p.draw()
					p.mu.Unlock()
				}
			}
		})
	}
	return p
}

// step starts the next step, labelled label.
func (p *progress) step(label string) {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.label != "" {
		p.done++
	}
	p.label = label
	if p.tty {
		p.draw()
		return
	}
	fmt.Fprintf(p.w, "[%d/%d %s] %s\n", p.done+1, p.total, fmtDur(time.Since(p.start)), label)
}

// logf prints a message without breaking the bar.
func (p *progress) logf(format string, a ...any) {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintf(p.w, "  "+format+"\n", a...)
	if p.tty {
		p.draw()
	}
}

// draw redraws the bar; p.mu is held.
func (p *progress) draw() {
	fmt.Fprint(p.w, "\r\033[K"+bar(p.done, p.total, 24, time.Since(p.start))+"  "+p.label)
}

// bar renders "[#####-----]  5/10  1m02s, ~1m02s left".
func bar(done, total, width int, elapsed time.Duration) string {
	if total <= 0 {
		total = 1
	}
	done = min(done, total)
	n := done * width / total
	s := "[" + strings.Repeat("#", n) + strings.Repeat("-", width-n) + "]" + fmt.Sprintf(" %d/%d %s", done, total, fmtDur(elapsed))
	if done > 0 && done < total {
		left := time.Duration(float64(elapsed) / float64(done) * float64(total-done))
		s += ", ~" + fmtDur(left) + " left"
	}
	return s
}

// fmtDur formats d as 1m02s.
func fmtDur(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}

// finish ends the display.
func (p *progress) finish() {
	if p == nil || p.w == nil {
		return
	}
	close(p.stop)
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.label != "" {
		p.done++
		p.label = ""
	}
	if p.tty {
		p.draw()
		fmt.Fprintln(p.w)
	}
}
