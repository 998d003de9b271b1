package peer

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/identity"
)

// TestTrustBookRevokedOrigin: for a node revoked by the root, VerifyOrigin
// reports a correctly signed record as crdt.OriginRevokedError with the
// end of the revocation's second, a forged one as a bad signature (so it
// burns no dot), and MayWriteKV still answers with the rights its chain
// gave it before (for its KV records stamped before the revocation).
func TestTrustBookRevokedOrigin(t *testing.T) {
	now := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	_, root, _ := ed25519.GenerateKey(rand.Reader)
	nodePub, node, _ := ed25519.GenerateKey(rand.Reader)
	chain, err := identity.Issue(root, nil, nodePub, "x", identity.Constraints{KVPrefixes: []string{"cfg/x/"}},
		now.Add(-time.Hour), now.Add(time.Hour), 1)
	if err != nil {
		t.Fatal(err)
	}
	tb := newTrustBook(identity.NewVerifier(root.Public().(ed25519.PublicKey)), func() time.Time { return now }, "self")
	if _, err := tb.learn(nodePub, mustMarshalChain(t, chain)); err != nil {
		t.Fatal(err)
	}
	id := identity.NodeID(nodePub)
	msg := []byte("record header")
	sig := ed25519.Sign(node, msg)
	if err := tb.VerifyOrigin(id, msg, sig); err != nil {
		t.Fatalf("before the revocation: %v", err)
	}

	rev, err := identity.NewRevocation(root, nil, nodePub, now.Add(1500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	blob, err := rev.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.VerifyRevocation(blob); err != nil {
		t.Fatal(err)
	}

	err = tb.VerifyOrigin(id, msg, sig)
	var re *crdt.OriginRevokedError
	if !errors.As(err, &re) || !errors.Is(err, crdt.ErrOriginRevoked) {
		t.Fatalf("revoked node's signed record: %v; want an OriginRevokedError", err)
	}
	if want := now.Add(2 * time.Second); !re.At.Equal(want) {
		t.Errorf("revocation cut %v, want %v (end of the signed second)", re.At, want)
	}
	forged := append([]byte(nil), sig...)
	forged[0] ^= 1
	if err := tb.VerifyOrigin(id, msg, forged); err == nil || errors.Is(err, crdt.ErrOriginRevoked) {
		t.Fatalf("forged record of a revoked node: %v; want a plain bad signature", err)
	}
	if tb.admitted(id) {
		t.Error("a revoked node is still admitted")
	}
	if !tb.MayWriteKV(id, "cfg/x/a") || tb.MayWriteKV(id, "cfg/y/a") {
		t.Error("MayWriteKV of a revoked node does not follow the rights its chain gave it")
	}

	// A fresh trust book (a restarted agent) that holds the revocation
	// before it meets the chain keeps the chain anyway.
	tb2 := newTrustBook(identity.NewVerifier(root.Public().(ed25519.PublicKey)), func() time.Time { return now }, "self")
	if err := tb2.VerifyRevocation(blob); err != nil {
		t.Fatal(err)
	}
	// Until its chain is known, a revoked node's record is an ordinary
	// error (dropped, it comes again): its earlier KV records are judged
	// by that chain, and a refusal would be final.
	if err := tb2.VerifyOrigin(id, msg, sig); err == nil || errors.Is(err, crdt.ErrOriginRevoked) {
		t.Fatalf("revoked node of unknown chain: %v; want an ordinary error", err)
	}
	if _, err := tb2.learn(nodePub, mustMarshalChain(t, chain)); !errors.Is(err, identity.ErrRevoked) {
		t.Fatalf("learning a revoked node's chain: %v, want ErrRevoked", err)
	}
	if !tb2.MayWriteKV(id, "cfg/x/a") {
		t.Error("the chain of a node learnt after its revocation was not kept")
	}
	if err := tb2.VerifyOrigin(id, msg, sig); !errors.Is(err, crdt.ErrOriginRevoked) {
		t.Errorf("revoked node of known chain: %v; want an OriginRevokedError", err)
	}
}

func mustMarshalChain(t testing.TB, c identity.Chain) []byte {
	t.Helper()
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTrustBookRotationsOutOfOrder: agents merge two root rotations
// (R0→R1, R1→R2) and a revocation signed by R2 in any order and all end
// on R2 alone with the revocation applied, as an agent that got them in
// order. The records come from a node certified by R2, which the agents
// trust (the operator adds each new root to every agent's trust before
// rotating, docs/OPERATIONS.md). Before: with R1 trusted, R1→R2 applied
// first made R0→R1 a "replay" (dated before the last rotation), refused
// for good — the replica keeps a refused record's dot, so it never came
// again — and the agent trusted R0 forever; with R1 not configured,
// R1→R2 was refused for good the same way and the agent kept R1.
func TestTrustBookRotationsOutOfOrder(t *testing.T) {
	now := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	var roots [3]ed25519.PrivateKey
	for i := range roots {
		_, roots[i], _ = ed25519.GenerateKey(rand.Reader)
	}
	pub := func(i int) ed25519.PublicKey { return roots[i].Public().(ed25519.PublicKey) }
	rot01, err := identity.NewRotation(roots[0], roots[1], now.Add(-2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	rot12, err := identity.NewRotation(roots[1], roots[2], now.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	victim, _, _ := ed25519.GenerateKey(rand.Reader)
	rev, err := identity.NewRevocation(roots[2], nil, victim, now)
	if err != nil {
		t.Fatal(err)
	}
	blobs := make([][]byte, 3)
	for i, m := range []interface{ Marshal() ([]byte, error) }{rot01, rot12, rev} {
		if blobs[i], err = m.Marshal(); err != nil {
			t.Fatal(err)
		}
	}

	// P, certified by R2, writes the three statements in order.
	pPub, pKey, _ := ed25519.GenerateKey(rand.Reader)
	pChain, err := identity.Issue(roots[2], nil, pPub, "p", identity.Constraints{}, now.Add(-time.Hour), now.Add(time.Hour), 1)
	if err != nil {
		t.Fatal(err)
	}
	p, err := crdt.NewReplica(identity.NodeID(pPub), nodeSigner{pKey}, crdt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pTrust := newTrustBook(identity.NewVerifier(pub(0), pub(1), pub(2)), clock, identity.NodeID(pPub))
	deltas := make([]*crdt.Delta, 3)
	for i, b := range blobs {
		if deltas[i], err = p.AddRevocation(b, pTrust, now); err != nil {
			t.Fatalf("statement %d: %v", i, err)
		}
	}

	orders := [][]int{{0, 1, 2}, {1, 0, 2}, {2, 1, 0}, {1, 2, 0}}
	for _, configured := range [][]int{{0, 1, 2}, {0, 2}} {
		for _, order := range orders {
			t.Run(fmt.Sprintf("trust%v/order%v", configured, order), func(t *testing.T) {
				qPub, qKey, _ := ed25519.GenerateKey(rand.Reader)
				q, err := crdt.NewReplica(identity.NodeID(qPub), nodeSigner{qKey}, crdt.Options{})
				if err != nil {
					t.Fatal(err)
				}
				var trusted []ed25519.PublicKey
				for _, i := range configured {
					trusted = append(trusted, pub(i))
				}
				tb := newTrustBook(identity.NewVerifier(trusted...), clock, identity.NodeID(qPub))
				if _, err := tb.learn(pPub, mustMarshalChain(t, pChain)); err != nil {
					t.Fatal(err)
				}
				for _, i := range order {
					if _, err := q.Merge(deltas[i], tb, now); err != nil && !errors.Is(err, crdt.ErrNotYetApplicable) {
						t.Fatalf("merging statement %d: %v", i, err)
					}
					q.RetryStatements(tb) // as watchRevocations does
				}
				if got := tb.v.Roots(); len(got) != 1 || !got[0].Equal(pub(2)) {
					t.Errorf("%d trusted roots, want R2 alone (R0 %v, R1 %v)", len(got), tb.v.IsRoot(pub(0)), tb.v.IsRoot(pub(1)))
				}
				if !tb.v.IsRevoked(victim) {
					t.Error("the revocation signed by R2 was not applied")
				}
				if n := len(q.Revocations()); n != 3 || q.PendingStatements() != 0 {
					t.Errorf("%d live statements and %d held, want 3 and 0", n, q.PendingStatements())
				}
			})
		}
	}
}
