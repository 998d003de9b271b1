package crdt

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"
)

const digestDomain = "peerd/crdt/digest/v1\x00"

// Digest is one hash of everything this replica has seen (its causal
// context: heads and out-of-order dots). Two replicas with the same digest
// hold the same set of record versions; anti-entropy compares digests
// first and exchanges Heads only when they differ.
func (r *Replica) Digest() [32]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.digestOK {
		return r.digest
	}
	h := sha256.New()
	h.Write([]byte(digestDomain))
	var buf [8]byte
	writeStr := func(s string) {
		binary.BigEndian.PutUint64(buf[:], uint64(len(s)))
		h.Write(buf[:])
		h.Write([]byte(s))
	}
	writeU := func(n uint64) {
		binary.BigEndian.PutUint64(buf[:], n)
		h.Write(buf[:])
	}
	origins := make([]string, 0, len(r.cc.vv))
	for o, n := range r.cc.vv {
		if n > 0 {
			origins = append(origins, o)
		}
	}
	slices.Sort(origins)
	writeU(uint64(len(origins)))
	for _, o := range origins {
		writeStr(o)
		writeU(r.cc.vv[o])
	}
	cloud := r.cc.sortedCloud()
	writeU(uint64(len(cloud)))
	for _, d := range cloud {
		writeStr(d.Origin)
		writeU(d.Counter)
	}
	h.Sum(r.digest[:0])
	r.digestOK = true
	return r.digest
}

// Heads returns the version vector: per origin, the counter up to which
// this replica holds every dot. A peer answers it with DeltaSince.
func (r *Replica) Heads() VersionVector {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cc.vv.Clone()
}

const defaultChunkBytes = 1 << 20

