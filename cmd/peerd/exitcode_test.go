package main

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err    error
		code   int
		stderr string
	}{
		{nil, 0, ""},
		{errHelp, 0, ""},
		{fmt.Errorf("intention check: %w", errDenied), 2, ""}, // "Denied" is on stdout already
		{usageErrorf("kv put: want KEY"), 2, "peerd: usage: kv put: want KEY\n"},
		{errors.New("cannot reach\nthe agent"), 1, "peerd: cannot reach the agent\n"},
	} {
		var b bytes.Buffer
		if code := exitCode(&b, tc.err); code != tc.code || b.String() != tc.stderr {
			t.Errorf("exitCode(%v) = %d, stderr %q; want %d, %q", tc.err, code, b.String(), tc.code, tc.stderr)
		}
	}
}
