package sim

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/identity"
)

// Intentions and revocations in the simulator (issue 8, item 4: "no
// intention rollback accepted; revoked peers cut off").
//
// A sim root key, derived from the seed, is the only trust root. It signs
// intention documents as peer does (identity envelopes of type
// "peerd/intention/v1" around the CBOR crdt.Intention: peer.SignIntention)
// and revocations of peer keys (identity.NewRevocation, as `peerd revoke`).
// Every incarnation of a peer has its own trust book (nodeAuth: an
// identity.Verifier trusting the root, like peer's trustBook), so a
// revocation applies at a peer when that peer merges it, and a restarted
// peer starts with a fresh one, as a restarted agent does.

// envIntention is peer's envelope type for intentions (peer/trust.go).
const envIntention = "peerd/intention/v1"

// maxReplayOrigins bounds the stale origins that re-wrap old intentions.
const maxReplayOrigins = 32

// authorizer holds the public keys of every simulated origin (peers and
// replay origins). It is filled before any peer starts and read-only after.
type authorizer struct{ keys map[string]ed25519.PublicKey }

// nodeAuth is one incarnation's crdt.Authorizer and trust book, as peer's
// trustBook: origins are checked against their key and the revocations
// this incarnation accepted; intentions must be sealed by a key that may
// sign them (the sim root); revocations must be signed by the root and are
// applied to this incarnation's Verifier at once.
type nodeAuth struct {
	c *Cluster
	n *node // nil for a replay origin's scratch replica
	v *identity.Verifier

	// chains: node ID → the chain it presented (rotation.go, chain mode
	// only; nil otherwise); waiting: node ID → a chain that fails only
	// because its root is not trusted yet; both guarded by mu.
	mu      sync.Mutex
	chains  map[string]identity.Chain
	waiting map[string]identity.Chain
	// newest: node ID → the newest node record a chain was learnt from
	// (learnRecord, peer's trustBook.newest); cutPending: a node record
	// replaced a chain that verified by one that was cut, the replica
	// must be swept (peer's trustBook.cutChains); both guarded by mu.
	newest     map[string]newestRec
	cutPending bool
	// stmt orders applying a statement (VerifyRevocation, which adopts
	// the waiting chains it made valid) against judging records
	// (VerifyOrigin) and learning chains, as peer's trustBook.stmt.
	stmt sync.RWMutex
}

var (
	_ crdt.IntentionJudge   = (*nodeAuth)(nil)
	_ crdt.IntentionDecoder = (*nodeAuth)(nil)
)

var _ crdt.Authorizer = (*nodeAuth)(nil)

func (c *Cluster) newNodeAuth(n *node) *nodeAuth {
	x := c.rot
	if !x.active {
		return &nodeAuth{c: c, n: n, v: identity.NewVerifier(c.authz.rootPub)}
	}
	if n == nil {
		// A replay origin's scratch replica takes any version the roots signed.
		return &nodeAuth{c: c, v: identity.NewVerifier(x.pubs...)}
	}
	// A fresh trust book trusts the configured roots and knows every
	// peer's first chain (as handshakes at join would present them); a
	// restarted one forgets them (forgetChains) and reads the node records.
	a := &nodeAuth{c: c, n: n, v: identity.NewVerifier(x.cfg[n.idx]...), chains: map[string]identity.Chain{},
		waiting: map[string]identity.Chain{}, newest: map[string]newestRec{}}
	for i, ch := range x.first {
		a.chains[c.nodes[i].id] = ch
	}
	return a
}

func (a *nodeAuth) now() time.Time {
	if a.n != nil {
		return a.n.now()
	}
	return time.Now()
}

// refuses reports whether this trust book cuts off the key of origin.
func (a *nodeAuth) refuses(origin string) bool {
	z := a.c.authz
	if !z.revoking.Load() || a.c.sc.permissive.revocations {
		return false
	}
	if _, ok := a.expiredAt(origin); ok {
		return true
	}
	return a.v.IsRevoked(a.c.auth.keys[origin]) || a.chainRefused(origin)
}

// VerifyOrigin checks the signature first and only then the revocation,
// as peer's trustBook: a revoked origin's correctly signed record is an
// *crdt.OriginRevokedError carrying the revocation's time (crdt keeps it
// as a dead stub, or counts it if it is a KV record stamped before), a
// forged one a bad signature (dropped, its dot not burnt).
func (a *nodeAuth) VerifyOrigin(origin string, msg, sig []byte) error {
	a.stmt.RLock()
	defer a.stmt.RUnlock()
	k, ok := a.c.auth.keys[origin]
	if !ok {
		return fmt.Errorf("sim: unknown origin %q", origin)
	}
	if !ed25519.Verify(k, msg, sig) {
		return fmt.Errorf("sim: bad signature of %q", origin)
	}
	if a.refuses(origin) {
		if at, ok := a.expiredAt(origin); ok && !a.v.IsRevoked(k) {
			// Cut by its certificate's end, not its key (expiry.go).
			return fmt.Errorf("sim: origin %s: certificate expired: %w", origin, &crdt.OriginRevokedError{At: at, Renewable: true})
		}
		if !a.v.IsRevoked(k) {
			// Its chain no longer verifies (rotation.go): cut if it was
			// valid until a known time (a retired root), else unknown.
			chain, _ := a.known(origin)
			if cut, _, ok := a.chainCut(k, chain); ok {
				return fmt.Errorf("sim: origin %s: chain cut: %w", origin, &crdt.OriginRevokedError{At: cut, Renewable: true})
			}
			return fmt.Errorf("sim: origin %s: its chain does not verify", origin)
		}
		return fmt.Errorf("sim: origin %s: %w", origin, &crdt.OriginRevokedError{At: a.revokedAt(k)})
	}
	return nil
}

