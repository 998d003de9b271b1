package peer

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/identity"
)

// maxRevocationBody bounds a revocation submitted over HTTP.
const maxRevocationBody = 64 << 10

// SubmitRevocation verifies a signed revocation and writes it to the
// replica, which spreads it like any record; every agent that merges it
// applies it at once (see watchRevocations).
func (a *Agent) SubmitRevocation(ctx context.Context, signed []byte) error {
	if _, err := identity.UnmarshalRevocation(signed); err != nil {
		return err
	}
	err := a.commit(ctx, func(now time.Time) (*crdt.Delta, error) {
		return a.replica.AddRevocation(signed, a.trust, now)
	})
	if err != nil {
		return err
	}
	a.enforceRevocations()
	return nil
}

// watchRevocations cuts off revoked peers whenever the replica's set of
// revocations changes, whether the revocation was written here or merged
// from another peer, and applies the revocations to the records the
// replica already holds (sweepRevoked) — also once at start, for the
// revocations a restarted agent re-applied (reapplyTrustStatements).
//
// Each time, it first retries the trust statements the replica holds
// because they did not apply yet (retryStatements); also every
// statementRetryInterval while some are held, for those dated in the
// future.
//
// Every statementRetryInterval it also sweeps when a known chain expired
// since the last look: an expired node's node, service and check records
// die, as on agents that merge them after the expiry (chainCut). It also
// sweeps when a node's newest node record brought a chain that was cut in
// place of one that verified (trustBook.cutChains).
func (a *Agent) watchRevocations() {
	// The watch is armed before each look at the replica, so a statement
	// merged while the previous one is being enforced wakes the next round
	// (arming after enforcing lost it until the next change).
	_, ch := a.replica.WatchIndex(crdt.ScopeRevocations)
	checked := a.trust.now()
	a.retryStatements()
	a.learnHeldChains()
	a.sweepRevoked(a.trust.expiredBetween(time.Time{}, checked))
	a.withdrawIntentions() // also after a restart: withdrawal is not stored
	tick := time.NewTicker(statementRetryInterval)
	defer tick.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-ch:
			_, ch = a.replica.WatchIndex(crdt.ScopeRevocations)
		case <-a.trust.cutChains:
			// A node record replaced a chain that verified by a newer
			// one that was cut (trustBook.learnRecord): the node's
			// records merged by the older one since its cut die, as on
			// the agents that held the newer chain first.
			a.enforceRevocations()
			a.sweepRevoked(true)
			continue
		case <-tick.C:
			now := a.trust.now()
			expired := a.trust.expiredBetween(checked, now)
			checked = now
			if expired {
				a.enforceRevocations()
				a.sweepRevoked(true)
			}
			if a.replica.PendingStatements() == 0 {
				continue
			}
		}
		a.retryStatements()
		a.learnHeldChains()
		a.enforceRevocations()
		a.sweepRevoked(false)
	}
}

// learnHeldChains learns again, after this agent's trust changed, the
// chains in the node records the replica holds of the nodes it does not
// trust now (trustBook.learnHeld), before it sweeps: a node re-certified
// under a root this agent did not trust yet when it met the new chain
// counts once a rotation trusts that root, as on the agents that trusted
// it from the start. The trust book usually adopted that chain already,
// as the rotation applied (trustBook.waiting); this covers the chains it
// did not hold (its bounds) and a restart.
func (a *Agent) learnHeldChains() {
	if n := a.trust.learnHeld(a.replica); n > 0 {
		a.log.Info("node chains learnt again from the replica after a change of trust", "nodes", n)
	}
}

// statementRetryInterval is how often held trust statements are retried
// when trust did not change (a rotation dated up to a few minutes ahead
// of this agent's clock, identity.MaxRotationSkew).
const statementRetryInterval = time.Minute

// retryStatements applies the trust statements the replica holds because
// they arrived before the trust they need (a rotation R1→R2 before R0→R1):
// crdt.Replica.RetryStatements, which calls trustBook.VerifyRevocation
// on each until none more applies. Without it an agent that received two
// rotations in the wrong order trusted the middle root for good.
func (a *Agent) retryStatements() {
	if n := a.replica.RetryStatements(a.trust); n > 0 {
		a.log.Info("held trust statements applied", "statements", n, "held", a.replica.PendingStatements())
	}
}

