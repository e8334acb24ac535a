package afxdp

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// UMEM is the memory a set of sockets receive into and send from, in
// chunks of frameSize bytes: the first socket opened on it registers it
// (XDP_UMEM_REG), the others share it (XDP_SHARED_UMEM), each with fill
// and completion rings of its own. Because they share it, a frame read
// on one socket is sent on another by handing its chunk to the other's
// send ring: nothing is copied.
//
// Every chunk is in exactly one place: a fill, receive, send or
// completion ring; a reader's hand (ReadBatch gave it out); a socket's
// cache of chunks to copy frames into; or the free list. A chunk in a
// reader's hand is marked held; a WriteBatch that sends the frame in it
// takes it from the hand by clearing the mark, and the reader, at its
// next ReadBatch, gives back to its fill ring only the chunks still
// marked (a compare-and-swap decides which side has the chunk).
//
// The memory is in the Go heap, not mapped apart: a slice a worker still
// holds when the sockets close stays valid memory (the kernel unpins the
// pages when the last socket on it closes), so no frame can point into
// unmapped memory, whatever the order of shutdown.
type UMEM struct {
	mem []byte
	// held marks the chunks in a reader's hand, by chunk index.
	held []atomic.Bool
	// owner is the descriptor of the socket that registered the UMEM;
	// -1 until one has.
	owner int

	mu   sync.Mutex
	free []uint64 // chunk addresses; under mu
}

// NewUMEM makes a UMEM for sockets sockets: each gets rxFrames chunks for
// its fill ring and txFrames for what it sends.
func NewUMEM(sockets int) *UMEM {
	chunks := max(sockets, 1) * (rxFrames + txFrames)
	raw := make([]byte, chunks*frameSize+frameSize)
	// Chunks are aligned to their size: the kernel finds a frame's
	// chunk by masking its address.
	skip := (frameSize - int(uintptr(unsafe.Pointer(&raw[0]))%frameSize)) % frameSize
	u := &UMEM{mem: raw[skip : skip+chunks*frameSize : skip+chunks*frameSize], held: make([]atomic.Bool, chunks), owner: -1}
	u.free = make([]uint64, chunks)
	for i := range u.free {
		u.free[i] = uint64((chunks - 1 - i) * frameSize) // taken from the end: low addresses first
	}
	return u
}

// Chunks is the UMEM's size in chunks.
func (u *UMEM) Chunks() int { return len(u.held) }

// take moves up to n chunks from the free list to the end of to.
func (u *UMEM) take(to []uint64, n int) []uint64 {
	u.mu.Lock()
	n = min(n, len(u.free))
	to = append(to, u.free[len(u.free)-n:]...)
	u.free = u.free[:len(u.free)-n]
	u.mu.Unlock()
	return to
}

// give puts chunks back on the free list.
func (u *UMEM) give(chunks []uint64) {
	u.mu.Lock()
	u.free = append(u.free, chunks...)
	u.mu.Unlock()
}

// hand marks the chunk at addr as in a reader's hand.
func (u *UMEM) hand(chunk uint64) { u.held[chunk/frameSize].Store(true) }

// reclaim takes the chunk back from a reader's hand: false when a
// WriteBatch took it to send.
func (u *UMEM) reclaim(chunk uint64) bool {
	return u.held[chunk/frameSize].CompareAndSwap(true, false)
}

// claim returns the address in the UMEM of frame when frame lies in a
// chunk in a reader's hand, and takes the chunk from the hand to send it
// as it is. It returns false for any other memory, and for a chunk
// already claimed (the frame is then copied).
func (u *UMEM) claim(frame []byte) (uint64, bool) {
	if len(frame) == 0 {
		return 0, false
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(frame)))
	base := uintptr(unsafe.Pointer(unsafe.SliceData(u.mem)))
	if p < base || p >= base+uintptr(len(u.mem)) {
		return 0, false
	}
	addr := uint64(p - base)
	chunk := addr &^ (frameSize - 1)
	if addr+uint64(len(frame)) > chunk+frameSize || !u.held[chunk/frameSize].CompareAndSwap(true, false) {
		return 0, false
	}
	return addr, true
}

// register records fd as the socket the UMEM is registered with, or
// returns the one it already is.
func (u *UMEM) register(fd int) (owner int, first bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.owner < 0 {
		u.owner = fd
		return fd, true
	}
	return u.owner, false
}

// unregister forgets fd as the owner if registering with it failed.
func (u *UMEM) unregister(fd int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.owner == fd {
		u.owner = -1
	}
}
