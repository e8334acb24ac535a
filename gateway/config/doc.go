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
//	device:                 how packets reach vsgate
//	  type: tun             tun or afpacket                             default tun
//	  name: vsg0            TUN interface name, 1..15 bytes             default vsg0
//	  queues: 2             TUN queues, or AF_PACKET sockets per        default 1
//	                        interface; one worker each, 1..256
//	  offloads: true        TUN virtio-net header, TSO/USO: the kernel  default true
//	                        hands over 64 KiB super-packets, split on
//	                        read, coalesced on write; a kernel without
//	                        them gets a plain TUN (and a warning)
//	  interfaces: [eth1, eth2]  afpacket: the Ethernet interfaces vsgate
//	                        owns (client and server side); required
//	  addresses: [198.18.2.1]  afpacket: addresses vsgate answers ARP/ND
//	                        for besides VIPs, masquerade and FULLNAT
//	                        addresses: the real servers' default gateway
//	table:
//	  size: 1048576         max tracked flows, 1..2^26                  default 65536
//	  per_source:           what one client prefix may hold (nat/source.go)
//	    v4_prefix: 24       prefix length that is one source, 1..32     default 32
//	    v6_prefix: 64       likewise for IPv6, 1..128                   default 128
//	    half_open: 100      half-open TCP flows per source; 0: no limit default 0
//	    flows: 10000        flows per source; 0: no limit               default 0
//	  syn_proxy:            when syn_proxy: auto services proxy
//	    half_open: 1024     while the table holds this many half-open   default 1024
//	                        TCP flows or more,
//	    fill: 75            or is this full or more, in percent         default 75
//	timeouts:               flow timeouts, > 0; left out: IPVS's defaults
//	  tcp: 15m              TCP established        (ipvsadm --set tcp)
//	  tcpfin: 2m            TCP FIN_WAIT           (ipvsadm --set tcpfin)
//	  udp: 5m               UDP                    (ipvsadm --set udp)
//	  icmp: 10s
//	  tcp_syn_sent: 2m, tcp_syn_recv: 1m, tcp_time_wait: 2m,
//	  tcp_close: 10s, tcp_close_wait: 1m, tcp_last_ack: 30s
//	default: pass           pass or drop: packets that reach vsgate and  default pass
//	                        match no flow, service or masquerade rule
//	                        (an inside host's traffic that is not
//	                        masqueraded: pass routes it on unchanged).
//	                        Traffic from the outside to an inside
//	                        address (a real server, a masqueraded
//	                        subnet) that is no service never reaches an
//	                        inside host either way: vsgate drops it
//	                        (inbound_unsolicited), and on a TUN its
//	                        nftables table drops what the kernel would
//	                        forward around it (forward_guard). Nor is
//	                        anything routed on whose source is no inside
//	                        address (a real server, a masquerade rule's
//	                        subnet): a forged source from the inside
//	                        (BCP 38) or a stranger's traffic from the
//	                        outside (source_not_inside), nor anything
//	                        to or from a multicast, broadcast,
//	                        link-local or loopback address
//	                        (not_routable). So pass governs only the
//	                        inside's own unmasqueraded traffic.
//	tcp_window_check: true  every flow's TCP window is checked; false:  default true
//	                        none (conntrack's be_liberal)
//	removed_backends: drain drain or reset: flows of removed backends   default drain
//	services:               virtual services, unique by proto+vip+port
//	  - name: web           optional label [A-Za-z0-9._-]{1,64}, unique
//	    proto: tcp          tcp or udp                                  required
//	    fwmark: 1           instead of proto and vip: a firewall-mark service
//	                        (ipvsadm -f) of the flows marks: gives mark 1
//	    family: ipv4        with fwmark: ipv4 or ipv6                   default ipv4
//	    vip: 198.18.0.10:80 address and port; port 0 (198.18.0.10:0) is  required
//	                        every port no other service of the address
//	                        has, and needs persistence (ipvsadm -p with
//	                        port 0): one persistence for all ports
//	    scheduler: wrr      rr wrr lc wlc sed nq sh dh mh p2c fo ovf    default wlc
//	                        lblc lblcr
//	    scheduler_flags: [sh-port, sh-fallback]   sh: sh-port, sh-fallback; dh: dh-fallback
//	    scheduler_table_size: 65537   sh, dh, mh: a prime <= 2^24       default 65537
//	    mode: nat           nat, fullnat, dr or l7 (see below)          default nat
//	                        dr: direct routing (ipvsadm -g), afpacket only:
//	                        the packet goes to the real server's MAC
//	                        unchanged; real servers hold the VIP on lo
//	                        (arp_ignore=1, arp_announce=2), answer the
//	                        client themselves, on the VIP's port
//	    persistence: 300s   ipvsadm -p; 0 is none                       default 0
//	    persistence_netmask: 24   ipvsadm -M: prefix length, or an IPv4 netmask;
//	                        needs persistence                           default 32 / 128
//	    sloppy: false       adopt flows this gateway has not seen begin:
//	                        TCP seen mid-stream (as IPVS sloppy_tcp);
//	                        with mode nat, tcp and udp, also a real
//	                        server's answer, translated from the VIP when
//	                        that backend serves no other service (behind
//	                        ECMP; vsgate check says which qualify)    default false;
//	                                                                    true with bgp:
//	                        Behind ECMP use scheduler: mh, which every gateway
//	                        computes alike; other schedulers' picks reach the
//	                        other gateways only through the sync:
//	    announce: healthy   with bgp: healthy (the VIP is announced     default healthy
//	                        while a real server passes its checks),
//	                        always, or never
//	    tcp_window_check: true   drop TCP segments outside their flow's  default true
//	                        window (conntrack's tcp_in_window); false for
//	                        deployments that see one direction only
//	    syn_proxy: auto     on: answer every SYN with a SYN cookie and  default auto
//	                        open the real server's connection only for
//	                        a client that returns it (the kernel's
//	                        SYNPROXY); auto: on while table.syn_proxy's
//	                        thresholds are passed; off (tcp, nat and
//	                        fullnat only)
//	    one_packet: false   udp, mode nat or dr: schedule every datagram  default false
//	                        on its own and keep no flow (ipvsadm -o)
//	    health:             left out: no checks (backends always up)
//	      type: http        tcp (connect) or http (GET)                 default tcp
//	      interval: 2s      longer than timeout                         default 2s
//	      timeout: 1s                                                   default 1s
//	      rise: 2           successes to come up, 1..1000               default 2
//	      fall: 3           failures to go down, 1..1000                default 3
//	      port: 8080        port to check                               default the backend's
//	      path: /health     http only, starts with '/'                  default /
//	      expect: 200       http only, 100..599                         default 200
//	    backends:
//	      - addr: 198.18.2.11:8080   address[:port], the VIP's family   port default: the VIP's
//	                        (under a port-0 vip, port 0: the port the client
//	                        asked for)
//	        weight: 3       0..65535; 0 = quiescent                     default 1
//	        u_threshold: 100  ipvsadm -x: at this many connections the   default 0 (none)
//	                        server takes no new ones, until below
//	                        l_threshold (or 3/4 of u_threshold without it)
//	        l_threshold: 50 ipvsadm -y: 0..u_threshold                  default 0
//	marks:                  firewall marks for fwmark services (the iptables
//	                        -t mangle ... -j MARK step); a new flow gets the
//	                        last matching rule's mark, and the mark's service
//	                        takes it before any service of its address
//	  - mark: 1             1..4294967295                               required
//	    dst: 198.18.0.16/30 an address or prefix of at most 256         required
//	                        addresses, which become the gateway's as VIPs are
//	    proto: tcp          tcp, udp or all                             default all
//	    ports: 80-81        destination ports; needs tcp or udp         default all
//	masquerade:             source NAT for subnets behind the gateway
//	  - from: 198.18.2.0/24 ADDRESS/BITS, ADDRESS/NETMASK or an address; no host bits
//	    to: 198.18.0.20     the source address outbound flows get       default masquerade_to
//	    ports: 1024-65535   source ports when the flow's own is taken   default 1024-65535
//	  - into: 198.18.2.0/24 instead of from: NAT services' connections to real
//	                        servers in the subnet get "to" as their source
//	                        (ipchains -d NET; see nat.Masquerade), FULLNAT-like,
//	                        so the servers need no route back; it opens the
//	                        subnet to nothing else
//	    to: 198.18.2.254    an address the subnet's hosts reach on their link
//	                                                                    default: the masquerade_inside address in the subnet
//	  - ipchains: "-A forward -j MASQ -s 198.18.2.0/24"   instead of from or into
//	                        (-d NET for into; see ParseIPChains)
//	masquerade_to: 198.18.0.20   "to" of from rules without one (also adm's
//	                        ipchains -s rules without --to)             default none: to required
//	masquerade_inside: [198.18.2.254]   addresses vsgate may take on the subnets
//	                        behind it: "to" of into rules (and adm's ipchains -d
//	                        rules) without one: the one inside the subnet   default none
//	fullnat:
//	  pool: [198.18.0.30, 2001:db8::30]   source of FULLNAT flows, one per family
//	  ports: 1024-65535                                                 default 1024-65535
//	  takeover: [198.18.0.32, 198.18.0.33]   the peer gateways' pool addresses
//	                        (with sync:): their flows are continued here when
//	                        the routers send their answers here
//	control:
//	  socket: /run/vsgate/vsgate.sock     absolute, <= 107 bytes        default this
//	                        only root (and the user that started vsgate) may use it
//	user: nobody            who vsgate runs as after setup: not root    default nobody
//	seccomp: true           after setup, system calls outside the
//	                        gateway's list fail with EPERM (execve,
//	                        ptrace, mount, bpf, ...); false turns it off default true
//	l7:
//	  stack: kernel         what terminates L7 services' clients: the    default kernel
//	                        namespace's own TCP (a rule per VIP and
//	                        port delivers them to vsgate's listeners),
//	                        or netstack (gVisor's, inside vsgate: the
//	                        kernel owns no route to the VIP's port)
//	  max_connections: 16384  client connections each L7 service       default 16384
//	                        serves at once, idle keep-alive ones
//	                        included; past it new clients wait in the
//	                        kernel's backlog (as Apache's do)
//	pcap:
//	  dir: /var/lib/vsgate/pcap   the only place captures are written   default this
//	metrics:
//	  listen: 127.0.0.1:9100   address:port, or off                     default 127.0.0.1:9100
//	  public: false         needed (true) to listen on a non-loopback address
//	  pprof: false          also serve Go profiles at /debug/pprof/     default false
//	bgp:                    left out: no BGP. The embedded speaker announces
//	                        each service's VIP (/32, /128) to the routers in
//	                        front, for ECMP over several gateways (package bgp)
//	  as: 65010             this gateway's AS                           required
//	  router_id: 198.18.4.2 IPv4, unique among the routers             required
//	  hold_time: 3s         whole seconds, >= 3s                        default 3s
//	  keepalive: 1s         whole seconds, <= hold_time / 3             default 1s
//	  connect_retry: 2s     between attempts to reach a peer            default 2s
//	  communities: ["65010:100"]   on every route (AS:value)
//	  next_hop: [198.18.4.2]   one per family; left out: each session's
//	                        own address
//	  announce: [0.0.0.0/0] also announced while vsgate runs (such as the
//	                        default route the real servers' router sends
//	                        replies back by)
//	  drain: 2s             a stop withdraws every route, then forwards default 2s
//	                        this long before it exits
//	  peers:                each carries its own address family's routes
//	    - address: 198.18.4.1                                           required
//	      as: 65000                                                     required
//	      port: 179                                                     default 179
//	      password: s3cret  TCP MD5 (RFC 2385)                          default none
//	      hold_time: 3s     this peer's; keepalive: likewise            default bgp's
//	      bfd: false        a BFD session beside it (RFC 5880)          default false
//	      bfd_interval: 300ms   bfd_multiplier: 3                       defaults
//	sync:                   left out: no connection sync. Flows go to the peer
//	                        gateways over UDP, authenticated (gateway/connsync;
//	                        IPVS's sync daemon), and theirs come here
//	  listen: 198.18.2.1    this gateway's address:port for it          required; port 8848
//	  peers: [198.18.2.2, 198.18.2.3]   the other gateways' listen      required
//	  key: "..."            shared by every gateway, >= 16 bytes        required
//	  role: both            master (send), backup (take) or both        default both
//	  interval: 5ms         how soon new flows and state changes go     default 5ms
//	  refresh: 10s          how often every flow goes again             default 10s
//	  rate: 10000           datagrams a second at most                  default 10000
//	log:
//	  level: info           debug, info, warn or error                  default info
//	  format: text          text or json                                default text
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
