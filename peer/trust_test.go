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

// TestTrustBookCutChains: a node whose chain expired, whose root a
// rotation retired, or in whose chain an issuer above it revoked a key is
// cut off at a known time. VerifyOrigin answers its correctly signed
// records with a Renewable crdt.OriginRevokedError at that cut (before,
// an ordinary error: the records were dropped and came again forever), a
// forged one with a bad signature, and MayWriteKV with the rights its
// chain gave before the cut. A trust book that meets the chain only after
// the cut keeps it.
func TestTrustBookCutChains(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	_, root, _ := ed25519.GenerateKey(rand.Reader)
	_, root2, _ := ed25519.GenerateKey(rand.Reader)
	opPub, op, _ := ed25519.GenerateKey(rand.Reader)
	opChain, err := identity.Issue(root, nil, opPub, "op", identity.Constraints{KVPrefixes: []string{"cfg/"}, DelegateDepth: 1}, t0.Add(-time.Hour), t0.Add(24*time.Hour), 1)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		// cut makes the chain stop verifying at t0+30s (or from then on)
		// and returns the expected cut.
		cut      func(t *testing.T, tb *trustBook) time.Time
		notAfter time.Duration
	}{
		{"expired", func(*testing.T, *trustBook) time.Time { return t0.Add(30 * time.Second) }, 30 * time.Second},
		{"retired root", func(t *testing.T, tb *trustBook) time.Time {
			rot, err := identity.NewRotation(root, root2, t0.Add(30*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if err := tb.v.Rotate(rot, t0.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			return t0.Add(31 * time.Second)
		}, time.Hour},
		{"revoked by its issuer", func(t *testing.T, tb *trustBook) time.Time {
			return t0.Add(31 * time.Second) // the revocation is added below, per node
		}, time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nodePub, node, _ := ed25519.GenerateKey(rand.Reader)
			chain, err := identity.Issue(op, opChain, nodePub, "x", identity.Constraints{KVPrefixes: []string{"cfg/x/"}},
				t0.Add(-time.Hour), t0.Add(tc.notAfter), 2)
			if err != nil {
				t.Fatal(err)
			}
			now := t0
			tb := newTrustBook(identity.NewVerifier(root.Public().(ed25519.PublicKey), root2.Public().(ed25519.PublicKey)),
				func() time.Time { return now }, "self")
			if _, err := tb.learn(nodePub, mustMarshalChain(t, chain)); err != nil {
				t.Fatal(err)
			}
			id := identity.NodeID(nodePub)
			msg := []byte("record header")
			sig := ed25519.Sign(node, msg)
			if err := tb.VerifyOrigin(id, msg, sig); err != nil {
				t.Fatalf("before the cut: %v", err)
			}
			want := tc.cut(t, tb)
			if tc.name == "revoked by its issuer" {
				rev, err := identity.NewRevocation(op, opChain, nodePub, t0.Add(30*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				if err := tb.v.AddRevocation(rev, t0.Add(time.Minute)); err != nil {
					t.Fatal(err)
				}
			}
			now = t0.Add(time.Minute)
			err = tb.VerifyOrigin(id, msg, sig)
			var re *crdt.OriginRevokedError
			if !errors.As(err, &re) || !re.Renewable || !re.At.Equal(want) {
				t.Fatalf("signed record after the cut: %v; want a Renewable OriginRevokedError at %v", err, want)
			}
			forged := append([]byte(nil), sig...)
			forged[0] ^= 1
			if err := tb.VerifyOrigin(id, msg, forged); err == nil || errors.Is(err, crdt.ErrOriginRevoked) {
				t.Fatalf("forged record: %v; want a plain bad signature", err)
			}
			if !tb.MayWriteKV(id, "cfg/x/a") || tb.MayWriteKV(id, "cfg/y/a") {
				t.Error("MayWriteKV does not follow the rights the chain gave before the cut")
			}
			if tb.admitted(id) {
				t.Error("a cut-off node is still admitted")
			}
			// A trust book that meets the chain only after the cut.
			tb2 := newTrustBook(identity.NewVerifier(root.Public().(ed25519.PublicKey), root2.Public().(ed25519.PublicKey)),
				func() time.Time { return now }, "self")
			for _, r := range tb.v.Revocations() {
				if err := tb2.v.AddRevocation(r, t0); err != nil {
					t.Fatal(err)
				}
			}
			if tc.name == "retired root" {
				rot, _ := identity.NewRotation(root, root2, t0.Add(30*time.Second))
				if err := tb2.v.Rotate(rot, now); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := tb2.learn(nodePub, mustMarshalChain(t, chain)); err == nil {
				t.Fatal("a cut chain verified")
			}
			if err := tb2.VerifyOrigin(id, msg, sig); !errors.As(err, &re) || !re.At.Equal(want) {
				t.Fatalf("chain met after the cut: %v; want an OriginRevokedError at %v", err, want)
			}
		})
	}
}

// TestCutChainConverges: agent A merges node X's records while X's chain
// is valid and sweeps when it expires; agent B merges them after the
// expiry. Both end equal: X's node and service dead, its KV write stamped
// before the expiry kept, the one stamped after it (within the clock
// drift bound, so A took it) dead. Before, B dropped X's records (an
// ordinary error), anti-entropy re-offered them forever and the digests
// never agreed.
func TestCutChainConverges(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	notAfter := t0.Add(30 * time.Second)
	_, root, _ := ed25519.GenerateKey(rand.Reader)
	xPub, xKey, _ := ed25519.GenerateKey(rand.Reader)
	chain, err := identity.Issue(root, nil, xPub, "x", identity.Constraints{Services: []string{"web"}, KVPrefixes: []string{"cfg/x/"}},
		t0.Add(-time.Hour), notAfter, 1)
	if err != nil {
		t.Fatal(err)
	}
	cert := mustMarshalChain(t, chain)
	x, err := crdt.NewReplica(identity.NodeID(xPub), nodeSigner{xKey}, crdt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var ds []*crdt.Delta
	for _, d := range []func() (*crdt.Delta, error){
		func() (*crdt.Delta, error) { return x.PutNode(crdt.Node{Name: "x", Cert: cert}, t0) },
		func() (*crdt.Delta, error) { return x.PutService(crdt.Service{ID: "web1", Name: "web"}, t0) },
		func() (*crdt.Delta, error) { return x.KVPut("cfg/x/a", []byte("before"), 0, t0) },
		func() (*crdt.Delta, error) {
			return x.KVPut("cfg/x/late", []byte("after"), 0, notAfter.Add(5*time.Second))
		},
	} {
		delta, err := d()
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, delta)
	}
	agent := func(seed byte, now *time.Time) (*crdt.Replica, *trustBook) {
		pub, key, _ := ed25519.GenerateKey(rand.Reader)
		r, err := crdt.NewReplica(identity.NodeID(pub), nodeSigner{key}, crdt.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return r, newTrustBook(identity.NewVerifier(root.Public().(ed25519.PublicKey)), func() time.Time { return *now }, identity.NodeID(pub))
	}
	nowA, nowB := notAfter.Add(-time.Second), notAfter.Add(time.Minute)
	a, tbA := agent(1, &nowA)
	b, tbB := agent(2, &nowB)
	for _, d := range ds {
		tbA.learnFromDelta(d)
		if _, err := a.Merge(d, tbA, nowA); err != nil {
			t.Fatalf("A merging while X is valid: %v", err)
		}
		tbB.learnFromDelta(d)
		if _, err := b.Merge(d, tbB, nowB); err != nil && !errors.Is(err, crdt.ErrOriginRevoked) {
			t.Fatalf("B merging after X expired: %v", err)
		}
	}
	nowA = nowB
	if !tbA.expiredBetween(notAfter.Add(-time.Second), nowA) {
		t.Fatal("expiredBetween does not see X's expiry")
	}
	if d, err := a.RevokeOrigins(tbA, nowA); err != nil || d != nil {
		t.Fatalf("A sweeping: %v, %v", d, err)
	}
	reads := func(r *crdt.Replica) string {
		_, node := r.Node(identity.NodeID(xPub))
		pa, okA := r.KVGet("cfg/x/a")
		_, okLate := r.KVGet("cfg/x/late")
		return fmt.Sprintf("node=%v web=%d a=%v:%s late=%v", node, len(r.Services("web", nil)), okA, pa.Value, okLate)
	}
	if ra, rb := reads(a), reads(b); ra != rb || ra != "node=false web=0 a=true:before late=false" {
		t.Errorf("reads: A %s, B %s; want node=false web=0 a=true:before late=false", ra, rb)
	}
	if a.Digest() != b.Digest() {
		t.Errorf("digests differ: A %v, B %v", a.Heads(), b.Heads())
	}
}

// BenchmarkVerifyOrigin: one record's origin check for a node whose chain
// verifies (a cached verdict) and for one whose chain expired (chainCut
// verifies the chain again, with a scratch Verifier, for every record).
func BenchmarkVerifyOrigin(b *testing.B) {
	t0 := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	_, root, _ := ed25519.GenerateKey(rand.Reader)
	for _, bc := range []struct {
		name string
		now  time.Time
	}{{"valid", t0}, {"expired", t0.Add(2 * time.Hour)}} {
		b.Run(bc.name, func(b *testing.B) {
			pub, key, _ := ed25519.GenerateKey(rand.Reader)
			chain, err := identity.Issue(root, nil, pub, "x", identity.Constraints{KVPrefixes: []string{"cfg/"}}, t0.Add(-time.Hour), t0.Add(time.Hour), 1)
			if err != nil {
				b.Fatal(err)
			}
			now := t0
			tb := newTrustBook(identity.NewVerifier(root.Public().(ed25519.PublicKey)), func() time.Time { return now }, "self")
			if _, err := tb.learn(pub, mustMarshalChain(b, chain)); err != nil {
				b.Fatal(err)
			}
			now = bc.now
			id, msg := identity.NodeID(pub), []byte("record header")
			sig := ed25519.Sign(key, msg)
			b.ResetTimer()
			for range b.N {
				err := tb.VerifyOrigin(id, msg, sig)
				if (err != nil) != (bc.name == "expired") {
					b.Fatal(err)
				}
			}
		})
	}
}
