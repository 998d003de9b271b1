package peer

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"maps"
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

	// waiting: node ID → a chain it presented that fails only because its
	// root is not trusted yet (a node re-certified under the next root
	// before the rotation to it reaches this agent); guarded by mu. It
	// grants nothing and judges nothing: it is judged again whenever a
	// trust statement applies (VerifyRevocation) and becomes the node's
	// chain once it verifies. Bounded by maxWaitingChains and
	// maxWaitingChainBytes; waitingBytes is the sum of their encoded sizes.
	waiting      map[string]waitingChain
	waitingBytes int

	// newest: node ID → the newest node record of the node this trust
	// book learnt a chain from (learnRecord); guarded by mu. A node is
	// judged by the chain of its newest node record, whatever its
	// validity: cut, it replaces a chain that verifies; not trusted yet,
	// it waits and replaces the known one once it verifies. Only a
	// handshake (learn) may put another chain in place of it, and only
	// when it no longer verifies (docs/REPLICA.md, "The newest node
	// record decides").
	newest map[string]newestRecord

	// cutChains, when signalled (never blocking), says a node record
	// replaced a chain that verified by one that was cut: the node's
	// records merged meanwhile must be swept (peer/revocation.go).
	cutChains chan struct{}

	// stmt orders applying a trust statement against judging records:
	// VerifyRevocation holds it while it applies a statement and adopts
	// the waiting chains the statement made valid; VerifyOrigin,
	// MayWriteKV and learn hold it for reading. So no record is judged by
	// a chain the statement cut while the chain it made valid is still
	// waiting (its records would be dead here for good, and live on the
	// agents that trusted the new root from the start).
	stmt sync.RWMutex

	// trusted, when set, is signalled (never blocking) when learn makes a
	// node trusted that was not: a first chain, or a new certificate after
	// a cut. Membership's cached admission verdicts must then be asked
	// again (peer/mesh.go).
	trusted chan struct{}
}

// waitingChain is a chain held in trustBook.waiting.
type waitingChain struct {
	pub   ed25519.PublicKey
	chain identity.Chain
	size  int // encoded bytes
}

// newestRecord is the node record whose chain a trust book took as a
// node's current one.
type newestRecord struct {
	counter uint64   // its dot's counter; 0 when read from the replica (learnHeld)
	hash    [32]byte // identity.Chain.Hash of its chain
}

// Bounds on the chains a trust book holds while their root is not trusted
// (trustBook.waiting). Anyone can make such a chain (a key of their own as
// its root) and have a relay carry it in a node record, so beyond these
// bounds a new one is not held: its node is then learnt only from the
// replica's node records after the next change of trust (learnHeld).
const (
	maxWaitingChains     = 256
	maxWaitingChainBytes = 1 << 20
)

var _ crdt.Authorizer = (*trustBook)(nil)

func newTrustBook(v *identity.Verifier, now func() time.Time, self string) *trustBook {
	return &trustBook{v: v, now: now, self: self, chains: make(map[string]identity.Chain),
		before: make(map[string]identity.Capabilities), waiting: make(map[string]waitingChain),
		newest: make(map[string]newestRecord), cutChains: make(chan struct{}, 1)}
}

// learn records the chain a node presents, after checking that it verifies
// for that node's key. A chain that does not verify is refused: it is kept
// only when it was cut (it judges the node's earlier records), or, apart,
// when it fails only because its root is not trusted yet (wait).
func (tb *trustBook) learn(pub ed25519.PublicKey, chainBytes []byte) (identity.Capabilities, error) {
	tb.stmt.RLock()
	defer tb.stmt.RUnlock()
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
			rec, hasNewest := tb.newest[id]
			tb.mu.Unlock()
			keep := !had
			if had && hasNewest && old.Hash() == rec.hash {
				// The chain of the node's newest node record decides.
				keep = false
			} else if had {
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
		if tb.v.IsRevoked(pub) && !tb.holdsNewest(identity.NodeID(pub)) {
			// Keep the chain of a key revoked for good if it verified
			// before the revocation: it judges the node's KV records
			// from before it (capsBefore). It grants nothing now.
			if _, berr := tb.verifyIgnoringRevocations(pub, chain); berr == nil {
				tb.mu.Lock()
				tb.chains[identity.NodeID(pub)] = chain
				tb.mu.Unlock()
			}
		}
		if errors.Is(err, identity.ErrUntrusted) {
			tb.wait(pub, chain, len(chainBytes))
		}
		return identity.Capabilities{}, err
	}
	// The chain of the node's newest node record stays while it verifies:
	// a chain met in a handshake, or in a record not known to be newer,
	// replaces it only when it no longer does (a certificate renewed after
	// a cut; the node's next node record then decides).
	tb.adopt(pub, chain, !tb.newestVerifies(pub))
	// A different chain waiting for its root stays: it may be the newer
	// one (the node re-certified under the next root), and the rotation
	// to that root may cut this one.
	id := identity.NodeID(pub)
	tb.mu.Lock()
	if w, ok := tb.waiting[id]; ok && w.chain.Hash() == chain.Hash() {
		tb.dropWaitingLocked(id)
	}
	tb.mu.Unlock()
	return caps, nil
}

