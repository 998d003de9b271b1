package crdt

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"time"
)

// MergeResult counts what a Merge did with a delta's entries.
type MergeResult struct {
	Accepted   int            // new versions merged (live or dead)
	Duplicates int            // already held: skipped without verification
	Rejected   int            // not merged
	Reasons    map[string]int // rejected, and accepted-as-dead, by reason
	Changed    bool           // some read-visible state changed
}

// entryCheck is what Merge learns about one entry before it takes the
// replica's lock: the decoded header and, for an entry whose dot was not
// held, its signature and body hash checks. Ed25519 verification (~45 µs a
// record) is the bulk of a merge's cost; done outside the lock, a large
// repair batch does not stall readers (DNS, the HTTP API) or local writes.
type entryCheck struct {
	h         header
	decodeErr error
	checked   bool  // sigErr and bodyErr were computed
	sigErr    error // the signature does not verify
	bodyErr   error // the body does not match its signed hash
	// revoked: the signature verifies but the origin's key is revoked
	// (the Authorizer said ErrOriginRevoked) since revokedAt; sigErr is
	// nil then.
	revoked   bool
	revokedAt time.Time
	forGood   bool // the cut is the key's, not its chain's (OriginRevokedError.Renewable)
}

// checkEntries decodes every header and verifies the entries whose dot is
// not held yet. It takes the lock only to look up which dots are held.
func (r *Replica) checkEntries(entries []Entry, auth Authorizer) []entryCheck {
	cs := make([]entryCheck, len(entries))
	for i := range entries {
		cs[i].h, cs[i].decodeErr = decodeHeader(entries[i].Header)
	}
	toCheck := make([]bool, len(entries))
	r.mu.Lock()
	for i := range cs {
		toCheck[i] = cs[i].decodeErr == nil && !r.cc.has(cs[i].h.dot())
	}
	r.mu.Unlock()
	for i := range cs {
		if toCheck[i] {
			cs[i].verify(&entries[i], auth)
		}
	}
	return cs
}

// verify checks e's signature by its origin and its body against the
// signed hash.
func (c *entryCheck) verify(e *Entry, auth Authorizer) {
	c.checked = true
	h := &c.h
	switch {
	case len(e.Sig) > maxSigLen:
		c.sigErr = fmt.Errorf("%w: %s: signature of %d bytes", ErrBadSignature, h.dot(), len(e.Sig))
	default:
		err := auth.VerifyOrigin(h.Origin, signedMessage(e.Header), e.Sig)
		if at, revoked, forGood := revokedFor(err); revoked {
			c.revoked, c.revokedAt, c.forGood = true, at, forGood
		} else if err != nil {
			c.sigErr = fmt.Errorf("%w: %s %s %q: %w", ErrBadSignature, h.dot(), h.Kind, h.Key, err)
		}
	}
	if c.sigErr == nil && e.Body != nil && !hashMatches(h.BodyHash, e.Body) {
		c.bodyErr = fmt.Errorf("%w: %s: body does not match its signed hash", ErrMalformed, h.dot())
	}
}

func (m *MergeResult) reject(reason string) {
	if m.Reasons == nil {
		m.Reasons = map[string]int{}
	}
	m.Reasons[reason]++
}

