// Package gateway wires vsgate together (not built yet: issue 6): the YAML
// config, device workers feeding the nat engine, routes and rules through
// netlink, health checks, the control API, metrics, pcap and live reload.
//
// What it must not do: touch packets itself (that is nat's and packet's
// job), or change anything in a network namespace it was not configured
// for.
package gateway
