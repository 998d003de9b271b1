// Package gossip owns membership (hashicorp/serf over memberlist) and the
// dissemination of signed delta batches: an epidemic broadcast tree for new
// deltas and digest-driven anti-entropy for repair.
//
// gossip moves opaque, signed batches; it never imports crdt. The replica is
// plugged in by peer through the interfaces gossip declares.
package gossip
