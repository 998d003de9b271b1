package sim

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/identity"
)

// Root rotations and a delegated operator key in the simulator.
//
//	event { at = "2.5s"  action = "rotate"  group = 1  pretrust = 0.5  recertify = "2s"  stale = 1  recertify_newest = true }
//	event { at = "5s"    action = "delegate"  count = 2 }
//	event { at = "9s"    action = "revoke"  by_operator = true }
//	event { at = "11s"   action = "revoke"  operator = true }
//
// When a scenario rotates or delegates, every peer carries a certificate
// chain, as peer's agents do: issued by the sim root R0 at the start,
// known to every trust book from the start (as a QUIC handshake would
// present it), published in the peer's node record, and judged by each
// trust book (nodeAuth) the way peer's trustBook judges it: a chain whose
// root was retired is cut at the rotation (the end of its second), and
// the peer's records stamped after that cut are dead everywhere.
//
// The k-th rotate event has the current root R(k-1) and a new root Rk
// (derived from the seed) sign a rotation statement (identity.NewRotation,
// `peerd rotate`). Pretrust of the peers have Rk in their configured trust
// from the start (docs/OPERATIONS.md, "Rotating the root", step 1); the
// others trust it only once their trust book applies the rotation.
// Recertify before the rotation the operator re-issues the certificate of
// every peer whose trust book trusts Rk under Rk (step 2), of a peer that
// does not under the newest root it trusts beyond Rk, if any (with
// recertify_newest, every peer under the newest root it trusts), except
// Stale random live peers: peer's SetNodeChain, which refuses a chain its
// own trust book does not verify and publishes the node record carrying
// it. A peer's own trust book learns chains as peer's does: from node
// records before each merge, at start from the node records its replica
// holds, and from the handshake of a connection the other peer opens. A
// peer left on a chain the rotation cuts leaves the workload, keeps
// writing one KV record a second, and is stopped at the heal, as a
// revoked one. The statement is then
// submitted (peer's SubmitRotation) at a random live peer that accepts it:
// its trust book trusts the old root and its own chain still verifies
// after the rotation.
//
// Trust books apply statements as peer's trustBook does: a rotation or a
// revocation that names a root not trusted yet is
// crdt.ErrNotYetApplicable, which the replica holds; the peer retries the
// held statements (crdt.Replica.RetryStatements) whenever its set of
// statements changes, at start, and every minute while some are held,
// then withdraws the intentions whose signer is no longer valid
// (crdt.Replica.WithdrawIntentions with peer's intentionSignerValid) and
// sweeps (RevokeOrigins), as peer's watchRevocations does.
//
// A delegate event has the current root certify an operator key that may
// sign intentions and revoke the keys it certifies; the intentions issued
// from then on are signed by it (with its chain in the envelope) until a
// revoke event with operator set revokes it (signed by the current root).
// Intentions are otherwise signed by the current root. With count, the
// operator certifies that many peers under itself; a revoke event with
// by_operator has it revoke one of them (a delegated revocation), and its
// own revocation cuts the others.

// statementRetryInterval is peer's: held statements are retried every
// minute when nothing else changed.
const statementRetryInterval = time.Minute

// rotations is the run's rotation, chain and delegation bookkeeping.
type rotations struct {
	active bool                  // the scenario rotates or delegates: peers carry chains
	roots  []ed25519.PrivateKey  // roots[0] is the sim root; roots[k] the new root of the k-th rotation
	pubs   []ed25519.PublicKey   // their public keys
	cfg    [][]ed25519.PublicKey // per peer: the roots its configuration trusts
	first  []identity.Chain      // per peer: its chain at the start (under R0)
	opKey  ed25519.PrivateKey
	opPub  ed25519.PublicKey

	cur      int  // run goroutine: index of the current root
	nextRot  int  // run goroutine: rotate events played
	opActive bool // run goroutine: the operator signs the intentions
	opRoot   int  // run goroutine: the root that certified the operator

	held    atomic.Uint64 // statements held by merges (crdt reason statement-pending)
	retried atomic.Uint64 // held statements applied by RetryStatements
	maxHeld atomic.Int64  // most statements one replica held at once
	refused atomic.Uint64 // submissions no live peer accepted

	mu              sync.Mutex // guards the fields below
	chains          []identity.Chain
	chainRoot       []int // per peer: the root index that issued chains[i]
	rots            []*rotationRec
	opChain         identity.Chain  // the operator's chain once delegated
	opRevoked       []byte          // the operator's revocation once revoked
	opRec           *rotationRec    // the operator's revocation: the peers it certified are cut by it
	delegated       []*rotationRec  // revocations the operator signed (of peers it certified)
	underOp         []int           // peers the operator certified
	opSigned        map[string]bool // intention IDs signed by the operator
	opWithdrawnSeen uint64          // violations: a peer holding the operator's revocation showed an intention it signed
}

// rotationRec is one rotate event, or the operator's revocation (k = 0,
// stmt nil): a statement that cuts the peers whose chains it ends.
type rotationRec struct {
	k        int
	blob     []byte
	stmt     *identity.Rotation
	cutAt    time.Time             // the cut: end of the statement's second
	at       time.Time             // submitted (reference clock)
	applied  map[int]time.Duration // peer → submission to its trust book retiring the old root (first time)
	stale    []int                 // peers whose chain it cut
	attempts []string              // KV keys the stale peers wrote after the cut
}

func (c *Cluster) newRotations() *rotations {
	sc := c.sc
	x := &rotations{opSigned: map[string]bool{}}
	nrot := 0
	for _, e := range sc.Events {
		switch e.Action {
		case "rotate":
			nrot++
			x.active = true
		case "delegate":
			x.active = true
		}
	}
	key := func(what string, i int) ed25519.PrivateKey {
		var seed [32]byte
		binary.LittleEndian.PutUint64(seed[:], c.seedFor(what, i))
		return ed25519.NewKeyFromSeed(seed[:])
	}
	for k := 0; k <= nrot; k++ {
		r := key("root", k) // k = 0 is authzState's root
		x.roots = append(x.roots, r)
		x.pubs = append(x.pubs, r.Public().(ed25519.PublicKey))
	}
	if !x.active {
		return x
	}
	x.opKey = key("operator", 0)
	x.opPub = x.opKey.Public().(ed25519.PublicKey)
	// Configured trust: R0 everywhere, each new root at its Pretrust share
	// of the peers (drawn from a generator of its own: the workload's
	// draws stay as they are).
	rng := rand.New(rand.NewPCG(sc.Seed, 0x726f7461))
	x.cfg = make([][]ed25519.PublicKey, sc.Peers)
	for i := range x.cfg {
		x.cfg[i] = []ed25519.PublicKey{x.pubs[0]}
	}
	k := 0
	for _, e := range sc.Events {
		if e.Action != "rotate" {
			continue
		}
		k++
		perm := rng.Perm(sc.Peers)
		for _, i := range perm[:int(e.Pretrust*float64(sc.Peers)+0.5)] {
			x.cfg[i] = append(x.cfg[i], x.pubs[k])
		}
	}
	now := time.Now()
	x.chains = make([]identity.Chain, sc.Peers)
	x.chainRoot = make([]int, sc.Peers)
	for i, n := range c.nodes {
		ch, err := issueNodeChain(x.roots[0], n, now, uint64(i+1))
		if err != nil {
			panic(fmt.Sprintf("sim: issuing a chain: %v", err)) // internal invariant: fixed valid inputs
		}
		x.chains[i] = ch
	}
	x.first = slices.Clone(x.chains)
	return x
}

