// Package proxy is the application-layer virtual server: an HTTP/1.1
// reverse proxy whose routes are Apache 2.4 directives as written in
// httpd.conf (ProxyPass, ProxyPassMatch, ProxyPassReverse,
// <Proxy balancer://NAME> with BalancerMember and ProxySet,
// ProxyPreserveHost, ProxyAddHeaders, ProxyTimeout, AllowEncodedSlashes,
// ServerName) with Apache's exact semantics: route order, prefix
// matching, path joining, URI canonicalisation, encoded slashes, nocanon,
// X-Forwarded-*, the Connection header Apache's workers send (and which of
// them share one), balancer lbmethods (byrequests, bybusyness, bytraffic),
// failover, retry= and Apache's error statuses. apache.go ports the Apache functions that decide these, and a
// differential test (apache_test.go) runs the same directives and requests
// through a real apache2 and through this package and requires equal
// results.
//
// Entry points: ParseDirectives (errors name FILE:LINE and the fix) →
// New → ServeHTTP or Serve(net.Listener). The proxy serves from any
// listener, so the gateway can hand it the gVisor netstack's listener;
// SetMemberDown lets health checks take backends out, Members feeds
// metrics.
//
// What it must not do: import nat or gateway; keep package-level mutable
// state; buffer whole bodies (requests and responses stream; a response
// is flushed within 10 ms of its bytes arriving from the backend, a
// streaming one after every write); import gVisor. The gVisor netstack that
// terminates the clients' TCP lives in proxy/netstack (with this package,
// the only place gVisor may be imported, so the L4 fast path stays free of
// it); this package serves whatever net.Listener it is given.
package proxy
