package peer

import (
	"net/http"
)

// newAPI builds the HTTP API handler. Routes are matched in order; the
// first whose method set and path match serves the request.
func newAPI(a *Agent) http.Handler {
	s := &apiServer{a: a}
	s.routes = []route{
		{methods: "GET", path: "/v1/agent/self", exact: true, handle: s.agentSelf},
		{methods: "GET", path: "/v1/agent/members", exact: true, handle: s.agentMembers},
		{methods: "PUT POST", path: "/v1/agent/join/", handle: s.agentJoin},
		{methods: "PUT POST", path: "/v1/agent/leave", exact: true, handle: s.agentLeave},
		{methods: "GET", path: "/v1/agent/peerd/info", exact: true, handle: s.agentInfo},
		{methods: "PUT POST", path: "/v1/agent/peerd/revoke", exact: true, handle: s.agentRevoke},
		{methods: "GET PUT DELETE", path: "/v1/kv/", handle: s.kv},
		{methods: "GET", path: "/v1/health/node/", handle: s.healthNode},
		{methods: "GET", path: "/v1/status/leader", exact: true, handle: s.statusLeader},
		{methods: "GET", path: "/v1/status/peers", exact: true, handle: s.statusPeers},
	}
	return s
}
