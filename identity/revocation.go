package identity

import (
	"bytes"
	"crypto/ed25519"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// Revocation revokes a key (not a certificate): every chain in which the key
// appears below the revocation's issuer stops verifying, so revoking a key
// invalidates its whole subtree. It is signed by its issuer over
// revocationDomain || CBOR(revocation without key 6).
//
// Wire form (CBOR map, integer keys): 1 version (1), 2 issuer key (32
// bytes), 3 issuer chain (array of certificates; empty for a root), 4
// subject key (32 bytes), 5 time (Unix seconds), 6 signature (64 bytes).
type Revocation struct {
	Issuer      ed25519.PublicKey // a root, or a key that may delegate
	IssuerChain Chain             // the issuer's chain; empty when Issuer is a root
	Subject     ed25519.PublicKey // the revoked key
	At          time.Time         // when it was issued (whole seconds, informational)
	Signature   []byte
}

type wireRevocation struct {
	Version     uint64            `cbor:"1,keyasint"`
	Issuer      []byte            `cbor:"2,keyasint"`
	IssuerChain []cbor.RawMessage `cbor:"3,keyasint"`
	Subject     []byte            `cbor:"4,keyasint"`
	At          int64             `cbor:"5,keyasint"`
	Signature   []byte            `cbor:"6,keyasint,omitempty"`
}

func (r *Revocation) wire(withSig bool) (wireRevocation, error) {
	raws := make([]cbor.RawMessage, len(r.IssuerChain))
	for i, c := range r.IssuerChain {
		if c == nil {
			return wireRevocation{}, errorf(ErrInvalid, "revocation issuer chain link %d is nil", i)
		}
		b, err := c.encoding()
		if err != nil {
			return wireRevocation{}, err
		}
		raws[i] = b
	}
	w := wireRevocation{Version: wireVersion, Issuer: r.Issuer, IssuerChain: raws, Subject: r.Subject, At: r.At.Unix()}
	if withSig {
		w.Signature = r.Signature
	}
	return w, nil
}

func (r *Revocation) tbs() ([]byte, error) {
	w, err := r.wire(false)
	if err != nil {
		return nil, err
	}
	b, err := encode(w)
	if err != nil {
		return nil, err
	}
	return append([]byte(revocationDomain), b...), nil
}

// NewRevocation returns a revocation of subject signed by issuer, whose own
// chain is issuerChain (empty for a root).
func NewRevocation(issuer ed25519.PrivateKey, issuerChain Chain, subject ed25519.PublicKey, at time.Time) (*Revocation, error) {
	if len(issuer) != ed25519.PrivateKeySize {
		return nil, errorf(ErrInvalid, "issuer private key has %d bytes, want %d", len(issuer), ed25519.PrivateKeySize)
	}
	if len(subject) != ed25519.PublicKeySize {
		return nil, errorf(ErrInvalid, "subject key has %d bytes, want %d", len(subject), ed25519.PublicKeySize)
	}
	if len(issuerChain) > MaxChainDepth {
		return nil, errorf(ErrChainTooLong, "issuer chain has %d links, at most %d allowed", len(issuerChain), MaxChainDepth)
	}
	pub := issuer.Public().(ed25519.PublicKey)
	if leaf := issuerChain.Leaf(); leaf != nil && !bytes.Equal(leaf.Subject, pub) {
		return nil, errorf(ErrBrokenChain, "the issuer key %s is not the subject of its chain's leaf", NodeID(pub))
	}
	if bytes.Equal(pub, subject) {
		return nil, errorf(ErrInvalid, "a key cannot revoke itself")
	}
	r := &Revocation{Issuer: pub, IssuerChain: issuerChain, Subject: bytes.Clone(subject), At: at.Truncate(time.Second).UTC()}
	msg, err := r.tbs()
	if err != nil {
		return nil, err
	}
	r.Signature = ed25519.Sign(issuer, msg)
	return r, nil
}

// Marshal returns the revocation's canonical CBOR encoding.
func (r *Revocation) Marshal() ([]byte, error) {
	w, err := r.wire(true)
	if err != nil {
		return nil, err
	}
	return encode(w)
}

// UnmarshalRevocation decodes a revocation. It checks syntax only;
// Verifier.AddRevocation checks the signature and the issuer's authority.
func UnmarshalRevocation(b []byte) (*Revocation, error) {
	var w wireRevocation
	if err := decodeCanonical(b, MaxRevocationSize, "revocation", &w); err != nil {
		return nil, err
	}
	chain, err := chainFromRaw(w.IssuerChain, nil)
	if err != nil {
		return nil, wrap(err, "revocation issuer chain")
	}
	switch {
	case len(w.Issuer) != ed25519.PublicKeySize:
		return nil, errorf(ErrMalformed, "revocation: issuer key has %d bytes", len(w.Issuer))
	case len(w.Subject) != ed25519.PublicKeySize:
		return nil, errorf(ErrMalformed, "revocation: subject key has %d bytes", len(w.Subject))
	case len(w.Signature) != ed25519.SignatureSize:
		return nil, errorf(ErrMalformed, "revocation: signature has %d bytes", len(w.Signature))
	}
	return &Revocation{
		Issuer:      ed25519.PublicKey(w.Issuer),
		IssuerChain: chain,
		Subject:     ed25519.PublicKey(w.Subject),
		At:          time.Unix(w.At, 0).UTC(),
		Signature:   w.Signature,
	}, nil
}

// AddRevocation accepts r when its signature verifies and its issuer is a
// trusted root, or holds a chain valid at now that lets it delegate (only
// such a key can be an ancestor of another). A root's revocation applies to
// every chain; a delegated issuer's applies to chains in which the issuer
// is above the revoked key. Adding a revocation already held is a no-op.
// Roots cannot be revoked; rotate them instead.
func (v *Verifier) AddRevocation(r *Revocation, now time.Time) error {
	if r == nil || len(r.Issuer) != ed25519.PublicKeySize || len(r.Subject) != ed25519.PublicKeySize {
		return errorf(ErrMalformed, "revocation is missing its issuer or subject key")
	}
	msg, err := r.tbs()
	if err != nil {
		return err
	}
	if !ed25519.Verify(r.Issuer, msg, r.Signature) {
		return errorf(ErrBadSignature, "revocation of %s: signature does not verify under issuer %s", NodeID(r.Subject), NodeID(r.Issuer))
	}
	if v.IsRoot(r.Subject) {
		return errorf(ErrNotAncestor, "revocation of %s: a trusted root cannot be revoked; rotate it instead", NodeID(r.Subject))
	}
	absolute := false
	if v.IsRoot(r.Issuer) {
		absolute = true
	} else {
		if len(r.IssuerChain) == 0 {
			return errorf(ErrUntrusted, "revocation of %s: issuer %s is not a trusted root and brings no chain", NodeID(r.Subject), NodeID(r.Issuer))
		}
		// The issuer's authority is judged when it signed, not now: a
		// revocation its issuer signed before being revoked itself (or
		// before its certificate ended, or its root was retired) applies
		// on every agent, whichever statement reaches it first (docs/SIM.md
		// finding 8). A revoked issuer can still backdate one, but it
		// only ever applies to chains through that issuer, which its own
		// revocation cuts anyway: it can move their cut earlier, no more.
		if r.At.After(now.Add(MaxRotationSkew)) {
			return errorf(ErrNotYetValid, "revocation of %s is dated %s, after now (%s)", NodeID(r.Subject), fmtTime(r.At), fmtTime(now))
		}
		caps, err := v.asOf(r.At).Verify(r.Issuer, r.IssuerChain, r.At)
		if err != nil {
			return wrap(err, "revocation of %s: issuer chain at %s", NodeID(r.Subject), fmtTime(r.At))
		}
		if caps.DelegateDepth < 1 {
			return errorf(ErrNotAncestor, "revocation of %s: issuer %s may not delegate, so it is nobody's ancestor", NodeID(r.Subject), NodeID(r.Issuer))
		}
	}
	sk, ik := keyOf(r.Subject), keyOf(r.Issuer)
	v.mu.Lock()
	defer v.mu.Unlock()
	if absolute {
		if v.absolute[sk] {
			return nil
		}
		v.absolute[sk] = true
	} else {
		if v.revokedBy[sk][ik] {
			return nil
		}
		if v.revokedBy[sk] == nil {
			v.revokedBy[sk] = make(map[keyID]bool)
		}
		v.revokedBy[sk][ik] = true
	}
	v.revocations = append(v.revocations, r)
	v.invalidateLocked()
	return nil
}

// Revocations returns the accepted revocations in acceptance order, for
// persisting and forwarding them.
func (v *Verifier) Revocations() []*Revocation {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return append([]*Revocation(nil), v.revocations...)
}

// asOf returns a Verifier as v stood at t, as far as v can tell: its roots
// and those retired after t, and the revocations dated t or earlier.
func (v *Verifier) asOf(t time.Time) *Verifier {
	v.mu.RLock()
	defer v.mu.RUnlock()
	c := NewVerifier(v.roots...)
	for k, at := range v.retired {
		if at.After(t) {
			c.roots = append(c.roots, ed25519.PublicKey(bytes.Clone(k[:])))
		}
	}
	for _, r := range v.revocations {
		if r.At.After(t) {
			continue
		}
		sk, ik := keyOf(r.Subject), keyOf(r.Issuer)
		if c.isRootLocked(r.Issuer) {
			c.absolute[sk] = true
			continue
		}
		if c.revokedBy[sk] == nil {
			c.revokedBy[sk] = make(map[keyID]bool)
		}
		c.revokedBy[sk][ik] = true
	}
	return c
}