// revokedAt is when key's earliest revocation this trust book holds took
// effect for its records (revocationCut), as peer's trustBook.revokedAt.
func (a *nodeAuth) revokedAt(key ed25519.PublicKey) time.Time {
	var at time.Time
	for _, r := range a.v.Revocations() {
		if bytes.Equal(r.Subject, key) && (at.IsZero() || revocationCut(r).Before(at)) {
			at = revocationCut(r)
		}
	}
	return at
}

// revocationCut is the end of the second a revocation was signed in: its
// time has one-second resolution, and a write stamped within that second
// counts as before it (peer's trustBook does the same).
func revocationCut(r *identity.Revocation) time.Time { return r.At.Add(time.Second) }

func (*nodeAuth) MayPublishService(string, string) bool { return true }
func (*nodeAuth) MayWriteKV(string, string) bool        { return true }

// VerifyIntention opens the envelope as peer's trustBook does.
func (a *nodeAuth) VerifyIntention(signed []byte) (crdt.Intention, error) {
	return a.openIntention(a.v, signed, a.now()) // rotation.go
}

// VerifyRevocation checks a signed revocation and applies it to this
// incarnation's Verifier at once (peer's trustBook.VerifyRevocation); the
// peer then cuts the revoked key off (cutOff, refreshPeers).
//
// It also applies root rotations (rotation.go), and answers a statement
// that names a root not trusted yet with crdt.ErrNotYetApplicable (the
// replica holds it), as peer's trustBook does.
func (a *nodeAuth) VerifyRevocation(signed []byte) error {
	a.stmt.Lock()
	defer a.stmt.Unlock()
	err := a.applyStatement(signed)
	if err == nil && a.chains != nil {
		a.judgeWaiting()
	}
	return err
}

// applyStatement is VerifyRevocation without judging the waiting chains.
func (a *nodeAuth) applyStatement(signed []byte) error {
	r, err := identity.UnmarshalRevocation(signed)
	if err != nil {
		rot, rerr := identity.UnmarshalRotation(signed)
		if rerr != nil {
			return err
		}
		if err := a.notYet(a.v.Rotate(rot, a.now())); err != nil {
			return err
		}
		if a.n != nil {
			a.c.rot.applied(a.n, rot)
			a.n.membersDirty.Store(true)
		}
		return nil
	}
	if err := a.notYet(a.v.AddRevocation(r, a.now())); err != nil {
		return err
	}
	if a.n != nil {
		a.c.authz.cutAt(a.n, r.Subject)
		a.n.membersDirty.Store(true)
	}
	return nil
}

// permissiveAuthz weakens the authorizers, for the negative tests only.
type permissiveAuthz struct {
	versions    bool // intentions lose their version (rollbacks become possible)
	revocations bool // revocations are stored but never enforced
	// forgetOnRestart: a restarted peer does not re-apply the revocations
	// its replica holds (peer before its fix).
	forgetOnRestart bool
	// noRetry: peers never call RetryStatements (rotation.go).
	noRetry bool
	// dropHeld: a statement that names a root not trusted yet is refused
	// for good instead of held (peer before crdt.ErrNotYetApplicable).
	dropHeld bool
	// noWithdraw: peers never withdraw the intentions of a revoked signer.
	noWithdraw bool
	// noWait: trust books drop a chain whose root is not trusted yet and
	// never learn the held node records again (peer before 740cca3).
	noWait bool
	// noNewest: trust books keep a node's chain that verifies in place of
	// a newer node record's chain that was cut, whatever the order they
	// met them in (peer before finding 6's fix).
	noNewest bool
}

// intPair is one source → destination whose versions the root issues.
type intPair struct {
	src, dst string
	blobs    [][]byte // blobs[v-1] is the signed version v
	by       []int    // by[v-1] is the peer it was submitted at
}

// revocation is one revoked peer.
type revocation struct {
	subject  int
	key      ed25519.PublicKey
	blob     []byte
	at       time.Time
	cut      map[int]time.Duration // peer → revocation to its trust book refusing the subject (first incarnation)
	attempts []string              // KV keys the revoked peer wrote after its revocation
}

