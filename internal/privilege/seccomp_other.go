//go:build !amd64

package privilege

// seccompList: no list for this architecture yet (its calls differ:
// arm64 has no open, poll or epoll_wait, for one); Confine says so.
func seccompList() ([]uintptr, uint32, bool) { return nil, 0, false }
