package peer

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/identity"
)

// TestIntentionSignerValid: an intention stays valid after its signer's
// certificate expires, and is withdrawn when the signer is revoked or the
// root that signed it (or its signer's chain) is retired.
func TestIntentionSignerValid(t *testing.T) {
	f := newSignerFixture(t)
	in := crdt.Intention{ID: NewIntentionID(), SourceName: "web", DestinationName: "db", Action: crdt.ActionAllow, Version: 1}
	byOp, err := SignIntention(in, f.op, f.opChain)
	if err != nil {
		t.Fatal(err)
	}
	byRoot, err := SignIntention(in, f.root, nil)
	if err != nil {
		t.Fatal(err)
	}
	book, root, opPub := f.book, f.root, f.opPub

	tb := book()
	if !tb.intentionSignerValid(byOp) || !tb.intentionSignerValid(byRoot) {
		t.Fatal("valid signers judged invalid")
	}
	f.now = f.now.Add(2 * time.Hour) // the operator's certificate has expired
	if !tb.intentionSignerValid(byOp) {
		t.Error("an intention was withdrawn because its signer's certificate expired")
	}

	rev, _ := identity.NewRevocation(root, nil, opPub, f.now)
	blob, _ := rev.Marshal()
	if err := tb.VerifyRevocation(blob); err != nil {
		t.Fatal(err)
	}
	if tb.intentionSignerValid(byOp) {
		t.Error("an intention signed by a revoked key is still valid")
	}
	if !tb.intentionSignerValid(byRoot) {
		t.Error("the root's intention was withdrawn by another key's revocation")
	}

	tb = book()
	rot, _ := identity.NewRotation(root, f.root2, f.now)
	rb, _ := rot.Marshal()
	if err := tb.VerifyRevocation(rb); err != nil {
		t.Fatal(err)
	}
	if tb.intentionSignerValid(byRoot) || tb.intentionSignerValid(byOp) {
		t.Error("intentions under a retired root are still valid")
	}
	if tb.intentionSignerValid([]byte("not an envelope")) {
		t.Error("garbage judged valid")
	}
}

// signerFixture is two roots and an operator key certified by the first
// to sign intentions, valid an hour either side of now; book is a trust
// book trusting both roots, on a clock that reads now.
type signerFixture struct {
	now         time.Time
	root, root2 ed25519.PrivateKey
	op          ed25519.PrivateKey
	opPub       ed25519.PublicKey
	opChain     identity.Chain
}

func newSignerFixture(t testing.TB) *signerFixture {
	t.Helper()
	f := &signerFixture{now: time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)}
	_, f.root, _ = ed25519.GenerateKey(rand.Reader)
	_, f.root2, _ = ed25519.GenerateKey(rand.Reader)
	f.opPub, f.op, _ = ed25519.GenerateKey(rand.Reader)
	var err error
	f.opChain, err = identity.Issue(f.root, nil, f.opPub, "op", identity.Constraints{SignIntentions: true},
		f.now.Add(-time.Hour), f.now.Add(time.Hour), 1)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *signerFixture) book() *trustBook {
	return newTrustBook(identity.NewVerifier(f.root.Public().(ed25519.PublicKey), f.root2.Public().(ed25519.PublicKey)),
		func() time.Time { return f.now }, "self")
}

// TestSignedIntentionWithoutID: a signed intention that carries no ID gets
// one derived from its pair, the same on every agent and across versions.
func TestSignedIntentionWithoutID(t *testing.T) {
	_, root, _ := ed25519.GenerateKey(rand.Reader)
	tb := newTrustBook(identity.NewVerifier(root.Public().(ed25519.PublicKey)), time.Now, "self")
	ids := map[string]bool{}
	for v := uint64(1); v <= 2; v++ {
		signed, err := SignIntention(crdt.Intention{SourceName: "web", DestinationName: "db", Action: crdt.ActionAllow, Version: v}, root, nil)
		if err != nil {
			t.Fatal(err)
		}
		in, err := tb.VerifyIntention(signed)
		if err != nil {
			t.Fatal(err)
		}
		ids[in.ID] = true
	}
	want := pairIntentionID("web", "db")
	if len(ids) != 1 || !ids[want] || len(want) != 36 || want[14] != '5' {
		t.Errorf("IDs %v, want only %q (a version-5 UUID)", ids, want)
	}
	if pairIntentionID("web", "db") == pairIntentionID("db", "web") {
		t.Error("the pair's direction does not change the ID")
	}
}