// authzState is the run's intention and revocation bookkeeping. Rule: no
// replica method is called while mu is held (Merge calls VerifyRevocation,
// which takes mu, with the replica's lock held).
type authzState struct {
	rootKey ed25519.PrivateKey
	rootPub ed25519.PublicKey
	active  bool       // the scenario issues intentions, replays or revocations
	pairs   []*intPair // names fixed at the start; versions guarded by mu
	replay  []string   // replay origin IDs
	revoked []bool     // run goroutine only: revoked peers leave the workload
	scratch []*scratch // run goroutine only: replay origins' replicas

	revoking    atomic.Bool   // some revocation was issued
	rollbacks   atomic.Uint64 // merged entries refused as intention rollbacks
	originRefs  atomic.Uint64 // merged entries refused by the origin check
	cutMessages atomic.Uint64 // Plumtree/anti-entropy messages dropped by a cut
	rollbackOK  atomic.Uint64 // violations: a peer's intention went back to an older version
	revokedOK   atomic.Uint64 // violations: a peer holding a revocation accepted the revoked peer's record
	reissued    atomic.Uint64 // KV deletes re-issued by sweeps (crdt.RevokeOrigins)

	mu         sync.Mutex // guards every field below, and pairs' blobs and by
	issued     map[string]int
	maxHeld    map[int][]int // peer → per pair, highest version held so far
	revs       []*revocation
	replays    int
	refusedAPI int // replays refused by PutIntention (ErrRollback)
	acceptAPI  int // replays accepted by PutIntention (the peer held no newer one)
	violations []string
}

type scratch struct {
	key  ed25519.PrivateKey
	rep  *crdt.Replica
	auth *nodeAuth
}

// AuthzResult is what the intention and revocation checkers saw.
type AuthzResult struct {
	Pairs, Intentions  int    // pairs and versions issued by the root
	Replays            int    // replay_intention events played
	ReplayRefusedAPI   int    // replays refused when submitted through a peer's API (ErrRollback)
	ReplayAcceptedAPI  int    // replays accepted there (that peer held no newer version)
	RollbackRefusals   uint64 // merged records refused as intention rollbacks (crdt reason "rollback")
	RollbacksAccepted  uint64 // violations: times a peer's intention went back to an older version
	Revocations        int    // revoke events played
	Expiries           int    // expire events (certificates that ended; expiry.go)
	RevokedAttempts    int    // records the revoked peers wrote after their revocation
	OriginRefusals     uint64 // merged records refused by the origin check (revoked peers)
	Reissued           uint64 // deletes re-issued by peers that had applied a revoked peer's later writes (crdt.RevokeOrigins)
	RevokedAccepted    uint64 // violations: records of a revoked peer accepted by a peer holding its revocation
	CutMessages        uint64 // Plumtree/anti-entropy messages dropped because one end cut the other off
	CutOff             Dist   // revocation → each live peer refusing the revoked key
	NewestEverywhere   bool   // every live peer holds the newest version of every pair
	PeersCuttingOffAll bool   // every live peer refuses every revoked key
}

func newAuthz(c *Cluster) *authzState {
	sc := c.sc
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], c.seedFor("root", 0))
	root := ed25519.NewKeyFromSeed(seed[:])
	z := &authzState{
		rootKey: root, rootPub: root.Public().(ed25519.PublicKey),
		revoked: make([]bool, sc.Peers),
		issued:  map[string]int{}, maxHeld: map[int][]int{},
	}
	replays := 0
	for _, e := range sc.Events {
		switch e.Action {
		case "replay_intention":
			replays++
			z.active = true
		case "revoke", "rotate", "delegate":
			z.active = true
		case "expire":
			z.active = true
			z.revoking.Store(true) // cut-offs are judged from the start: clocks differ
		}
	}
	if sc.Workload.Intentions > 0 {
		z.active = true
		pairs := sc.Workload.IntentionPairs
		if pairs <= 0 {
			pairs = 3
		}
		for p := range pairs {
			z.pairs = append(z.pairs, &intPair{src: fmt.Sprintf("web%d", p), dst: fmt.Sprintf("db%d", p)})
		}
	}
	for k := range min(replays, maxReplayOrigins) {
		binary.LittleEndian.PutUint64(seed[:], c.seedFor("replay", k))
		key := ed25519.NewKeyFromSeed(seed[:])
		id := fmt.Sprintf("x-replay-%02d", k)
		c.auth.keys[id] = key.Public().(ed25519.PublicKey)
		z.replay = append(z.replay, id)
		z.scratch = append(z.scratch, &scratch{key: key})
	}
	return z
}

// violationf records a violation seen during the run; at most 10 are
// kept (the counters in AuthzResult count all), so that the end-of-run
// checkers' findings still fit in Result.Violations.
func (z *authzState) violationf(format string, args ...any) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.addViolationLocked(fmt.Sprintf(format, args...))
}

func (z *authzState) addViolationLocked(v string) {
	if len(z.violations) < 10 && !slices.Contains(z.violations, v) {
		z.violations = append(z.violations, v)
	}
}

