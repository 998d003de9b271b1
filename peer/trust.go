package peer

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/identity"
)

// Envelope types this agent signs and opens.
const envIntention = "peerd/intention/v1"

// trustBook knows, for every node ID it has met, the delegation chain that
// node presented (in a QUIC handshake or in its replicated node record) and
// turns it into capabilities through the identity.Verifier. It is the
// replica's crdt.Authorizer and the transport's VerifyPeer.
//
// A chain is a public credential: learning one grants nothing by itself.
// Rights are exercised only by records signed with the node's private key
// (checked in VerifyOrigin) or by a TLS handshake proving possession of it.
type trustBook struct {
	v    *identity.Verifier
	now  func() time.Time
	self string // this node's ID: its chain is set by the agent, never learned from records

	mu     sync.Mutex
	chains map[string]identity.Chain // node ID → chain it presented; guarded by mu
	// before: node ID → the rights its chain gave it before its key was
	// revoked for good; guarded by mu. See capsBefore.
	before map[string]identity.Capabilities

	// trusted, when set, is signalled (never blocking) when learn makes a
	// node trusted that was not: a first chain, or a new certificate after
	// a cut. Membership's cached admission verdicts must then be asked
	// again (peer/mesh.go).
	trusted chan struct{}
}

var _ crdt.Authorizer = (*trustBook)(nil)

func newTrustBook(v *identity.Verifier, now func() time.Time, self string) *trustBook {
	return &trustBook{v: v, now: now, self: self, chains: make(map[string]identity.Chain),
		before: make(map[string]identity.Capabilities)}
}

// learn records the chain a node presents, after checking that it verifies
// for that node's key. A chain that does not verify is refused and not kept.
func (tb *trustBook) learn(pub ed25519.PublicKey, chainBytes []byte) (identity.Capabilities, error) {
	var chain identity.Chain
	if len(chainBytes) > 0 {
		c, err := identity.UnmarshalChain(chainBytes)
		if err != nil {
			return identity.Capabilities{}, err
		}
		chain = c
	}
	caps, err := tb.v.Verify(pub, chain, tb.now())
	if err != nil {
		if cut, _, ok := tb.chainCut(pub, chain); ok && !tb.v.IsRevoked(pub) {
			// Keep a chain that was valid until a known cut (expired,
			// retired root, delegated revocation): it judges the node's
			// records (VerifyOrigin, MayWriteKV). Never in place of one
			// that verifies now or was cut later.
			id := identity.NodeID(pub)
			tb.mu.Lock()
			old, had := tb.chains[id]
			tb.mu.Unlock()
			keep := !had
			if had {
				if _, oerr := tb.v.Verify(pub, old, tb.now()); oerr != nil {
					oldCut, _, oldOK := tb.chainCut(pub, old)
					keep = !oldOK || oldCut.Before(cut)
				}
			}
			if keep {
				tb.mu.Lock()
				tb.chains[id] = chain
				tb.mu.Unlock()
			}
		}
		if tb.v.IsRevoked(pub) {
			// Keep the chain of a key revoked for good if it verified
			// before the revocation: it judges the node's KV records
			// from before it (capsBefore). It grants nothing now.
			if _, berr := tb.verifyIgnoringRevocations(pub, chain); berr == nil {
				tb.mu.Lock()
				tb.chains[identity.NodeID(pub)] = chain
				tb.mu.Unlock()
			}
		}
		return identity.Capabilities{}, err
	}
	id := identity.NodeID(pub)
	tb.mu.Lock()
	old, had := tb.chains[id]
	tb.chains[id] = chain
	tb.mu.Unlock()
	if tb.trusted != nil && id != tb.self {
		if _, oerr := tb.v.Verify(pub, old, tb.now()); !had || oerr != nil {
			select {
			case tb.trusted <- struct{}{}:
			default:
			}
		}
	}
	return caps, nil
}

// verifyIgnoringRevocations verifies a chain against the current roots
// without any revocation.
func (tb *trustBook) verifyIgnoringRevocations(pub ed25519.PublicKey, chain identity.Chain) (identity.Capabilities, error) {
	return identity.NewVerifier(tb.v.Roots()...).Verify(pub, chain, tb.now())
}

