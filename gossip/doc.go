// Package gossip owns membership (hashicorp/serf over memberlist) and the
// dissemination of signed delta batches: an epidemic broadcast tree for new
// deltas and digest-driven anti-entropy for repair.
//
// gossip moves opaque, signed batches; it never imports crdt. The replica is
// plugged in by peer through the interfaces gossip declares (Replica, and the
// Deliver callback of Driver), and the network through Net and Dialer, which
// peer implements over transport streams. Admission (certificate checks) is
// peer's job too, through Config.Admit.
//
// The parts, one per file:
//
//   - Membership (membership.go): serf with peerd's config, events, an
//     admission cache, coordinates.
//   - Plumtree (plumtree.go): the broadcast protocol as a deterministic state
//     machine, no goroutines, I/O or clock; plumtree_wire.go is its CBOR
//     wire format.
//   - Driver (driver.go): runs a Plumtree over a Net with a ticker and
//     per-peer send queues.
//   - AntiEntropy (antientropy.go, antientropy_wire.go): periodic digest
//     comparison and chunked push-pull of missing batches over a Dialer.
//   - MemNet (memnet.go): an in-memory Net and Dialer for tests.
//
// The protocol, its bounds and its measurements are in docs/GOSSIP.md.
package gossip
