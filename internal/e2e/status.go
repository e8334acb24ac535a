package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chromedp/chromedp"
)

// pageRow is a service's or real server's row of the status page as the
// browser shows it: its number cells (data-v) and its class.
type pageRow struct {
	Values []string `json:"values"`
	Class  string   `json:"class"`
}

// pageRowsJS reads the status page's service table: by service key, the
// service's row ("") and its real servers' rows (by address).
const pageRowsJS = `(function () {
  var out = {};
  document.querySelectorAll("#services tbody").forEach(function (tb) {
    var rows = {};
    tb.querySelectorAll("tr").forEach(function (tr) {
      var k = tr.hasAttribute("data-service") ? "" : tr.getAttribute("data-rs");
      var vals = [];
      tr.querySelectorAll("td[data-v]").forEach(function (td) { vals.push(td.getAttribute("data-v")); });
      rows[k] = {values: vals, class: tr.className};
    });
    out[tb.getAttribute("data-key")] = rows;
  });
  return JSON.stringify({now: document.getElementById("now").textContent, rows: out});
})()`

// stepStatusPage loads the gateway's status page in headless Chromium:
// its numbers are those of `vsgate adm -L -n --stats --exact` at the same
// moment, a real server its health check takes down is red on the page's
// next refresh (the page reloads itself), and a screenshot is written.
func stepStatusPage(ctx context.Context, e *Env) (string, error) {
	// Chromium runs in the test's own namespace.
	base, stop, err := e.StatusPage(ctx)
	if err != nil {
		return "", err
	}
	defer stop()
	url := base + "status"
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath("chromium"), chromedp.NoSandbox,
		chromedp.WindowSize(1900, 1000), chromedp.UserDataDir(filepath.Join(e.Dir, "chromium")))
	actx, cancel := chromedp.NewExecAllocator(ctx, opts...)
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	bctx, cancel = context.WithTimeout(bctx, 90*time.Second)
	defer cancel()
	if err := chromedp.Do(bctx, chromedp.Navigate(url), chromedp.WaitVisible("#services")); err != nil {
		return "", fmt.Errorf("chromium loading %s: %w", url, err)
	}
	read := func() (string, map[string]map[string]pageRow, error) {
		raw, err := chromedp.Run(bctx, chromedp.Evaluate[string](pageRowsJS))
		if err != nil {
			return "", nil, err
		}
		var v struct {
			Now  string                        `json:"now"`
			Rows map[string]map[string]pageRow `json:"rows"`
		}
		err = json.Unmarshal([]byte(raw), &v)
		return v.Now, v.Rows, err
	}

	// The same moment: a listing before and after the page's numbers
	// are read, equal (no traffic between), then the page once more.
	var compared int
	for attempt := 0; ; attempt++ {
		before, err := e.Adm(ctx, "-L", "-n", "--stats", "--exact")
		if err != nil {
			return "", err
		}
		if err := chromedp.Do(bctx, chromedp.Reload(), chromedp.WaitVisible("#services")); err != nil {
			return "", err
		}
		_, rows, err := read()
		if err != nil {
			return "", err
		}
		after, err := e.Adm(ctx, "-L", "-n", "--stats", "--exact")
		if err != nil {
			return "", err
		}
		if before != after {
			if attempt < 10 {
				continue
			}
			return "", errors.New("the counters kept moving while the page loaded")
		}
		if compared, err = compareWithListing(rows, before); err != nil {
			return "", err
		}
		break
	}

	// A real server taken down: red on the first refresh that gathered
	// its data after the health check marked it down.
	if err := e.servers["b2"].Close(); err != nil {
		return "", err
	}
	down := `vsgate_backend_up{backend="198.18.2.12:80",service="TCP 198.18.0.10:80"} 0`
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		ok, err := e.metric(ctx, down)
		if err != nil {
			return "", err
		}
		if ok {
			break
		}
		if time.Since(start) > 20*time.Second {
			return "", fmt.Errorf("b2 not marked down within 20 s")
		}
	}
	markedDown := time.Now().UTC().Truncate(time.Second)
	var class string
	var refreshes int
	for last := ""; ; time.Sleep(200 * time.Millisecond) {
		now, rows, err := read()
		if err != nil {
			continue // the page is reloading itself
		}
		if now != last {
			refreshes++
			last = now
		}
		at, err := time.Parse("2006-01-02 15:04:05 UTC", now)
		if err != nil {
			return "", fmt.Errorf("the page's time %q: %w", now, err)
		}
		if at.After(markedDown) {
			class = rows["TCP 198.18.0.10:80"]["198.18.2.12:80"].Class
			break
		}
		if bctx.Err() != nil {
			return "", errors.New("the page did not refresh itself")
		}
	}
	if !strings.Contains(class, "down") {
		return "", fmt.Errorf("b2's row on the first refresh after it was marked down has class %q, want down (red)", class)
	}
	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		return "", err
	}
	mode := "tun"
	if e.opts.AFPacket {
		mode = "afpacket"
	}
	shotFile := filepath.Join(os.TempDir(), "vsgate-status-"+mode+".png")
	if err := os.WriteFile(shotFile, shot, 0o644); err != nil {
		return "", err
	}
	// Bring b2 back, as the health step does.
	s, err := e.Lab.MustHost("b2").StartHTTP("b2", ":80")
	if err != nil {
		return "", err
	}
	e.servers["b2"] = s
	up := strings.Replace(down, "} 0", "} 1", 1)
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		if ok, err := e.metric(ctx, up); err != nil || ok {
			if err != nil {
				return "", err
			}
			break
		}
		if time.Since(start) > 20*time.Second {
			return "", fmt.Errorf("b2 not back up within 20 s")
		}
	}
	return fmt.Sprintf("Chromium: %d rows equal to adm -L -n --stats --exact; b2 down: red after %d refresh(es) by itself; screenshot %s", compared, refreshes, shotFile), nil
}

