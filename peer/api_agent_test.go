package peer

import (
	"testing"
	"time"
)

func TestSnakeCase(t *testing.T) {
	for in, want := range map[string]string{
		"PayloadBytesSent": "payload_bytes_sent", "IHavesSent": "i_haves_sent", "Broadcasts": "broadcasts",
		"HTTPRequests": "http_requests", "BytesIn": "bytes_in",
	} {
		if got := snakeCase(in); got != want {
			t.Errorf("snakeCase(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRoundLeft(t *testing.T) {
	for in, want := range map[time.Duration]time.Duration{
		40 * time.Second:                      40 * time.Second,
		90*time.Second + 400*time.Millisecond: 90 * time.Second,
		3*time.Hour + 20*time.Second:          3 * time.Hour,
	} {
		if got := roundLeft(in); got != want {
			t.Errorf("roundLeft(%v) = %v, want %v", in, got, want)
		}
	}
}
