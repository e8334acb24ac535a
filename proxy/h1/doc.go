// Package h1 reads and writes HTTP/1.1 message heads and bodies on the
// wire (RFC 9112), for the proxy's forwarding core: request and response
// heads parsed strictly, within limits named as Apache names them
// (LimitRequestLine, LimitRequestFieldSize, LimitRequestFields), with the
// status Apache gives when one is reached (414 for the request line, 400
// for a field or their number); message framing decided as RFC 9112 §6
// says (a request with both Content-Length and Transfer-Encoding is
// chunked and must not keep its connection); chunked bodies passed
// through chunk by chunk.
//
// A parsed head keeps every string inside one allocation per head (the
// head's bytes, copied once), and its field slice is reused: a Request or
// Response is meant to be reused for the next message on a connection.
//
// What it must not do: know about routing, backends or Apache's
// directives (that is package proxy); buffer a body (bodies stream);
// accept in a request what Apache's strict HttpProtocolOptions refuses
// (whitespace before a field's colon, control characters, lines ending
// in a bare LF, more than one Content-Length). Obsolete line folding is
// joined with a space, as Apache does; a request line or field one byte
// over its limit passes, as in Apache (measured; the proxy's
// differential test holds both to it).
package h1