// StatusPage makes the gateway's status page reachable from this
// namespace: a port on this machine's loopback whose connections are
// dialled on to the gateway's metrics listener from inside the gateway's
// namespace. It returns the page's URL and what closes the port.
func (e *Env) StatusPage(ctx context.Context) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := e.gw.DialContext(ctx, "tcp", "127.0.0.1:9100")
				if err != nil {
					return
				}
				defer up.Close()
				go io.Copy(up, c)
				io.Copy(c, up)
			}()
		}
	}()
	return "http://" + ln.Addr().String() + "/", func() { ln.Close() }, nil
}

// compareWithListing checks the page's rows against an ipvsadm --stats
// listing: Conns, InPkts, OutPkts, InBytes, OutBytes of every service and
// real server. It returns the rows compared.
func compareWithListing(rows map[string]map[string]pageRow, listing string) (int, error) {
	n := 0
	svc := ""
	for line := range strings.Lines(listing) {
		f := strings.Fields(line)
		if len(f) != 7 {
			continue
		}
		var row pageRow
		var ok bool
		switch {
		case f[0] == "->":
			row, ok = rows[svc][f[1]]
			if ok && len(row.Values) >= 3 {
				row.Values = row.Values[3:] // Weight, ActiveConn, InActConn come first
			}
		case f[0] == "TCP" || f[0] == "UDP" || f[0] == "FWM":
			svc = f[0] + " " + f[1]
			row, ok = rows[svc][""]
		default:
			continue
		}
		if !ok {
			return n, fmt.Errorf("the page has no row for %q", strings.TrimSpace(line))
		}
		if len(row.Values) < 5 || strings.Join(row.Values[:5], " ") != strings.Join(f[2:], " ") {
			return n, fmt.Errorf("%q: the page shows %v", strings.TrimSpace(line), row.Values)
		}
		n++
	}
	if n == 0 {
		return 0, fmt.Errorf("no listing line compared:\n%s", listing)
	}
	return n, nil
}