// Merge verifies and joins a delta from anywhere (a peer, a repair, a
// replay). Every entry is checked BEFORE it is merged: the origin's
// signature over the header, the body hash, the clock bound, and the
// Authorizer's rights. Entries whose dot is already held are skipped
// without verification, unless their header differs from the held one:
// then a valid signature makes it an equivocation (RejectEquivocation,
// ErrEquivocation), and the held record stays.
//
// An entry that is correctly signed by its origin but whose content is
// refused (not authorized, too large, intention rollback, undecodable body)
// is not merged, but its dot is recorded as seen and kept as a dead stub, so
// version vectors stay contiguous and replicas with the same policy agree.
// An entry with a bad signature, a malformed header, a mismatching body or
// a timestamp too far ahead is dropped entirely (it may arrive intact later).
//
// An entry correctly signed by a revoked origin (VerifyOrigin says
// ErrOriginRevoked, or the origin is known to be revoked) is kept as a dead
// stub — its dot seen, its context NOT applied (a revoked key deletes
// nothing), its body dropped except a node record's — if it is a node,
// service or check record, or a KV record stamped at or after the
// revocation. Its KV records stamped before
// the revocation, and the intentions and revocations it relays, are judged
// as anyone's. The origin is remembered as revoked unless the cut is its
// chain's (OriginRevokedError.Renewable), which is judged again for each
// record.
//
// Merge returns the first rejection as an error for logging; the rest of the
// delta is merged regardless. Rejections are also counted in Rejected().
func (r *Replica) Merge(d *Delta, auth Authorizer, now time.Time) (MergeResult, error) {
	var res MergeResult
	if d == nil {
		return res, nil
	}
	if auth == nil {
		return res, fmt.Errorf("crdt: merge without an authorizer")
	}
	checks := r.checkEntries(d.Entries, auth)
	r.mu.Lock()
	defer r.mu.Unlock()
	var first error
	var deferred []stub
	note := func(reason string, err error) {
		res.reject(reason)
		r.rejected[reason]++
		if first == nil {
			first = err
		}
	}
	for i := range d.Entries {
		e := d.Entries[i]
		c := &checks[i]
		h, err := c.h, c.decodeErr
		if err != nil {
			res.Rejected++
			reason := RejectMalformed
			if errors.Is(err, errNotOwner) {
				reason = RejectNotOwner
			}
			note(reason, err)
			continue
		}
		if r.cc.has(h.dot()) {
			if v := r.lookup(h.dot()); v != nil && v.e.Header != nil && !bytes.Equal(v.e.Header, e.Header) &&
				len(e.Sig) <= maxSigLen && signedBy(auth, h.Origin, e) {
				res.Rejected++
				note(RejectEquivocation, fmt.Errorf("%w: %s: %s signed two different records for this dot (same node key in two processes?)", ErrEquivocation, h.dot(), h.Origin))
				continue
			}
			if v := r.lookup(h.dot()); v != nil && h.Kind == KindNode && v.e.Body == nil && e.Body != nil &&
				bytes.Equal(v.e.Header, e.Header) && hashMatches(h.BodyHash, e.Body) {
				if ks := r.keys[recKey{KindNode, h.Origin}]; ks == nil || len(ks.live) == 0 {
					// A relay stripped the body of the node record of an
					// origin without a live one (revoked, cut off); keep
					// it from this copy (LastNodeRecord).
					v.e.Body = e.Body
				}
			}
			res.Duplicates++
			continue
		}
		if !c.checked {
			// Held when checkEntries looked, so not verified; dots are
			// never forgotten, so this does not happen, but verify anyway.
			c.verify(&e, auth)
		}
		if c.sigErr != nil {
			res.Rejected++
			note(RejectSignature, c.sigErr)
			continue
		}
		if c.bodyErr != nil {
			res.Rejected++
			note(RejectMalformed, c.bodyErr)
			continue
		}
		at, known := r.revoked[h.Origin]
		if c.revoked {
			at = c.revokedAt
			if c.forGood {
				r.revoked[h.Origin] = at
			}
		}
		if (c.revoked || known) && !h.Kind.ordered() && !(h.Kind == KindKV && before(h.HLC, at)) {
			// Signed by its origin, whose key is revoked: the dot is seen
			// (or anti-entropy would offer it forever), nothing else.
			// Replicas that merged it before they held the revocation
			// reach the same state in RevokeOrigins.
			res.Rejected++
			note(RejectRevokedOrigin, fmt.Errorf("%w: %s %s %q", ErrOriginRevoked, h.dot(), h.Kind, h.Key))
			stored := e
			if h.Kind != KindNode {
				// A node record keeps its body: the certificate in it is
				// what its KV records from before the revocation are
				// judged by (LastNodeRecord).
				stored.Body = nil
			}
			if r.applyLocked(h, stored, nil, false) {
				res.Changed = true
			}
			res.Accepted++
			continue
		}
		if h.HLC != 0 {
			if err := r.clk.check(h.HLC, now); err != nil {
				res.Rejected++
				note(RejectClockDrift, fmt.Errorf("%s: %w", h.dot(), err))
				continue
			}
		}
		authorized := true
		if h.Kind == KindKV && !auth.MayWriteKV(h.Origin, h.Key) {
			authorized = false
		}
		if authorized && h.Op == OpPut && e.Body == nil {
			// A stub claims its version is dead; a relay could strip the
			// body of a live version to suppress it. Accept it only once
			// that is confirmed (below), never on the relay's word.
			deferred = append(deferred, stub{h, e})
			continue
		}
		var val any
		var reason string
		stored := e
		if authorized && h.Op == OpPut {
			val, reason, err = r.verifyContentLocked(&h, e.Body, auth)
			if err != nil {
				res.Rejected++
				note(reason, err)
				val = nil
				if reason == RejectTooLarge {
					stored.Body = nil
				}
			}
		} else if !authorized {
			res.Rejected++
			note(RejectUnauthorized, fmt.Errorf("%w: %s may not write KV key %q", ErrUnauthorized, h.Origin, h.Key))
			stored.Body = nil
		}
		r.clk.observe(h.HLC)
		if r.applyLocked(h, stored, val, authorized) {
			res.Changed = true
		}
		if reason == RejectPending {
			// Held, not refused: RetryStatements applies it once the
			// trust it needs is there (docs/REPLICA.md, "Trust
			// statements out of order").
			r.pending[h.dot()] = struct{}{}
		}
		res.Accepted++
	}
	// The horizon may cover the deferred stubs (garbage-collected history);
	// it is trusted up to the highest signed dot seen of each origin.
	proven := map[string]uint64{}
	for _, st := range deferred {
		proven[st.h.Origin] = max(proven[st.h.Origin], st.h.Counter)
	}
	r.mergeHorizonLocked(d.Horizon, proven)
	for _, st := range deferred {
		dot := st.h.dot()
		covered := r.cc.has(dot)
		if !covered {
			pk, ok := r.pendingKill[dot]
			if !ok || pk != (recKey{st.h.Kind, st.h.Key}) {
				res.Rejected++
				note(RejectUnconfirmed, fmt.Errorf("%w: %s: stub of a version not known to be dead", ErrMalformed, dot))
				continue
			}
		}
		if covered && r.lookup(dot) != nil {
			continue
		}
		r.clk.observe(st.h.HLC)
		if covered {
			// Keep it as the proof of the horizon without re-adding its dot.
			r.storeStubLocked(st.h, st.e)
		} else if r.applyLocked(st.h, st.e, nil, true) {
			res.Changed = true
		}
		res.Accepted++
	}
	return res, first
}

