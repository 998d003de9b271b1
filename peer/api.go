package peer

import (
	"net/http"

	"github.com/peerd/peerd/crdt"
)

// newAPI builds the HTTP API handler. Routes are matched in order; the
// first whose path matches serves the request (exact routes before the
// prefixes that contain them). docs/COMPATIBILITY.md lists them.
func newAPI(a *Agent) http.Handler {
	s := &apiServer{a: a}
	s.routes = []route{
		// Agent.
		{methods: "GET", path: "/v1/agent/self", exact: true, handle: s.agentSelf},
		{methods: "GET", path: "/v1/agent/members", exact: true, handle: s.agentMembers},
		{methods: "PUT POST", path: "/v1/agent/join/", handle: s.agentJoin},
		{methods: "PUT POST", path: "/v1/agent/leave", exact: true, handle: s.agentLeave},
		{methods: "PUT POST", path: "/v1/agent/force-leave/", handle: s.agentForceLeave},
		{methods: "PUT POST", path: "/v1/agent/reload", exact: true, handle: s.agentReload},
		{methods: "GET", path: "/v1/agent/monitor", exact: true, handle: newMonitorAPI(a).serve},
		{methods: "GET", path: "/v1/agent/peerd/info", exact: true, handle: s.agentInfo},
		{methods: "PUT POST", path: "/v1/agent/peerd/revoke", exact: true, handle: s.agentRevoke},
		{methods: "PUT POST", path: "/v1/agent/peerd/rotate", exact: true, handle: s.agentRotate},
		{methods: "GET", path: "/v1/agent/peerd/connect/proxy/", handle: s.agentProxyHold},
		{methods: "POST", path: "/v1/agent/peerd/connect/tunnel/", handle: s.agentProxyTunnel},
		{methods: "GET", path: "/v1/agent/metrics", exact: true, handle: s.agentMetrics},
		{methods: "GET", path: "/v1/agent/services", exact: true, handle: s.agentServices},
		{methods: "GET", path: "/v1/agent/checks", exact: true, handle: s.agentChecks},
		{methods: "PUT POST", path: "/v1/agent/service/register", exact: true, handle: s.agentServiceRegister},
		{methods: "PUT POST", path: "/v1/agent/service/deregister/", handle: s.agentServiceDeregister},
		{methods: "PUT POST", path: "/v1/agent/service/maintenance/", handle: s.agentServiceMaintenance},
		{methods: "GET", path: "/v1/agent/service/", handle: s.agentService},
		{methods: "PUT POST", path: "/v1/agent/check/register", exact: true, handle: s.agentCheckRegister},
		{methods: "PUT POST", path: "/v1/agent/check/deregister/", handle: s.agentCheckDeregister},
		{methods: "PUT POST", path: "/v1/agent/check/pass/", handle: s.agentCheckTTL(crdt.StatusPassing)},
		{methods: "PUT POST", path: "/v1/agent/check/warn/", handle: s.agentCheckTTL(crdt.StatusWarning)},
		{methods: "PUT POST", path: "/v1/agent/check/fail/", handle: s.agentCheckTTL(crdt.StatusCritical)},
		{methods: "PUT POST", path: "/v1/agent/check/update/", handle: s.agentCheckUpdate},
		{methods: "PUT POST", path: "/v1/agent/maintenance", exact: true, handle: s.agentMaintenance},
		{methods: "GET", path: "/v1/agent/health/service/id/", handle: s.agentHealthServiceByID},
		{methods: "GET", path: "/v1/agent/health/service/name/", handle: s.agentHealthServiceByName},
		{methods: "GET", path: "/v1/agent/connect/ca/", handle: s.connectCA},
		{methods: "POST PUT", path: "/v1/agent/connect/authorize", exact: true, handle: s.agentAuthorize},
		{methods: "GET PUT", path: "/v1/connect/ca/", handle: s.connectCA},

		// Catalog.
		{methods: "GET", path: "/v1/catalog/services", exact: true, handle: s.catalogServices},
		{methods: "GET", path: "/v1/catalog/service/", handle: s.catalogService},
		{methods: "GET", path: "/v1/catalog/connect/", handle: s.catalogConnect},
		{methods: "GET", path: "/v1/catalog/nodes", exact: true, handle: s.catalogNodes},
		{methods: "GET", path: "/v1/catalog/node/", handle: s.catalogNode},
		{methods: "GET", path: "/v1/catalog/node-services/", handle: s.catalogNodeServices},
		{methods: "GET", path: "/v1/catalog/datacenters", exact: true, handle: s.catalogDatacenters},
		{methods: "PUT POST", path: "/v1/catalog/register", exact: true, handle: s.catalogWrite},
		{methods: "PUT POST", path: "/v1/catalog/deregister", exact: true, handle: s.catalogWrite},

		// Health.
		{methods: "GET", path: "/v1/health/node/", handle: s.healthNode},
		{methods: "GET", path: "/v1/health/service/", handle: s.healthService},
		{methods: "GET", path: "/v1/health/connect/", handle: s.healthConnect},
		{methods: "GET", path: "/v1/health/checks/", handle: s.healthChecks},
		{methods: "GET", path: "/v1/health/state/", handle: s.healthState},

		// KV.
		{methods: "GET PUT DELETE", path: "/v1/kv/", handle: s.kv},

		// Intentions.
		{methods: "GET POST", path: "/v1/connect/intentions", exact: true, handle: s.intentionsList},
		{methods: "GET PUT DELETE", path: "/v1/connect/intentions/exact", exact: true, handle: s.intentionExact},
		{methods: "GET", path: "/v1/connect/intentions/match", exact: true, handle: s.intentionMatch},
		{methods: "GET", path: "/v1/connect/intentions/check", exact: true, handle: s.intentionCheck},
		{methods: "GET PUT DELETE", path: "/v1/connect/intentions/", handle: s.intentionByID},

		// User events (events_api.go).
		{methods: "PUT POST", path: "/v1/event/fire/", handle: s.eventFire},
		{methods: "GET", path: "/v1/event/list", exact: true, handle: s.eventList},

		// Status.
		{methods: "GET", path: "/v1/status/leader", exact: true, handle: s.statusLeader},
		{methods: "GET", path: "/v1/status/peers", exact: true, handle: s.statusPeers},

		// Network coordinates.
		{methods: "GET", path: "/v1/coordinate/nodes", exact: true, handle: s.coordinateNodes},
		{methods: "GET", path: "/v1/coordinate/node/", handle: s.coordinateNode},
		{methods: "GET", path: "/v1/coordinate/datacenters", exact: true, handle: s.coordinateDatacenters},

		// Gossip keyring (api_keyring.go).
		{methods: "GET POST PUT DELETE", path: "/v1/operator/keyring", exact: true, handle: s.operatorKeyring},

		// No ACL system.
		{methods: "GET PUT POST DELETE", path: "/v1/acl/", handle: s.aclDisabled},

		// Things that need consensus.
		{methods: "GET PUT POST DELETE", path: "/v1/session/", handle: s.noConsensus},
		{methods: "GET PUT POST DELETE", path: "/v1/txn", handle: s.noConsensus},

		// Things that need servers: answered with the reason, not a 404.
		{methods: "GET PUT POST DELETE", path: "/v1/snapshot", exact: true, handle: s.noServers},
		{methods: "GET PUT POST DELETE", path: "/v1/operator/raft/", handle: s.noServers},
		{methods: "GET PUT POST DELETE", path: "/v1/operator/autopilot/", handle: s.noServers},

		// Profiling, with enable_debug.
		{methods: "GET POST", path: "/debug/pprof/", handle: s.debugPprof},
	}
	return s
}
