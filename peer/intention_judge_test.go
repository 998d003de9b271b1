package peer

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/identity"
)

// TestJudgeIntention: a replicated intention is judged once for good, at
// the time its record was stamped: never valid is refused, valid then but
// cut off since (revoked signer, retired root) is merged withdrawn, and a
// certificate that ended after the stamp does not count.
func TestJudgeIntention(t *testing.T) {
	f := newSignerFixture(t)
	now, root, op, opPub, opChain, book := f.now, f.root, f.op, f.opPub, f.opChain, f.book
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	nodePub, nodeKey, _ := ed25519.GenerateKey(rand.Reader)
	nodeChain, err := identity.Issue(root, nil, nodePub, "n", identity.Constraints{Services: []string{"*"}},
		now.Add(-time.Hour), now.Add(time.Hour), 2)
	if err != nil {
		t.Fatal(err)
	}
	in := crdt.Intention{SourceName: "web", DestinationName: "db", Action: crdt.ActionAllow, Version: 1}
	sign := func(key ed25519.PrivateKey, chain identity.Chain) []byte {
		t.Helper()
		b, err := SignIntention(in, key, chain)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	byOp, byRoot := sign(op, opChain), sign(root, nil)
	judge := func(tb *trustBook, signed []byte, at time.Time) (withdrawn bool, err error) {
		t.Helper()
		got, w, err := tb.JudgeIntention(signed, at)
		if err == nil && (got.SourceName != "web" || got.DestinationName != "db") {
			t.Fatalf("judged intention %+v", got)
		}
		return w, err
	}

	tb := book()
	for name, signed := range map[string][]byte{"operator": byOp, "root": byRoot} {
		if w, err := judge(tb, signed, now); err != nil || w {
			t.Errorf("%s, valid: withdrawn %v, %v", name, w, err)
		}
	}
	// Never valid: refused whatever trust does later.
	for name, tc := range map[string]struct {
		signed []byte
		at     time.Time
		want   string
	}{
		"unknown root":         {sign(stranger, nil), now, "not a trusted root"},
		"may not sign":         {sign(nodeKey, nodeChain), now, "may not sign intentions"},
		"stamped after expiry": {byOp, now.Add(2 * time.Hour), "expired"},
		"stamped before valid": {byOp, now.Add(-2 * time.Hour), "not yet valid"},
		"garbage":              {[]byte("not an envelope"), now, ""},
	} {
		if _, err := judge(tb, tc.signed, tc.at); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, tc.want)
		}
	}
	// Stamped while valid, judged after the certificate ended: applies.
	now = now.Add(2 * time.Hour)
	f.now = now
	if w, err := judge(tb, byOp, now.Add(-2*time.Hour)); err != nil || w {
		t.Errorf("certificate ended after the stamp: withdrawn %v, %v", w, err)
	}

	// Revoked signer: merged withdrawn, as WithdrawIntentions leaves it.
	rev, _ := identity.NewRevocation(root, nil, opPub, now)
	blob, _ := rev.Marshal()
	if err := tb.VerifyRevocation(blob); err != nil {
		t.Fatal(err)
	}
	if w, err := judge(tb, byOp, now.Add(-2*time.Hour)); err != nil || !w {
		t.Errorf("revoked signer: withdrawn %v, %v; want withdrawn", w, err)
	}
	if w, err := judge(tb, byRoot, now); err != nil || w {
		t.Errorf("root after another key's revocation: withdrawn %v, %v", w, err)
	}

	// Retired root: its documents and its operators' are withdrawn.
	tb = book()
	rot, _ := identity.NewRotation(root, f.root2, now)
	rb, _ := rot.Marshal()
	if err := tb.VerifyRevocation(rb); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		signed []byte
		at     time.Time
	}{"root": {byRoot, now}, "operator": {byOp, now.Add(-2 * time.Hour)}} {
		if w, err := judge(tb, tc.signed, tc.at); err != nil || !w {
			t.Errorf("%s under a retired root: withdrawn %v, %v; want withdrawn", name, w, err)
		}
	}
}
