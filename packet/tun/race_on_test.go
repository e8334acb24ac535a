//go:build race

package tun

// raceEnabled: the race detector turns append(b, make([]byte, n)...),
// which wireguard's GRO uses to extend a buffer in place, into an
// allocation.
const raceEnabled = true
