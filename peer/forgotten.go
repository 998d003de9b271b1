package peer

// Peers forget a member's records when serf reaps it: a node that left
// (after the tombstone timeout), failed for longer than the reconnect
// timeout, or was pruned with force-leave -prune. Its dots stay counted as
// seen there (crdt.ForgetOrigin), so that stale copies held elsewhere do
// not bring the records back. If the node itself comes back with its data
// dir, its replica still holds those records as live and anti-entropy
// finds nothing to exchange: without help it would stay out of the
// catalog on every peer that forgot it, for good. So the node writes its
// records again under new dots, which the peers accept:
//
//   - at every start with a replica from the data dir (a node that was
//     down cannot know whether it was reaped meanwhile; the cost is one
//     delta with the node's records per restart);
//   - when a member whose records this agent forgot joins again: a
//     partition that outlasted the reconnect timeout was reaped on both
//     sides, so that member has most likely forgotten this node too.

// forgetOrigin forgets a reaped member's records and remembers that it did.
func (a *Agent) forgetOrigin(id string) {
	a.replica.ForgetOrigin(id)
	a.view.mu.Lock()
	if a.view.forgot == nil {
		a.view.forgot = map[string]bool{}
	}
	a.view.forgot[id] = true
	a.view.mu.Unlock()
}

// rejoined reports whether id is a member whose records were forgotten,
// and clears the mark.
func (v *memberView) rejoined(id string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.forgot[id] {
		return false
	}
	delete(v.forgot, id)
	return true
}

// mayBeForgotten wakes the republisher (reincarnation.go); it never blocks.
func (a *Agent) mayBeForgotten() {
	select {
	case a.local.forgot() <- struct{}{}:
	default:
	}
}
