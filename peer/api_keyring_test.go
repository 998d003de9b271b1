package peer

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/peerd/peerd/gossip"
)

func TestKeyringErrorText(t *testing.T) {
	tests := []struct {
		name string
		res  gossip.KeyringResult
		want string
	}{
		{"pool only", gossip.KeyringResult{Error: "illegal base64 data at input byte 0"},
			"1 error occurred:\n\t* dc1 (LAN) error: illegal base64 data at input byte 0\n"},
		{"members sorted", gossip.KeyringResult{Error: "2/2 nodes reported failure",
			Messages: map[string]string{"b": "no", "a": "removing the primary key is not allowed"}},
			"3 errors occurred:\n\t* dc1 (LAN) error: 2/2 nodes reported failure\n\t* a: removing the primary key is not allowed\n\t* b: no\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := keyringErrorText("dc1", tt.res); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestKeyringRequestErrors: what is refused before any member is asked.
func TestKeyringRequestErrors(t *testing.T) {
	s := &apiServer{a: &Agent{membersReady: make(chan struct{})}}
	tests := []struct {
		name, method, target, body string
		code                       int
		msg                        string
	}{
		{"bad body", http.MethodPost, "/v1/operator/keyring", "nope", 400, "Request decode failed"},
		{"relay not a number", http.MethodGet, "/v1/operator/keyring?relay-factor=x", "", 400, "Error parsing relay factor"},
		{"relay too large", http.MethodGet, "/v1/operator/keyring?relay-factor=6", "", 400, "Relay factor must be in range: [0, 5]"},
		{"local-only on a write", http.MethodPut, "/v1/operator/keyring?local-only=true", `{"Key":"x"}`, 400, "local-only can only be set for list requests"},
		{"gossip not started", http.MethodGet, "/v1/operator/keyring?relay-factor=5&local-only=true", "", 503, "gossip is not running"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))
			err := s.operatorKeyring(httptest.NewRecorder(), r, "")
			var he *httpError
			if !errors.As(err, &he) || he.code != tt.code || !strings.Contains(he.msg, tt.msg) {
				t.Fatalf("got %v, want %d %q", err, tt.code, tt.msg)
			}
		})
	}
}