// revocationTimes maps each revoked peer to the signed time of its
// revocation, and each expired peer to its certificate's end (what crdt
// compares record timestamps with).
func (c *Cluster) revocationTimes() map[int]time.Time {
	z := c.authz
	z.mu.Lock()
	defer z.mu.Unlock()
	out := map[int]time.Time{}
	for _, rv := range z.revs {
		if r, err := identity.UnmarshalRevocation(rv.blob); err == nil {
			if at, ok := out[rv.subject]; !ok || revocationCut(r).Before(at) {
				out[rv.subject] = revocationCut(r)
			}
		}
	}
	// A rotation cuts the writes of the peers it left on a retired chain
	// the same way (rotation.go).
	for i, at := range c.rot.cuts() {
		if cur, held := out[i]; !held || at.Before(cur) {
			out[i] = at
		}
	}
	// A certificate's end cuts its peer's writes the same way (expiry.go).
	for _, ex := range c.expiry.list {
		if at, ok := c.expiry.expiresAt(ex.id); ok {
			if cur, held := out[ex.subject]; !held || at.Before(cur) {
				out[ex.subject] = at
			}
		}
	}
	return out
}

// cutAt records when peer n's trust book first refused key.
func (z *authzState) cutAt(n *node, key ed25519.PublicKey) {
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, rv := range z.revs {
		if bytes.Equal(rv.key, key) && rv.subject != n.idx {
			if _, ok := rv.cut[n.idx]; !ok {
				rv.cut[n.idx] = time.Since(rv.at)
			}
		}
	}
}

// cutOff reports whether holder's trust book refuses the peer other, and
// counts the message it drops (peer closes the QUIC connection of a revoked
// key and takes it out of dissemination and anti-entropy). accepting says
// holder receives from other: in chain mode other may have dialled again
// and presented its current chain (handshake).
func (c *Cluster) cutOff(holder, other int, accepting bool) bool {
	if !c.authz.revoking.Load() {
		return false
	}
	a := c.nodes[holder].auth.Load()
	if a == nil || !a.refuses(c.nodes[other].id) {
		return false
	}
	if accepting && a.chains != nil {
		// The sender dialled (peer closed the connection when it stopped
		// trusting it): its handshake presents its current chain.
		c.handshake(a, other)
		if !a.refuses(c.nodes[other].id) {
			return false
		}
	}
	c.authz.cutMessages.Add(1)
	return true
}

// trustedPeers drops the peers n's trust book refuses from its member list.
func (c *Cluster) trustedPeers(n *node, ids []string) []string {
	if !c.authz.revoking.Load() {
		return ids
	}
	a := n.auth.Load()
	if a == nil {
		return ids
	}
	return slices.DeleteFunc(ids, a.refuses)
}

// isRevoked reports whether peer i was revoked (run goroutine only).
func (c *Cluster) isRevoked(i int) bool { return c.authz.revoked[i] }

// mergeChecked is the replica's Merge with the checkers around it: a
// peer's intention versions never go back, and a peer whose replica holds
// a revocation accepts no record the revoked peer wrote after it.
func (c *Cluster) mergeChecked(inc *incarnation, d *crdt.Delta, now time.Time) (crdt.MergeResult, error) {
	z := c.authz
	if !z.active {
		return inc.replica.Merge(d, inc.auth, now)
	}
	watch := c.absentAttempts(inc.replica)
	revIdx := inc.replica.ScopeIndex(crdt.ScopeRevocations)
	inc.auth.learnFromDelta(d)
	res, err := inc.replica.Merge(d, inc.auth, now)
	if inc.auth.takeCut() {
		// A node record brought a newer chain that was cut in place of
		// one that verified: peer's watchRevocations sweeps
		// (trustBook.cutChains).
		inc.n.membersDirty.Store(true)
		c.sweepRevoked(inc)
	}
	if k := res.Reasons[crdt.RejectPending]; k > 0 {
		c.rot.held.Add(uint64(k))
		c.notePending(inc.replica)
	}
	if k := res.Reasons[crdt.RejectRollback]; k > 0 {
		z.rollbacks.Add(uint64(k))
	}
	if k := res.Reasons[crdt.RejectSignature] + res.Reasons[crdt.RejectRevokedOrigin]; k > 0 && z.revoking.Load() {
		z.originRefs.Add(uint64(k))
	}
	if (z.revoking.Load() || c.rot.active) && inc.replica.ScopeIndex(crdt.ScopeRevocations) != revIdx {
		c.trustChanged(inc)
	}
	if res.Accepted > 0 {
		c.checkIntentions(inc.n, inc.replica)
		for _, w := range watch {
			if _, ok := inc.replica.KVGet(w.key); ok {
				z.revokedOK.Add(1)
				z.violationf("%s holds the revocation (or rotation) cutting %s but accepted its record %s written after the cut",
					inc.n.id, c.nodes[w.subject].id, w.key)
			}
		}
	}
	return res, err
}

