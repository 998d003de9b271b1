package peer

import (
	"slices"
	"testing"
)

func TestWithPort(t *testing.T) {
	in := []string{"10.0.0.5", "10.0.0.6:9301", "[::1]:8301", "::1", "seed.example", "seed.example:7000"}
	want := []string{"10.0.0.5:8301", "10.0.0.6:9301", "[::1]:8301", "[::1]:8301", "seed.example:8301", "seed.example:7000"}
	if got := withPort(in, 8301); !slices.Equal(got, want) {
		t.Fatalf("withPort(%q) = %q, want %q", in, got, want)
	}
}
