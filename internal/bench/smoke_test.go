package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vsgate/vsgate/internal/netlab/labtest"

	"github.com/vsgate/vsgate/internal/netlab"
)

// TestQuickRun runs the whole benchmark in QUICK mode (about half a
// minute): every installed system must be measured under every workload
// of its layer, and no namespace may be left behind. It needs root, the
// client tools, and is skipped under -short.
func TestQuickRun(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short: runs every system in netlab")
	}
	labtest.Require(t)
	for _, m := range MissingClientTools() {
		labtest.Tool(t, m, m) // skips, or fails as root
	}
	exe := filepath.Join(t.TempDir(), "vsgate")
	build := exec.Command("go", "build", "-o", exe, "github.com/vsgate/vsgate/cmd/vsgate")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	before := netlab.Leftovers(netlab.NamePrefix)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := QuickConfig()
	c.Exe = exe
	r, err := Run(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range r.Samples {
		if s.Err != "" {
			t.Errorf("%s %s: %s", s.System, s.Workload, s.Err)
		} else if s.Value <= 0 || s.Packets <= 0 || s.AllCPU <= 0 {
			t.Errorf("%s %s: implausible sample %+v", s.System, s.Workload, s)
		}
	}
	for _, si := range r.Systems {
		if si.Skipped == "" && !slices.ContainsFunc(r.Samples, func(s Sample) bool { return s.System == si.Name }) {
			t.Errorf("%s: not measured", si.Name)
		}
	}
	if _, err := WriteOutputs(r, t.TempDir()); err != nil {
		t.Error(err)
	}
	for _, ns := range netlab.Leftovers(netlab.NamePrefix) {
		if !slices.Contains(before, ns) && !netlab.InUse(ns[:netlab.PrefixLen]) {
			t.Errorf("namespace %s left behind", ns)
		}
	}
}