// capsBefore returns the rights a node whose key is revoked for good had
// before its revocation: what its chain grants with no revocation applied.
// crdt asks (MayWriteKV) only for the node's KV records stamped before
// the revocation, which count as they did (docs/REPLICA.md, "Revoked
// origins"); the node itself is refused everything (VerifyOrigin).
func (tb *trustBook) capsBefore(origin string) (identity.Capabilities, error) {
	pub, err := identity.ParseNodeID(origin)
	if err != nil {
		return identity.Capabilities{}, err
	}
	if !tb.v.IsRevoked(pub) {
		return identity.Capabilities{}, fmt.Errorf("trust: %s is not revoked", origin)
	}
	tb.mu.Lock()
	caps, cached := tb.before[origin]
	chain, known := tb.chains[origin]
	tb.mu.Unlock()
	if cached && caps.ValidAt(tb.now()) {
		return caps, nil
	}
	if !known {
		return identity.Capabilities{}, fmt.Errorf("trust: no certificate known for revoked %s", origin)
	}
	caps, err = tb.verifyIgnoringRevocations(pub, chain)
	if err != nil {
		return identity.Capabilities{}, err
	}
	tb.mu.Lock()
	tb.before[origin] = caps
	tb.mu.Unlock()
	return caps, nil
}

// chainCut reports whether a node's chain, which does not verify now, was
// valid until a known time — its cut — rather than never: it expired (the
// cut is its NotAfter), the root it starts at was retired by a rotation
// (the end of the rotation's second), or a key in it was revoked by a
// root or by an issuer above that key (the end of the revocation's
// second). It returns the earliest cut and the rights the chain gave
// before it (the chain verified with its retired root trusted, without
// revocations, at a time it had not expired). A revocation of the node's
// own key by a root is not a cut of its chain but of its key, for good
// (revokedAt, capsBefore).
//
// Records of such a node are judged as a revoked node's (VerifyOrigin:
// crdt.OriginRevokedError, Renewable since the node may come back with a
// new chain): those stamped before the cut count, with these rights;
// the others are dead (docs/REPLICA.md, "Cut-off origins").
func (tb *trustBook) chainCut(pub ed25519.PublicKey, chain identity.Chain) (time.Time, identity.Capabilities, bool) {
	if len(chain) == 0 || chain[0] == nil {
		return time.Time{}, identity.Capabilities{}, false
	}
	var cut time.Time
	earlier := func(t time.Time) {
		if cut.IsZero() || t.Before(cut) {
			cut = t
		}
	}
	roots := tb.v.Roots()
	if at, ok := tb.v.RetiredAt(chain[0].Issuer); ok {
		earlier(at.Add(time.Second))
		roots = append(roots, chain[0].Issuer)
	}
	for _, r := range tb.v.Revocations() {
		for i, c := range chain {
			if c == nil || !r.Subject.Equal(c.Subject) {
				continue
			}
			applies := tb.v.IsRevoked(c.Subject) // by a root: in every chain
			for j := 0; j <= i && !applies; j++ {
				applies = chain[j] != nil && r.Issuer.Equal(chain[j].Issuer)
			}
			if applies {
				earlier(r.At.Add(time.Second))
			}
		}
	}
	now := tb.now()
	var notAfter time.Time
	for _, c := range chain {
		if c != nil && (notAfter.IsZero() || c.NotAfter.Before(notAfter)) {
			notAfter = c.NotAfter
		}
	}
	if !notAfter.After(now) {
		earlier(notAfter)
	}
	if cut.IsZero() {
		return time.Time{}, identity.Capabilities{}, false
	}
	at := now
	if !notAfter.After(at) {
		at = notAfter.Add(-time.Nanosecond)
	}
	caps, err := identity.NewVerifier(roots...).Verify(pub, chain, at)
	if err != nil {
		return time.Time{}, identity.Capabilities{}, false
	}
	return cut, caps, true
}

// cutOf is chainCut for the chain known for origin.
func (tb *trustBook) cutOf(origin string) (time.Time, identity.Capabilities, bool) {
	pub, err := identity.ParseNodeID(origin)
	if err != nil {
		return time.Time{}, identity.Capabilities{}, false
	}
	tb.mu.Lock()
	chain, known := tb.chains[origin]
	tb.mu.Unlock()
	if !known {
		return time.Time{}, identity.Capabilities{}, false
	}
	return tb.chainCut(pub, chain)
}

// revokedAt is when pub's earliest revocation took effect for its records:
// the end of the second the revocation was signed in (a revocation's time
// has one-second resolution; a write stamped within that second, before or
// after, counts as before).
func (tb *trustBook) revokedAt(pub ed25519.PublicKey) time.Time {
	var at time.Time
	for _, r := range tb.v.Revocations() {
		if r.Subject.Equal(pub) && (at.IsZero() || r.At.Before(at)) {
			at = r.At
		}
	}
	if at.IsZero() {
		return at
	}
	return at.Add(time.Second)
}

// verifyPeer is transport.Config.VerifyPeer.
func (tb *trustBook) verifyPeer(pub ed25519.PublicKey, chain []byte) error {
	_, err := tb.learn(pub, chain)
	return err
}

