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
// the engine on scrape (metrics.go); pcap capture; path MTU as a router
// does it (pmtu.go: fragmenting, or ICMP too big back to the sender with
// its own packet quoted); and the L7 services,
// whose packets the engine hands to an embedded netstack (proxy/netstack).
//
// Files, by job: gateway.go (Options, New, Run, Close), dataplane.go (the
// workers' loop, writes, housekeeping and rates), reload.go (changes,
// all or nothing: check, rewire, engine, then the old wiring goes),
// netconf.go and guard.go (the TUN wiring and its nftables table),
// health.go (health checks into the engine), l7.go (the netstack and its
// batched output), dispatch.go (what `vsgate adm` asks), control.go (the
// socket it asks on), capture.go, metrics.go, drops.go, pmtu.go.
//
// Subpackages: config (the YAML file), adm (ipvsadm, portfw and ipchains
// command lines), health (the checkers), e2e (the end-to-end demo and its
// test in netlab).
//
// What it must not do: touch packets itself beyond moving them between the
// device, the engine and the netstack (that is nat's and packet's job), or
// change anything in the namespace beyond what it records and undoes.
package gateway