type stub struct {
	h header
	e Entry
}

// signedBy reports whether e's signature verifies under origin's key,
// revoked or not.
func signedBy(auth Authorizer, origin string, e Entry) bool {
	err := auth.VerifyOrigin(origin, signedMessage(e.Header), e.Sig)
	return err == nil || errors.Is(err, ErrOriginRevoked)
}

// storeStubLocked keeps a verified stub whose dot is already covered.
func (r *Replica) storeStubLocked(h header, e Entry) {
	m := r.byOrigin[h.Origin]
	if m == nil {
		m = map[uint64]*version{}
		r.byOrigin[h.Origin] = m
	}
	if o, ok := r.origins[h.Origin]; ok {
		h.Origin = o
	} else {
		r.origins[h.Origin] = h.Origin
	}
	h.BodyHash = nil
	m[h.Counter] = &version{h: h, e: e}
}

// verifyContentLocked decodes and authorizes a put body. It returns the
// value for reads, or the rejection reason and error.
func (r *Replica) verifyContentLocked(h *header, body []byte, auth Authorizer) (any, string, error) {
	switch h.Kind {
	case KindKV:
		v, err := decodeBody(KindKV, body)
		if err != nil {
			return nil, RejectMalformed, err
		}
		if n := len(v.(*kvBody).Value); n > r.opts.MaxValueSize {
			return nil, RejectTooLarge, fmt.Errorf("%w: key %q from %s has a %d-byte value, the limit is %d bytes",
				ErrValueTooLarge, h.Key, h.Origin, n, r.opts.MaxValueSize)
		}
		return v, "", nil
	case KindIntention:
		v, err := decodeBody(KindIntention, body)
		if err != nil {
			return nil, RejectMalformed, err
		}
		blob := v.([]byte)
		var in Intention
		var withdrawn bool
		if j, ok := auth.(IntentionJudge); ok {
			in, withdrawn, err = j.JudgeIntention(blob, h.HLC.Time())
		} else {
			in, err = auth.VerifyIntention(blob)
		}
		if err != nil {
			return nil, RejectIntention, fmt.Errorf("%w: intention from %s: %w", ErrUnauthorized, h.Origin, err)
		}
		if err := in.Validate(); err != nil {
			return nil, RejectIntention, err
		}
		if IntentionKey(in.SourceName, in.DestinationName) != h.Key {
			return nil, RejectIntention, fmt.Errorf("%w: intention does not match its key", ErrMalformed)
		}
		iv := &intentionVal{in: in, hash: sha256.Sum256(blob), withdrawn: withdrawn}
		if ks := r.keys[recKey{KindIntention, h.Key}]; ks != nil {
			for _, lv := range ks.live {
				if held := lv.val.(*intentionVal); held.in.Version > in.Version {
					return nil, RejectRollback, fmt.Errorf("%w: %s -> %s version %d from %s, holding version %d",
						ErrRollback, in.SourceName, in.DestinationName, in.Version, h.Origin, held.in.Version)
				}
			}
		}
		return iv, "", nil
	case KindRevocation:
		v, err := r.decodeValue(h, body)
		if err != nil {
			return nil, RejectMalformed, err
		}
		if err := auth.VerifyRevocation(v.([]byte)); err != nil {
			if errors.Is(err, ErrNotYetApplicable) && len(r.pending) < MaxPendingStatements {
				return nil, RejectPending, fmt.Errorf("trust statement from %s held: %w", h.Origin, err)
			}
			return nil, RejectRevocation, fmt.Errorf("%w: revocation from %s: %w", ErrUnauthorized, h.Origin, err)
		}
		return v, "", nil
	case KindService:
		v, err := r.decodeValue(h, body)
		if err != nil {
			return nil, RejectMalformed, err
		}
		s := v.(*Service)
		if !auth.MayPublishService(h.Origin, s.Name) {
			return nil, RejectUnauthorized, fmt.Errorf("%w: %s may not publish service %q", ErrUnauthorized, h.Origin, s.Name)
		}
		if s.Connect != nil && s.Connect.SidecarService != nil && !auth.MayPublishService(h.Origin, s.Connect.SidecarService.Name) {
			return nil, RejectUnauthorized, fmt.Errorf("%w: %s may not publish service %q", ErrUnauthorized, h.Origin, s.Connect.SidecarService.Name)
		}
		return v, "", nil
	case KindCheck:
		v, err := r.decodeValue(h, body)
		if err != nil {
			return nil, RejectMalformed, err
		}
		if c := v.(*Check); !validStatus(c.Status) {
			return nil, RejectMalformed, fmt.Errorf("%w: check %q status %q", ErrMalformed, c.ID, c.Status)
		}
		return v, "", nil
	default: // KindNode
		v, err := r.decodeValue(h, body)
		if err != nil {
			return nil, RejectMalformed, err
		}
		return v, "", nil
	}
}

