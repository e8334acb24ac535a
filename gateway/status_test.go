package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/vsgate/vsgate/internal/tuntest"
	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
	"github.com/vsgate/vsgate/packet/device"
	"golang.org/x/net/html"
)

// TestStatusPage: /status.json holds to docs/status.schema.json (no field
// undocumented, none missing), its numbers are those of `vsgate adm -L -n
// --stats` at the same moment, the page at / and /status shows the same
// numbers without running a script, with each real server's state, and
// a refused reload is on both.
func TestStatusPage(t *testing.T) {
	dev := tuntest.Start(t, 1500, 16)
	sock := filepath.Join(t.TempDir(), "vsgate.sock")
	vip := netip.MustParseAddrPort("198.18.0.10:80")
	opts := Options{
		Devices: []device.Device{dev}, ControlSocket: sock, MetricsListen: "127.0.0.1:0", Version: "vsgate test",
		NAT: nat.Config{Capacity: 1024, Services: []nat.Service{{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: vip.Port(), Scheduler: "rr",
			Backends: []nat.Backend{{Addr: netip.MustParseAddr("198.18.2.11"), Port: 80, Weight: 1}, {Addr: netip.MustParseAddr("198.18.2.12"), Port: 80, Weight: 0}}}}},
	}
	g, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	runGateway(t, g)
	for i := range 3 {
		dev.Inbound <- syn(netip.AddrPortFrom(netip.MustParseAddr("198.18.0.2"), uint16(1000+i)), vip)
		dev.Recv(t, 10*time.Second)
	}
	bad := opts
	bad.L7Netstack = true
	if err := g.Reload(bad); err == nil {
		t.Fatal("a reload that changes l7.stack went through")
	}
	base := "http://" + g.MetricsAddr()
	get := func(path string) []byte {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
		return b
	}
	raw := get("/status.json")
	listing, err := Call(context.Background(), sock, Request{Args: []string{"-L", "-n", "--stats"}})
	if err != nil || listing.Status != 0 {
		t.Fatalf("adm -L -n --stats: %+v %v", listing, err)
	}

	schemaFile, err := filepath.Abs("../docs/status.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	sch, err := jsonschema.NewCompiler().Compile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(doc); err != nil {
		t.Fatalf("/status.json does not hold to docs/status.schema.json: %v\n%s", err, raw)
	}
	var st Status
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.Reload == nil || st.Reload.OK || !strings.Contains(st.Reload.Error, "l7.stack") {
		t.Errorf("the refused reload: %+v", st.Reload)
	}
	if len(st.Services) != 1 || len(st.Services[0].RealServers) != 2 {
		t.Fatalf("services: %+v", st.Services)
	}
	s := st.Services[0]
	if s.Key != "TCP 198.18.0.10:80" || s.Traffic.Conns != 3 || s.Traffic.PacketsIn != 3 {
		t.Errorf("service: %+v", s)
	}
	if rs := s.RealServers; rs[0].State != "UP" || rs[1].State != "DRAINING" || rs[0].Traffic.Conns != 3 || rs[0].Inactive != 3 {
		t.Errorf("real servers: %+v", rs)
	}

	// ipvsadm's --stats line of each entry: Conns InPkts OutPkts InBytes
	// OutBytes (with K/M/G past 4 digits: these are small).
	stats := map[string][]string{}
	for line := range strings.Lines(listing.Output) {
		f := strings.Fields(line)
		switch {
		case len(f) == 7 && f[0] == "TCP":
			stats[f[1]] = f[2:]
		case len(f) == 7 && f[0] == "->":
			stats[f[1]] = f[2:]
		}
	}
	n := func(v uint64) string { return strconv.FormatUint(v, 10) }
	for key, tr := range map[string]TrafficStatus{"198.18.0.10:80": s.Traffic, "198.18.2.11:80": s.RealServers[0].Traffic, "198.18.2.12:80": s.RealServers[1].Traffic} {
		want := []string{n(tr.Conns), n(tr.PacketsIn), n(tr.PacketsOut), n(tr.BytesIn), n(tr.BytesOut)}
		if strings.Join(stats[key], " ") != strings.Join(want, " ") {
			t.Errorf("%s: adm -L -n --stats says %v, /status.json %v\n%s", key, stats[key], want, listing.Output)
		}
	}

	page := get("/status")
	if root := get("/"); !bytes.Equal(stripNow(root), stripNow(page)) {
		t.Errorf("/ and /status differ")
	}
	// The numbers are in the page as sent (no script runs here): each
	// row's data-v cells, in the column order of the JSON's traffic.
	rows := htmlRows(t, page)
	want := map[string][]string{
		"TCP 198.18.0.10:80": trafficCells(s.Traffic),
		"198.18.2.11:80":     append([]string{"1", "0", "3"}, trafficCells(s.RealServers[0].Traffic)...),
		"198.18.2.12:80":     append([]string{"0", "0", "0"}, trafficCells(s.RealServers[1].Traffic)...),
	}
	for key, w := range want {
		if got := rows[key]; strings.Join(got.values, " ") != strings.Join(w, " ") {
			t.Errorf("page row %s: %v, want %v", key, got.values, w)
		}
	}
	if c := rows["198.18.2.11:80"].class; !strings.Contains(c, "up") {
		t.Errorf("an up real server's row has class %q", c)
	}
	if c := rows["198.18.2.12:80"].class; !strings.Contains(c, "idle") {
		t.Errorf("a draining real server's row has class %q", c)
	}
	if !bytes.Contains(page, []byte("refused")) || !bytes.Contains(page, []byte(`http-equiv="refresh"`)) {
		t.Errorf("the page lacks the refused reload or its refresh")
	}
}

var nowLine = regexp.MustCompile(`<time id="now">[^<]*</time>|ago`)

func stripNow(b []byte) []byte { return nowLine.ReplaceAll(b, nil) }

func trafficCells(tr TrafficStatus) []string {
	var out []string
	for _, v := range []uint64{tr.Conns, tr.PacketsIn, tr.PacketsOut, tr.BytesIn, tr.BytesOut, tr.CPS, tr.InPPS, tr.OutPPS, tr.InBPS, tr.OutBPS} {
		out = append(out, strconv.FormatUint(v, 10))
	}
	return out
}

type htmlRow struct {
	class  string
	values []string
}

// htmlRows reads the page's service and real-server rows: their data-v
// cells by the row's data-service or data-rs.
func htmlRows(t *testing.T, page []byte) map[string]htmlRow {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]htmlRow{}
	attr := func(n *html.Node, name string) (string, bool) {
		for _, a := range n.Attr {
			if a.Key == name {
				return a.Val, true
			}
		}
		return "", false
	}
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "tr" {
			key, ok := attr(n, "data-service")
			if !ok {
				key, ok = attr(n, "data-rs")
			}
			if ok {
				row := htmlRow{}
				row.class, _ = attr(n, "class")
				for c := n.FirstChild; c != nil; c = c.NextSibling {
					if v, ok := attr(c, "data-v"); ok && c.Data == "td" {
						row.values = append(row.values, v)
					}
				}
				out[key] = row
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if len(out) == 0 {
		os.WriteFile(filepath.Join(t.TempDir(), "page.html"), page, 0o644)
		t.Fatalf("no rows in the page:\n%s", page)
	}
	return out
}
