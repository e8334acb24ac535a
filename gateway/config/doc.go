// Package config reads and validates vsgate's configuration file (YAML) and
// turns it into the nat engine's configuration.
//
// # What it is for
//
// [Parse] (or [Load], for a file) takes the file's bytes and returns a
// [*Config] with every default filled in, or every problem found, each
// naming the line and the fix:
//
//	vsgate.yaml:12: backend 198.18.2.12:8080: weight 70000 is out of range: use 0..65535
//	vsgate.yaml:7: unknown key "wieght": did you mean "weight"?
//	vsgate.yaml:21: service 198.18.0.10:80 is FULLNAT but fullnat.pool has no IPv4 address: add a gateway-owned IPv4 address to fullnat.pool, or use mode: nat
//
// The error is an [Errors] (a list of [*Error], each wrapping [ErrInvalid]);
// Error() gives one problem per line, in line order. Problems with the
// file's shape (YAML syntax, a list where a value belongs, a tag) are
// reported alone, since values cannot be read until the shape is right;
// unknown keys are reported together with every problem with values.
// [Config.NAT] converts a Config into a [nat.Config]; [Config.Validate]
// checks a Config built or changed in code by the same rules, naming
// problems by path ("services[0].backends[2].weight"); [Config.YAML] writes
// a Config back as a file that parses to an equal Config. [ParseIPChains]
// reads a masquerade rule in ipchains' words, for the config and for adm.
// [ParseNames] is Parse with a resolver for host names; [Load] resolves
// with the system's (the hosts file, then DNS).
//
// "vsgate check -c FILE" is Load plus printing (what each name became). The gateway's reload is
// Load then swap: Parse returns nil on any problem, so a bad file never
// reaches the running configuration.
//
// # The file
//
// A complete commented example is testdata/vsgate.yaml. Unknown keys and
// duplicate keys are errors. Keys and list items may be in block or flow
// style; anchors and aliases work (merge keys cannot then repeat a merged
// key); YAML tags are refused. Every value is read as text: durations are Go
// durations ("90s", "1h30m", at most 8760h, millisecond resolution) or
// whole seconds ("900"); booleans are true or false; names of protocols,
// modes, schedulers, levels and formats are case-insensitive. An IPv6
// address with a port must be quoted ("[2001:db8::10]:80"), since YAML
// reads "[" as a list; a bare IPv6 address needs no quotes.
//
// Every key, what it means and its default are in keys.txt (KeysHelp),
// which "vsgate help config" prints; a test holds it to the keys Parse
// reads.
//
// Decisions worth knowing:
//
//   - A masquerade rule's "to" comes from the rule or from masquerade_to
//     (of the rule's family); with neither, the rule is an error. ipchains
//     used the outgoing interface's address; vsgate has no outgoing
//     interface to borrow one from, and guessing would masquerade traffic
//     behind the wrong address.
//   - mode: l7 is an HTTP service: the gateway terminates TCP (with the
//     kernel's TCP or gVisor's netstack, l7.stack) and routes requests
//     with the Apache 2.4 directives of its l7: block,
//     given inline (directives: |) or in a file (file: proxy.conf, relative
//     to this file). Parse checks them with the proxy's parser; an l7
//     service has no backends: its real servers are the directives'
//     ProxyPass and BalancerMember URLs, health-checked with the service's
//     health: block. An l7 block in a service of another mode is an error.
//     A reload changes an L7 service's directives (routes, balancers,
//     health, certificates): open connections stay, and their next request
//     goes by the new routes. A reload may add L7 services (listened on at
//     once) and remove them (their listeners and connections closed);
//     l7.stack and l7.max_connections are set at start.
//   - The FULLNAT pool holds at most one address per family, because the
//     engine uses one; a second one is an error rather than ignored.
//   - Metrics listen on loopback unless public: true says otherwise.
//   - Addresses are not restricted to any range: this is a real product.
//     (Tests and testdata use only 198.18.0.0/15 and 2001:db8::/32.)
//   - Host names may stand for addresses where a host is meant: services'
//     vip and backends' addr, masquerade_to, masquerade[].to and
//     masquerade_inside (not subnets). They are resolved once, when the
//     file is read (run, reload, check), as ipvsadm resolves its
//     arguments: a VIP name is a service for each of its addresses of a
//     family all the service's backends have (the copies named NAME-2,
//     ...); a backend name is a backend for each address of the service's
//     family, and an error if it has none; see resolveNames. A name that
//     does not resolve is an error at its line.
//
// # What it must not do
//
// No I/O beyond Load reading the one file (at most [MaxFileSize] bytes);
// no netlink, sockets, devices or goroutines; no package-level mutable
// state; no logging. Parse is a pure function of its input: the gateway
// decides what to do with the result. A panic inside the YAML library is
// turned into an error, since a config file must never bring the gateway
// down.
package config