// capsOf returns the current capabilities of a node ID: its chain is
// re-verified (a cache hit in the Verifier) so expiry and revocation apply
// at once.
func (tb *trustBook) capsOf(origin string) (identity.Capabilities, error) {
	pub, err := identity.ParseNodeID(origin)
	if err != nil {
		return identity.Capabilities{}, err
	}
	tb.mu.Lock()
	chain, ok := tb.chains[origin]
	tb.mu.Unlock()
	if !ok && !tb.v.IsRoot(pub) {
		return identity.Capabilities{}, fmt.Errorf("trust: no certificate known for %s", origin)
	}
	return tb.v.Verify(pub, chain, tb.now())
}

// chainOf returns the chain a node presented (nil when unknown or a root).
func (tb *trustBook) chainOf(origin string) identity.Chain {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.chains[origin]
}

// admitted reports whether a node ID is currently trusted.
func (tb *trustBook) admitted(origin string) bool {
	_, err := tb.capsOf(origin)
	return err == nil
}

// learnFromDelta learns the chains published in node records of a delta,
// so that records of nodes this agent never met directly can be checked.
func (tb *trustBook) learnFromDelta(d *crdt.Delta) {
	for _, e := range d.Entries {
		if e.Body == nil {
			continue
		}
		kind, _, dot, err := crdt.DecodeEntryHeader(e.Header)
		if err != nil || kind != crdt.KindNode {
			continue
		}
		n, err := crdt.DecodeNode(e.Body)
		if err != nil {
			continue
		}
		if dot.Origin == tb.self {
			continue // an older record of ours may carry a chain we replaced
		}
		pub, err := identity.ParseNodeID(dot.Origin)
		if err != nil {
			continue
		}
		// A failure here is reported by Merge when the record is refused.
		tb.learn(pub, n.Cert)
	}
}

// VerifyOrigin checks that origin is a trusted node and that its key signed
// msg. For a node whose chain was cut (chainCut: expired, retired root,
// delegated revocation), a correct signature is an OriginRevokedError at
// the cut, Renewable. For a node whose key is revoked for good (by a root), a correct
// signature is a *crdt.OriginRevokedError carrying the revocation's time:
// crdt keeps such a record as a dead stub, or counts it if it is a KV
// record stamped before the revocation (docs/REPLICA.md, "Revoked
// origins"). The signature is checked first, so a forged record stays a
// bad signature and cannot burn the node's dots. Until the node's chain is
// known it is an ordinary error (the record is dropped and comes again):
// its KV records from before the revocation are judged by that chain, and
// refusing one for want of it would be final.
func (tb *trustBook) VerifyOrigin(origin string, msg, sig []byte) error {
	if pub, err := identity.ParseNodeID(origin); err == nil && tb.v.IsRevoked(pub) {
		if !ed25519.Verify(pub, msg, sig) {
			return errors.New("trust: bad signature")
		}
		tb.mu.Lock()
		_, known := tb.chains[origin]
		tb.mu.Unlock()
		if !known {
			return fmt.Errorf("trust: no certificate known yet for revoked %s", origin)
		}
		return fmt.Errorf("trust: %s: %w", origin, &crdt.OriginRevokedError{At: tb.revokedAt(pub)})
	}
	caps, err := tb.capsOf(origin)
	if err != nil {
		if cut, _, ok := tb.cutOf(origin); ok {
			pub, _ := identity.ParseNodeID(origin)
			if !ed25519.Verify(pub, msg, sig) {
				return errors.New("trust: bad signature")
			}
			return fmt.Errorf("trust: %s: %w (%w)", origin, &crdt.OriginRevokedError{At: cut, Renewable: true}, err)
		}
		return err
	}
	if !ed25519.Verify(caps.Key, msg, sig) {
		return errors.New("trust: bad signature")
	}
	return nil
}

func (tb *trustBook) MayPublishService(origin, service string) bool {
	caps, err := tb.capsOf(origin)
	return err == nil && caps.MayPublishService(service)
}

// MayWriteKV: for a node revoked for good, what its chain allowed before
// the revocation (capsBefore) — crdt asks only for its KV records stamped
// before it.
//
// For a node whose chain was cut (chainCut), what the chain allowed before
// the cut: crdt asks only for its KV records stamped before it.
func (tb *trustBook) MayWriteKV(origin, key string) bool {
	caps, err := tb.capsOf(origin)
	if err != nil && errors.Is(err, identity.ErrRevoked) {
		caps, err = tb.capsBefore(origin)
	}
	if err != nil {
		if _, before, ok := tb.cutOf(origin); ok {
			caps, err = before, nil
		}
	}
	return err == nil && caps.MayWriteKV(key)
}

