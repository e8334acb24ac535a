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
// A Socket (socket.go) is one receive queue's: the fill, receive, send
// and completion rings, bound with XDP_USE_NEED_WAKEUP in zero-copy mode
// where the driver has it and in copy mode elsewhere (veth;
// Socket.ZeroCopy says which), on a UMEM (umem.go, 4 KiB chunks) that
// every socket of a gateway shares. It waits in the Go runtime's poller.
// Frames are never copied inside vsgate: receiving hands out the frame
// where the kernel put it, in its chunk, until the next receive; sending
// a frame that is in such a chunk puts the chunk itself on the send ring
// (of any socket of the UMEM: a frame leaves another interface from the
// chunk it arrived in), and the chunk finds its way back to a fill ring
// through the completion ring and the UMEM's free list. Only what vsgate
// makes itself (replies, the segments of a super-packet) is copied into
// a chunk to be sent.
//
// What it must not do: attach to an interface it was not given, or keep
// the program attached after it is closed (it is attached through a BPF
// link, which the kernel removes with the process).
package afxdp
