// Package pcap captures the packets a gateway reads and writes, for
// debugging, as a pcap file that tcpdump and Wireshark read
// (`tcpdump -nr FILE`), written with gopacket's pcapgo.
//
// The link type is LINKTYPE_LINUX_SLL (113, "Linux cooked capture v1", as
// `tcpdump -i any` wrote it before libpcap 1.10, read by every tcpdump,
// Wireshark and gopacket): a 16-byte header in front of each raw IP packet
// that records the direction. `tcpdump -enr FILE` prints "In" for packets
// the gateway read from its device and "Out" for packets it wrote (plain
// -nr shows the packets without it). The directions are the gateway's:
// tcpdump run on the TUN interface itself shows the same packets the
// other way round (the kernel's view). Cooked v2 (276) would show the
// direction without -e, but needs libpcap 1.10 and prints an interface
// name resolved on the reading machine, wrong for a gateway's file.
//
//	var capture pcap.Writer // zero value: stopped; one per gateway
//	capture.Start(f, 0)     // --pcap FILE, or the adm "capture start" command
//	// in each worker, per packet (one atomic load while stopped):
//	if capture.Enabled() {
//		capture.WritePacket(time.Now(), pkt, pcap.In)
//	}
//	n, err := capture.Stop() // flushes; the caller closes f
//
// On an AF_PACKET gateway StartEthernet writes LINKTYPE_ETHERNET instead
// and WriteFrame records whole frames, Ethernet headers included: the
// gateway records what it reads, and packet/afpacket what it sends, as
// sent (`tcpdump -enr FILE` shows the MACs, and so the direction).
//
// What it must not do: cost the hot path anything but one atomic load
// while capture is off; parse, filter or rewrite packets (it records the
// bytes it is given, cut to the snap length); open, rotate or close
// files (the caller owns the io.Writer); keep mutable package state.
package pcap
