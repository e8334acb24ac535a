// Package labtest is what tests that build netlab labs share: the one
// rule for when such a test may skip. It is for tests only; it imports
// testing, which the vsgate binary must not link.
package labtest

import (
	"os"
	"testing"

	"github.com/vsgate/vsgate/internal/netlab"
)

// Require skips tb when the process is not root (labs need network
// namespaces), and fails it when it is root and a lab still cannot be
// built: as root, a lab that cannot be built is a broken machine or a
// bug, never a reason to pass by skipping.
func Require(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: netlab builds network namespaces")
	}
	if err := netlab.Check(); err != nil {
		tb.Fatalf("running as root, yet no lab can be built: %v", err)
	}
}
