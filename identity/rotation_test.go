package identity

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRotation(t *testing.T) {
	f := newFixture(t)
	newRoot := testKey("new-root")
	stmt, err := NewRotation(f.root, newRoot, t0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := stmt.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	stmt, err = UnmarshalRotation(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.v.Verify(pubOf(f.node), f.nodeChain, t0); err != nil {
		t.Fatal(err)
	}
	if err := f.v.Rotate(stmt, t0); err != nil {
		t.Fatal(err)
	}
	roots := f.v.Roots()
	if len(roots) != 1 || !roots[0].Equal(pubOf(newRoot)) {
		t.Fatalf("roots after rotation: %d", len(roots))
	}
	// The cached verdict for the old root's chain is gone.
	if _, err := f.v.Verify(pubOf(f.node), f.nodeChain, t0); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("old chain after rotation: %v", err)
	}
	if err := f.v.Rotate(stmt, t0); err != nil {
		t.Fatalf("re-applying the same statement: %v", err)
	}
	// Chains reissued under the new root verify.
	reissued, err := Issue(newRoot, nil, pubOf(f.node), "web-01", Constraints{Services: []string{"web"}}, t0.Add(-time.Hour), t0.Add(time.Hour), 5)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.v.Verify(pubOf(f.node), reissued, t0); err != nil {
		t.Fatalf("chain from the new root: %v", err)
	}
	// Rotating back, then replaying the first statement, must not roll back.
	back, _ := NewRotation(newRoot, f.root, t0.Add(time.Hour))
	if err := f.v.Rotate(back, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := f.v.Rotate(stmt, t0.Add(time.Hour)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "replay") {
		t.Fatalf("replayed old statement: %v", err)
	}
}

func TestRotateRejects(t *testing.T) {
	f := newFixture(t)
	newRoot, stranger := testKey("new-root"), testKey("stranger")
	cases := []struct {
		name     string
		build    func() *Rotation
		now      time.Time
		sentinel error
		detail   string
	}{
		{"old root not trusted", func() *Rotation { r, _ := NewRotation(stranger, newRoot, t0); return r }, t0, ErrUntrusted, "not a trusted root"},
		{"old signature bad", func() *Rotation {
			r, _ := NewRotation(f.root, newRoot, t0)
			r.OldSignature[1] ^= 1
			return r
		}, t0, ErrBadSignature, "old root"},
		{"new signature missing", func() *Rotation {
			r, _ := NewRotation(f.root, newRoot, t0)
			r.NewSignature = nil
			return r
		}, t0, ErrBadSignature, "new root"},
		{"new key swapped", func() *Rotation {
			r, _ := NewRotation(f.root, newRoot, t0)
			r.NewRoot = pubOf(stranger)
			return r
		}, t0, ErrBadSignature, ""},
		{"from the future", func() *Rotation { r, _ := NewRotation(f.root, newRoot, t0.Add(time.Hour)); return r }, t0, ErrNotYetValid, "after now"},
		{"nil", func() *Rotation { return nil }, t0, ErrMalformed, "missing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := f.v.Rotate(c.build(), c.now)
			if !errors.Is(err, c.sentinel) || !strings.Contains(err.Error(), c.detail) {
				t.Fatalf("err = %v, want %v containing %q", err, c.sentinel, c.detail)
			}
		})
	}
	if _, err := NewRotation(f.root, f.root, t0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("same key: %v", err)
	}
	if len(f.v.Roots()) != 1 || !f.v.IsRoot(pubOf(f.root)) {
		t.Fatal("a rejected rotation changed the roots")
	}
	for name, b := range map[string][]byte{"empty": nil, "garbage": {0xa1, 0x01}, "oversized": make([]byte, MaxRotationSize+1)} {
		if _, err := UnmarshalRotation(b); err == nil {
			t.Errorf("%s decoded", name)
		}
	}
}
