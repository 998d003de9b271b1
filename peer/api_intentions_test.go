package peer

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestIntentionCheckFollowsDefaultPolicy: with no intention, the check
// endpoints answer with default_intention_policy, as the data plane
// decides, not with whether the agent runs -dev.
func TestIntentionCheckFollowsDefaultPolicy(t *testing.T) {
	root, node := newKeys(t)
	a := testAgent(t, t.TempDir(), root, node, []string{"*"})
	defer a.Close()
	h := newAPI(a)
	for _, tc := range []struct {
		policy string
		want   string
	}{{intentionAllow, "true"}, {intentionDeny, "false"}} {
		a.cfg.DefaultIntentionPolicy = tc.policy
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/connect/intentions/check?source=web&destination=db", nil))
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"Allowed":`+tc.want) {
			t.Errorf("policy %s: check = %d %s, want Allowed %s", tc.policy, w.Code, w.Body.String(), tc.want)
		}
		w = httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/agent/connect/authorize",
			strings.NewReader(`{"Target":"db","ClientCertURI":"spiffe://x.consul/ns/default/dc/dc1/svc/web"}`)))
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"Authorized":`+tc.want) || !strings.Contains(w.Body.String(), tc.policy) {
			t.Errorf("policy %s: authorize = %d %s, want Authorized %s and the policy named", tc.policy, w.Code, w.Body.String(), tc.want)
		}
	}
}