// sweepRevoked applies the revocations inc's trust book holds to the
// records its replica merged before (crdt.RevokeOrigins), as peer does
// whenever its set of revocations changes, and queues the deletes it
// re-issues for broadcast like any local write.
func (c *Cluster) sweepRevoked(inc *incarnation) {
	n := inc.n
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.up || n.replica != inc.replica {
		return
	}
	d, err := inc.replica.RevokeOrigins(inc.auth, n.now())
	if err != nil {
		c.logf("%s: sweeping revoked origins: %v", n.id, err)
	}
	if d != nil {
		n.outbox = append(n.outbox, d.Entries...)
		c.authz.reissued.Add(uint64(len(d.Entries)))
	}
}

type attempt struct {
	subject int
	key     string
}

// absentAttempts lists the revoked peers' post-revocation writes that rep
// lacks while it holds their revocation: none may appear after a merge.
func (c *Cluster) absentAttempts(rep *crdt.Replica) []attempt {
	z := c.authz
	if !z.revoking.Load() {
		return nil
	}
	z.mu.Lock()
	var revs []revocation
	for _, rv := range z.revs {
		if len(rv.attempts) > 0 {
			revs = append(revs, revocation{subject: rv.subject, blob: rv.blob, attempts: slices.Clone(rv.attempts)})
		}
	}
	z.mu.Unlock()
	c.rot.mu.Lock()
	for _, rec := range c.rot.cutRecsLocked() {
		// A peer cut by a rotation: the rotation held live applies to
		// every one of its writes after the cut (all stale peers' keys).
		for _, i := range rec.stale {
			prefix := "authz/stale/" + c.nodes[i].id + "/"
			var keys []string
			for _, k := range rec.attempts {
				if strings.HasPrefix(k, prefix) {
					keys = append(keys, k)
				}
			}
			if len(keys) > 0 {
				revs = append(revs, revocation{subject: i, blob: rec.blob, attempts: keys})
			}
		}
	}
	c.rot.mu.Unlock()
	if len(revs) == 0 {
		return nil
	}
	held := rep.Revocations()
	var out []attempt
	for _, rv := range revs {
		if !slices.ContainsFunc(held, func(b []byte) bool { return bytes.Equal(b, rv.blob) }) {
			continue
		}
		for _, k := range rv.attempts {
			if _, ok := rep.KVGet(k); !ok {
				out = append(out, attempt{rv.subject, k})
			}
		}
	}
	return out
}