// expiredBetween reports whether a chain known to this trust book reaches
// its end (NotAfter) in (from, to]: the agent then sweeps the replica
// (sweepRevoked), since the node's node, service and check records, live
// here, are dead on agents that merge them from now on.
func (tb *trustBook) expiredBetween(from, to time.Time) bool {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, chain := range tb.chains {
		for _, c := range chain {
			if c != nil && c.NotAfter.After(from) && !c.NotAfter.After(to) {
				return true
			}
		}
	}
	return false
}

// VerifyIntention opens a signed intention envelope and checks that its
// signer may sign intentions.
func (tb *trustBook) VerifyIntention(signed []byte) (crdt.Intention, error) {
	env, err := identity.UnmarshalEnvelope(signed)
	if err != nil {
		return crdt.Intention{}, err
	}
	if env.Type != envIntention {
		return crdt.Intention{}, fmt.Errorf("trust: envelope type %q is not an intention", env.Type)
	}
	caps, err := tb.v.Open(env, tb.now())
	if err != nil {
		return crdt.Intention{}, err
	}
	if !caps.Root && !caps.SignIntentions {
		return crdt.Intention{}, fmt.Errorf("trust: key %s may not sign intentions", identity.NodeID(caps.Key))
	}
	var in crdt.Intention
	if err := cbor.Unmarshal(env.Payload, &in); err != nil {
		return crdt.Intention{}, fmt.Errorf("trust: intention payload: %w", err)
	}
	if err := in.Validate(); err != nil {
		return crdt.Intention{}, err
	}
	if in.ID == "" {
		in.ID = pairIntentionID(in.SourceName, in.DestinationName)
	}
	return in, nil
}

// intentionSignerValid reports whether the key that signed an intention
// document may still have signed it: not revoked, under a root still
// trusted. Expiry does not count — an intention signed while its signer's
// certificate was valid keeps applying after that certificate ends, as a
// Consul intention outlives the token that wrote it — so the chain is
// judged at the start of its validity, where only revocations and
// retired roots can fail it.
func (tb *trustBook) intentionSignerValid(signed []byte) bool {
	env, err := identity.UnmarshalEnvelope(signed)
	if err != nil {
		return false
	}
	if len(env.Chain) == 0 {
		return tb.v.IsRoot(env.Signer)
	}
	var at time.Time
	for _, c := range env.Chain {
		if c != nil && c.NotBefore.After(at) {
			at = c.NotBefore
		}
	}
	caps, err := tb.v.Verify(env.Signer, env.Chain, at)
	return err == nil && (caps.Root || caps.SignIntentions)
}

// VerifyRevocation checks a signed trust statement carried by the
// replica's revocation records — a revocation, or a root rotation signed by
// the old and the new root — and, when valid, applies it to the Verifier at
// once: the revoked subtree loses its rights, or the old root is retired
// in favour of the new one. A statement that later trust may make valid
// is crdt.ErrNotYetApplicable (notYet): the replica holds it and retries
// it when trust changes (crdt.Replica.RetryStatements).
func (tb *trustBook) VerifyRevocation(signed []byte) error {
	r, err := identity.UnmarshalRevocation(signed)
	if err == nil {
		return notYet(tb.v.AddRevocation(r, tb.now()))
	}
	rot, rerr := identity.UnmarshalRotation(signed)
	if rerr != nil {
		return err // neither: report it as what it most often is
	}
	return notYet(tb.v.Rotate(rot, tb.now()))
}

// notYet marks as crdt.ErrNotYetApplicable the refusals of a correctly
// signed statement that a change of trust or the passing of time can
// lift: an untrusted root or issuer chain (a rotation R1→R2 before the
// rotation R0→R1 that makes R1 a root; a revocation by R2, or by a key
// certified under R2, before the rotation to R2), or a time in the
// future. Anything else (a bad signature, a replayed rotation, an expired
// or revoked issuer, a root revoked) stays a final refusal. Refusing a
// statement of the first kind for good would be permanent: the replica
// keeps a refused record's dot, so it never comes again
// (docs/IDENTITY.md, "Statements out of order").
func notYet(err error) error {
	if err != nil && (errors.Is(err, identity.ErrUntrusted) || errors.Is(err, identity.ErrNotYetValid)) {
		return fmt.Errorf("trust: %w: %w", crdt.ErrNotYetApplicable, err)
	}
	return err
}

// SignIntention seals an intention document with key and chain.
func SignIntention(in crdt.Intention, key ed25519.PrivateKey, chain identity.Chain) ([]byte, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	payload, err := cbor.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("intention: %w", err)
	}
	env, err := identity.Seal(envIntention, payload, key, chain)
	if err != nil {
		return nil, err
	}
	return env.Marshal()
}

// nodeSigner signs the replica's records with the node key.
type nodeSigner struct{ key ed25519.PrivateKey }

func (s nodeSigner) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }
