package device

// Device is a source and sink of raw IP packets (no link header),
// batch-first like wireguard-go's tun.Device.
//
// Implementations say whether they are safe for concurrent use; a
// *tun.TUN is (one Read and one Write may run at the same time, and
// Close may be called from any goroutine).
type Device interface {
	// Read reads up to len(bufs) packets: packet i goes to bufs[i][offset:]
	// and its length to sizes[i]; len(sizes) must be >= len(bufs). It
	// blocks until at least one packet is available and then takes only
	// what is immediately available. After Close it returns an error
	// wrapping os.ErrClosed. It returns the number n of packets read: the
	// caller handles those n packets before it looks at err.
	//
	// A device may replace bufs[i] by memory of its own, the packet where
	// the kernel put it (afpacket.Port on AF_XDP): the caller may rewrite
	// and Write it, growing it within its capacity, until its next Read
	// on the device, and must not keep it longer.
	Read(bufs [][]byte, sizes []int, offset int) (n int, err error)

	// Write writes bufs[i][offset:] as one packet each and returns how many
	// were written. offset leaves headroom in front of each packet; a
	// device without headroom does not touch bufs[i][:offset]. A device
	// with headroom (offloads: *tun.OffloadTUN) writes its header there, and
	// may coalesce packets into the spare capacity of bufs[i] and reorder
	// bufs.
	Write(bufs [][]byte, offset int) (int, error)

	// Headroom is the least offset Read and Write accept: 0 for a plain
	// TUN, tun.OffloadHeadroom for a TUN with the virtio-net header. Callers
	// pass it as offset and give each buffer Headroom()+MaxPacket bytes
	// when it is not 0 (room for coalescing).
	Headroom() int

	// BatchSize is the most packets one Read returns and one Write should
	// get; callers size their buffer arrays with it.
	BatchSize() int

	// MTU is the interface's current MTU: the largest packet Read returns
	// and Write accepts.
	MTU() (int, error)

	// Name is the interface name.
	Name() string

	// Close releases the device and unblocks a pending Read.
	Close() error
}

// MaxPacket is the largest packet a device with offloads moves whole: a
// TCP or UDP super-packet of up to 64 KiB. Buffers given to an
// *tun.OffloadTUN should have tun.OffloadHeadroom+MaxPacket bytes of capacity:
// Read may fill them, and Write merges UDP datagrams into the spare
// capacity.
const MaxPacket = 65535
