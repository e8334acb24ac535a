package afpacket

import (
	"net/netip"
	"testing"

	"github.com/vsgate/vsgate/internal/netlab/labtest"

	"github.com/vsgate/vsgate/internal/netlab"
)

// pairLab builds the lab of this package's namespace tests and removes it
// when the test ends; without root it skips the test.
//
//	+------------------------+   <prefix>a   <prefix>b   +--------------------+
//	| host "a"               +---------------------------+ host "b"           |
//	| aAddrs (maybe none),   |                           | no addresses: the  |
//	| aSysctls               |                           | Socket under test  |
//	+------------------------+                           +--------------------+
func pairLab(t *testing.T, name string, aAddrs []netip.Prefix, aSysctls ...netlab.Sysctl) *netlab.Lab {
	t.Helper()
	return labtest.Pair(t, name, aAddrs, nil, aSysctls...)
}

// openSocket opens a Socket on host's end of the pair ("a" or "b"), inside
// its namespace, and closes it when the test ends.
func openSocket(t *testing.T, lab *netlab.Lab, host string, cfg Config) *Socket {
	t.Helper()
	cfg.Interface = lab.IfName(host)
	var s *Socket
	if err := lab.MustHost(host).Do(func() (err error) { s, err = Open(cfg); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
