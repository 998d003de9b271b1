package crdt

import (
	"errors"
	"maps"
	"slices"
)

// MaxPendingStatements bounds the trust statements a replica holds for
// later (ErrNotYetApplicable). Beyond it such a statement is refused for
// good, as any invalid one: a trusted node could otherwise make every
// replica keep any number of statements that never apply (a rotation
// between two keys nobody trusts).
const MaxPendingStatements = 256

// RetryStatements re-checks the trust statements this replica holds
// because the Authorizer could not apply them when they arrived (a root
// rotation R1→R2 merged before the rotation R0→R1 that makes R1 a root).
// The caller (peer, sim) calls it whenever its trust changed: a statement
// was applied, a chain learnt, and once at start after re-applying the
// stored statements. Each statement auth.VerifyRevocation now accepts
// becomes live, exactly as if it had arrived after the trust it needed
// (ordered by dot against an equal statement held live); one it refuses
// with another error than ErrNotYetApplicable is refused for good. It
// repeats until nothing more applies (each applied statement may enable
// another) and returns how many became live.
//
// auth.VerifyRevocation is called with the replica's lock held, as in
// Merge.
func (r *Replica) RetryStatements(auth Authorizer) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	applied := 0
	for progress := true; progress && len(r.pending) > 0; {
		progress = false
		for _, d := range slices.SortedFunc(maps.Keys(r.pending), compareDots) {
			v := r.lookup(d)
			if v == nil || v.live || v.e.Body == nil || v.h.Kind != KindRevocation {
				delete(r.pending, d)
				continue
			}
			val, err := r.decodeValue(&v.h, v.e.Body)
			if err != nil {
				delete(r.pending, d)
				continue
			}
			if err := auth.VerifyRevocation(val.([]byte)); err != nil {
				if !errors.Is(err, ErrNotYetApplicable) {
					delete(r.pending, d) // refused for good now; GC may drop it
				}
				continue
			}
			delete(r.pending, d)
			r.reviveLocked(v, val)
			applied++
			progress = true
		}
	}
	return applied
}

// PendingStatements returns how many trust statements the replica holds
// for RetryStatements.
func (r *Replica) PendingStatements() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}

// reviveLocked makes a held statement live, as applyLocked does for one
// accepted on arrival: it competes by dot with an equal statement (same
// key: the hash of the blob) held live.
func (r *Replica) reviveLocked(v *version, val any) {
	k := recKey{v.h.Kind, v.h.Key}
	ks := r.keys[k]
	if ks == nil {
		ks = &keyState{key: v.h.Key}
		r.keys[k] = ks
		r.indexKeyLocked(k)
	}
	old := make([]any, 0, len(ks.live))
	for _, lv := range ks.live {
		if orderedLess(v, val, lv) {
			return
		}
		old = append(old, lv.val)
	}
	for len(ks.live) > 0 {
		r.killLocked(ks, ks.live[0])
	}
	v.live, v.val = true, val
	ks.live = append(ks.live, v)
	r.digestOK = false
	r.changedLocked(k, ks, old)
}