// holdsNewest reports whether the chain known for id is the chain of its
// newest node record (learnRecord).
func (tb *trustBook) holdsNewest(id string) bool {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	rec, ok := tb.newest[id]
	chain, known := tb.chains[id]
	return ok && known && chain.Hash() == rec.hash
}

// newestVerifies reports whether pub's node holds the chain of its newest
// node record (learnRecord) and that chain verifies now.
func (tb *trustBook) newestVerifies(pub ed25519.PublicKey) bool {
	id := identity.NodeID(pub)
	if !tb.holdsNewest(id) {
		return false
	}
	_, err := tb.v.Verify(pub, tb.chainOf(id), tb.now())
	return err == nil
}

// errOlderNodeRecord is learnRecord's answer for a node record older than
// the one whose chain the trust book holds.
var errOlderNodeRecord = errors.New("trust: an older node record")

// learnRecord learns the chain a node published in its node record whose
// dot has counter (0: the newest node record the replica holds, read by
// learnHeld, its counter not known: it decides only for a node no record
// decided yet). A node is judged by the chain of its newest node record,
// whatever the order in which this agent met its chains: a record older
// than the one learnt is ignored (learnt as in a handshake only while
// the newer one's chain is not held: it waits for its root); a newer
// one's chain becomes the node's chain when it verifies, and also when it
// was cut (chainCut: in place of
// one that verifies now — the node's later records are then dead here as
// on the agents that held the newer chain before its cut, and cutChains
// asks for a sweep), or, for a key revoked for good, when it verified
// before the revocation; when its root is not trusted yet it waits and
// replaces the known chain once a statement makes it verify
// (judgeWaiting). A chain that never verified is refused and changes
// nothing. Every agent eventually holds each node's newest node record, so
// every agent ends with the same chain for it (docs/SIM.md, "Found by
// these checkers", 6).
func (tb *trustBook) learnRecord(pub ed25519.PublicKey, chainBytes []byte, counter uint64) (identity.Capabilities, error) {
	var chain identity.Chain
	if len(chainBytes) > 0 {
		c, err := identity.UnmarshalChain(chainBytes)
		if err != nil {
			return identity.Capabilities{}, err
		}
		chain = c
	}
	id := identity.NodeID(pub)
	h := chain.Hash()
	tb.mu.Lock()
	rec, had := tb.newest[id]
	tb.mu.Unlock()
	if had && rec.hash != h && (counter <= rec.counter || counter == 0) {
		if tb.holdsNewest(id) {
			return identity.Capabilities{}, errOlderNodeRecord
		}
		// The newest record's chain waits for its root (or never
		// verified): an older one's counts meanwhile, as one met in a
		// handshake — its records may carry the statement that makes
		// the newer chain verify.
		return tb.learn(pub, chainBytes)
	}
	tb.stmt.RLock()
	defer tb.stmt.RUnlock()
	if had && rec.hash == h && counter <= rec.counter {
		counter = rec.counter // the same chain again
	}
	setNewest := func() {
		tb.mu.Lock()
		tb.newest[id] = newestRecord{counter: counter, hash: h}
		if w, ok := tb.waiting[id]; ok && w.chain.Hash() != h {
			tb.dropWaitingLocked(id) // an older record's
		}
		tb.mu.Unlock()
	}
	now := tb.now()
	caps, err := tb.v.Verify(pub, chain, now)
	if err == nil {
		setNewest()
		tb.adopt(pub, chain, true)
		tb.mu.Lock()
		if w, ok := tb.waiting[id]; ok && w.chain.Hash() == h {
			tb.dropWaitingLocked(id)
		}
		tb.mu.Unlock()
		return caps, nil
	}
	if tb.v.IsRevoked(pub) {
		// As learn: the chain of a key revoked for good judges the
		// node's KV records from before the revocation (capsBefore).
		if _, berr := tb.verifyIgnoringRevocations(pub, chain); berr == nil {
			setNewest()
			tb.mu.Lock()
			tb.chains[id] = chain
			tb.mu.Unlock()
		}
		return identity.Capabilities{}, err
	}
	if _, _, ok := tb.chainCut(pub, chain); ok {
		setNewest()
		tb.mu.Lock()
		old, known := tb.chains[id]
		tb.chains[id] = chain
		tb.mu.Unlock()
		if known && old.Hash() != h {
			if _, oerr := tb.v.Verify(pub, old, now); oerr == nil {
				select {
				case tb.cutChains <- struct{}{}:
				default:
				}
			}
		}
		return identity.Capabilities{}, err
	}
	if errors.Is(err, identity.ErrUntrusted) {
		setNewest()
		tb.wait(pub, chain, len(chainBytes))
	}
	return identity.Capabilities{}, err
}

