// Package afxdp is vsgate's third device: AF_XDP sockets, fed by an XDP
// program on each owned Ethernet interface, so that the frames vsgate
// handles reach it through rings shared with the kernel — no system call
// per frame on the way in, one per batch on the way out — and never go
// through the kernel's IP stack, conntrack or socket layer.
//
// The program (prog.go) is written with cilium/ebpf's assembler, so no
// compiler is needed at build time. It redirects to the socket of the
// frame's receive queue the IPv4 and IPv6 packets sent to the
// interface's MAC whose destination is not one of the kernel's own
// addresses (kept in a map that follows the namespace's addresses), and
// passes everything else to the kernel: ARP and neighbour discovery, the
// host's own traffic, broadcasts and multicasts. Unlike an AF_PACKET
// socket, which gets a copy, a redirected frame is gone from the kernel;
// so ARP and neighbour discovery stay the kernel's, and vsgate reads
// copies of them on an AF_PACKET socket of its own, as before.
//
// A Socket (socket.go) is one receive queue's: a UMEM of its own (4 KiB
// chunks), the fill, receive, send and completion rings, bound with
// XDP_USE_NEED_WAKEUP in zero-copy mode where the driver has it and in
// copy mode elsewhere (veth; Socket.ZeroCopy says which). It waits in the
// Go runtime's poller.
// Receiving copies a frame out of its chunk into the caller's buffer and
// gives the chunk straight back; sending copies the frame into a free
// send chunk and tells the kernel once per batch.
//
// What it must not do: attach to an interface it was not given, or keep
// the program attached after it is closed (it is attached through a BPF
// link, which the kernel removes with the process).
package afxdp
