// Package peer is one peerd node: it composes the replica (crdt), membership
// and dissemination (gossip), authenticated connections (transport), trust
// (identity) and the DNS stub (resolver), and serves the Consul-compatible
// HTTP API, runs health checks and the sidecar proxy.
//
// peer is the only package that knows about all the others. It must not be
// imported by any of them; only cmd/peerd and tests import it.
package peer
