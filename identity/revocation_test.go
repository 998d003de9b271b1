package identity

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRevocationRoundTrip(t *testing.T) {
	f := newFixture(t)
	r, err := NewRevocation(f.ops, f.opsChain, pubOf(f.node), t0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalRevocation(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := back.Marshal()
	if string(b) != string(b2) {
		t.Fatal("encoding changed across a round trip")
	}
	if err := f.v.AddRevocation(back, t0); err != nil {
		t.Fatal(err)
	}
	if err := f.v.AddRevocation(back, t0); err != nil {
		t.Fatalf("adding twice: %v", err)
	}
	if n := len(f.v.Revocations()); n != 1 {
		t.Fatalf("%d revocations held, want 1", n)
	}
	// Revoked by its ancestor, not by a root: IsRevoked does not say so, Verify does.
	if f.v.IsRevoked(pubOf(f.node)) {
		t.Fatal("IsRevoked reports a delegated revocation")
	}
	if _, err := f.v.Verify(pubOf(f.node), f.nodeChain, t0); !errors.Is(err, ErrRevoked) {
		t.Fatalf("verify: %v", err)
	}
}

// A revoked key's whole subtree stops verifying, whichever link below it we ask about.
func TestRevocationSubtree(t *testing.T) {
	f := newFixture(t)
	leaf2 := testKey("leaf2")
	mid := testKey("mid")
	// root -> ops(depth 1) cannot host two levels, so build root -> a(2) -> b(1) -> c(0).
	a, err := Issue(f.root, nil, pubOf(f.ops), "a", Constraints{Services: []string{"*"}, DelegateDepth: 2}, t0.Add(-time.Hour), t0.Add(time.Hour), 1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Issue(f.ops, a, pubOf(mid), "b", Constraints{Services: []string{"*"}, DelegateDepth: 1}, t0.Add(-time.Hour), t0.Add(time.Hour), 2)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Issue(mid, b, pubOf(leaf2), "c", Constraints{Services: []string{"x"}}, t0.Add(-time.Hour), t0.Add(time.Hour), 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.v.Verify(pubOf(leaf2), c, t0); err != nil {
		t.Fatal(err)
	}
	addRevocation(t, f.v, f.ops, a, pubOf(mid)) // a revokes b
	for _, tc := range []struct {
		chain Chain
		link  int
	}{{b, 1}, {c, 1}} {
		_, err := f.v.Verify(tc.chain.Leaf().Subject, tc.chain, t0)
		var le *LinkError
		if !errors.As(err, &le) || le.Index != tc.link || !errors.Is(err, ErrRevoked) {
			t.Fatalf("verify %q: %v", tc.chain.Leaf().Name, err)
		}
	}
	if _, err := f.v.Verify(pubOf(f.ops), a, t0); err != nil {
		t.Fatalf("the revoker itself: %v", err)
	}
}

// A delegated revocation applies only where its issuer is an ancestor.
func TestRevocationScopedToAncestors(t *testing.T) {
	f := newFixture(t)
	sib := testKey("sibling")
	sibChain, err := Issue(f.root, nil, pubOf(sib), "sib", Constraints{DelegateDepth: 1}, t0.Add(-time.Hour), t0.Add(time.Hour), 9)
	if err != nil {
		t.Fatal(err)
	}
	addRevocation(t, f.v, sib, sibChain, pubOf(f.node)) // accepted, but sib is not node's ancestor
	if _, err := f.v.Verify(pubOf(f.node), f.nodeChain, t0); err != nil {
		t.Fatalf("a sibling's revocation took effect: %v", err)
	}
}

func TestAddRevocationRejects(t *testing.T) {
	f := newFixture(t)
	node := pubOf(f.node)
	other := testKey("other")
	stranger := testKey("stranger")
	cases := []struct {
		name     string
		build    func() *Revocation
		sentinel error
		detail   string
	}{
		{"bad signature", func() *Revocation {
			r, _ := NewRevocation(f.root, nil, node, t0)
			r.Signature[0] ^= 1
			return r
		}, ErrBadSignature, "does not verify"},
		{"subject changed", func() *Revocation {
			r, _ := NewRevocation(f.root, nil, node, t0)
			r.Subject = pubOf(f.ops)
			return r
		}, ErrBadSignature, "does not verify"},
		{"untrusted issuer without chain", func() *Revocation {
			r, _ := NewRevocation(stranger, nil, node, t0)
			return r
		}, ErrUntrusted, "not a trusted root"},
		{"issuer chain invalid", func() *Revocation {
			// Signed after the issuer's certificate ended.
			r, _ := NewRevocation(f.ops, f.opsChain, node, t0.Add(365*24*time.Hour))
			return r
		}, ErrExpired, "issuer chain"},
		{"dated in the future", func() *Revocation {
			r, _ := NewRevocation(f.ops, f.opsChain, node, t0.Add(time.Hour))
			return r
		}, ErrNotYetValid, "after now"},
		{"issuer may not delegate", func() *Revocation {
			r, _ := NewRevocation(f.node, f.nodeChain, pubOf(other), t0)
			return r
		}, ErrNotAncestor, "may not delegate"},
		{"revoking a root", func() *Revocation {
			r, _ := NewRevocation(f.ops, f.opsChain, pubOf(f.root), t0)
			return r
		}, ErrNotAncestor, "rotate it instead"},
		{"nil", func() *Revocation { return nil }, ErrMalformed, "missing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			now := t0
			if c.name == "issuer chain invalid" {
				now = t0.Add(365 * 24 * time.Hour)
			}
			err := f.v.AddRevocation(c.build(), now)
			if !errors.Is(err, c.sentinel) || !strings.Contains(err.Error(), c.detail) {
				t.Fatalf("err = %v, want %v containing %q", err, c.sentinel, c.detail)
			}
		})
	}
	if _, err := NewRevocation(f.node, nil, pubOf(f.node), t0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("self revocation: %v", err)
	}
	if _, err := NewRevocation(f.node, f.opsChain, node, t0); !errors.Is(err, ErrBrokenChain) {
		t.Fatalf("mismatched issuer chain: %v", err)
	}
	if len(f.v.Revocations()) != 0 {
		t.Fatal("a rejected revocation was kept")
	}
}

func TestUnmarshalRevocationRejects(t *testing.T) {
	f := newFixture(t)
	r, _ := NewRevocation(f.root, nil, pubOf(f.node), t0)
	good, _ := r.Marshal()
	for name, b := range map[string][]byte{
		"empty":     nil,
		"garbage":   []byte("xyz"),
		"truncated": good[:len(good)-3],
		"trailing":  append(append([]byte(nil), good...), 1),
		"oversized": make([]byte, MaxRevocationSize+1),
	} {
		if _, err := UnmarshalRevocation(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestDelegatedRevocationJudgedWhenSigned: a revocation by an operator key
// is judged by what its issuer was when it signed it, so the agents that
// get it before and after the root revokes the operator (or its
// certificate ends, or its root is retired) agree (docs/SIM.md finding 8).
// One signed after the operator was revoked is refused.
func TestDelegatedRevocationJudgedWhenSigned(t *testing.T) {
	node := func(f *fixture) ed25519.PublicKey { return pubOf(f.node) }
	delegated := func(f *fixture, at time.Time) *Revocation {
		r, err := NewRevocation(f.ops, f.opsChain, node(f), at)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	revokeOps := func(f *fixture, at time.Time) {
		r, err := NewRevocation(f.root, nil, pubOf(f.ops), at)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.v.AddRevocation(r, at); err != nil {
			t.Fatal(err)
		}
	}
	held := func(f *fixture) bool {
		for _, r := range f.v.Revocations() {
			if bytes.Equal(r.Subject, node(f)) && bytes.Equal(r.Issuer, pubOf(f.ops)) {
				return true
			}
		}
		return false
	}

	// Signed at t0+1m, the operator revoked at t0+2m, the delegated
	// revocation arriving after that: accepted.
	f := newFixture(t)
	revokeOps(f, t0.Add(2*time.Minute))
	if err := f.v.AddRevocation(delegated(f, t0.Add(time.Minute)), t0.Add(3*time.Minute)); err != nil {
		t.Fatalf("signed before its issuer was revoked: %v", err)
	}
	if !held(f) {
		t.Fatal("the delegated revocation is not held")
	}
	// Signed after the operator's revocation: refused.
	f = newFixture(t)
	revokeOps(f, t0.Add(2*time.Minute))
	if err := f.v.AddRevocation(delegated(f, t0.Add(3*time.Minute)), t0.Add(3*time.Minute)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("signed after its issuer was revoked: %v, want ErrRevoked", err)
	}
	// Signed while the operator's certificate was valid, arriving after
	// it ended: accepted.
	f = newFixture(t)
	if err := f.v.AddRevocation(delegated(f, t0.Add(time.Minute)), t0.Add(60*24*time.Hour)); err != nil {
		t.Fatalf("signed before its issuer's certificate ended: %v", err)
	}
	// Signed before the operator's root was retired, arriving after.
	f = newFixture(t)
	newRoot := testKey("root2")
	rot, err := NewRotation(f.root, newRoot, t0.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.v.Rotate(rot, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := f.v.AddRevocation(delegated(f, t0.Add(time.Minute)), t0.Add(3*time.Minute)); err != nil {
		t.Fatalf("signed before its issuer's root was retired: %v", err)
	}
	if err := f.v.AddRevocation(delegated(f, t0.Add(3*time.Minute)), t0.Add(3*time.Minute)); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("signed after its issuer's root was retired: %v, want ErrUntrusted", err)
	}
}