// issueNodeChain has root certify n's key with every right, valid for a
// day around now.
func issueNodeChain(root ed25519.PrivateKey, n *node, now time.Time, serial uint64) (identity.Chain, error) {
	return identity.Issue(root, nil, n.key.Public().(ed25519.PublicKey), n.id,
		identity.Constraints{Services: []string{"*"}, KVPrefixes: []string{"*"}},
		now.Add(-time.Hour), now.Add(24*time.Hour), serial)
}

// chainOf returns peer i's current chain (what it presents and publishes).
func (x *rotations) chainOf(i int) identity.Chain {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.chains[i]
}

// applied records that peer n's trust book applied rot.
func (x *rotations) applied(n *node, rot *identity.Rotation) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, r := range x.rots {
		if bytes.Equal(r.stmt.OldRoot, rot.OldRoot) && bytes.Equal(r.stmt.NewRoot, rot.NewRoot) {
			if _, ok := r.applied[n.idx]; !ok {
				r.applied[n.idx] = time.Since(r.at)
			}
		}
	}
}

// cuts maps each peer some rotation cut off to its cut (end of the
// rotation's second), for the KV checkers.
func (x *rotations) cuts() map[int]time.Time {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := map[int]time.Time{}
	for _, r := range x.cutRecsLocked() {
		for _, i := range r.stale {
			if cur, ok := out[i]; !ok || r.cutAt.Before(cur) {
				out[i] = r.cutAt
			}
		}
	}
	return out
}

// cutRecsLocked lists the statements that cut peers: the rotations and
// the operator's revocation. x.mu must be held.
func (x *rotations) cutRecsLocked() []*rotationRec {
	out := slices.Clone(x.rots)
	if x.opRec != nil && x.opRec.blob != nil {
		out = append(out, x.opRec)
	}
	for _, r := range x.delegated {
		if r.blob != nil {
			out = append(out, r)
		}
	}
	return out
}

// --- trust book (nodeAuth) in chain mode: peer's trustBook ---

// notYet is peer's: a refusal that later trust can lift is
// crdt.ErrNotYetApplicable (the replica holds the statement). The
// negative test refuses it for good instead (peer before the fix).
func (a *nodeAuth) notYet(err error) error {
	if err != nil && !a.c.sc.permissive.dropHeld &&
		(errors.Is(err, identity.ErrUntrusted) || errors.Is(err, identity.ErrNotYetValid)) {
		return fmt.Errorf("sim: %w: %w", crdt.ErrNotYetApplicable, err)
	}
	return err
}

// forgetChains empties a restarted incarnation's chains (chain mode): as
// peer's trustBook after a restart, it learns them from the node records
// its replica holds, not from the first chains every peer presented.
func (a *nodeAuth) forgetChains() {
	if a.chains == nil {
		return
	}
	a.mu.Lock()
	a.chains = map[string]identity.Chain{}
	a.waiting = map[string]identity.Chain{}
	a.newest = map[string]newestRec{}
	a.mu.Unlock()
}

// known returns the chain this trust book holds for origin.
func (a *nodeAuth) known(origin string) (identity.Chain, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ch, ok := a.chains[origin]
	return ch, ok
}

// learn records the chain a peer presents (handshake, node record), as
// peer's trustBook.learn: kept when it verifies now; when it does not,
// kept only if it was valid until a known cut and the held one is not
// better (verifies now, or was cut later).
//
// A chain that fails only because its root is not trusted yet waits
// (peer's trustBook.wait, without its bounds): it is judged again after
// every statement the trust book applies (judgeWaiting) and becomes the
// node's chain once it verifies.
func (a *nodeAuth) learn(origin string, chain identity.Chain) bool {
	pub, ok := a.c.auth.keys[origin]
	if !ok || a.chains == nil {
		return false
	}
	a.stmt.RLock()
	defer a.stmt.RUnlock()
	now := a.now()
	_, err := a.v.Verify(pub, chain, now)
	if err == nil {
		// The chain of the node's newest node record stays while it
		// verifies (peer's trustBook.learn).
		a.adopt(origin, pub, chain, !a.newestVerifies(origin))
		a.mu.Lock()
		if w, ok := a.waiting[origin]; ok && w.Hash() == chain.Hash() {
			delete(a.waiting, origin)
		}
		a.mu.Unlock()
		return true
	}
	if errors.Is(err, identity.ErrUntrusted) && !a.c.sc.permissive.noWait {
		a.wait(origin, pub, chain)
	}
	cut, _, ok := a.chainCut(pub, chain)
	if !ok || a.v.IsRevoked(pub) || a.holdsNewest(origin) {
		return false
	}
	old, had := a.known(origin)
	if had {
		if _, err := a.v.Verify(pub, old, now); err == nil {
			return false
		}
		if oldCut, _, oldOK := a.chainCut(pub, old); oldOK && !oldCut.Before(cut) {
			return false
		}
	}
	a.mu.Lock()
	a.chains[origin] = chain
	a.mu.Unlock()
	return false
}

// newestRec is the node record whose chain a trust book took as a node's
// current one (peer's trustBook.newest).
type newestRec struct {
	counter uint64 // its dot's counter; 0 when read from the replica (learnHeld)
	hash    [32]byte
}

// holdsNewest reports whether origin's known chain is its newest node
// record's.
func (a *nodeAuth) holdsNewest(origin string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	rec, ok := a.newest[origin]
	chain, known := a.chains[origin]
	return ok && known && chain.Hash() == rec.hash
}

// newestVerifies reports whether origin's known chain is its newest node
// record's and verifies now.
func (a *nodeAuth) newestVerifies(origin string) bool {
	if !a.holdsNewest(origin) {
		return false
	}
	chain, _ := a.known(origin)
	_, err := a.v.Verify(a.c.auth.keys[origin], chain, a.now())
	return err == nil
}

