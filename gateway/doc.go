// Package gateway runs vsgate as a real virtual server: one worker per
// device queue — a TUN queue, or in AF_PACKET mode one socket of one
// Ethernet interface (packet/afpacket) — reading batches, translating them
// with the nat engine and writing them back; the network wiring in the
// gateway's namespace (netconf.go, TUN mode: routes into the device, proxy
// ARP/ND, the steering rule, sysctls — all undone on exit; AF_PACKET mode
// needs none of it, only forwarding off on the owned interfaces); health checks that mark real servers down
// and up; live reload that never disturbs established flows to servers
// that stay; the control socket that `vsgate adm` talks to (control.go,
// with the ipvsadm language in gateway/adm); Prometheus metrics read from
// the engine on scrape (metrics.go), and beside them a status page and
// its JSON (status.go, status.html; the JSON's schema is
// docs/status.schema.json); pcap capture; path MTU as a router
// does it (pmtu.go: fragmenting, or ICMP too big back to the sender with
// its own packet quoted); and the L7 services, whose TCP the namespace's
// kernel terminates on vsgate's listeners (a rule per VIP and port
// delivers it, netconf.go) or, with l7.stack: netstack, an embedded
// netstack (proxy/netstack) the engine hands their packets to.
//
// Files, by job: gateway.go (Options, New, Run, Close), fromconfig.go
// (the one conversion from a configuration file to Options), dataplane.go (the
// workers' loop, writes, housekeeping and rates), reload.go (changes,
// all or nothing: check, rewire, engine, then the old wiring goes),
// netconf.go and guard.go (the TUN wiring and its nftables table),
// health.go (health checks into the engine), l7.go (the L7 listeners,
// the netstack and its batched output), dispatch.go (what `vsgate adm` asks), control.go (the
// socket it asks on), capture.go, metrics.go, status.go, drops.go, pmtu.go,
// flowlog.go (the flow records the engine gives, queued and written
// through the gateway's slog logger by a goroutine of their own).
//
// What waits on what (the locks, outermost first; nothing takes them in
// another order):
//
//   - g.mu serialises every change: Reload, adm commands that change
//     something, health verdicts (healthChanged), capture start and stop.
//     It is held across the whole change: the address checks, the
//     rewiring (netlink, nftables, sysctls), engine.Update, and the
//     health checker's Set, which only cancels probers and never waits
//     for one (a prober delivering a verdict waits for g.mu). Listings
//     take it only briefly, to read the configuration they print.
//   - The engine's e.mu: Update publishes a new snapshot under it (with
//     the scheduler rebuilds); statistics read under it. Workers never
//     take it on the packet path: each loads the snapshot atomically at
//     the start of a batch.
//   - writeMu[i]: worker i and the L7 stack's output share device queue i
//     for writes; each holds it for one Write of a batch. Worker i never
//     waits for another worker's queue.
//   - Shard locks (nat): a new flow takes the one or two shards its keys
//     hash to; Expire copies each shard's live list under its lock, then
//     takes the locks again only for the flows it removes. Established
//     flows take none.
//   - The flow log's queue: the engine hands a record over under its
//     shard locks, so the hand-over never waits (a full queue drops the
//     record, counted); the writer goroutine takes no lock of the
//     gateway's.
//   - The health checker's own lock: a prober holds it to record a probe's
//     result, never while it calls back.
//
// Subpackages: config (the YAML file), adm (ipvsadm, portfw and ipchains
// command lines), health (the checkers), e2e (the end-to-end demo and its
// test in netlab).
//
// What it must not do: touch packets itself beyond moving them between the
// device, the engine and the netstack (that is nat's and packet's job), or
// change anything in the namespace beyond what it records and undoes.
package gateway
