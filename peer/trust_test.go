package peer

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
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
