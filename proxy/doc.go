// Package proxy is the application-layer virtual server (not built yet:
// issue 7): an embedded gVisor netstack terminates the clients' TCP for HTTP
// VIPs, and requests are routed to backend pools with Apache 2.4's
// ProxyPass semantics.
//
// What it must not do: leak gVisor into any other package (it is the only
// importer, so the L4 fast path stays free of it), or import nat or gateway.
package proxy