// Apply joins a delta without checking signatures or rights. It is for the
// local durable store replaying deltas that were verified (or written)
// before a restart; never feed it bytes from the network. Deltas may be
// replayed in any order. auth is used only to decode intention documents
// (crdt does not know their format; see IntentionDecoder).
func (r *Replica) Apply(d *Delta, auth Authorizer) error {
	if d == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range d.Entries {
		if err := r.applyTrustedLocked(e, auth, nil, nil); err != nil {
			return err
		}
	}
	r.mergeHorizonLocked(d.Horizon, nil)
	return nil
}

// applyTrustedLocked applies a stored entry: dead lists the dead versions
// stored with their bodies, void those whose context was not applied.
func (r *Replica) applyTrustedLocked(e Entry, auth Authorizer, dead, void map[Dot]bool) error {
	h, err := decodeHeader(e.Header)
	if err != nil {
		return err
	}
	d := h.dot()
	if r.cc.has(d) {
		return nil
	}
	var val any
	if h.Op == OpPut && e.Body != nil && !dead[d] {
		if !hashMatches(h.BodyHash, e.Body) {
			return fmt.Errorf("%w: %s: body does not match its hash", ErrMalformed, d)
		}
		if h.Kind == KindIntention {
			v, err := decodeBody(KindIntention, e.Body)
			if err != nil {
				return err
			}
			in, err := decodeStoredIntention(auth, v.([]byte))
			if err != nil {
				return fmt.Errorf("%w: stored intention: %w", ErrMalformed, err)
			}
			val = &intentionVal{in: in, hash: sha256.Sum256(v.([]byte))}
		} else if val, err = r.decodeValue(&h, e.Body); err != nil {
			return err
		}
	}
	if h.Origin == r.origin && h.Counter > r.counter {
		r.counter = h.Counter
	}
	r.clk.observe(h.HLC)
	r.applyLocked(h, e, val, !void[d])
	return nil
}

// maxHorizonDots bounds how many single dots one horizon range may add to
// the dot cloud when it does not start at the receiver's contiguous head.
const maxHorizonDots = 4096