// sweepRevoked applies the revocations the trust book holds to records
// the replica merged before it held them (crdt.RevokeOrigins): a revoked
// node's node, service and check records and its KV records stamped after
// its revocation die, as on the agents that held the revocation first, and
// what those KV records superseded here is re-issued as deletes signed by
// this node, committed and spread like any local write. Without it, agents
// that learned a revocation and the revoked node's records in different
// orders never agreed (docs/REPLICA.md, "Revoked origins"). It verifies one
// record signature per origin not swept yet (about 45 µs each), under the
// commit lock; an agent that holds no revocation and no retired root skips
// it unless expired says a known chain expired since the last look. The
// same applies to nodes cut off by their chain (trustBook.chainCut:
// expired, retired root, delegated revocation), swept again each time.
func (a *Agent) sweepRevoked(expired bool) {
	if !expired && len(a.trust.v.Revocations()) == 0 && !a.trust.v.HasRetiredRoots() {
		return
	}
	err := a.commit(a.ctx, func(now time.Time) (*crdt.Delta, error) {
		return a.replica.RevokeOrigins(a.trust, now)
	})
	if err != nil && a.ctx.Err() == nil {
		a.log.Warn("applying revocations to the records held", "err", err)
	}
}

// enforceRevocations closes the QUIC connections of peers that are no longer
// trusted and takes them out of dissemination and anti-entropy, and
// withdraws the intentions their signers may no longer have signed.
func (a *Agent) enforceRevocations() {
	defer a.withdrawIntentions()
	for _, p := range a.tr.Peers() {
		id := identity.NodeID(p.Key)
		if !a.trust.admitted(id) {
			a.log.Warn("peer no longer trusted; closing its connection", "peer", id)
			a.tr.ClosePeer(p.Key)
		}
	}
	if a.members != nil {
		a.members.Reevaluate()
		a.refreshPeers()
	}
}

// SubmitRotation verifies a root rotation statement (from `peerd rotate`)
// and writes it to the replica like a revocation: every agent that merges
// it retires the old root at once, and peers whose chains only the old root
// vouched for are cut off. It refuses a statement that would invalidate
// this node's own certificate (reissue it under the new root first) and
// returns the names of the known nodes it cuts off.
func (a *Agent) SubmitRotation(ctx context.Context, signed []byte) (cutOff []string, err error) {
	rot, err := identity.UnmarshalRotation(signed)
	if err != nil {
		return nil, err
	}
	// Judge the statement's effect on a verifier with the rotation applied.
	now := a.trust.now()
	after := a.trust.v.Clone() // with the retired roots: they never come back
	if err := after.Rotate(rot, now); err != nil {
		return nil, err
	}
	own, err := identity.UnmarshalChain(a.nodeChain())
	if err != nil && len(a.nodeChain()) > 0 {
		return nil, fmt.Errorf("this node's chain: %w", err)
	}
	if _, err := after.Verify(a.pub, own, now); err != nil {
		return nil, fmt.Errorf("this node's own certificate would no longer verify (%v); reissue it under the new root and run 'peerd reload' here first", err)
	}
	if m := a.membership(); m != nil {
		for _, mem := range m.Members() {
			id := mem.Tags[tagID]
			pub, perr := identity.ParseNodeID(id)
			if perr != nil || id == a.id || !a.trust.admitted(id) {
				continue
			}
			if _, err := after.Verify(pub, a.trust.chainOf(id), now); err != nil {
				// Not if the chain waiting for the new root verifies:
				// the trust book adopts it as the rotation applies.
				if w := a.trust.waitingOf(id); w == nil {
					cutOff = append(cutOff, mem.Name)
				} else if _, err := after.Verify(pub, w, now); err != nil {
					cutOff = append(cutOff, mem.Name)
				}
			}
		}
		slices.Sort(cutOff)
	}
	err = a.commit(ctx, func(now time.Time) (*crdt.Delta, error) {
		return a.replica.AddRevocation(signed, a.trust, now)
	})
	if err != nil {
		return nil, err
	}
	a.log.Warn("root rotated", "old", identity.NodeID(rot.OldRoot), "new", identity.NodeID(rot.NewRoot), "cut_off", cutOff)
	a.enforceRevocations()
	return cutOff, nil
}

// readStatement reads a signed trust statement (what names it in errors)
// from a request body of at most maxRevocationBody bytes.
func readStatement(r *http.Request, what string) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRevocationBody+1))
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "reading body: %v", err)
	}
	if len(body) > maxRevocationBody {
		return nil, errorf(http.StatusRequestEntityTooLarge, "%s larger than %d bytes", what, maxRevocationBody)
	}
	return body, nil
}

