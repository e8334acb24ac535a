package gateway

import (
	"cmp"
	_ "embed"
	"encoding/json"
	"html/template"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vsgate/vsgate/gateway/adm"
	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// Status is what the status page shows, and /status.json serves: its
// schema, with what every field means, is docs/status.schema.json (a test
// holds the two together).
type Status struct {
	Version  string          `json:"version"`
	Now      time.Time       `json:"now"`
	Started  time.Time       `json:"started"`
	Reload   *ReloadStatus   `json:"reload"`
	Table    TableStatus     `json:"table"`
	Drops    []CountStatus   `json:"drops"`
	Device   []DeviceDrop    `json:"device_drops"`
	Services []ServiceStatus `json:"services"`
	L7       []L7Status      `json:"l7"`
	BGP      []BGPPeerStatus `json:"bgp"`
}

// ReloadStatus is the last reload's time and outcome.
type ReloadStatus struct {
	At    time.Time `json:"at"`
	OK    bool      `json:"ok"`
	Error string    `json:"error,omitempty"`
}

// TableStatus is the flow table's fill.
type TableStatus struct {
	Flows     int    `json:"flows"`
	Capacity  int    `json:"capacity"`
	HalfOpen  int64  `json:"half_open"`
	Evictions uint64 `json:"evictions"`
	Expired   uint64 `json:"expired"`
}

// CountStatus is one named counter.
type CountStatus struct {
	Name  string `json:"name"`
	Count uint64 `json:"count"`
}

// TrafficStatus is a service's or real server's totals and rates (per
// second, over the last second, as ipvsadm --rate).
type TrafficStatus struct {
	Conns      uint64 `json:"conns"`
	PacketsIn  uint64 `json:"packets_in"`
	PacketsOut uint64 `json:"packets_out"`
	BytesIn    uint64 `json:"bytes_in"`
	BytesOut   uint64 `json:"bytes_out"`
	CPS        uint64 `json:"cps"`
	InPPS      uint64 `json:"in_pps"`
	OutPPS     uint64 `json:"out_pps"`
	InBPS      uint64 `json:"in_bps"`
	OutBPS     uint64 `json:"out_bps"`
}

// ServiceStatus is one virtual service.
type ServiceStatus struct {
	Key         string             `json:"key"`
	Protocol    string             `json:"protocol"`
	VIP         string             `json:"vip"`
	Port        int                `json:"port"`
	Fwmark      uint32             `json:"fwmark,omitempty"`
	Mode        string             `json:"mode"`
	Scheduler   string             `json:"scheduler"`
	Persistence int                `json:"persistence_seconds,omitempty"`
	Traffic     TrafficStatus      `json:"traffic"`
	RealServers []RealServerStatus `json:"real_servers"`
}

// RealServerStatus is one real server of a service.
type RealServerStatus struct {
	Addr     string        `json:"addr"`
	Weight   uint32        `json:"weight"`
	Active   int64         `json:"active_conns"`
	Inactive int64         `json:"inactive_conns"`
	Up       bool          `json:"up"`
	State    string        `json:"state"` // UP; DOWN (its health check failed); DRAINING (weight 0: no new flows)
	Health   *HealthStatus `json:"health,omitempty"`
	Traffic  TrafficStatus `json:"traffic"`
}

// HealthStatus is a health-checked target's state.
type HealthStatus struct {
	Up     bool       `json:"up"`
	Last   string     `json:"last"`
	LastAt *time.Time `json:"last_at,omitempty"`
	Passed uint64     `json:"passed"`
	Failed uint64     `json:"failed"`
}

// L7Status is one L7 (ProxyPass) service.
type L7Status struct {
	VIP          string           `json:"vip"`
	Connections  int              `json:"connections"`
	Waiting      int              `json:"waiting"`
	Accepted     uint64           `json:"accepted"`
	LoopRequests uint64           `json:"event_loop_requests"`
	Responses    []L7ResponseStat `json:"responses"`
	Members      []L7MemberStatus `json:"members"`
}

// L7ResponseStat is how many responses of one status one side made.
type L7ResponseStat struct {
	Code      int    `json:"code"`
	FromProxy bool   `json:"from_proxy"`
	Count     uint64 `json:"count"`
}

// L7MemberStatus is one balancer member or ProxyPass worker.
type L7MemberStatus struct {
	Balancer string        `json:"balancer"`
	URL      string        `json:"url"`
	Up       bool          `json:"up"`
	Busy     int64         `json:"busy"`
	Requests uint64        `json:"requests"`
	Failures uint64        `json:"failures"`
	Health   *HealthStatus `json:"health,omitempty"`
}

// BGPPeerStatus is one BGP session.
type BGPPeerStatus struct {
	Peer  string `json:"peer"`
	AS    uint32 `json:"as"`
	State string `json:"state"`
	Sent  uint64 `json:"routes_sent"`
	BFD   string `json:"bfd,omitempty"`
}

// Status gathers the status page's data now.
func (g *Gateway) Status() Status {
	e := g.engine
	st := Status{Version: g.version(), Now: time.Now().UTC().Truncate(time.Second), Started: g.start.UTC().Truncate(time.Second),
		Table:  TableStatus{Flows: e.Flows(), Capacity: e.Capacity(), HalfOpen: e.HalfOpen(), Evictions: e.Evictions(), Expired: e.Expired()},
		Device: g.DeviceDrops(), Drops: []CountStatus{}, Services: []ServiceStatus{}, L7: []L7Status{}, BGP: []BGPPeerStatus{}}
	if st.Device == nil {
		st.Device = []DeviceDrop{}
	}
	if r := g.lastReload.Load(); r != nil {
		st.Reload = r
	}
	for r := range nat.DropReason(nat.NumDropReasons) {
		if n := e.Drops(r); n > 0 {
			st.Drops = append(st.Drops, CountStatus{r.String(), n})
		}
	}
	health := map[string]HealthStatus{}
	for _, h := range g.checker.States() {
		hs := HealthStatus{Up: h.Up, Last: h.Last, Passed: h.Passed, Failed: h.Fail}
		if !h.LastAt.IsZero() {
			at := h.LastAt.UTC().Truncate(time.Millisecond)
			hs.LastAt = &at
		}
		health[h.Key] = hs
	}
	var rates map[string]adm.Rates
	if r := g.rates.Load(); r != nil {
		rates = *r
	}
	traffic := func(key string, s nat.Stats) TrafficStatus {
		r := rates[key]
		return TrafficStatus{Conns: s.Conns, PacketsIn: s.PacketsIn, PacketsOut: s.PacketsOut, BytesIn: s.BytesIn, BytesOut: s.BytesOut,
			CPS: r.CPS, InPPS: r.InPPS, OutPPS: r.OutPPS, InBPS: r.InBPS, OutBPS: r.OutBPS}
	}
	for _, s := range e.Services() {
		key := adm.ServiceKey(s.Service)
		proto := "TCP"
		if s.Proto == packet.ProtoUDP {
			proto = "UDP"
		}
		ss := ServiceStatus{Key: key, Protocol: proto, VIP: s.VIP.String(), Port: int(s.Port), Fwmark: s.Fwmark, Mode: modeName(s.Mode),
			Scheduler: s.Scheduler, Persistence: int(s.Persistence / time.Second), Traffic: traffic(key, s.Stats), RealServers: []RealServerStatus{}}
		for _, b := range s.Backends {
			bkey := adm.BackendKey(s.Service, b.Backend)
			rs := RealServerStatus{Addr: netip.AddrPortFrom(b.Addr, b.Port).String(), Weight: b.Weight, Active: b.ActiveConns,
				Inactive: b.InactiveConns, Up: !b.Down && b.Weight > 0, Traffic: traffic(bkey, b.Stats)}
			if h, ok := health[healthKey(s.Service, b.Backend)]; ok {
				rs.Health = &h
			}
			switch {
			case b.Down:
				rs.State = "DOWN"
			case b.Weight == 0:
				rs.State = "DRAINING"
			default:
				rs.State = "UP"
			}
			ss.RealServers = append(ss.RealServers, rs)
		}
		st.Services = append(st.Services, ss)
	}
	for _, l := range g.L7Stats() {
		ls := L7Status{VIP: l.VIP.String(), Connections: l.Front.Connections, Waiting: l.Front.Waiting, Accepted: l.Front.Accepted,
			LoopRequests: l.Front.LoopRequests, Responses: []L7ResponseStat{}, Members: []L7MemberStatus{}}
		for _, r := range l.Front.Responses {
			ls.Responses = append(ls.Responses, L7ResponseStat{Code: r.Status, FromProxy: r.FromProxy, Count: r.Count})
		}
		for _, m := range l.Members {
			ms := L7MemberStatus{Balancer: m.Balancer, URL: m.URL, Up: !m.Down && !m.InError, Busy: m.Busy, Requests: m.Requests, Failures: m.Failures}
			if ap, err := netip.ParseAddrPort(m.Addr); err == nil {
				if h, ok := health[l7HealthKey(l.VIP, ap)]; ok {
					ms.Health = &h
				}
			}
			ls.Members = append(ls.Members, ms)
		}
		st.L7 = append(st.L7, ls)
	}
	if g.speaker != nil {
		for _, p := range g.speaker.Peers() {
			st.BGP = append(st.BGP, BGPPeerStatus{Peer: p.Addr.String(), AS: p.AS, State: p.State, Sent: p.Sent, BFD: p.BFD})
		}
	}
	return st
}

// modeName is a forwarding mode as the configuration writes it.
func modeName(m nat.Mode) string {
	switch m {
	case nat.ModeFullNAT:
		return "fullnat"
	case nat.ModeDR:
		return "dr"
	case nat.ModeL7:
		return "l7"
	}
	return "nat"
}

// version is the gateway's version line (Options.Version, else "vsgate").
func (g *Gateway) version() string { return cmp.Or(g.opts.Version, "vsgate") }

//go:embed status.html
var statusHTML string

// statusPage is the parsed status page template.
func statusPage() *template.Template {
	return template.Must(template.New("status").Funcs(template.FuncMap{
		"num":   groupDigits,
		"bytes": humanBytes,
		"ago": func(now time.Time, t *time.Time) string {
			if t == nil {
				return "never"
			}
			return now.Sub(*t).Truncate(time.Second).String() + " ago"
		},
		"pct": func(a, b int) string {
			if b == 0 {
				return "0%"
			}
			return strconv.FormatFloat(100*float64(a)/float64(b), 'f', 1, 64) + "%"
		},
	}).Parse(statusHTML))
}

// groupDigits writes n with thin groups of three digits (1 234 567).
func groupDigits(n any) string {
	var s string
	switch v := n.(type) {
	case int:
		s = strconv.Itoa(v)
	case int64:
		s = strconv.FormatInt(v, 10)
	case uint64:
		s = strconv.FormatUint(v, 10)
	case uint32:
		s = strconv.FormatUint(uint64(v), 10)
	default:
		return "?"
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteString("\u202f")
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// humanBytes is n bytes in K, M, G (1024s), as ipvsadm's listings.
func humanBytes(n uint64) string {
	units := []string{"B", "K", "M", "G", "T"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return strconv.FormatUint(n, 10) + "B"
	}
	return strconv.FormatFloat(f, 'f', 1, 64) + units[i]
}

// statusHandlers serves the status page at / and /status, and its data
// at /status.json.
func (g *Gateway) statusHandlers(mux *http.ServeMux) {
	page := statusPage()
	html := func(w http.ResponseWriter, r *http.Request) {
		st := g.Status()
		// By key; the page's script sorts by any column.
		slices.SortStableFunc(st.Services, func(a, b ServiceStatus) int { return cmp.Compare(a.Key, b.Key) })
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := page.Execute(w, st); err != nil {
			g.log.Warn("status page", "err", err)
		}
	}
	mux.HandleFunc("GET /{$}", html)
	mux.HandleFunc("GET /status", html)
	mux.HandleFunc("GET /status.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(g.Status())
	})
}
