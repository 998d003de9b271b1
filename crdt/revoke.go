package crdt

import (
	"maps"
	"slices"
	"time"
)

// RevokeOrigins applies revocations to the records this replica already
// holds. The caller (peer, sim) calls it whenever its Authorizer learned a
// revocation (a revocation record merged or written, or re-applied after
// a restart). It asks auth.VerifyOrigin, with the newest held record of
// each origin, which origins are revoked (an OriginRevokedError), and
// sweeps each one not swept yet, so that this replica ends where a replica
// that held the revocation before any of the origin's records is (Merge
// keeps those as dead stubs, their context not applied):
//
//   - its node, service and check records die;
//   - its KV records stamped before the revocation stay as they are;
//   - its KV records stamped at or after it die; what they superseded here
//     stays superseded, and since a replica that held the revocation first
//     never applied their context, this replica re-issues those contexts
//     as KV deletes signed by itself, naming exactly the other origins'
//     dots they named (only on keys it may write; only dots that no
//     version of a non-revoked origin here names already).
//
// An origin cut off by its chain only (OriginRevokedError.Renewable:
// expired, retired root, delegated revocation) is swept the same way but
// not remembered: it is probed again at every call (it may have come
// back with a new chain, and its cut may move), at one signature check
// each; sweeping it again kills and re-issues nothing new.
//
// It returns the re-issued deletes (nil when none); the caller persists and
// disseminates them like any local write. Intentions and revocations the
// revoked origin relayed stay: their documents are signed by someone else.
// docs/REPLICA.md ("Revoked origins") explains why.
func (r *Replica) RevokeOrigins(auth Authorizer, now time.Time) (*Delta, error) {
	type probe struct {
		origin   string
		hdr, sig []byte
	}
	var probes []probe
	r.mu.Lock()
	for o, vs := range r.byOrigin {
		if _, done := r.swept[o]; done {
			continue
		}
		var top *version
		for _, v := range vs {
			if v.e.Header != nil && (top == nil || v.h.Counter > top.h.Counter) {
				top = v
			}
		}
		if top != nil {
			probes = append(probes, probe{o, top.e.Header, top.e.Sig})
		}
	}
	r.mu.Unlock()

	// Signatures are checked outside the lock, as in Merge.
	revoked := map[string]time.Time{}
	renewable := map[string]bool{} // cut by its chain: swept again at every call
	selfRevoked := false
	for _, p := range probes {
		at, ok, forGood := revokedFor(auth.VerifyOrigin(p.origin, signedMessage(p.hdr), p.sig))
		switch {
		case !ok:
		case p.origin == r.origin:
			selfRevoked = true // our own records stay; we re-issue nothing
		default:
			revoked[p.origin] = at
			renewable[p.origin] = !forGood
		}
	}
	if len(revoked) == 0 {
		return nil, nil
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	superseded := map[string]map[Dot]struct{}{} // KV key -> other origins' dots a revoked write superseded here
	for _, o := range slices.Sorted(maps.Keys(revoked)) {
		if _, done := r.swept[o]; done {
			continue
		}
		at := revoked[o]
		if !renewable[o] {
			r.revoked[o] = at
			r.swept[o] = struct{}{}
		}
		vs := r.byOrigin[o]
		for _, c := range slices.Sorted(maps.Keys(vs)) {
			v := vs[c]
			if v.h.Kind.ordered() || (v.h.Kind == KindKV && before(v.h.HLC, at)) {
				continue
			}
			if v.live {
				k := recKey{v.h.Kind, v.h.Key}
				ks := r.keys[k]
				old := make([]any, 0, len(ks.live))
				for _, lv := range ks.live {
					old = append(old, lv.val)
				}
				r.killLocked(ks, v)
				r.changedLocked(k, ks, old)
			}
			if v.h.Kind != KindKV || v.void {
				continue
			}
			for _, d := range v.h.Context {
				if d.Origin == o {
					continue
				}
				if superseded[v.h.Key] == nil {
					superseded[v.h.Key] = map[Dot]struct{}{}
				}
				superseded[v.h.Key][d] = struct{}{}
			}
		}
	}
	if selfRevoked || len(superseded) == 0 {
		return nil, nil
	}
	// Dots that a version counting everywhere already names (another
	// replica's re-issue arrived first, or an ordinary later write) need
	// no re-issue.
	for o, vs := range r.byOrigin {
		at, rv := r.revoked[o]
		if cut, ok := revoked[o]; ok && renewable[o] {
			at, rv = cut, true
		}
		for _, v := range vs {
			if v.void || v.h.Kind != KindKV || (rv && !before(v.h.HLC, at)) {
				continue
			}
			if set := superseded[v.h.Key]; set != nil {
				for _, d := range v.h.Context {
					delete(set, d)
				}
			}
		}
	}
	var out *Delta
	for _, key := range slices.Sorted(maps.Keys(superseded)) {
		dots := slices.SortedFunc(maps.Keys(superseded[key]), compareDots)
		if len(dots) == 0 || !auth.MayWriteKV(r.origin, key) {
			continue
		}
		for len(dots) > 0 {
			n := min(len(dots), maxContextDots)
			d, err := r.writeCtxLocked(KindKV, key, OpDelete, nil, nil, dots[:n], now)
			if err != nil {
				return out, err
			}
			dots = dots[n:]
			if out == nil {
				out = d
			} else {
				out.Entries = append(out.Entries, d.Entries...)
			}
		}
	}
	return out, nil
}
