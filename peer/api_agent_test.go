package peer

import (
	"net/http"
	"net/http/httptest"
	"strings"
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

// TestInfoStatsSections: the counters other docs promise are in `peerd
// info` (and so in /v1/agent/metrics as peerd.<section>.<key>).
func TestInfoStatsSections(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an agent")
	}
	root, node := newKeys(t)
	a := testAgent(t, t.TempDir(), root, node, []string{"*"})
	defer a.Close()
	st := a.infoStats()
	for _, k := range []struct{ section, key string }{
		{"events", "fired"}, {"events", "rejected"}, {"events", "dropped"},
		{"connect", "ca_invalid_certificates"}, {"replica", "index"},
	} {
		if _, ok := st[k.section][k.key]; !ok {
			t.Errorf("peerd info lacks %s.%s: %v", k.section, k.key, st[k.section])
		}
	}
}

// TestServerEndpointsExplain: the endpoints of Consul's server tier answer
// 501 with the reason (consul snapshot save, consul operator raft), not a
// bare 404; the gossip keyring under /v1/operator is still served.
func TestServerEndpointsExplain(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an agent")
	}
	root, node := newKeys(t)
	a := testAgent(t, t.TempDir(), root, node, []string{"*"})
	defer a.Close()
	h := newAPI(a)
	for path, want := range map[string]string{
		"/v1/snapshot":                       "kv export",
		"/v1/operator/raft/configuration":    "no Raft",
		"/v1/operator/autopilot/health":      "no Raft",
		"/v1/operator/raft/peer?address=x:1": "no Raft",
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if w.Code != http.StatusNotImplemented || !strings.Contains(w.Body.String(), want) {
			t.Errorf("GET %s = %d %q, want 501 mentioning %q", path, w.Code, w.Body.String(), want)
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/v1/operator/keyring", nil))
	if w.Code == http.StatusNotImplemented || w.Code == http.StatusNotFound {
		t.Errorf("GET /v1/operator/keyring = %d %s", w.Code, w.Body.String())
	}
}
