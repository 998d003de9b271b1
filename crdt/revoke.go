package crdt

import (
	"errors"
	"maps"
	"slices"
	"time"
)

// RevokeOrigins applies revocations to the records this replica already
// holds. The caller (peer, sim) calls it whenever its Authorizer learned a
// revocation (a revocation record merged or written, or re-applied after
// a restart). It asks auth.VerifyOrigin, with the newest held record of
// each origin, which origins are revoked (ErrOriginRevoked), and for each
// one not swept yet:
//
//   - kills its live node, service, check and KV versions (they stay as
//     dead versions until garbage collection), so a replica that merged
//     them before it held the revocation ends where one that held it first
//     is (Merge keeps those as dead stubs);
//   - keeps what its KV writes superseded superseded, and makes that hold
//     everywhere: replicas that held the revocation first never applied
//     those contexts, so this replica re-issues them as KV deletes signed
//     by itself, naming exactly the other origins' dots the revoked
//     origin's versions named (only keys it may write; only dots no
//     version of a non-revoked origin here names already). The returned
//     delta holds those deletes; the caller persists and disseminates it
//     like any local write. It is nil when there is nothing to re-issue.
//
// Intentions and revocations the revoked origin relayed stay: their
// documents are signed by someone else. Later records of a swept origin
// are refused by Merge as RejectRevokedOrigin even if VerifyOrigin raced
// with the revocation. docs/REPLICA.md ("Revoked origins") explains why.
func (r *Replica) RevokeOrigins(auth Authorizer, now time.Time) (*Delta, error) {
	type probe struct {
		origin   string
		hdr, sig []byte
	}
	var probes []probe
	r.mu.Lock()
	for o, vs := range r.byOrigin {
		if _, done := r.revoked[o]; done {
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
	var revoked []string
	selfRevoked := false
	for _, p := range probes {
		if err := auth.VerifyOrigin(p.origin, signedMessage(p.hdr), p.sig); !errors.Is(err, ErrOriginRevoked) {
			continue
		}
		if p.origin == r.origin {
			selfRevoked = true // our own records stay; we re-issue nothing
			continue
		}
		revoked = append(revoked, p.origin)
	}
	if len(revoked) == 0 {
		return nil, nil
	}
	slices.Sort(revoked)

	r.mu.Lock()
	defer r.mu.Unlock()
	superseded := map[string]map[Dot]struct{}{} // KV key -> other origins' dots a revoked origin's write superseded here
	for _, o := range revoked {
		if _, done := r.revoked[o]; done {
			continue
		}
		r.revoked[o] = struct{}{}
		vs := r.byOrigin[o]
		for _, c := range slices.Sorted(maps.Keys(vs)) {
			v := vs[c]
			if v.h.Kind.ordered() {
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
				if _, rv := r.revoked[d.Origin]; rv || d.Origin == o {
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
	// Dots a version of a non-revoked origin already names (another
	// replica's re-issue arrived first, or an ordinary later write) need
	// no re-issue.
	for o, vs := range r.byOrigin {
		if _, rv := r.revoked[o]; rv {
			continue
		}
		for _, v := range vs {
			if v.void || v.h.Kind != KindKV {
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
