package crdt

import (
	"fmt"
	"maps"
	"slices"
)

// stateVersion is the version of the snapshot format.
const stateVersion = 1

// MaxStateBytes bounds a snapshot accepted by LoadState.
const MaxStateBytes = 1 << 30

type pendingKillRec struct {
	_    struct{} `cbor:",toarray"`
	Dot  Dot
	Kind Kind
	Key  string
}

// snapshot is the whole replica as a durable store keeps it.
type snapshot struct {
	V           uint8             `cbor:"1,keyasint"`
	Origin      string            `cbor:"2,keyasint"`
	Counter     uint64            `cbor:"3,keyasint"`
	HLC         HLC               `cbor:"4,keyasint"`
	Heads       map[string]uint64 `cbor:"5,keyasint"`
	Cloud       []Dot             `cbor:"6,keyasint"`
	Horizon     map[string]uint64 `cbor:"7,keyasint"`
	Entries     []Entry           `cbor:"8,keyasint"`
	PendingKill []pendingKillRec  `cbor:"9,keyasint"`
	Index       uint64            `cbor:"10,keyasint"`
	Dead        []Dot             `cbor:"11,keyasint"` // dead versions stored with their bodies
	// Void: versions whose context was not applied (refused KV writes,
	// revoked origins' records); absent in older snapshots.
	Void []Dot `cbor:"12,keyasint,omitempty"`
	// Pending: trust statements held for RetryStatements (stored dead,
	// with their body); absent in older snapshots.
	Pending []Dot `cbor:"13,keyasint,omitempty"`
}

// MarshalState encodes the whole replica: every retained record version
// (live or dead, with its body unless it is a stub), the causal context, the GC horizon,
// the own counter and clock, and the local index.
func (r *Replica) MarshalState() ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := snapshot{V: stateVersion, Origin: r.origin, Counter: r.counter, HLC: r.clk.last,
		Heads: r.cc.vv, Cloud: r.cc.sortedCloud(), Horizon: r.horizon, Index: r.index}
	for _, o := range slices.Sorted(maps.Keys(r.byOrigin)) {
		vs := r.byOrigin[o]
		for _, c := range slices.Sorted(maps.Keys(vs)) {
			v := vs[c]
			s.Entries = append(s.Entries, v.e)
			if !v.live && v.e.Body != nil {
				s.Dead = append(s.Dead, v.h.dot())
			}
			if v.void {
				s.Void = append(s.Void, v.h.dot())
			}
		}
	}
	s.Pending = slices.SortedFunc(maps.Keys(r.pending), compareDots)
	for d, k := range r.pendingKill {
		s.PendingKill = append(s.PendingKill, pendingKillRec{Dot: d, Kind: k.kind, Key: k.key})
	}
	slices.SortFunc(s.PendingKill, func(a, b pendingKillRec) int { return compareDots(a.Dot, b.Dot) })
	b, err := marshal(&s)
	if err != nil {
		return nil, fmt.Errorf("crdt: encode state: %w", err)
	}
	return b, nil
}

// LoadState replaces the replica's content with a snapshot from
// MarshalState of the same origin. The snapshot is trusted (it comes from
// the local store); auth only decodes intention documents. Deltas written
// after the snapshot can then be replayed with Apply, in any order.
func (r *Replica) LoadState(b []byte, auth Authorizer) error {
	if len(b) > MaxStateBytes {
		return fmt.Errorf("%w: state of %d bytes", ErrMalformed, len(b))
	}
	var s snapshot
	if err := unmarshal(b, &s); err != nil {
		return fmt.Errorf("crdt: decode state: %w", err)
	}
	if s.V != stateVersion {
		return fmt.Errorf("%w: state version %d (want %d)", ErrMalformed, s.V, stateVersion)
	}
	if s.Origin != r.origin {
		return fmt.Errorf("crdt: state belongs to origin %q, not %q", s.Origin, r.origin)
	}
	fresh, err := NewReplica(r.origin, r.signer, r.opts)
	if err != nil {
		return err
	}
	dead := make(map[Dot]bool, len(s.Dead))
	for _, d := range s.Dead {
		dead[d] = true
	}
	void := make(map[Dot]bool, len(s.Void))
	for _, d := range s.Void {
		void[d] = true
	}
	for _, e := range s.Entries {
		if err := fresh.applyTrustedLocked(e, auth, dead, void); err != nil {
			return fmt.Errorf("crdt: load state: %w", err)
		}
	}
	for o, n := range s.Heads {
		fresh.cc.raise(o, n)
	}
	for _, d := range s.Cloud {
		fresh.cc.add(d)
	}
	for o, n := range s.Horizon {
		fresh.horizon[o] = n
	}
	for _, p := range s.PendingKill {
		if !fresh.cc.has(p.Dot) {
			fresh.pendingKill[p.Dot] = recKey{p.Kind, p.Key}
		}
	}
	for _, d := range s.Pending {
		if v := fresh.lookup(d); v != nil && !v.live && v.e.Body != nil && len(fresh.pending) < MaxPendingStatements {
			fresh.pending[d] = struct{}{}
		}
	}
	fresh.counter = max(fresh.counter, s.Counter)
	fresh.clk.observe(s.HLC)

	r.mu.Lock()
	defer r.mu.Unlock()
	base := max(r.index, s.Index, fresh.index)
	r.clk = fresh.clk
	r.counter = fresh.counter
	r.cc = fresh.cc
	r.digestOK = false
	r.origins = fresh.origins
	r.byOrigin = fresh.byOrigin
	r.keys = fresh.keys
	r.kvOrder = fresh.kvOrder
	r.rareKeys = fresh.rareKeys
	r.pendingKill = fresh.pendingKill
	r.pending = fresh.pending
	r.horizon = fresh.horizon
	r.svcByName = fresh.svcByName
	r.svcByOrigin = fresh.svcByOrigin
	r.checksByOrigin = fresh.checksByOrigin
	r.checksBySvc = fresh.checksBySvc
	r.kvTomb = map[string]uint64{}
	r.kvPrefixIdx = map[string]uint64{}
	// Every read may have changed: move every index past what a client may
	// hold and wake every watcher.
	r.index = base + 1
	for _, ks := range r.keys {
		ks.modifyIndex = r.index
		if len(ks.live) > 0 {
			ks.createIndex = r.index
		}
	}
	r.kvFloor = r.index
	for s := range fresh.scopes {
		r.scopes[s] = r.index
	}
	for s := range r.scopes {
		r.scopes[s] = r.index
	}
	for k, ch := range r.watch {
		close(ch)
		delete(r.watch, k)
	}
	for k, ch := range r.kvWatch {
		close(ch)
		delete(r.kvWatch, k)
	}
	return nil
}