// adopt makes chain, which verifies now, the chain known for pub's node.
// Unless replace, a known chain that verifies now stays. It signals
// trusted when the node was not trusted before.
func (tb *trustBook) adopt(pub ed25519.PublicKey, chain identity.Chain, replace bool) {
	id := identity.NodeID(pub)
	tb.mu.Lock()
	old, had := tb.chains[id]
	tb.mu.Unlock()
	_, oerr := tb.v.Verify(pub, old, tb.now())
	if !replace && had && oerr == nil {
		return
	}
	tb.mu.Lock()
	tb.chains[id] = chain
	tb.mu.Unlock()
	if tb.trusted != nil && id != tb.self && (!had || oerr != nil) {
		select {
		case tb.trusted <- struct{}{}:
		default:
		}
	}
}

// wait holds a chain that does not verify only because its root is not a
// trusted root (yet): the root was never retired here, and the chain
// verifies for pub with that root trusted. A rotation to that root makes
// it valid (judgeWaiting). Until then it grants nothing. Not held beyond
// maxWaitingChains or maxWaitingChainBytes, nor for this node itself; a
// newer one replaces the node's earlier one. The chain's signatures are
// checked only when it would be held: a chain held already, or one met
// while the bounds are reached, costs no signature check.
func (tb *trustBook) wait(pub ed25519.PublicKey, chain identity.Chain, size int) {
	id := identity.NodeID(pub)
	if id == tb.self || len(chain) == 0 || chain[0] == nil || tb.v.IsRevoked(pub) {
		return
	}
	root := chain[0].Issuer
	if _, retired := tb.v.RetiredAt(root); retired || tb.v.IsRoot(root) {
		return
	}
	h := chain.Hash()
	room := func() (int, bool) {
		old, had := tb.waiting[id]
		if had && old.chain.Hash() == h {
			return 0, false
		}
		n, total := len(tb.waiting), tb.waitingBytes+size
		if had {
			n, total = n-1, total-old.size
		}
		return total, n < maxWaitingChains && total <= maxWaitingChainBytes
	}
	tb.mu.Lock()
	_, ok := room()
	tb.mu.Unlock()
	if !ok {
		return
	}
	if _, err := identity.NewVerifier(root).Verify(pub, chain, tb.now()); err != nil {
		return
	}
	tb.mu.Lock()
	defer tb.mu.Unlock()
	total, ok := room()
	if !ok {
		return
	}
	tb.waiting[id] = waitingChain{pub: pub, chain: chain, size: size}
	tb.waitingBytes = total
}

// waitingOf returns the chain of a node waiting for its root (nil when
// none).
func (tb *trustBook) waitingOf(id string) identity.Chain {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.waiting[id].chain
}

func (tb *trustBook) dropWaitingLocked(id string) {
	if w, ok := tb.waiting[id]; ok {
		tb.waitingBytes -= w.size
		delete(tb.waiting, id)
	}
}

