// Package bgp is vsgate's embedded BGP speaker (github.com/osrg/gobgp/v4):
// it announces the prefixes the gateway wants routed to it — the VIPs of
// services with a healthy real server, and fixed prefixes such as the
// default route the real servers' router sends their replies by — to the
// configured peers, and withdraws them when told, so that the routers in
// front of N gateways spread flows over the live ones by ECMP and stop
// sending to one that is gone (Maglev, Katran and GLB are run this way).
//
// What it does:
//   - one BGP instance, eBGP or iBGP to each peer (address, AS, hold time
//     and keepalive, optional TCP MD5 password, optional BFD), each peer
//     carrying the routes of its own address family;
//   - Announce sets the whole set of routes at once; the speaker sends the
//     difference (new routes, withdrawals), with the configured
//     communities and next hop (default: the session's own address);
//   - Withdraw takes every route back, for a graceful stop before the
//     gateway drains;
//   - Peers and Routes say what the sessions are doing, for `vsgate adm
//     bgp` and metrics.
//
// It never listens for connections (it dials its peers, so it needs no
// privileged port) and accepts no routes: every path a peer sends is
// rejected by the import policy, so nothing a router says changes the
// gateway.
//
// What it must not do: import anything from nat, gateway or the device
// packages (the gateway decides what to announce and calls in), or
// install routes in the kernel.
package bgp
