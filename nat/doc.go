// Package nat is the L4 engine (not built yet: issue 4): virtual services
// keyed by protocol, VIP and port; the sharded flow table whose lookups are
// lock-free; TCP/UDP/ICMP state and timeouts; reverse NAT, FULLNAT and
// masquerade rewrites; ICMP errors and fragments; counters. It takes
// packets and returns verdicts.
//
// What it must not do: any I/O or knowledge of devices, any allocation or
// lock on the path of an established flow. It imports only packet and sched.
package nat
