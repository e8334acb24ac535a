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
// The HTTP/1.1 core is its own: package h1 reads and writes the heads
// (strictly, within Apache's LimitRequest* limits and status codes). A
// kernel listener's connections are served by an event loop (loop.go: one
// goroutine, one edge-triggered epoll instance waited for in the runtime's
// poller, as an nginx worker), which serves what is common and simple —
// a request without a body to an http:// real server named by its
// address, a response of known length up to 64 KiB — over connections to
// the real servers of its own, and hands a connection to the goroutine
// path for anything else, with the bytes it read and not yet served (or,
// in the middle of an exchange, the response head and the real server's
// connection). On the goroutine path (front.go, forward.go: also every
// connection of other listeners, TLS and HTTP/2, and FrontOptions.Goroutines)
// one goroutine serves a client connection to its last request, bodies
// stream — spliced between kernel sockets where both ends are one,
// chunked ones passed on chunk by chunk — and each worker keeps its idle
// connections to its real server. Both paths answer alike, byte for byte
// (loop_test.go), and as Apache (the differential test runs both). An
// idle client connection holds no write buffer on either, and no read
// buffer in the loop. limits.go holds Apache's limit and timeout
// directives (LimitRequestLine, LimitRequestFieldSize,
// LimitRequestFields, LimitRequestBody, Timeout, KeepAlive,
// KeepAliveTimeout, MaxKeepAliveRequests, RequestReadTimeout), and the
// differential test reaches each limit on both. Where vsgate differs
// from Apache on purpose the test says so: LimitRequestBody holds for
// proxied requests here (Apache 2.4.71 forwards a body over it).
//
// TLS (tls.go) is mod_ssl's directives on crypto/tls: SSLEngine, one or
// more SSLCertificateFile/SSLCertificateKeyFile pairs chosen by the
// client's SNI, SSLProtocol and SSLCipherSuite within what Go offers
// (the rest refused with the reason), session tickets under keys of the
// Front's own that rotate daily and outlive a reload, and SSLProxyEngine,
// SSLProxyVerify, SSLProxyCACertificateFile for https:// real servers.
// With "Protocols h2 http/1.1" ALPN offers HTTP/2 (h2.go: x/net/http2's
// server, H2MaxSessionStreams), each stream forwarded as HTTP/1.1 by the
// same routing and backend code.
//
// Entry points: ParseDirectives (errors name FILE:LINE and the fix) →
// New → Serve(net.Listener), or a Front of the caller's (NewFront) whose
// Proxy a reload swaps while connections stay. The proxy serves from any
// listener, so the gateway can hand it the kernel's or the gVisor
// netstack's; SetMemberDown lets health checks take backends out,
// Members feeds metrics.
//
// What it must not do: import nat or gateway; keep package-level mutable
// state; buffer whole bodies (a response's bytes go on as they arrive
// from the backend); hand a request to another goroutine (only an
// upgraded connection's two directions run apart, HTTP/2 streams, which
// x/net/http2 runs each in its own, and a connection an event loop hands
// over whole); block an event loop (no blocking system call, no name
// lookup, no lock held across a wait in it); use net/http's server or
// client on the HTTP/1.1 path; import gVisor. The gVisor
// netstack that terminates the clients' TCP lives in proxy/netstack
// (with this package, the only place gVisor may be imported, so the L4
// fast path stays free of it); this package serves whatever net.Listener
// it is given.
package proxy