// agentRotate serves PUT /v1/agent/peerd/rotate: the body is a rotation
// statement made with `peerd rotate`. The answer lists the known nodes the
// rotation cut off.
func (s *apiServer) agentRotate(w http.ResponseWriter, r *http.Request, _ string) error {
	body, err := readStatement(r, "rotation statement")
	if err != nil {
		return err
	}
	cut, err := s.a.SubmitRotation(r.Context(), body)
	if err != nil {
		return errorf(http.StatusBadRequest, "rotation refused: %v", err)
	}
	return writeJSON(w, map[string]any{"CutOff": cut, "WithdrawnIntentions": s.a.withdrawn.Load()})
}

// agentRevoke serves PUT /v1/agent/peerd/revoke: the body is a revocation
// made with `peerd revoke`.
func (s *apiServer) agentRevoke(w http.ResponseWriter, r *http.Request, _ string) error {
	body, err := readStatement(r, "revocation")
	if err != nil {
		return err
	}
	if err := s.a.SubmitRevocation(r.Context(), body); err != nil {
		return errorf(http.StatusBadRequest, "revocation refused: %v", err)
	}
	return writeJSON(w, true)
}

// revocationSummary lists the revoked keys, for `peerd info`.
func (a *Agent) revocationSummary() string {
	n := len(a.replica.Revocations())
	return fmt.Sprint(n)
}

// reapplyTrustStatements applies the revocations and root rotations the
// replica holds to the verifier, which starts from the configured roots
// only: without it a restarted agent would forget them (anti-entropy never
// resends what the replica already holds). Rotations go first, oldest
// first, since each must name a root the previous one left trusted;
// statements held because they did not apply yet are retried afterwards
// (retryStatements, at the start of watchRevocations).
func (a *Agent) reapplyTrustStatements() {
	var rotations []*identity.Rotation
	var raw [][]byte
	for _, blob := range a.replica.Revocations() {
		if rot, err := identity.UnmarshalRotation(blob); err == nil {
			rotations = append(rotations, rot)
			continue
		}
		raw = append(raw, blob)
	}
	slices.SortFunc(rotations, func(x, y *identity.Rotation) int { return x.At.Compare(y.At) })
	// Retry those that name a root a later one makes trusted (several
	// roots configured; identity.Verifier.Rotate) until none more applies.
	for progress := true; progress; {
		progress = false
		rest := rotations[:0]
		for _, rot := range rotations {
			if err := a.trust.v.Rotate(rot, a.trust.now()); err != nil {
				rest = append(rest, rot)
				continue
			}
			progress = true
		}
		rotations = rest
	}
	for _, rot := range rotations {
		err := a.trust.v.Rotate(rot, a.trust.now())
		a.log.Warn("stored root rotation not applied", "old", identity.NodeID(rot.OldRoot), "new", identity.NodeID(rot.NewRoot), "err", err)
	}
	for _, blob := range raw {
		if err := a.trust.VerifyRevocation(blob); err != nil {
			a.log.Warn("stored revocation not applied", "err", err)
		}
	}
	// A revoked or cut-off node's node record is dead, so the agent does
	// not learn its chain from the live ones; keep it anyway: it judges
	// the node's KV records from before its revocation or cut
	// (trustBook.capsBefore, chainCut), which may still arrive.
	for origin := range a.replica.Heads() {
		if origin == a.id {
			continue
		}
		if _, live := a.replica.Node(origin); live {
			continue // learnt from the live node records (openStore)
		}
		pub, err := identity.ParseNodeID(origin)
		if err != nil {
			continue
		}
		if n, ok := a.replica.LastNodeRecord(origin); ok {
			a.trust.learn(pub, n.Cert)
		}
	}
}

// withdrawIntentions hides the intentions whose signing key was revoked or
// whose root was retired since they were merged (crdt.WithdrawIntentions):
// after an operator key is compromised and revoked, nothing it signed
// keeps deciding traffic, on every agent alike.
func (a *Agent) withdrawIntentions() {
	n := a.replica.WithdrawIntentions(a.trust.intentionSignerValid)
	if old := a.withdrawn.Swap(int64(n)); int64(n) > old {
		a.log.Warn("intentions withdrawn: their signing key was revoked or its root retired", "withdrawn", n,
			"hint", "sign them again with a valid key (peerd intention create -replace)")
	}
}
