// Package netlab builds network-namespace topologies for demos and
// end-to-end tests (not built yet: issue 5): hosts, veth links, bridges,
// addresses from 198.18.0.0/15 and 2001:db8::/32, routes, built-in test
// servers, and a kernel nftables reference gateway.
//
// What it must not do: change anything in the root namespace, use any other
// addresses, or leave anything behind: every name carries a per-run prefix
// and Close removes all of it.
package netlab
