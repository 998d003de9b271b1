package identity

import (
	"bytes"
	"crypto/ed25519"
	"time"
)

// MaxRotationSkew is how far in the future (relative to now) a rotation
// statement's time may lie and still be accepted.
const MaxRotationSkew = 5 * time.Minute

// Rotation replaces one trusted root by another. It is accepted when both
// keys signed it (over rotationDomain || CBOR(keys 1..4)), its time is not
// more than MaxRotationSkew ahead, and the old key is a trusted root; the
// old root is then retired for good (Verifier.Rotate).
//
// Wire form (CBOR map, integer keys): 1 version (1), 2 old root key, 3 new
// root key, 4 time (Unix seconds), 5 old root's signature, 6 new root's signature.
type Rotation struct {
	OldRoot, NewRoot           ed25519.PublicKey
	At                         time.Time // whole seconds
	OldSignature, NewSignature []byte
}

type wireRotation struct {
	Version      uint64 `cbor:"1,keyasint"`
	OldRoot      []byte `cbor:"2,keyasint"`
	NewRoot      []byte `cbor:"3,keyasint"`
	At           int64  `cbor:"4,keyasint"`
	OldSignature []byte `cbor:"5,keyasint,omitempty"`
	NewSignature []byte `cbor:"6,keyasint,omitempty"`
}

func (r *Rotation) wire(withSig bool) wireRotation {
	w := wireRotation{Version: wireVersion, OldRoot: r.OldRoot, NewRoot: r.NewRoot, At: r.At.Unix()}
	if withSig {
		w.OldSignature, w.NewSignature = r.OldSignature, r.NewSignature
	}
	return w
}

func (r *Rotation) tbs() ([]byte, error) {
	b, err := encode(r.wire(false))
	if err != nil {
		return nil, err
	}
	return append([]byte(rotationDomain), b...), nil
}

// NewRotation returns a statement, signed by both keys, that newRoot replaces oldRoot.
func NewRotation(oldRoot, newRoot ed25519.PrivateKey, at time.Time) (*Rotation, error) {
	if len(oldRoot) != ed25519.PrivateKeySize || len(newRoot) != ed25519.PrivateKeySize {
		return nil, errorf(ErrInvalid, "rotation needs two Ed25519 private keys")
	}
	r := &Rotation{
		OldRoot: oldRoot.Public().(ed25519.PublicKey),
		NewRoot: newRoot.Public().(ed25519.PublicKey),
		At:      at.Truncate(time.Second).UTC(),
	}
	if bytes.Equal(r.OldRoot, r.NewRoot) {
		return nil, errorf(ErrInvalid, "old and new root are the same key")
	}
	msg, err := r.tbs()
	if err != nil {
		return nil, err
	}
	r.OldSignature = ed25519.Sign(oldRoot, msg)
	r.NewSignature = ed25519.Sign(newRoot, msg)
	return r, nil
}

// Marshal returns the statement's canonical CBOR encoding.
func (r *Rotation) Marshal() ([]byte, error) { return encode(r.wire(true)) }

// UnmarshalRotation decodes a rotation statement (syntax only; Verifier.Rotate checks it).
func UnmarshalRotation(b []byte) (*Rotation, error) {
	var w wireRotation
	if err := decodeCanonical(b, MaxRotationSize, "rotation", &w); err != nil {
		return nil, err
	}
	if len(w.OldRoot) != ed25519.PublicKeySize || len(w.NewRoot) != ed25519.PublicKeySize ||
		len(w.OldSignature) != ed25519.SignatureSize || len(w.NewSignature) != ed25519.SignatureSize {
		return nil, errorf(ErrMalformed, "rotation: a key or signature has the wrong size")
	}
	return &Rotation{
		OldRoot: w.OldRoot, NewRoot: w.NewRoot, At: time.Unix(w.At, 0).UTC(),
		OldSignature: w.OldSignature, NewSignature: w.NewSignature,
	}, nil
}

// Rotate applies a rotation statement: OldRoot stops being trusted, for
// good, and NewRoot becomes trusted unless an accepted rotation retired it
// already; chains issued by the old root must be reissued. A retired root
// never comes back, so replaying an old statement rolls nothing back, and
// the outcome of a chain of rotations (R0→R1, R1→R2) does not depend on
// the order they are applied in, as long as each is retried once the
// root it names is trusted: applying R1→R2 first (R1 trusted) and R0→R1
// then retires R0 without trusting R1 again. Applying a statement that is
// already in effect (its old root retired and its new root trusted or
// retired) is a no-op.
//
// Errors: ErrUntrusted when the old root is not trusted and was never
// retired (it may become trusted by a rotation not applied yet: retry the
// statement then); ErrInvalid when the old root was retired by another
// rotation (two rotations of one root: only the first applied counts);
// ErrNotYetValid when dated more than MaxRotationSkew after now.
func (v *Verifier) Rotate(stmt *Rotation, now time.Time) error {
	if stmt == nil || len(stmt.OldRoot) != ed25519.PublicKeySize || len(stmt.NewRoot) != ed25519.PublicKeySize {
		return errorf(ErrMalformed, "rotation is missing a key")
	}
	if bytes.Equal(stmt.OldRoot, stmt.NewRoot) {
		return errorf(ErrInvalid, "rotation: old and new root are the same key")
	}
	msg, err := stmt.tbs()
	if err != nil {
		return err
	}
	if !ed25519.Verify(stmt.OldRoot, msg, stmt.OldSignature) {
		return errorf(ErrBadSignature, "rotation: the old root's signature does not verify")
	}
	if !ed25519.Verify(stmt.NewRoot, msg, stmt.NewSignature) {
		return errorf(ErrBadSignature, "rotation: the new root's signature does not verify")
	}
	if stmt.At.After(now.Add(MaxRotationSkew)) {
		return errorf(ErrNotYetValid, "rotation is dated %s, after now (%s)", fmtTime(stmt.At), fmtTime(now))
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	ok, nk := keyOf(stmt.OldRoot), keyOf(stmt.NewRoot)
	_, oldRetired := v.retired[ok]
	_, newRetired := v.retired[nk]
	if oldRetired {
		if newRetired || v.isRootLocked(stmt.NewRoot) {
			return nil // already in effect
		}
		return errorf(ErrInvalid, "rotation: old root %s was retired by a rotation to another key", NodeID(stmt.OldRoot))
	}
	if !v.isRootLocked(stmt.OldRoot) {
		return errorf(ErrUntrusted, "rotation: old root %s is not a trusted root", NodeID(stmt.OldRoot))
	}
	roots := v.roots[:0:0]
	for _, r := range v.roots {
		if !bytes.Equal(r, stmt.OldRoot) {
			roots = append(roots, r)
		}
	}
	if !newRetired && !v.isRootLocked(stmt.NewRoot) {
		roots = append(roots, bytes.Clone(stmt.NewRoot))
	}
	v.roots = roots
	v.retired[ok] = stmt.At
	v.invalidateLocked()
	return nil
}

// RetiredAt reports whether an accepted rotation retired root, and the
// time of that rotation.
func (v *Verifier) RetiredAt(root ed25519.PublicKey) (time.Time, bool) {
	if len(root) != ed25519.PublicKeySize {
		return time.Time{}, false
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	at, ok := v.retired[keyOf(root)]
	return at, ok
}

// HasRetiredRoots reports whether an accepted rotation retired a root.
func (v *Verifier) HasRetiredRoots() bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return len(v.retired) > 0
}
