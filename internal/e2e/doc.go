// Package e2e runs vsgate for real: it builds the netlab "basic" topology,
// starts `vsgate run` in the gateway's namespace on a TUN device, and
// checks, step by step, what an operator would check — HTTP spread over
// three real servers, a telnet-style TCP service, weights changed live
// with `vsgate adm`, a real server killed and taken out by its health
// check, masquerade, UDP, IPv6, FULLNAT and the ipvsadm listing. `make
// demo` prints the report; the gateway's end-to-end test asserts every
// step.
//
// What it must not do: touch anything outside the namespaces the lab
// creates, use addresses outside 198.18.0.0/15 and 2001:db8::/32, or leave
// anything behind (Close removes the lab and stops the gateway).
package e2e
