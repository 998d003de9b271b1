package crdt

// WithdrawIntentions judges the signer of every live intention again with
// valid, given the signed document: false means the key that signed it
// was revoked, or its root retired, after the intention was merged. Such
// an intention stays in the replica (only a key allowed to sign intentions
// may delete it) but reads skip it — Intentions, IntentionFor,
// MatchIntentions, CheckIntention — as if it were absent, so that nothing
// a withdrawn key signed keeps deciding traffic; one judged valid again
// (trust can only narrow, so in practice never) is shown again. Every
// replica applies the same trust statements and so withdraws the same
// intentions. The intentions scope changes when the set does. valid runs
// under the replica's lock and must not call back into it. It returns how
// many intentions are withdrawn now.
func (r *Replica) WithdrawIntentions(valid func(signed []byte) bool) (withdrawn int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := false
	for key := range r.rareKeys[KindIntention] {
		v := r.liveLocked(KindIntention, key)
		if v == nil || v.e.Body == nil {
			continue
		}
		iv := v.val.(*intentionVal)
		b, err := decodeBody(KindIntention, v.e.Body)
		if err != nil {
			continue
		}
		w := !valid(b.([]byte))
		if w != iv.withdrawn {
			iv.withdrawn, changed = w, true
		}
		if w {
			withdrawn++
		}
	}
	if changed {
		r.index++
		r.touchLocked(r.index, ScopeIntentions)
	}
	return withdrawn
}
