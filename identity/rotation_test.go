package identity

import (
	"crypto/ed25519"
	"errors"
	"slices"
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
	// A retired root never comes back: a rotation to it retires its old
	// root and trusts nothing new, and replaying the first statement
	// rolls nothing back.
	third := testKey("third-root")
	toThird, _ := NewRotation(newRoot, third, t0.Add(time.Hour))
	if err := f.v.Rotate(toThird, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if at, ok := f.v.RetiredAt(pubOf(newRoot)); !ok || !at.Equal(t0.Add(time.Hour)) {
		t.Fatalf("RetiredAt(new root) = %v, %v", at, ok)
	}
	if err := f.v.Rotate(stmt, t0.Add(time.Hour)); err != nil {
		t.Fatalf("replayed old statement: %v (want a no-op)", err)
	}
	back, _ := NewRotation(third, f.root, t0.Add(2*time.Hour))
	if err := f.v.Rotate(back, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if roots := f.v.Roots(); len(roots) != 0 {
		t.Fatalf("%d roots after rotating back to a retired root, want none", len(roots))
	}
	// A second rotation of a retired root (a fork) is refused for good.
	fork, _ := NewRotation(f.root, testKey("fork"), t0)
	if err := f.v.Rotate(fork, t0.Add(2*time.Hour)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("fork of a retired root: %v, want ErrInvalid", err)
	}
}

// TestRotationsAnyOrder: a chain of rotations R0→R1→R2→R3 applied in any
// order, each statement retried while some other one applies, ends on R3
// alone, whether the verifier starts with R0 only or with every root (the
// operator adds the next root to every agent's trust before rotating).
func TestRotationsAnyOrder(t *testing.T) {
	keys := []ed25519.PrivateKey{testKey("r0"), testKey("r1"), testKey("r2"), testKey("r3")}
	var stmts []*Rotation
	for i := range 3 {
		s, err := NewRotation(keys[i], keys[i+1], t0.Add(time.Duration(i)*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		stmts = append(stmts, s)
	}
	orders := [][]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}
	for _, configured := range [][]int{{0}, {0, 1, 2, 3}, {0, 2}} {
		for _, order := range orders {
			var roots []ed25519.PublicKey
			for _, i := range configured {
				roots = append(roots, pubOf(keys[i]))
			}
			v := NewVerifier(roots...)
			held := slices.Clone(order)
			for progress := true; progress; {
				progress = false
				for j := 0; j < len(held); j++ {
					err := v.Rotate(stmts[held[j]], t0.Add(time.Hour))
					switch {
					case err == nil:
						held = slices.Delete(held, j, j+1)
						j--
						progress = true
					case !errors.Is(err, ErrUntrusted):
						t.Fatalf("roots %v order %v: statement %d: %v", configured, order, held[j], err)
					}
				}
			}
			if got := v.Roots(); len(held) != 0 || len(got) != 1 || !got[0].Equal(pubOf(keys[3])) {
				t.Errorf("roots %v order %v: %d roots, %d statements unapplied; want R3 alone", configured, order, len(got), len(held))
			}
		}
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
