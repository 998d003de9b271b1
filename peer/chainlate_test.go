package peer

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/identity"
)

// chainLateFixture: node Q is certified under R0, then re-certified under
// R1 (docs/OPERATIONS.md, "Rotating the root", step 2) and publishes the
// new chain in its node record; R0→R1 follows; then Q overwrites a value
// and deletes another. Q's records are deltas[name].
type chainLateFixture struct {
	t0       time.Time
	now      time.Time // when the agents merge (after all of it)
	r0, r1   ed25519.PrivateKey
	qPub     ed25519.PublicKey
	chainR1  []byte
	deltas   map[string]*crdt.Delta
	ordered  []string // the order Q wrote them in
	rotation []byte
}

func newChainLateFixture(t testing.TB) *chainLateFixture {
	t.Helper()
	f := &chainLateFixture{t0: time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC), deltas: map[string]*crdt.Delta{}}
	f.now = f.t0.Add(10 * time.Second)
	_, f.r0, _ = ed25519.GenerateKey(rand.Reader)
	_, f.r1, _ = ed25519.GenerateKey(rand.Reader)
	qPub, qKey, _ := ed25519.GenerateKey(rand.Reader)
	f.qPub = qPub
	cons := identity.Constraints{KVPrefixes: []string{"cfg/q/"}}
	c0, err := identity.Issue(f.r0, nil, qPub, "q", cons, f.t0.Add(-time.Hour), f.t0.Add(time.Hour), 1)
	if err != nil {
		t.Fatal(err)
	}
	c1, err := identity.Issue(f.r1, nil, qPub, "q", cons, f.t0.Add(-time.Hour), f.t0.Add(time.Hour), 2)
	if err != nil {
		t.Fatal(err)
	}
	f.chainR1 = mustMarshalChain(t, c1)
	rot, err := identity.NewRotation(f.r0, f.r1, f.t0.Add(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if f.rotation, err = rot.Marshal(); err != nil {
		t.Fatal(err)
	}
	q, err := crdt.NewReplica(identity.NodeID(qPub), nodeSigner{qKey}, crdt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	qTrust := newTrustBook(identity.NewVerifier(pubOf(f.r0), pubOf(f.r1)), func() time.Time { return f.now }, identity.NodeID(qPub))
	if _, err := qTrust.learn(qPub, mustMarshalChain(t, c0)); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		name  string
		write func() (*crdt.Delta, error)
	}{
		{"node-r0", func() (*crdt.Delta, error) {
			return q.PutNode(crdt.Node{Name: "q", Cert: mustMarshalChain(t, c0)}, f.t0)
		}},
		{"a-v1", func() (*crdt.Delta, error) { return q.KVPut("cfg/q/a", []byte("v1"), 0, f.t0) }},
		{"b-v1", func() (*crdt.Delta, error) { return q.KVPut("cfg/q/b", []byte("v1"), 0, f.t0) }},
		{"node-r1", func() (*crdt.Delta, error) {
			return q.PutNode(crdt.Node{Name: "q", Cert: f.chainR1}, f.t0.Add(500*time.Millisecond))
		}},
		{"rotation", func() (*crdt.Delta, error) {
			return q.AddRevocation(f.rotation, qTrust, f.t0.Add(2*time.Second))
		}},
		// After the cut (the end of the rotation's second).
		{"a-v2", func() (*crdt.Delta, error) { return q.KVPut("cfg/q/a", []byte("v2"), 0, f.t0.Add(5*time.Second)) }},
		{"b-del", func() (*crdt.Delta, error) { return q.KVDelete("cfg/q/b", f.t0.Add(6*time.Second)) }},
	} {
		d, err := step.write()
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		f.deltas[step.name] = d
		f.ordered = append(f.ordered, step.name)
	}
	return f
}

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

// agent is a replica and trust book trusting roots, as an Agent holds them.
func (f *chainLateFixture) agent(t testing.TB, roots ...ed25519.PublicKey) (*crdt.Replica, *trustBook) {
	t.Helper()
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	r, err := crdt.NewReplica(identity.NodeID(pub), nodeSigner{key}, crdt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return r, newTrustBook(identity.NewVerifier(roots...), func() time.Time { return f.now }, identity.NodeID(pub))
}

// deliver does what an agent does with a delta from a peer (mergeRemote)
// and then with a change of its statements (watchRevocations).
func (f *chainLateFixture) deliver(t testing.TB, r *crdt.Replica, tb *trustBook, name string) {
	t.Helper()
	deliverAsAgent(t, r, tb, f.deltas[name], f.now, name)
}

// deliverAsAgent merges d into r as an agent does with a delta from a peer
// (mergeRemote: the chains of its node records first), then does what it
// does when its statements change or its trust book asks for a sweep
// (watchRevocations).
func deliverAsAgent(t testing.TB, r *crdt.Replica, tb *trustBook, d *crdt.Delta, now time.Time, name string) {
	t.Helper()
	tb.learnFromDelta(d)
	if _, err := r.Merge(d, tb, now); err != nil && !errors.Is(err, crdt.ErrOriginRevoked) && !errors.Is(err, crdt.ErrBadSignature) {
		t.Fatalf("merging %s: %v", name, err)
	}
	r.RetryStatements(tb)
	tb.learnHeld(r)
	if _, err := r.RevokeOrigins(tb, now); err != nil {
		t.Fatalf("sweeping after %s: %v", name, err)
	}
}

// kvReads renders what r reads for keys, for comparing agents.
func kvReads(r *crdt.Replica, keys ...string) string {
	var b strings.Builder
	for _, k := range keys {
		p, ok := r.KVGet(k)
		fmt.Fprintf(&b, "%s=%v:%s ", k, ok, p.Value)
	}
	return strings.TrimSpace(b.String())
}

func chainLateReads(r *crdt.Replica) string { return kvReads(r, "cfg/q/a", "cfg/q/b") }

// TestChainLearntBeforeItsRoot: an agent P that trusts R0 but not R1 meets
// Q's chain under R1 (in Q's node record) before the rotation R0→R1 that
// makes R1 trusted. P must end where an agent S that trusted R1 from the
// start ends, whatever the order: Q's chain known, its records written
// after the cut (an overwrite and a delete) live. Before: learn dropped
// the R1 chain (it did not verify and was not cut), the rotation cut the
// R0 chain P kept, and Q's later records were dead on P (a renewable
// OriginRevokedError) or killed by the sweep, live on S: reads differed
// for good, with equal digests (docs/SIM.md, "Found by these checkers", 4).
func TestChainLearntBeforeItsRoot(t *testing.T) {
	f := newChainLateFixture(t)
	s, sTrust := f.agent(t, pubOf(f.r0), pubOf(f.r1))
	for _, name := range f.ordered {
		f.deliver(t, s, sTrust, name)
	}
	const want = "cfg/q/a=true:v2 cfg/q/b=false:"
	if got := chainLateReads(s); got != want {
		t.Fatalf("reference agent reads %s, want %s", got, want)
	}
	qID := identity.NodeID(f.qPub)
	for _, tc := range []struct {
		name  string
		order []string
		full  bool // the waiting chains are at their bound: only learnHeld helps
	}{
		{"rotation-then-late-writes", []string{"node-r0", "a-v1", "b-v1", "node-r1", "rotation", "a-v2", "b-del"}, false},
		{"late-writes-then-rotation", []string{"node-r0", "a-v1", "b-v1", "node-r1", "a-v2", "b-del", "rotation"}, false},
		{"r1-chain-first", []string{"node-r1", "node-r0", "a-v1", "b-v1", "rotation", "a-v2", "b-del"}, false},
		{"waiting-full", []string{"node-r0", "a-v1", "b-v1", "node-r1", "rotation", "a-v2", "b-del"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, pTrust := f.agent(t, pubOf(f.r0))
			if tc.full {
				fillWaiting(t, pTrust, f.now)
			}
			for _, name := range tc.order {
				f.deliver(t, p, pTrust, name)
				if name == "node-r1" && pTrust.admitted(qID) && !pTrust.v.IsRoot(pubOf(f.r1)) && pTrust.chainOf(qID) == nil {
					t.Fatal("a chain under a root not trusted yet granted rights")
				}
			}
			for _, name := range f.ordered { // anti-entropy: what was dropped comes again
				f.deliver(t, p, pTrust, name)
			}
			if !pTrust.admitted(qID) {
				t.Errorf("Q not trusted after R0→R1 (its R1 chain was not learnt)")
			}
			if got := chainLateReads(p); got != want {
				t.Errorf("P reads %s, want %s (as S)", got, want)
			}
			if p.Digest() != s.Digest() {
				t.Errorf("digests differ: P %v, S %v", p.Heads(), s.Heads())
			}
		})
	}
}

// fillWaiting puts maxWaitingChains+10 chains under roots nobody trusts
// into tb: what a relay of made-up node records can do.
func fillWaiting(t testing.TB, tb *trustBook, now time.Time) {
	t.Helper()
	for i := 0; i < maxWaitingChains+10; i++ {
		_, root, _ := ed25519.GenerateKey(rand.Reader)
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		if _, err := tb.learn(pub, mustMarshalChain(t, mustIssue(t, root, pub, now.Add(-time.Hour), now.Add(time.Hour)))); !errors.Is(err, identity.ErrUntrusted) {
			t.Fatalf("learning a chain under an unknown root: %v", err)
		}
	}
}

// TestWaitingChainsGrantNothing: a chain that fails only because its root
// is not trusted is held, bounded in number, and grants nothing: its
// node's records are an ordinary origin error (dropped, not a dead stub
// that burns their dots), it is not admitted, and a chain that fails for
// another reason (expired, another key's) is not held.
func TestWaitingChainsGrantNothing(t *testing.T) {
	now := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	_, r0, _ := ed25519.GenerateKey(rand.Reader)
	tb := newTrustBook(identity.NewVerifier(pubOf(r0)), func() time.Time { return now }, "self")
	fillWaiting(t, tb, now)
	tb.mu.Lock()
	n, size := len(tb.waiting), tb.waitingBytes
	tb.mu.Unlock()
	if n != maxWaitingChains || size > maxWaitingChainBytes {
		t.Errorf("%d chains held (%d bytes), want %d in at most %d bytes", n, size, maxWaitingChains, maxWaitingChainBytes)
	}

	tb = newTrustBook(identity.NewVerifier(pubOf(r0)), func() time.Time { return now }, "self")
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	xPub, xKey, _ := ed25519.GenerateKey(rand.Reader)
	for _, tc := range []struct {
		name  string
		chain func() identity.Chain
		held  bool
	}{
		{"untrusted root", func() identity.Chain { return mustIssue(t, other, xPub, now.Add(-time.Hour), now.Add(time.Hour)) }, true},
		{"untrusted root, expired", func() identity.Chain { return mustIssue(t, other, xPub, now.Add(-2*time.Hour), now.Add(-time.Hour)) }, false},
		{"untrusted root, another key's chain", func() identity.Chain {
			yPub, _, _ := ed25519.GenerateKey(rand.Reader)
			return mustIssue(t, other, yPub, now.Add(-time.Hour), now.Add(time.Hour))
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb.mu.Lock()
			clear(tb.waiting)
			tb.waitingBytes = 0
			tb.mu.Unlock()
			if _, err := tb.learn(xPub, mustMarshalChain(t, tc.chain())); err == nil {
				t.Fatal("learn accepted a chain under a root not trusted")
			}
			tb.mu.Lock()
			_, held := tb.waiting[identity.NodeID(xPub)]
			tb.mu.Unlock()
			if held != tc.held {
				t.Errorf("held %v, want %v", held, tc.held)
			}
			if tb.admitted(identity.NodeID(xPub)) || tb.chainOf(identity.NodeID(xPub)) != nil {
				t.Error("a held chain made its node trusted or known")
			}
			msg := []byte("header")
			err := tb.VerifyOrigin(identity.NodeID(xPub), msg, ed25519.Sign(xKey, msg))
			if err == nil || errors.Is(err, crdt.ErrOriginRevoked) {
				t.Errorf("VerifyOrigin for a node known only by a held chain: %v, want an ordinary error", err)
			}
			if tb.MayWriteKV(identity.NodeID(xPub), "anything") || tb.MayPublishService(identity.NodeID(xPub), "web") {
				t.Error("a held chain grants rights")
			}
		})
	}
}

func mustIssue(t testing.TB, issuer ed25519.PrivateKey, subject ed25519.PublicKey, notBefore, notAfter time.Time) identity.Chain {
	t.Helper()
	c, err := identity.Issue(issuer, nil, subject, "x", identity.Constraints{}, notBefore, notAfter, 1)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
