// Package names resolves the host and service names that people type where
// vsgate expects addresses and ports, as ipvsadm, ipmasqadm and ipchains
// resolve them through the C library: once, when a command or the
// configuration file is read; the hosts file first, then DNS, with a time
// limit; every address a name has. And back, for listings without -n: a
// name for an address (hosts file or reverse DNS) and for a port (the
// services file), all of one listing's lookups within one time limit.
//
// [Resolver] is what the adm commands and the configuration take; [System]
// is the machine's; tests give a map-backed fake.
//
// What it must not do: resolve on the packet path or keep addresses once
// resolved (a name is read once, as ipvsadm reads it, and the engine holds
// only addresses); hold package state.
package names