// DeltaSince returns what a replica with heads h is missing, as deltas of
// at most about maxBytes encoded bytes each (one oversized entry travels
// alone; maxBytes <= 0 means 1 MiB). Entries are ordered by origin and
// counter so the receiver's heads advance as chunks arrive. Where the
// requester is behind this replica's GC horizon, each chunk says which
// counter range its entries cover completely (Delta.Horizon). It returns
// nil when nothing is missing.
func (r *Replica) DeltaSince(h VersionVector, maxBytes int) []*Delta {
	if maxBytes <= 0 {
		maxBytes = defaultChunkBytes
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	origins := make([]string, 0, len(r.byOrigin))
	for o := range r.byOrigin {
		origins = append(origins, o)
	}
	slices.Sort(origins)
	var out []*Delta
	cur := &Delta{}
	size := 0
	// For the origin being emitted: lo is where the next horizon range
	// starts, top the highest counter emitted in the current chunk.
	var o string
	var lo, top, hz uint64
	closeRange := func() {
		if hz > lo && top > lo {
			if cur.Horizon == nil {
				cur.Horizon = map[string]Range{}
			}
			to := min(hz, top)
			cur.Horizon[o] = Range{From: lo, To: to}
			lo = to
		}
		top = 0
	}
	for _, o = range origins {
		have := h[o]
		if r.cc.max(o) <= have {
			continue
		}
		lo, top, hz = have, 0, r.horizon[o]
		vs := r.byOrigin[o]
		counters := make([]uint64, 0, 16)
		for c := range vs {
			if c > have {
				counters = append(counters, c)
			}
		}
		slices.Sort(counters)
		for _, c := range counters {
			e := vs[c].e
			n := len(e.Header) + len(e.Sig) + len(e.Body) + 16
			if size > 0 && size+n > maxBytes {
				closeRange()
				out = append(out, cur)
				cur, size = &Delta{}, 0
			}
			cur.Entries = append(cur.Entries, e)
			size += n
			top = c
		}
		closeRange()
	}
	if len(cur.Entries) > 0 || cur.Horizon != nil {
		out = append(out, cur)
	}
	return out
}

// CollectGarbage drops dead record versions (superseded writes, deletes,
// rejected stubs) that are causally stable: every live member's heads,
// passed in liveHeads (this replica's own heads are included
// automatically), have passed both the version's dot and, for a delete,
// every dot it removed. Such a dot can no longer arrive at any live member,
// so nothing it removed can be resurrected. The newest version of each
// origin is always kept. It returns the number of versions dropped.
func (r *Replica) CollectGarbage(liveHeads []VersionVector) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	stable := r.cc.vv.Clone()
	for _, h := range liveHeads {
		for o, n := range stable {
			if h[o] < n {
				stable[o] = h[o]
			}
		}
	}
	dropped := 0
	for o, vs := range r.byOrigin {
		// The newest version of each origin is kept even when dead: its
		// signature proves how far the origin got, which bounds the horizon
		// a new member accepts from this replica.
		newest := r.cc.max(o)
		// The newest node record of an origin that has no live one (a
		// revoked or cut-off node's, killed) keeps its body: its
		// certificate judges the origin's KV records from before the
		// revocation or cut (LastNodeRecord), which may still arrive.
		// One record per such origin, until ForgetOrigin.
		var keepNode uint64
		if ks := r.keys[recKey{KindNode, o}]; ks == nil || len(ks.live) == 0 {
			keepNode = r.lastNodeLocked(o)
		}
		for c, v := range vs {
			if v.live || c > stable[o] || c == keepNode {
				continue
			}
			if _, held := r.pending[Dot{Origin: o, Counter: c}]; held {
				continue // a statement held for RetryStatements keeps its body
			}
			ok := true
			if !v.void { // a void context was never applied: nothing it could resurrect
				for _, d := range v.h.Context {
					if !stable.Covers(d) {
						ok = false
						break
					}
				}
			}
			if !ok {
				continue
			}
			if c == newest {
				// Keep a header-only stub as the proof of the horizon.
				if v.e.Body != nil {
					v.e.Body = nil
					dropped++
				}
				r.horizon[o] = max(r.horizon[o], c)
				continue
			}
			delete(vs, c)
			dropped++
			if v.h.Counter > r.horizon[o] {
				r.horizon[o] = v.h.Counter
			}
		}
		if len(vs) == 0 {
			delete(r.byOrigin, o)
		}
	}
	for k, ks := range r.keys {
		if len(ks.live) == 0 && (k.kind != KindKV || ks.createIndex == 0) {
			r.forgetKeyLocked(k)
		}
	}
	// Local KV deletion markers only feed prefix indexes; fold them into
	// one floor so they do not accumulate.
	for k, i := range r.kvTomb {
		r.kvFloor = max(r.kvFloor, i)
		delete(r.kvTomb, k)
	}
	return dropped
}

// ForgetOrigin removes a reaped member: its node record, services and
// checks, and every dead version (delete metadata) it wrote. Its KV writes,
// and the intentions and revocations it relayed (also those held for
// RetryStatements), stay. Its dots stay
// counted as seen, so stale copies from other replicas are ignored.
func (r *Replica) ForgetOrigin(origin string) {
	if origin == r.origin {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	vs := r.byOrigin[origin]
	m := r.cc.max(origin)
	for c, v := range vs {
		if v.live && !v.h.Kind.singleWriter() {
			continue
		}
		if _, held := r.pending[Dot{Origin: origin, Counter: c}]; held {
			continue // a statement it relayed, held for RetryStatements
		}
		if v.live {
			k := recKey{v.h.Kind, v.h.Key}
			ks := r.keys[k]
			old := []any{v.val}
			r.killLocked(ks, v)
			r.changedLocked(k, ks, old)
		}
		if c == m {
			v.e.Body = nil // the newest stays as a stub: the proof of the horizon
			continue
		}
		delete(vs, c)
	}
	if len(vs) == 0 {
		delete(r.byOrigin, origin)
	}
	for d := range r.pendingKill {
		if d.Origin == origin {
			delete(r.pendingKill, d)
		}
	}
	r.cc.raise(origin, m)
	r.digestOK = false
	if m > r.horizon[origin] {
		r.horizon[origin] = m
	}
}