// checkIntentions reads the intention of every pair at peer n and records
// a violation when one went back to an older version than n held before.
func (c *Cluster) checkIntentions(n *node, rep *crdt.Replica) {
	z := c.authz
	if len(z.pairs) == 0 || rep == nil {
		return
	}
	ids := make([]string, len(z.pairs))
	for p, pr := range z.pairs {
		if in, ok := rep.IntentionFor(pr.src, pr.dst); ok {
			ids[p] = in.ID
		}
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	held := z.maxHeld[n.idx]
	if held == nil {
		held = make([]int, len(z.pairs))
		z.maxHeld[n.idx] = held
	}
	for p, id := range ids {
		if id == "" {
			continue
		}
		v := z.issued[id]
		if v < held[p] {
			z.rollbackOK.Add(1)
			z.addViolationLocked(fmt.Sprintf("%s: intention %s -> %s went back to version %d after holding version %d (rollback accepted)",
				n.id, z.pairs[p].src, z.pairs[p].dst, v, held[p]))
		}
		held[p] = max(held[p], v)
	}
}

// intentionActions spreads the scenario's intention versions evenly over
// the workload window, round-robin over the pairs.
func (c *Cluster) intentionActions() []action {
	w := c.sc.Workload
	if w.Intentions <= 0 {
		return nil
	}
	var out []action
	span := w.Stop - w.Start
	for k := range w.Intentions {
		at := w.Start + span*time.Duration(k+1)/time.Duration(w.Intentions+1)
		out = append(out, action{at, func() { c.issueIntention(k % len(c.authz.pairs)) }})
	}
	return out
}

// issueIntention has the root sign the next version of pair p and submits
// it at a random live peer (as PUT /v1/connect/intentions would).
func (c *Cluster) issueIntention(p int) {
	z := c.authz
	live := c.liveNodes()
	if len(live) == 0 {
		return
	}
	i := live[c.rng.IntN(len(live))]
	n := c.nodes[i]
	z.mu.Lock()
	pr := z.pairs[p]
	ver := len(pr.blobs) + 1
	z.mu.Unlock()
	in := crdt.Intention{ID: fmt.Sprintf("sim-%s-%s-v%d", pr.src, pr.dst, ver), SourceName: pr.src, DestinationName: pr.dst,
		Action: crdt.ActionAllow, Version: uint64(ver), Description: "sim"}
	if ver%2 == 0 {
		in.Action = crdt.ActionDeny
	}
	payload, err := cbor.Marshal(in)
	if err != nil {
		c.logf("intention: %v", err)
		return
	}
	blob, err := c.signIntention(payload, in.ID)
	if err != nil {
		c.logf("intention: %v", err)
		return
	}
	if c.rot.active {
		// The operator submits it at an agent that trusts its signer
		// (peer's API refuses it elsewhere): the drawn peer, else the
		// next live one in order.
		for j := range live {
			m := c.nodes[live[(slices.Index(live, i)+j)%len(live)]]
			if a := m.auth.Load(); a != nil {
				if _, err := a.VerifyIntention(blob); err == nil {
					i, n = m.idx, m
					break
				}
			}
		}
	}
	z.mu.Lock()
	pr.blobs = append(pr.blobs, blob)
	pr.by = append(pr.by, i)
	z.issued[in.ID] = ver
	z.mu.Unlock()
	c.note("intention %s %s->%s v%d", n.id, pr.src, pr.dst, ver)
	_, err = n.write(func(r *crdt.Replica, now time.Time) (*crdt.Delta, error) {
		return r.PutIntention(blob, n.auth.Load(), now)
	})
	if err != nil {
		z.violationf("%s refused the newest version %d of %s -> %s: %v", n.id, ver, pr.src, pr.dst, err)
	}
	c.checkIntentions(n, n.rep())
}

// authzEvent expands the replay_intention and revoke events.
func (c *Cluster) authzEvent(e Event) []action {
	switch e.Action {
	case "replay_intention":
		return []action{{e.At, func() { c.replayIntention(e) }}}
	case "revoke":
		if e.Operator || e.ByOperator {
			rec := &rotationRec{applied: map[int]time.Duration{}}
			do := func() { c.revokeOperator(e, rec) }
			if e.ByOperator {
				do = func() { c.revokeByOperator(e, rec) }
			}
			out := []action{{e.At, do}}
			// The peers it certified keep writing, once a second from 2 s after.
			for t, k := e.At+2*time.Second, 0; t < c.sc.Duration; t, k = t+time.Second, k+1 {
				out = append(out, action{t, func() { c.staleWrite(rec, k) }})
			}
			return out
		}
		rv := &revocation{subject: -1, cut: map[int]time.Duration{}}
		out := []action{{e.At, func() { c.revoke(e, rv) }}}
		// The revoked peer keeps writing, once a second from 2 s after
		// its revocation: nobody that holds the revocation may accept it.
		for t, k := e.At+2*time.Second, 0; t < c.sc.Duration; t, k = t+time.Second, k+1 {
			out = append(out, action{t, func() { c.revokedWrite(rv, k) }})
		}
		return out
	}
	return nil
}

// replayIntention re-injects an older signed version of a random pair at a
// random live peer (or Node), twice: as a remote record (a stale origin
// wraps it in a record of its own, which the peer merges as if it came
// from the network), and through the peer's API (PutIntention).
func (c *Cluster) replayIntention(e Event) {
	z := c.authz
	z.mu.Lock()
	var cands []int
	for p, pr := range z.pairs {
		if len(pr.blobs) >= 2 {
			cands = append(cands, p)
		}
	}
	z.mu.Unlock()
	live := c.liveNodes()
	if len(cands) == 0 || len(live) == 0 || len(z.scratch) == 0 {
		c.note("replay_intention skipped: no pair with two versions yet")
		return
	}
	p := cands[c.rng.IntN(len(cands))]
	z.mu.Lock()
	pr := z.pairs[p]
	newest := len(pr.blobs)
	z.mu.Unlock()
	ver := 1 + c.rng.IntN(newest-1)
	blob := pr.blobs[ver-1]
	i := live[c.rng.IntN(len(live))]
	if e.Node >= 0 && c.nodes[e.Node].isUp() {
		i = e.Node
	}
	n := c.nodes[i]
	z.mu.Lock()
	k := z.replays
	z.replays++
	z.mu.Unlock()
	s := z.scratch[k%len(z.scratch)]
	origin := z.replay[k%len(z.replay)]
	c.note("replay_intention %s %s->%s v%d (newest v%d) via %s", n.id, pr.src, pr.dst, ver, newest, origin)
	c.logf("replay_intention at %s: %s -> %s version %d of %d", n.id, pr.src, pr.dst, ver, newest)

	// As a remote record.
	if s.rep == nil {
		var err error
		if s.rep, err = crdt.NewReplica(origin, ed25519Signer(s.key), crdt.Options{}); err != nil {
			c.logf("replay: %v", err)
			return
		}
		s.auth = c.newNodeAuth(nil)
	}
	if d, err := s.rep.PutIntention(blob, s.auth, time.Now()); err == nil {
		if payload, err := crdt.EncodeDelta(d); err == nil {
			if rep := n.rep(); rep != nil {
				inc := &incarnation{n: n, replica: rep, auth: n.auth.Load()}
				inc.merge(payload)
			}
		}
	} else {
		c.logf("replay: the stale origin %s refused it: %v", origin, err)
	}

	// Through the API.
	_, err := n.write(func(r *crdt.Replica, now time.Time) (*crdt.Delta, error) {
		return r.PutIntention(blob, n.auth.Load(), now)
	})
	z.mu.Lock()
	switch {
	case errors.Is(err, crdt.ErrRollback):
		z.refusedAPI++
	case err == nil:
		z.acceptAPI++
	}
	z.mu.Unlock()
	c.checkIntentions(n, n.rep())
}

// revoke has the root revoke a peer's key and submits the revocation at a
// random other live peer (PUT /v1/agent/peerd/revoke).
func (c *Cluster) revoke(e Event, rv *revocation) {
	z := c.authz
	live := slices.DeleteFunc(c.liveNodes(), func(i int) bool { return i == e.Node })
	if len(live) == 0 {
		return
	}
	subject := e.Node
	if subject < 0 {
		subject = live[c.rng.IntN(len(live))]
		live = slices.DeleteFunc(live, func(i int) bool { return i == subject })
		if len(live) == 0 {
			return
		}
	}
	at := live[c.rng.IntN(len(live))]
	sn, n := c.nodes[subject], c.nodes[at]
	key := c.auth.keys[sn.id]
	r, err := identity.NewRevocation(c.currentRoot(), nil, key, time.Now())
	if err != nil {
		c.logf("revoke: %v", err)
		return
	}
	blob, err := r.Marshal()
	if err != nil {
		c.logf("revoke: %v", err)
		return
	}
	c.note("revoke %s at %s", sn.id, n.id)
	c.logf("revoke %s, submitted at %s", sn.id, n.id)
	z.mu.Lock()
	rv.subject, rv.key, rv.blob, rv.at = subject, key, blob, time.Now()
	z.revs = append(z.revs, rv)
	z.mu.Unlock()
	z.revoked[subject] = true
	z.revoking.Store(true)
	if _, err := n.write(func(r *crdt.Replica, now time.Time) (*crdt.Delta, error) {
		return r.AddRevocation(blob, n.auth.Load(), now)
	}); err != nil {
		z.violationf("%s refused the revocation of %s: %v", n.id, sn.id, err)
	}
	if rep := n.rep(); rep != nil {
		c.trustChanged(&incarnation{n: n, replica: rep, auth: n.auth.Load()})
	}
	c.openSpan("revoked " + sn.id)
}

// revokedWrite has a revoked peer write a KV record, as a compromised or
// unaware host would.
func (c *Cluster) revokedWrite(rv *revocation, k int) {
	if rv.subject < 0 {
		return
	}
	n := c.nodes[rv.subject]
	if !n.isUp() {
		return
	}
	key := fmt.Sprintf("authz/revoked/%s/%d", n.id, k)
	c.note("revoked-write %s %s", n.id, key)
	z := c.authz
	z.mu.Lock()
	rv.attempts = append(rv.attempts, key)
	z.mu.Unlock()
	_, _ = n.write(func(r *crdt.Replica, now time.Time) (*crdt.Delta, error) {
		return r.KVPut(key, []byte("revoked"), 0, now)
	})
}

// decommissionRevoked stops the revoked peers at the heal (an operator
// takes a revoked host down): they are no longer live, so convergence and
// the KV checkers look at the peers that cut them off.
func (c *Cluster) decommissionRevoked() {
	for i, r := range c.authz.revoked {
		if r && c.nodes[i].isUp() {
			c.note("decommission %s (revoked)", c.nodes[i].id)
			c.nodes[i].crash()
		}
	}
}

// checkAuthz runs the intention and revocation checkers at the end of the
// run (after convergence) and fills r.Authz.
func (c *Cluster) checkAuthz(r *Result) {
	z := c.authz
	a := &r.Authz
	a.RollbackRefusals = z.rollbacks.Load()
	a.OriginRefusals = z.originRefs.Load()
	a.Reissued = z.reissued.Load()
	a.CutMessages = z.cutMessages.Load()
	a.RollbacksAccepted, a.RevokedAccepted = z.rollbackOK.Load(), z.revokedOK.Load()
	a.NewestEverywhere, a.PeersCuttingOffAll = true, true

	z.mu.Lock()
	a.Pairs = len(z.pairs)
	type want struct {
		src, dst string
		newest   int
		blob     []byte
	}
	var wants []want
	for _, pr := range z.pairs {
		a.Intentions += len(pr.blobs)
		// The newest version submitted at a peer that was not revoked:
		// one written through a revoked peer may be refused everywhere.
		nw := 0
		for v := len(pr.blobs); v >= 1; v-- {
			if !z.revoked[pr.by[v-1]] {
				nw = v
				break
			}
		}
		var blob []byte
		if nw > 0 {
			blob = pr.blobs[nw-1]
		}
		wants = append(wants, want{pr.src, pr.dst, nw, blob})
	}
	a.Replays, a.ReplayRefusedAPI, a.ReplayAcceptedAPI = z.replays, z.refusedAPI, z.acceptAPI
	a.Revocations = len(z.revs)
	a.Expiries = len(c.expiry.list)
	var cuts []time.Duration
	revs := make([]revocation, 0, len(z.revs))
	for _, rv := range z.revs {
		a.RevokedAttempts += len(rv.attempts)
		for _, d := range rv.cut {
			cuts = append(cuts, d)
		}
		revs = append(revs, revocation{subject: rv.subject, key: rv.key, blob: rv.blob})
	}
	issued := z.issued
	violations := slices.Clone(z.violations)
	z.mu.Unlock()
	a.CutOff = distOf(cuts)

	for _, v := range violations {
		c.violation(r, "%s", v)
	}
	split := append(revs, c.expiredSubjects()...)
	for i := range c.rot.cuts() {
		split = append(split, revocation{subject: i})
	}
	c.checkRevokedSplit(r, split)
	var oracle *identity.Verifier
	if c.rot.active {
		oracle = c.oracle()
	}
	for _, n := range c.nodes {
		rep := n.rep()
		if rep == nil {
			continue
		}
		for _, w := range wants {
			if w.newest == 0 {
				continue
			}
			in, ok := rep.IntentionFor(w.src, w.dst)
			if oracle != nil && !signerValid(oracle, w.blob) {
				// Its signer was revoked or its root retired since:
				// withdrawn everywhere, and nothing older shows instead.
				if ok {
					a.NewestEverywhere = false
					c.violation(r, "%s: intention %s -> %s applies %s, but the newest issued (v%d) was signed by a key withdrawn since: none should",
						n.id, w.src, w.dst, in.ID, w.newest)
				}
				continue
			}
			z.mu.Lock()
			v := issued[in.ID]
			z.mu.Unlock()
			if !ok || v < w.newest {
				a.NewestEverywhere = false
				c.violation(r, "%s: intention %s -> %s at version %d, newest issued %d", n.id, w.src, w.dst, v, w.newest)
			}
		}
		if len(revs) == 0 {
			continue
		}
		held := rep.Revocations()
		auth := n.auth.Load()
		for _, rv := range revs {
			if rv.subject == n.idx {
				continue
			}
			holds := slices.ContainsFunc(held, func(b []byte) bool { return bytes.Equal(b, rv.blob) })
			if !holds || auth == nil || !auth.refuses(c.nodes[rv.subject].id) {
				a.PeersCuttingOffAll = false
				c.violation(r, "%s does not cut off revoked %s at the end (replica holds the revocation: %v)",
					n.id, c.nodes[rv.subject].id, holds)
			}
		}
	}
}

// writeSummary prints the intention and revocation lines of the summary.
func (a *AuthzResult) writeSummary(p func(format string, args ...any)) {
	if a.Intentions > 0 || a.Replays > 0 {
		p("intentions: %d versions of %d pairs issued; %d replays of older versions (API: %d refused as rollback, %d accepted by a peer holding no newer); "+
			"older versions refused by merges (late arrivals and replays): %d; newest version at every live peer: %v",
			a.Intentions, a.Pairs, a.Replays, a.ReplayRefusedAPI, a.ReplayAcceptedAPI, a.RollbackRefusals, a.NewestEverywhere)
	}
	if a.Expiries > 0 {
		p("expired certificates: %d; records refused by the origin check (revoked or expired): %d; deletes re-issued by sweeps: %d",
			a.Expiries, a.OriginRefusals, a.Reissued)
	}
	if a.Revocations > 0 {
		p("revocations: %d; revocation → each peer refusing the key: %s; every live peer cuts off every revoked peer: %v",
			a.Revocations, a.CutOff, a.PeersCuttingOffAll)
		p("  revoked peers' writes after revocation: %d; records refused by the origin check: %d; plumtree/anti-entropy messages dropped by cut-off: %d; deletes re-issued by sweeps: %d",
			a.RevokedAttempts, a.OriginRefusals, a.CutMessages, a.Reissued)
	}
}

// checkRevokedSplit: every live peer must hold the same records (dots) of
// a revoked peer. Before crdt kept a revoked origin's records as dead
// stubs, a replica that merged them before it held the revocation kept
// them, one that held it first dropped them, and anti-entropy offered them
// again in every session (docs/SIM.md, "Found by these checkers", 2).
func (c *Cluster) checkRevokedSplit(r *Result, revs []revocation) {
	for _, rv := range revs {
		id := c.nodes[rv.subject].id
		sets := map[string]int{} // the revoked peer's dots a peer holds → peers holding exactly those
		lo, hi := -1, 0
		for _, n := range c.nodes {
			rep := n.rep()
			if rep == nil {
				continue
			}
			h := rep.Heads()
			delete(h, id)
			var dots []uint64
			for _, d := range rep.DeltaSince(h, 0) {
				for _, e := range d.Entries {
					if _, _, dot, err := crdt.DecodeEntryHeader(e.Header); err == nil && dot.Origin == id {
						dots = append(dots, dot.Counter)
					}
				}
			}
			slices.Sort(dots)
			sets[fmt.Sprint(dots)]++
			if lo < 0 || len(dots) < lo {
				lo = len(dots)
			}
			hi = max(hi, len(dots))
		}
		if len(sets) > 1 {
			c.violation(r, "live peers hold %d different sets of cut-off (revoked or expired) %s's records (%d to %d records): "+
				"records merged before the cut are kept, the same records are refused after it", len(sets), id, lo, hi)
		}
	}
}