// takeCut reports, and clears, whether learnRecord replaced a chain that
// verified by a newer one that was cut since the last call.
func (a *nodeAuth) takeCut() bool {
	if a.chains == nil {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	cut := a.cutPending
	a.cutPending = false
	return cut
}

// learnRecord is peer's trustBook.learnRecord: the chain of origin's node
// record whose dot has counter (0: the newest the replica holds, read by
// learnHeld). The newest node record decides: an older one is ignored
// (learnt as in a handshake while the newer chain is not held: it waits
// for its root); a newer one's chain replaces the known one when it
// verifies or was cut (then the replica is swept: takeCut), and waits,
// to replace it once it verifies, when its root is not trusted yet. One
// that never verified changes nothing.
func (a *nodeAuth) learnRecord(origin string, chain identity.Chain, counter uint64) {
	pub, ok := a.c.auth.keys[origin]
	if !ok || a.chains == nil {
		return
	}
	if a.c.sc.permissive.noNewest {
		a.learn(origin, chain)
		return
	}
	h := chain.Hash()
	a.mu.Lock()
	rec, had := a.newest[origin]
	a.mu.Unlock()
	if had && rec.hash != h && (counter <= rec.counter || counter == 0) {
		if !a.holdsNewest(origin) {
			a.learn(origin, chain)
		}
		return
	}
	if had && rec.hash == h && counter <= rec.counter {
		counter = rec.counter
	}
	a.stmt.RLock()
	defer a.stmt.RUnlock()
	setNewest := func() {
		a.mu.Lock()
		a.newest[origin] = newestRec{counter: counter, hash: h}
		if w, ok := a.waiting[origin]; ok && w.Hash() != h {
			delete(a.waiting, origin)
		}
		a.mu.Unlock()
	}
	now := a.now()
	_, err := a.v.Verify(pub, chain, now)
	if err == nil {
		setNewest()
		a.adopt(origin, pub, chain, true)
		a.mu.Lock()
		if w, ok := a.waiting[origin]; ok && w.Hash() == h {
			delete(a.waiting, origin)
		}
		a.mu.Unlock()
		return
	}
	if a.v.IsRevoked(pub) {
		return
	}
	if _, _, ok := a.chainCut(pub, chain); ok {
		setNewest()
		a.mu.Lock()
		old, known := a.chains[origin]
		a.chains[origin] = chain
		a.mu.Unlock()
		if known && old.Hash() != h {
			if _, oerr := a.v.Verify(pub, old, now); oerr == nil {
				a.mu.Lock()
				a.cutPending = true
				a.mu.Unlock()
			}
		}
		return
	}
	if errors.Is(err, identity.ErrUntrusted) && !a.c.sc.permissive.noWait {
		setNewest()
		a.wait(origin, pub, chain)
	}
}

// adopt makes chain, which verifies now, origin's chain (peer's
// trustBook.adopt); unless replace, a known chain that verifies stays.
func (a *nodeAuth) adopt(origin string, pub ed25519.PublicKey, chain identity.Chain, replace bool) {
	now := a.now()
	a.mu.Lock()
	old, had := a.chains[origin]
	a.mu.Unlock()
	_, oerr := a.v.Verify(pub, old, now)
	if !replace && had && oerr == nil {
		return
	}
	a.mu.Lock()
	a.chains[origin] = chain
	a.mu.Unlock()
	if a.n != nil && origin != a.n.id && (!had || oerr != nil) {
		// Trusted again: membership asks again (peer's trustBook.trusted
		// → readmitTrusted).
		a.n.membersDirty.Store(true)
	}
}

// wait holds a chain that fails only because its root is not trusted
// (yet): not for this peer itself, a revoked key, a root retired or
// trusted already; and only if it verifies with that root trusted.
func (a *nodeAuth) wait(origin string, pub ed25519.PublicKey, chain identity.Chain) {
	if (a.n != nil && origin == a.n.id) || len(chain) == 0 || chain[0] == nil || a.v.IsRevoked(pub) {
		return
	}
	root := chain[0].Issuer
	if _, retired := a.v.RetiredAt(root); retired || a.v.IsRoot(root) {
		return
	}
	if _, err := identity.NewVerifier(root).Verify(pub, chain, a.now()); err != nil {
		return
	}
	a.mu.Lock()
	a.waiting[origin] = chain
	a.mu.Unlock()
}

// judgeWaiting is peer's: after a statement applied, a waiting chain that
// verifies becomes its node's chain unless the known one verifies too; one
// that fails for another reason than an untrusted root is dropped.
func (a *nodeAuth) judgeWaiting() {
	a.mu.Lock()
	ws := maps.Clone(a.waiting)
	a.mu.Unlock()
	now := a.now()
	for origin, chain := range ws {
		pub := a.c.auth.keys[origin]
		_, err := a.v.Verify(pub, chain, now)
		switch {
		case err == nil:
			a.mu.Lock()
			rec, ok := a.newest[origin]
			a.mu.Unlock()
			a.adopt(origin, pub, chain, ok && rec.hash == chain.Hash())
		case errors.Is(err, identity.ErrUntrusted) && !a.v.IsRevoked(pub):
			if _, retired := a.v.RetiredAt(chain[0].Issuer); !retired {
				continue
			}
		}
		a.mu.Lock()
		delete(a.waiting, origin)
		a.mu.Unlock()
	}
}

// learnHeld is peer's trustBook.learnHeld: after a change of trust, learn
// again the chains in the node records the replica holds (the live one,
// else the newest dead one) of every node whose known chain does not
// verify now.
func (a *nodeAuth) learnHeld(r *crdt.Replica) {
	if a.chains == nil || a.c.sc.permissive.noWait {
		return
	}
	for origin := range r.Heads() {
		if a.n != nil && origin == a.n.id {
			continue
		}
		_, known := a.known(origin)
		trusted := known && !a.chainRefused(origin)
		if a.c.sc.permissive.noNewest && trusted {
			continue
		}
		nd, counter, ok := r.NewestNodeRecord(origin)
		if !ok || len(nd.Cert) == 0 {
			continue
		}
		ch, err := identity.UnmarshalChain(nd.Cert)
		if err != nil {
			continue
		}
		if trusted && a.holdsNewest(origin) {
			if cur, _ := a.known(origin); cur.Hash() == ch.Hash() {
				continue
			}
		}
		a.learnRecord(origin, ch, counter)
	}
}

// chainCut is peer's trustBook.chainCut: whether a chain that does not
// verify now was valid until a known time — its root retired (the end of
// the rotation's second), a key in it revoked by an issuer above it (the
// end of the revocation's second), its end — and the rights it gave.
func (a *nodeAuth) chainCut(pub ed25519.PublicKey, chain identity.Chain) (time.Time, identity.Capabilities, bool) {
	if len(chain) == 0 || chain[0] == nil {
		return time.Time{}, identity.Capabilities{}, false
	}
	var cut time.Time
	earlier := func(t time.Time) {
		if cut.IsZero() || t.Before(cut) {
			cut = t
		}
	}
	roots := a.v.Roots()
	if at, ok := a.v.RetiredAt(chain[0].Issuer); ok {
		earlier(at.Add(time.Second))
		roots = append(roots, chain[0].Issuer)
	}
	for _, r := range a.v.Revocations() {
		for i, c := range chain {
			if c == nil || !r.Subject.Equal(c.Subject) {
				continue
			}
			applies := a.v.IsRevoked(c.Subject)
			for j := 0; j <= i && !applies; j++ {
				applies = chain[j] != nil && r.Issuer.Equal(chain[j].Issuer)
			}
			if applies {
				earlier(r.At.Add(time.Second))
			}
		}
	}
	now := a.now()
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

// chainRefused reports whether the chain this trust book holds for origin
// no longer verifies (chain mode; false for origins without a chain).
func (a *nodeAuth) chainRefused(origin string) bool {
	if a.chains == nil {
		return false
	}
	chain, ok := a.known(origin)
	if !ok {
		return false
	}
	_, err := a.v.Verify(a.c.auth.keys[origin], chain, a.now())
	return err != nil
}

// DecodeIntention is peer's trustBook.DecodeIntention (crdt.IntentionDecoder):
// stored documents are decoded without judging their signer.
func (a *nodeAuth) DecodeIntention(signed []byte) (crdt.Intention, error) {
	env, err := intentionEnvelope(signed)
	if err != nil {
		return crdt.Intention{}, err
	}
	return a.intentionPayload(env)
}

// JudgeIntention is peer's trustBook.JudgeIntention (crdt.IntentionJudge):
// a replicated document is judged once for good at the record's stamp
// against every root trusted or retired and no revocations; never valid
// is refused, cut off since is merged withdrawn.
func (a *nodeAuth) JudgeIntention(signed []byte, at time.Time) (crdt.Intention, bool, error) {
	in, err := a.openIntention(a.v.Unrevoked(), signed, at)
	if err != nil {
		return crdt.Intention{}, false, err
	}
	return in, !a.intentionSignerValid(signed), nil
}

// openIntention opens a signed intention envelope with v at time at and
// checks that its signer may sign intentions (peer's openIntention).
func (a *nodeAuth) openIntention(v *identity.Verifier, signed []byte, at time.Time) (crdt.Intention, error) {
	env, err := intentionEnvelope(signed)
	if err != nil {
		return crdt.Intention{}, err
	}
	caps, err := v.Open(env, at)
	if err != nil {
		return crdt.Intention{}, err
	}
	if !caps.Root && !caps.SignIntentions {
		return crdt.Intention{}, fmt.Errorf("sim: key %s may not sign intentions", identity.NodeID(caps.Key))
	}
	return a.intentionPayload(env)
}

func intentionEnvelope(signed []byte) (*identity.Envelope, error) {
	env, err := identity.UnmarshalEnvelope(signed)
	if err != nil {
		return nil, err
	}
	if env.Type != envIntention {
		return nil, fmt.Errorf("sim: envelope type %q is not an intention", env.Type)
	}
	return env, nil
}

func (a *nodeAuth) intentionPayload(env *identity.Envelope) (crdt.Intention, error) {
	var in crdt.Intention
	if err := cbor.Unmarshal(env.Payload, &in); err != nil {
		return crdt.Intention{}, fmt.Errorf("sim: intention payload: %w", err)
	}
	if err := in.Validate(); err != nil {
		return crdt.Intention{}, err
	}
	if a.c.sc.permissive.versions {
		in.Version = 0 // negative test: the replica can no longer order versions
	}
	return in, nil
}

// intentionSignerValid is peer's: the key that signed an intention
// document may still have signed it (not revoked, under a root still
// trusted), its chain judged at the start of its validity.
func (a *nodeAuth) intentionSignerValid(signed []byte) bool { return signerValid(a.v, signed) }

func signerValid(v *identity.Verifier, signed []byte) bool {
	env, err := identity.UnmarshalEnvelope(signed)
	if err != nil {
		return false
	}
	if len(env.Chain) == 0 {
		return v.IsRoot(env.Signer)
	}
	var at time.Time
	for _, c := range env.Chain {
		if c != nil && c.NotBefore.After(at) {
			at = c.NotBefore
		}
	}
	caps, err := v.Verify(env.Signer, env.Chain, at)
	return err == nil && (caps.Root || caps.SignIntentions)
}

// currentRoot is the newest root a rotation made current (the sim root
// before any).
func (c *Cluster) currentRoot() ed25519.PrivateKey {
	if c.rot.active {
		return c.rot.roots[c.rot.cur]
	}
	return c.authz.rootKey
}

// learnFromDelta learns the chains published in the node records of a
// delta before it is merged, as peer's mergeRemote does.
func (a *nodeAuth) learnFromDelta(d *crdt.Delta) {
	if a.chains == nil {
		return
	}
	for _, e := range d.Entries {
		if e.Body == nil {
			continue
		}
		kind, _, dot, err := crdt.DecodeEntryHeader(e.Header)
		if err != nil || kind != crdt.KindNode || (a.n != nil && dot.Origin == a.n.id) {
			continue
		}
		nd, err := crdt.DecodeNode(e.Body)
		if err != nil || len(nd.Cert) == 0 {
			continue
		}
		if ch, err := identity.UnmarshalChain(nd.Cert); err == nil {
			a.learnRecord(dot.Origin, ch, dot.Counter)
		}
	}
}

// handshake models the QUIC handshake of a connection other opens to
// holder: other presents its current chain (peer's transport VerifyPeer →
// learn). The sim calls it when holder receives from other while refusing
// it on the chain it knows: peer closed that connection when it stopped
// trusting other, so other dialled again. (A peer does not dial a member
// it does not admit: peer's admit judges the chain it knows.)
func (c *Cluster) handshake(a *nodeAuth, other int) {
	if !c.rot.active || a == nil {
		return
	}
	a.learn(c.nodes[other].id, c.rot.chainOf(other))
}

// --- peers: applying trust changes ---

// trustChanged is peer's watchRevocations round after the replica's set
// of trust statements changed (or at start, or on the minute tick while
// some are held): retry the held statements, withdraw the intentions
// whose signer is no longer valid, re-evaluate the peers, sweep.
func (c *Cluster) trustChanged(inc *incarnation) {
	if c.rot.active {
		c.notePending(inc.replica)
		if !c.sc.permissive.noRetry {
			if k := inc.replica.RetryStatements(inc.auth); k > 0 {
				c.rot.retried.Add(uint64(k))
			}
		}
		inc.auth.learnHeld(inc.replica)
		if !c.sc.permissive.noWithdraw {
			inc.replica.WithdrawIntentions(inc.auth.intentionSignerValid)
		}
		inc.n.membersDirty.Store(true)
		c.checkOperatorWithdrawn(inc)
	}
	c.sweepRevoked(inc)
}

func (c *Cluster) notePending(rep *crdt.Replica) {
	k := int64(rep.PendingStatements())
	for {
		cur := c.rot.maxHeld.Load()
		if k <= cur || c.rot.maxHeld.CompareAndSwap(cur, k) {
			return
		}
	}
}

// retryTick is peer's minute tick: retry while statements are held.
func (c *Cluster) retryTick(n *node) {
	rep, a := n.rep(), n.auth.Load()
	if rep == nil || a == nil || rep.PendingStatements() == 0 {
		return
	}
	c.trustChanged(&incarnation{n: n, replica: rep, auth: a})
}

// reapplyTrustStatements is peer's: a restarted peer's fresh trust book
// re-applies the rotations its replica holds (oldest first, repeated while
// one more applies), then the revocations, and learns the chains of the
// node records it holds (live ones, and the last one of an origin without
// a live one). The held statements are retried afterwards (trustChanged).
func (c *Cluster) reapplyTrustStatements(r *crdt.Replica, auth *nodeAuth) {
	if c.sc.permissive.forgetOnRestart {
		return
	}
	var rots []*identity.Rotation
	var raw [][]byte
	for _, blob := range r.Revocations() {
		if rot, err := identity.UnmarshalRotation(blob); err == nil {
			rots = append(rots, rot)
			continue
		}
		raw = append(raw, blob)
	}
	slices.SortFunc(rots, func(x, y *identity.Rotation) int { return x.At.Compare(y.At) })
	for progress := true; progress; {
		progress = false
		rest := rots[:0]
		for _, rot := range rots {
			if err := auth.VerifyRevocation(mustMarshalRotation(rot)); err != nil {
				rest = append(rest, rot)
				continue
			}
			progress = true
		}
		rots = rest
	}
	for _, blob := range raw {
		_ = auth.VerifyRevocation(blob)
	}
	if auth.chains == nil {
		return
	}
	for _, e := range r.Nodes() {
		if e.Origin == auth.n.id {
			continue
		}
		if ch, err := identity.UnmarshalChain(e.Node.Cert); err == nil && len(e.Node.Cert) > 0 {
			auth.learn(e.Origin, ch)
		}
	}
	for origin := range r.Heads() {
		if origin == auth.n.id {
			continue
		}
		if _, live := r.Node(origin); live {
			continue
		}
		if nd, ok := r.LastNodeRecord(origin); ok && len(nd.Cert) > 0 {
			if ch, err := identity.UnmarshalChain(nd.Cert); err == nil {
				auth.learn(origin, ch)
			}
		}
	}
}

func mustMarshalRotation(rot *identity.Rotation) []byte {
	b, err := rot.Marshal()
	if err != nil {
		panic(fmt.Sprintf("sim: marshal rotation: %v", err)) // internal invariant: decoded just before
	}
	return b
}

// publishNode writes n's node record carrying its current chain when the
// replica's differs (peer's publishNode), and has its own trust book learn
// the chain (peer's SetNodeChain).
func (c *Cluster) publishNode(n *node) {
	if !c.rot.active {
		return
	}
	chain := c.rot.chainOf(n.idx)
	if a := n.auth.Load(); a != nil {
		a.learn(n.id, chain)
	}
	cert, err := chain.Marshal()
	if err != nil {
		c.logf("%s: chain: %v", n.id, err)
		return
	}
	_, _ = n.write(func(r *crdt.Replica, now time.Time) (*crdt.Delta, error) {
		if old, ok := r.Node(n.id); ok && bytes.Equal(old.Cert, cert) {
			return nil, nil
		}
		return r.PutNode(crdt.Node{Name: n.id, Address: nodeIP(n.idx), Cert: cert}, now)
	})
}

// --- events ---

// rotationEvent expands a rotate or delegate event.
func (c *Cluster) rotationEvent(e Event) []action {
	switch e.Action {
	case "delegate":
		return []action{{e.At, func() { c.delegate(e) }}}
	case "rotate":
		rec := &rotationRec{applied: map[int]time.Duration{}}
		lead := e.Recertify
		if lead <= 0 {
			lead = time.Second
		}
		out := []action{
			{max(e.At-lead, 0), func() { c.recertify(e, rec) }},
			{e.At, func() { c.rotate(e, rec) }},
		}
		// The peers it cut keep writing, once a second from 2 s after it.
		for t, k := e.At+2*time.Second, 0; t < c.sc.Duration; t, k = t+time.Second, k+1 {
			out = append(out, action{t, func() { c.staleWrite(rec, k) }})
		}
		return out
	}
	return nil
}

// recertify re-issues, before rotation rec, the chain of every peer whose
// trust book trusts a root at least as new as the rotation's under the
// newest such root, except Stale random live ones.
func (c *Cluster) recertify(e Event, rec *rotationRec) {
	x := c.rot
	x.nextRot++
	rec.k = x.nextRot
	live := c.liveNodes()
	c.rng.Shuffle(len(live), func(a, b int) { live[a], live[b] = live[b], live[a] })
	stale := live[:min(e.Stale, len(live))]
	var renewed int
	for i, n := range c.nodes {
		if slices.Contains(stale, i) || c.isRevoked(i) {
			continue
		}
		best := -1
		if c.trustsRoot(n, rec.k) && !e.Newest {
			best = rec.k // the rotation's new root, as step 2 says
		} else {
			for m := len(x.pubs) - 1; m > rec.k; m-- {
				if c.trustsRoot(n, m) {
					best = m // a newer root it already trusts
					break
				}
			}
		}
		x.mu.Lock()
		cur := x.chainRoot[i]
		x.mu.Unlock()
		if best < 0 || best <= cur {
			continue
		}
		ch, err := issueNodeChain(x.roots[best], n, time.Now(), uint64(1000*best+i+1))
		if err != nil {
			c.logf("recertify %s: %v", n.id, err)
			continue
		}
		x.mu.Lock()
		x.chains[i], x.chainRoot[i] = ch, best
		x.mu.Unlock()
		renewed++
		if n.isUp() {
			c.publishNode(n) // a crashed peer publishes it when it restarts
		}
	}
	ids := make([]string, len(stale))
	for j, i := range stale {
		ids[j] = c.nodes[i].id
	}
	c.note("recertify before R%d->R%d: %d peers renewed, stale %v", rec.k-1, rec.k, renewed, ids)
	c.logf("recertify before R%d->R%d: %d peers renewed, stale %v", rec.k-1, rec.k, renewed, ids)
}

// trustsRoot reports whether n's trust book (or, when n is down, its
// configuration) trusts root m.
func (c *Cluster) trustsRoot(n *node, m int) bool {
	if a := n.auth.Load(); a != nil && n.isUp() {
		return a.v.IsRoot(c.rot.pubs[m])
	}
	return slices.ContainsFunc(c.rot.cfg[n.idx], func(p ed25519.PublicKey) bool { return p.Equal(c.rot.pubs[m]) })
}

// rotate has R(k-1) and Rk sign the rotation and submits it at a random
// live peer that accepts it (peer's SubmitRotation).
func (c *Cluster) rotate(e Event, rec *rotationRec) {
	x := c.rot
	k := rec.k
	stmt, err := identity.NewRotation(x.roots[k-1], x.roots[k], time.Now())
	if err != nil {
		c.logf("rotate: %v", err)
		return
	}
	blob, err := stmt.Marshal()
	if err != nil {
		c.logf("rotate: %v", err)
		return
	}
	accepts := func(n *node) bool {
		a := n.auth.Load()
		if a == nil {
			return false
		}
		after := a.v.Clone()
		if after.Rotate(stmt, n.now()) != nil {
			return false
		}
		_, err := after.Verify(n.key.Public().(ed25519.PublicKey), x.chainOf(n.idx), n.now())
		return err == nil
	}
	n := c.submitter(e, accepts)
	rec.blob, rec.stmt, rec.at, rec.cutAt = blob, stmt, time.Now(), stmt.At.Add(time.Second)
	x.mu.Lock()
	for i := range c.nodes {
		if x.chainRoot[i] < k && !c.isRevoked(i) {
			rec.stale = append(rec.stale, i) // every chain under a retired root is cut
		}
	}
	x.rots = append(x.rots, rec)
	x.mu.Unlock()
	x.cur = k
	c.authz.revoking.Store(true)
	for _, i := range rec.stale {
		c.authz.revoked[i] = true
		c.openSpan(fmt.Sprintf("cut by R%d->R%d %s", k-1, k, c.nodes[i].id))
	}
	if x.opActive && x.opRoot < k {
		// The operator's chain starts at the retired root: the root
		// signs again until a new delegation.
		x.opActive = false
	}
	if n == nil {
		x.refused.Add(1)
		c.note("rotate R%d->R%d: no live peer accepts it", k-1, k)
		c.logf("rotate R%d->R%d: no live peer accepts it", k-1, k)
		return
	}
	c.note("rotate R%d->R%d at %s", k-1, k, n.id)
	c.logf("rotate R%d->R%d submitted at %s; %d peers cut", k-1, k, n.id, len(rec.stale))
	c.submitStatement(n, blob, fmt.Sprintf("rotation R%d->R%d", k-1, k))
}

// submitter picks a random live peer (of e.Group's partition group, or
// e.Node) that accepts; nil when none does.
func (c *Cluster) submitter(e Event, accepts func(*node) bool) *node {
	live := c.liveNodes()
	if e.Group > 0 && e.Group <= len(c.groups) {
		g := c.groups[e.Group-1]
		live = slices.DeleteFunc(live, func(i int) bool { return !slices.Contains(g, i) })
	}
	if e.Node >= 0 && slices.Contains(live, e.Node) && accepts(c.nodes[e.Node]) {
		return c.nodes[e.Node]
	}
	if len(live) == 0 {
		return nil
	}
	start := c.rng.IntN(len(live))
	for j := range live {
		if n := c.nodes[live[(start+j)%len(live)]]; accepts(n) {
			return n
		}
	}
	return nil
}

// submitStatement writes a trust statement at n (PUT /v1/agent/peerd/rotate
// or revoke) and applies the trust change there.
func (c *Cluster) submitStatement(n *node, blob []byte, what string) {
	if _, err := n.write(func(r *crdt.Replica, now time.Time) (*crdt.Delta, error) {
		return r.AddRevocation(blob, n.auth.Load(), now)
	}); err != nil {
		c.authz.violationf("%s refused the %s: %v", n.id, what, err)
	}
	if rep := n.rep(); rep != nil {
		c.trustChanged(&incarnation{n: n, replica: rep, auth: n.auth.Load()})
	}
}

// delegate has the current root certify the operator key, and the
// operator certify e.Count random live peers under itself (their new
// chains published in their node records): revoking the operator key
// cuts them.
func (c *Cluster) delegate(e Event) {
	x := c.rot
	now := time.Now()
	nb, na := now.Add(-time.Hour), now.Add(24*time.Hour)
	ch, err := identity.Issue(x.roots[x.cur], nil, x.opPub, "ops",
		identity.Constraints{Services: []string{"*"}, KVPrefixes: []string{"*"}, SignIntentions: true, DelegateDepth: 1},
		nb, na, 7)
	if err != nil {
		c.logf("delegate: %v", err)
		return
	}
	x.mu.Lock()
	x.opChain = ch
	x.mu.Unlock()
	x.opActive, x.opRoot = true, x.cur
	live := slices.DeleteFunc(c.liveNodes(), func(i int) bool { return !c.trustsRoot(c.nodes[i], x.cur) })
	c.rng.Shuffle(len(live), func(a, b int) { live[a], live[b] = live[b], live[a] })
	var ids []string
	for _, i := range live[:min(e.Count, len(live))] {
		n := c.nodes[i]
		nc, err := identity.Issue(x.opKey, ch, n.key.Public().(ed25519.PublicKey), n.id,
			identity.Constraints{Services: []string{"*"}, KVPrefixes: []string{"*"}}, nb, na, uint64(5000+i))
		if err != nil {
			c.logf("delegate: certifying %s: %v", n.id, err)
			continue
		}
		x.mu.Lock()
		x.chains[i], x.chainRoot[i] = nc, x.cur
		x.underOp = append(x.underOp, i)
		x.mu.Unlock()
		ids = append(ids, n.id)
		c.publishNode(n)
	}
	c.note("delegate operator under R%d, certifying %v", x.cur, ids)
	c.logf("operator key certified by R%d; it certifies %v", x.cur, ids)
}

// revokeOperator has the current root revoke the operator key, submitted
// at a random live peer that accepts it. The peers the operator certified
// are cut at the end of the revocation's second, like the peers a
// rotation cuts.
func (c *Cluster) revokeOperator(e Event, rec *rotationRec) {
	x := c.rot
	r, err := identity.NewRevocation(x.roots[x.cur], nil, x.opPub, time.Now())
	if err != nil {
		c.logf("revoke operator: %v", err)
		return
	}
	blob, err := r.Marshal()
	if err != nil {
		c.logf("revoke operator: %v", err)
		return
	}
	rec.blob, rec.at, rec.cutAt = blob, time.Now(), r.At.Add(time.Second)
	x.mu.Lock()
	x.opRevoked = blob
	for _, i := range x.underOp {
		if !c.isRevoked(i) && x.chains[i][0].Subject.Equal(x.opPub) {
			rec.stale = append(rec.stale, i)
		}
	}
	x.opRec = rec
	x.mu.Unlock()
	x.opActive = false
	c.authz.revoking.Store(true)
	for _, i := range rec.stale {
		c.authz.revoked[i] = true
		c.openSpan("cut by the operator's revocation " + c.nodes[i].id)
	}
	n := c.submitter(e, func(n *node) bool {
		a := n.auth.Load()
		return a != nil && a.v.IsRoot(x.pubs[x.cur])
	})
	if n == nil {
		x.refused.Add(1)
		c.note("revoke operator: no live peer accepts it")
		return
	}
	c.note("revoke operator by R%d at %s", x.cur, n.id)
	c.logf("revoke operator by R%d, submitted at %s", x.cur, n.id)
	c.submitStatement(n, blob, "operator's revocation")
}

// revokeByOperator has the operator revoke a peer it certified (e.Node if
// it did, else a random one): a delegated revocation, which cuts that
// peer's chain at the end of its second (chainCut). Submitted at a random
// live peer that accepts it.
func (c *Cluster) revokeByOperator(e Event, rec *rotationRec) {
	x := c.rot
	x.mu.Lock()
	cands := slices.DeleteFunc(slices.Clone(x.underOp), c.isRevoked)
	opChain := x.opChain
	x.mu.Unlock()
	if len(cands) == 0 || opChain == nil {
		c.note("revoke by operator skipped: no peer certified by it")
		return
	}
	subject := cands[c.rng.IntN(len(cands))]
	if slices.Contains(cands, e.Node) {
		subject = e.Node
	}
	sn := c.nodes[subject]
	r, err := identity.NewRevocation(x.opKey, opChain, sn.key.Public().(ed25519.PublicKey), time.Now())
	if err != nil {
		c.logf("revoke by operator: %v", err)
		return
	}
	blob, err := r.Marshal()
	if err != nil {
		c.logf("revoke by operator: %v", err)
		return
	}
	rec.blob, rec.at, rec.cutAt, rec.stale = blob, time.Now(), r.At.Add(time.Second), []int{subject}
	x.mu.Lock()
	x.delegated = append(x.delegated, rec)
	x.mu.Unlock()
	c.authz.revoked[subject] = true
	c.authz.revoking.Store(true)
	c.openSpan("revoked by the operator " + sn.id)
	n := c.submitter(e, func(n *node) bool {
		a := n.auth.Load()
		if a == nil || n.idx == subject {
			return false
		}
		return a.v.Clone().AddRevocation(r, n.now()) == nil
	})
	if n == nil {
		x.refused.Add(1)
		c.note("revoke %s by the operator: no live peer accepts it", sn.id)
		return
	}
	c.note("revoke %s by the operator at %s", sn.id, n.id)
	c.logf("the operator revokes %s, submitted at %s", sn.id, n.id)
	c.submitStatement(n, blob, "operator's revocation of "+sn.id)
}

// signIntention seals an intention with the current signer: the operator
// while delegated, else the current root (peer.SignIntention).
func (c *Cluster) signIntention(payload []byte, id string) ([]byte, error) {
	x := c.rot
	key, chain, by := c.authz.rootKey, identity.Chain(nil), 0
	if x.active {
		key, by = x.roots[x.cur], x.cur
		if x.opActive {
			x.mu.Lock()
			key, chain, by = x.opKey, x.opChain, -1
			x.mu.Unlock()
		}
	}
	env, err := identity.Seal(envIntention, payload, key, chain)
	if err != nil {
		return nil, err
	}
	if by < 0 {
		x.mu.Lock()
		x.opSigned[id] = true
		x.mu.Unlock()
	}
	return env.Marshal()
}

// staleWrite has a peer a rotation cut off write a KV record, as a host
// left on its old certificate would.
func (c *Cluster) staleWrite(rec *rotationRec, k int) {
	x := c.rot
	x.mu.Lock()
	stale := slices.Clone(rec.stale)
	x.mu.Unlock()
	for _, i := range stale {
		n := c.nodes[i]
		if !n.isUp() {
			continue
		}
		key := fmt.Sprintf("authz/stale/%s/%d", n.id, k)
		c.note("stale-write %s %s", n.id, key)
		x.mu.Lock()
		rec.attempts = append(rec.attempts, key)
		x.mu.Unlock()
		_, _ = n.write(func(r *crdt.Replica, now time.Time) (*crdt.Delta, error) {
			return r.KVPut(key, []byte("stale"), 0, now)
		})
	}
}

// --- checkers ---

// checkOperatorWithdrawn: a peer whose trust book holds the operator's
// revocation shows no intention the operator signed.
func (c *Cluster) checkOperatorWithdrawn(inc *incarnation) {
	x := c.rot
	if !x.active || !inc.auth.v.IsRevoked(x.opPub) {
		return
	}
	for _, pr := range c.authz.pairs {
		in, ok := inc.replica.IntentionFor(pr.src, pr.dst)
		if !ok {
			continue
		}
		x.mu.Lock()
		op := x.opSigned[in.ID]
		if op {
			x.opWithdrawnSeen++
		}
		x.mu.Unlock()
		if op {
			c.authz.violationf("%s holds the operator's revocation but applies intention %s it signed", inc.n.id, in.ID)
		}
	}
}

// oracle is the trust every peer must end with: the sim root, every
// rotation issued, then the operator's revocations of its peers, then
// every root's revocation. (A rotation that retired the operator's root
// after it revoked a peer would make the oracle refuse that revocation;
// no shipped scenario does that.)
func (c *Cluster) oracle() *identity.Verifier {
	x := c.rot
	v := identity.NewVerifier(x.pubs[0])
	x.mu.Lock()
	rots := slices.Clone(x.rots)
	opRev := x.opRevoked
	var blobs [][]byte
	for _, r := range x.delegated {
		if r.blob != nil {
			blobs = append(blobs, r.blob) // before the operator's own revocation
		}
	}
	x.mu.Unlock()
	for _, r := range rots {
		if r.stmt != nil {
			_ = v.Rotate(r.stmt, time.Now())
		}
	}
	c.authz.mu.Lock()
	for _, rv := range c.authz.revs {
		blobs = append(blobs, rv.blob)
	}
	c.authz.mu.Unlock()
	if opRev != nil {
		blobs = append(blobs, opRev)
	}
	for _, b := range blobs {
		if r, err := identity.UnmarshalRevocation(b); err == nil {
			_ = v.AddRevocation(r, time.Now())
		}
	}
	return v
}

// RotationResult is what the rotation checkers saw.
type RotationResult struct {
	Rotations           int    // rotate events played
	Refused             uint64 // statements no live peer accepted
	Applied             []Dist // per rotation: submission → each live peer's trust book retiring the old root
	Cut                 int    // peers cut off by rotations (left on a retired chain)
	StaleAttempts       int    // records they wrote after their cut
	Held                uint64 // statements held by merges (not applicable yet)
	Retried             uint64 // held statements applied later by RetryStatements
	MaxHeld             int64  // most statements one replica held at once
	Delegated           bool
	UnderOperator       int // peers the operator certified (cut by its revocation)
	OperatorRevoked     bool
	OperatorSigned      int    // intention versions the operator signed
	OperatorShown       uint64 // violations: operator-signed intentions applied by a peer holding its revocation
	SameTrustEverywhere bool   // every live peer ends with the oracle's roots, retired roots and revoked keys
}

// checkRotations runs the rotation checkers at the end of the run.
func (c *Cluster) checkRotations(r *Result) {
	x := c.rot
	if !x.active {
		return
	}
	a := &r.Rotation
	a.Held, a.Retried, a.MaxHeld = x.held.Load(), x.retried.Load(), x.maxHeld.Load()
	a.Refused = x.refused.Load()
	o := c.oracle()
	x.mu.Lock()
	rots := slices.Clone(x.rots)
	a.Delegated = x.opChain != nil
	a.OperatorRevoked = x.opRevoked != nil
	a.OperatorSigned = len(x.opSigned)
	a.OperatorShown = x.opWithdrawnSeen
	var attempts []string
	cut := map[int]bool{}
	for _, rec := range x.cutRecsLocked() {
		attempts = append(attempts, rec.attempts...)
		for _, i := range rec.stale {
			cut[i] = true
		}
	}
	a.UnderOperator = len(x.underOp)
	for _, rec := range rots {
		var ds []time.Duration
		for i, d := range rec.applied {
			if c.nodes[i].rep() != nil {
				ds = append(ds, d)
			}
		}
		a.Applied = append(a.Applied, distOf(ds))
	}
	x.mu.Unlock()
	a.Rotations, a.Cut, a.StaleAttempts = len(rots), len(cut), len(attempts)
	a.SameTrustEverywhere = true

	held := func(v *identity.Verifier) map[string]bool {
		out := map[string]bool{}
		for _, rv := range v.Revocations() {
			out[identity.NodeID(rv.Issuer)+" revoked "+identity.NodeID(rv.Subject)] = true
		}
		return out
	}
	want := held(o)
	for _, n := range c.nodes {
		rep, auth := n.rep(), n.auth.Load()
		if rep == nil || auth == nil {
			continue
		}
		for m, pub := range x.pubs {
			_, retired := auth.v.RetiredAt(pub)
			_, oRetired := o.RetiredAt(pub)
			if auth.v.IsRoot(pub) != o.IsRoot(pub) || retired != oRetired {
				a.SameTrustEverywhere = false
				c.violation(r, "%s: root R%d trusted %v, retired %v; want trusted %v, retired %v (held statements: %d)",
					n.id, m, auth.v.IsRoot(pub), retired, o.IsRoot(pub), oRetired, rep.PendingStatements())
			}
			if retired && auth.v.IsRoot(pub) {
				c.violation(r, "%s trusts the retired root R%d", n.id, m)
			}
		}
		have := held(auth.v)
		for k := range want {
			if !have[k] {
				a.SameTrustEverywhere = false
				c.violation(r, "%s does not hold the revocation %s", n.id, k)
			}
		}
		for k := range have {
			if !want[k] {
				a.SameTrustEverywhere = false
				c.violation(r, "%s holds the revocation %s, which was not issued", n.id, k)
			}
		}
		for _, key := range attempts {
			if _, ok := rep.KVGet(key); ok {
				c.violation(r, "%s: %s, written after the cut of its writer's chain (rotation or operator revocation), is live", n.id, key)
			}
		}
		for _, pr := range c.authz.pairs {
			in, ok := rep.IntentionFor(pr.src, pr.dst)
			if !ok {
				continue
			}
			x.mu.Lock()
			op := x.opSigned[in.ID]
			x.mu.Unlock()
			if op && o.IsRevoked(x.opPub) {
				c.violation(r, "%s applies intention %s, signed by the revoked operator key", n.id, in.ID)
			}
		}
	}
	if a.OperatorShown > 0 {
		c.violation(r, "%d times a peer holding the operator's revocation applied an intention it signed", a.OperatorShown)
	}
	c.checkIntentionsAgree(r)
}

// checkIntentionsAgree: every live peer applies the same version (or
// none) of every pair.
func (c *Cluster) checkIntentionsAgree(r *Result) {
	for _, pr := range c.authz.pairs {
		var ref, refID string
		for _, n := range c.nodes {
			rep := n.rep()
			if rep == nil {
				continue
			}
			in, ok := rep.IntentionFor(pr.src, pr.dst)
			id := "none"
			if ok {
				id = in.ID
			}
			if refID == "" {
				ref, refID = id, n.id
			} else if id != ref {
				c.violation(r, "live peers apply different intentions %s -> %s: %s %s, %s %s", pr.src, pr.dst, refID, ref, n.id, id)
				break
			}
		}
	}
}

// writeSummary prints the rotation lines of the summary.
func (a *RotationResult) writeSummary(p func(format string, args ...any)) {
	if a.Rotations == 0 && !a.Delegated {
		return
	}
	for k, d := range a.Applied {
		p("rotation R%d->R%d: submission → each live peer applying it (R%d retired): %s", k, k+1, k, d)
	}
	p("  rotations %d (%d statements no peer accepted); peers cut off by them or the operator's revocation %d, their writes after the cut %d; "+
		"statements held (not applicable yet) %d, applied later by RetryStatements %d, most held by one replica %d; same trust everywhere: %v",
		a.Rotations, a.Refused, a.Cut, a.StaleAttempts, a.Held, a.Retried, a.MaxHeld, a.SameTrustEverywhere)
	if a.Delegated {
		p("  operator key: delegated, %d intention versions signed by it, %d peers certified by it, revoked %v", a.OperatorSigned, a.UnderOperator, a.OperatorRevoked)
	}
}
