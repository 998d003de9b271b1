package peer

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

// Endpoints peerd answers with an explanation instead of data, the reload
// hook and the optional API token.

// errNoConsensus explains why sessions and transactions are refused.
func (s *apiServer) noConsensus(w http.ResponseWriter, r *http.Request, _ string) error {
	return errorf(http.StatusNotImplemented,
		"peerd does not support sessions, locks or transactions (%s): they need consensus, and peerd has no servers; "+
			"see docs/COMPATIBILITY.md", r.URL.Path)
}

// noServers answers the Consul endpoints that exist for the server tier:
// `consul snapshot save`, `consul operator raft`, autopilot.
func (s *apiServer) noServers(w http.ResponseWriter, r *http.Request, _ string) error {
	if r.URL.Path == "/v1/snapshot" {
		return errorf(http.StatusNotImplemented,
			"peerd has no servers and so no cluster snapshot (%s): every agent holds the whole replica in its data dir; "+
				"back up the KV store with `peerd kv export` or `consul kv export`; see docs/OPERATIONS.md", r.URL.Path)
	}
	return errorf(http.StatusNotImplemented,
		"peerd has no servers, no Raft and no leader (%s): every agent is a peer, `peerd members` lists them; "+
			"see docs/COMPATIBILITY.md", r.URL.Path)
}

// SetReloadFunc installs what PUT /v1/agent/reload runs (cmd/peerd re-reads
// the config files and calls ReloadServices). Call it before Start.
func (a *Agent) SetReloadFunc(f func() error) {
	a.local.reload.Store(&f)
}

func (s *apiServer) agentReload(w http.ResponseWriter, r *http.Request, _ string) error {
	fp := s.a.local.reload.Load()
	if fp == nil || *fp == nil {
		return errorf(http.StatusNotImplemented, "this agent was started without config files to reload")
	}
	if err := (*fp)(); err != nil {
		return errorf(http.StatusBadRequest, "reload failed, the running configuration is unchanged: %v", err)
	}
	return nil
}

// requestToken extracts the ACL token as Consul clients send it.
func requestToken(r *http.Request) string {
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	if t := r.Header.Get("X-Consul-Token"); t != "" {
		return t
	}
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// authorized checks the request's token against the configured one.
func (s *apiServer) authorized(r *http.Request) bool {
	want := s.a.local.options().HTTPToken
	if want == "" {
		return true
	}
	got := requestToken(r)
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
