package crdt

// OwnCounter is the highest counter of this replica's own origin that it
// holds: its own writes, and any of its origin's records learnt back from
// peers (a node restarted with its key but without its data dir).
func (r *Replica) OwnCounter() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return max(r.counter, r.cc.max(r.origin))
}
