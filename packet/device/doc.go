// Package device is the contract between vsgate's devices and the
// gateway that drives them: a Device reads and writes batches of raw IP
// packets, with headroom in front of each for a device's own header.
// packet/tun (a TUN interface) and packet/afpacket (Ethernet interfaces
// through AF_PACKET) implement it; the gateway's workers and tests' fake
// devices (internal/tuntest) use it.
//
// It must hold nothing but the contract: no implementation, no I/O, so
// that a device package never imports another to get it.
package device
