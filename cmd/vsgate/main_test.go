package main

import (
	"bytes"
	"testing"
)

// TestUsage: the gateway binary's commands, and none of the test bench's
// (cmd/vsgate-lab has those).
func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, 2},
		{[]string{"help"}, 0},
		{[]string{"nope"}, 2},
		{[]string{"run"}, 2}, // no -c
		{[]string{"check"}, 2},
		{[]string{"lab", "up"}, 2},
		{[]string{"demo"}, 2},
		{[]string{"bench"}, 2},
	} {
		var out, errb bytes.Buffer
		if got := run(tc.args, &out, &errb); got != tc.want {
			t.Errorf("vsgate %v = %d, want %d\n%s%s", tc.args, got, tc.want, out.String(), errb.String())
		}
	}
}