// judgeWaiting judges the waiting chains again after a trust statement
// applied (tb.stmt held for writing): one that verifies now becomes its
// node's chain unless the node's known chain verifies too and the waiting
// one is not the chain of the node's newest node record; one that fails
// for another reason than its root (expired, revoked, its root retired)
// is dropped.
func (tb *trustBook) judgeWaiting() {
	tb.mu.Lock()
	ws := maps.Clone(tb.waiting)
	tb.mu.Unlock()
	now := tb.now()
	for id, w := range ws {
		_, err := tb.v.Verify(w.pub, w.chain, now)
		switch {
		case err == nil:
			tb.mu.Lock()
			rec, ok := tb.newest[id]
			tb.mu.Unlock()
			tb.adopt(w.pub, w.chain, ok && rec.hash == w.chain.Hash())
			tb.mu.Lock()
			tb.dropWaitingLocked(id)
			tb.mu.Unlock()
		case errors.Is(err, identity.ErrUntrusted) && !tb.v.IsRevoked(w.pub):
			if _, retired := tb.v.RetiredAt(w.chain[0].Issuer); !retired {
				continue
			}
			fallthrough
		default:
			tb.mu.Lock()
			tb.dropWaitingLocked(id)
			tb.mu.Unlock()
		}
	}
}

// learnHeld learns again the chains carried by the node records r holds
// (the live one of each node, or the newest dead one: LastNodeRecord) as
// the chains of the nodes' newest node records (learnRecord), for every
// node whose known chain does not verify now or is not that record's. The
// agent calls it after its trust changed (watchRevocations), before it
// sweeps: a chain that did not verify when its record was merged (its
// root not trusted yet) and was not held (wait's bounds) becomes the
// node's chain, as it does at start (openStore). It returns how many
// nodes it made trusted.
func (tb *trustBook) learnHeld(r *crdt.Replica) int {
	n := 0
	for origin := range r.Heads() {
		if origin == tb.self {
			continue
		}
		pub, err := identity.ParseNodeID(origin)
		if err != nil {
			continue
		}
		node, counter, ok := r.NewestNodeRecord(origin)
		if !ok || len(node.Cert) == 0 {
			continue
		}
		admitted := tb.admitted(origin)
		if admitted && tb.holdsNewest(origin) {
			if chain, err := identity.UnmarshalChain(node.Cert); err == nil && chain.Hash() == tb.chainOf(origin).Hash() {
				continue
			}
		}
		if _, err := tb.learnRecord(pub, node.Cert, counter); err == nil && !admitted {
			n++
		}
	}
	return n
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
// Each is the chain of a node record with its dot's counter
// (learnRecord): the newest node record decides. Only a record its node
// signed, with the body its header names, is read: anyone may relay a
// delta, and an older chain of the node (a public credential) under a
// forged or borrowed header would otherwise pass for its newest.
func (tb *trustBook) learnFromDelta(d *crdt.Delta) {
	for _, e := range d.Entries {
		if e.Body == nil {
			continue
		}
		kind, _, dot, err := crdt.DecodeEntryHeader(e.Header)
		if err != nil || kind != crdt.KindNode {
			continue
		}
		if dot.Origin == tb.self {
			continue // an older record of ours may carry a chain we replaced
		}
		pub, err := identity.ParseNodeID(dot.Origin)
		if err != nil || !signedRecord(pub, e) {
			continue
		}
		n, err := crdt.DecodeNode(e.Body)
		if err != nil {
			continue
		}
		// A failure here is reported by Merge when the record is refused.
		tb.learnRecord(pub, n.Cert, dot.Counter)
	}
}

// signedRecord reports whether pub signed e's header and e's body is the
// one that header names: what Merge checks before it takes the record.
// e's header must have been decoded (crdt.DecodeEntryHeader) already.
func signedRecord(pub ed25519.PublicKey, e crdt.Entry) bool {
	return ed25519.Verify(pub, crdt.SignedMessage(e.Header), e.Sig) && crdt.BodyMatches(e.Header, e.Body)
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
	tb.stmt.RLock()
	defer tb.stmt.RUnlock()
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
	tb.stmt.RLock()
	defer tb.stmt.RUnlock()
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
	return openIntention(tb.v, signed, tb.now()) // intention_judge.go
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
//
// Once a statement applies, the chains waiting for their root to be
// trusted are judged again (judgeWaiting), before any record is judged
// with the statement applied (tb.stmt): a node re-certified under the new
// root before this agent held the rotation keeps counting, as on the
// agents that trusted that root from the start.
func (tb *trustBook) VerifyRevocation(signed []byte) error {
	tb.stmt.Lock()
	defer tb.stmt.Unlock()
	err := tb.applyStatement(signed)
	if err == nil {
		tb.judgeWaiting()
	}
	return err
}

// applyStatement is VerifyRevocation without judging the waiting chains.
func (tb *trustBook) applyStatement(signed []byte) error {
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
