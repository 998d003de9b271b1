package peer

import "testing"

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