// mergeHorizonLocked marks the garbage-collected dots a repair delta
// declares as seen. A range is trusted only up to the highest dot of its
// origin proven by a signed record (held, or a verified stub in proven),
// so a peer cannot claim another origin's future; and only from where the
// receiver's history is complete, so a lost chunk leaves a gap for the
// next repair instead of a hole papered over.
func (r *Replica) mergeHorizonLocked(hz map[string]Range, proven map[string]uint64) {
	for o, rg := range hz {
		to := min(rg.To, max(r.cc.max(o), proven[o]))
		if to <= rg.From {
			continue
		}
		switch {
		case r.cc.vv[o] >= rg.From:
			r.cc.raise(o, to)
		case to-rg.From <= maxHorizonDots:
			for c := rg.From + 1; c <= to; c++ {
				r.cc.add(Dot{Origin: o, Counter: c})
			}
		default:
			continue
		}
		r.horizon[o] = max(r.horizon[o], to)
		r.digestOK = false
	}
	if len(hz) > 0 {
		for d := range r.pendingKill {
			if r.cc.has(d) {
				delete(r.pendingKill, d)
			}
		}
	}
}

// applyLocked joins one record version whose dot is new. val is its
// decoded value when its content was accepted (nil: it is dead on arrival).
// ctxOK says whether its context may supersede other versions. It reports
// whether read-visible state changed.
func (r *Replica) applyLocked(h header, e Entry, val any, ctxOK bool) bool {
	d := h.dot()
	r.cc.add(d)
	r.digestOK = false
	m := r.byOrigin[d.Origin]
	if m == nil {
		m = map[uint64]*version{}
		r.byOrigin[d.Origin] = m
	}
	// Share strings with what is already held: a replica keeps one copy of
	// each origin and key however many versions name them.
	if o, ok := r.origins[d.Origin]; ok {
		h.Origin = o
	} else {
		r.origins[d.Origin] = d.Origin
	}
	h.BodyHash = nil // covered by the stored header bytes
	k := recKey{h.Kind, h.Key}
	ks := r.keys[k]
	if ks == nil {
		ks = &keyState{key: h.Key}
		r.keys[k] = ks
		r.indexKeyLocked(k)
	}
	h.Key = ks.key
	k.key = ks.key
	v := &version{h: h, e: e, void: !ctxOK}
	m[d.Counter] = v
	var old []any // values of the live set before this version
	for _, lv := range ks.live {
		old = append(old, lv.val)
	}
	killed := false
	if pk, ok := r.pendingKill[d]; ok {
		delete(r.pendingKill, d)
		killed = pk == k
	}
	changed := false
	if ctxOK {
		for _, c := range h.Context {
			if ov := r.lookup(c); ov != nil {
				if ov.live && ov.h.Kind == k.kind && ov.h.Key == k.key {
					r.killLocked(ks, ov)
					changed = true
				}
			} else if !r.cc.has(c) {
				if _, taken := r.pendingKill[c]; !taken {
					r.pendingKill[c] = k
				}
			}
		}
	}
	if val != nil && h.Op == OpPut && !killed {
		live := true
		if h.Kind.ordered() {
			for _, lv := range ks.live {
				if orderedLess(v, val, lv) {
					live = false
					break
				}
			}
			if live {
				for len(ks.live) > 0 {
					r.killLocked(ks, ks.live[0])
				}
			}
		}
		if live {
			v.live, v.val = true, val
			ks.live = append(ks.live, v)
			changed = true
		}
	}
	if changed {
		r.changedLocked(k, ks, old)
	}
	if len(ks.live) == 0 && ks.createIndex == 0 && !changed {
		r.forgetKeyLocked(k)
	}
	return changed
}

func (r *Replica) lookup(d Dot) *version { return r.byOrigin[d.Origin][d.Counter] }

// killLocked marks a live version dead. Its body stays until garbage
// collection, so peers that repair from this replica can check for
// themselves that it is dead (a bare stub would have to be taken on trust).
func (r *Replica) killLocked(ks *keyState, v *version) {
	v.live, v.val = false, nil
	if i := slices.Index(ks.live, v); i >= 0 {
		ks.live = slices.Delete(ks.live, i, i+1)
	}
}

// orderedLess reports whether a candidate (v, val) loses to live version
// lv of an ordered kind: intentions by (version, blob hash), then dots;
// revocations by dot.
func orderedLess(v *version, val any, lv *version) bool {
	if iv, ok := val.(*intentionVal); ok {
		li := lv.val.(*intentionVal)
		if c := cmp.Compare(iv.in.Version, li.in.Version); c != 0 {
			return c < 0
		}
		if c := bytes.Compare(iv.hash[:], li.hash[:]); c != 0 {
			return c < 0
		}
	}
	return compareDots(v.h.dot(), lv.h.dot()) < 0
}
