package identity

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// maxCacheEntries bounds the verdict cache; when full, an arbitrary entry is dropped.
const maxCacheEntries = 8192

type keyID [ed25519.PublicKeySize]byte

func keyOf(pub ed25519.PublicKey) (k keyID) {
	copy(k[:], pub)
	return k
}

// Verifier decides whether keys and chains are trusted. It holds the trusted
// roots, the accepted revocations and rotations, and a cache of positive
// verdicts keyed by chain hash. It is safe for concurrent use. It never
// reads the clock: every method that depends on time takes now.
type Verifier struct {
	mu sync.RWMutex // guards every field below
	// roots are the trusted root keys, in the order they were added.
	roots []ed25519.PublicKey
	// revokedBy maps a revoked key to the keys that revoked it. A revocation
	// applies to a chain when its revoker is a root or an issuer above (or
	// at) the revoked link in that chain.
	revokedBy map[keyID]map[keyID]bool
	// absolute holds keys revoked by a then-trusted root; they are revoked in
	// every chain.
	absolute map[keyID]bool
	// revocations are the accepted records, in acceptance order.
	revocations []*Revocation
	// retired holds the roots an accepted rotation retired, with the
	// rotation's time: they are never trusted again, whatever statement
	// names them as a new root.
	retired map[keyID]time.Time
	// gen counts changes to roots and revocations; cache entries from an
	// older generation are never used.
	gen   uint64
	cache map[[32]byte]cacheEntry
	// sigs remembers certificates whose signature verified; it has its own lock.
	sigs sigCache
}

type cacheEntry struct {
	gen  uint64
	caps Capabilities
}

// NewVerifier returns a Verifier trusting roots. Keys of the wrong size are ignored.
func NewVerifier(roots ...ed25519.PublicKey) *Verifier {
	v := &Verifier{
		revokedBy: make(map[keyID]map[keyID]bool),
		absolute:  make(map[keyID]bool),
		retired:   make(map[keyID]time.Time),
		cache:     make(map[[32]byte]cacheEntry),
		sigs:      sigCache{ok: make(map[[32]byte]struct{})},
	}
	for _, r := range roots {
		if len(r) == ed25519.PublicKeySize && !v.isRootLocked(r) {
			v.roots = append(v.roots, bytes.Clone(r))
		}
	}
	return v
}

// Roots returns the trusted root keys.
func (v *Verifier) Roots() []ed25519.PublicKey {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]ed25519.PublicKey, len(v.roots))
	for i, r := range v.roots {
		out[i] = bytes.Clone(r)
	}
	return out
}

// IsRoot reports whether pub is a trusted root.
func (v *Verifier) IsRoot(pub ed25519.PublicKey) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.isRootLocked(pub)
}

func (v *Verifier) isRootLocked(pub ed25519.PublicKey) bool {
	for _, r := range v.roots {
		if bytes.Equal(r, pub) {
			return true
		}
	}
	return false
}

// IsRevoked reports whether pub was revoked by a trusted root, which
// revokes it in every chain. A revocation by a delegated issuer applies only
// to chains in which that issuer is an ancestor of pub, so only Verify can
// tell; IsRevoked does not report it.
func (v *Verifier) IsRevoked(pub ed25519.PublicKey) bool {
	if len(pub) != ed25519.PublicKeySize {
		return false
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.absolute[keyOf(pub)]
}

// Verify checks that chain delegates to subject from a trusted root and is
// valid at now, and returns subject's capabilities. An empty chain is valid
// when subject is a trusted root. Failures are *LinkError values (or errors
// wrapping a sentinel) naming the link and the rule.
//
// Positive verdicts are cached by chain hash until the roots or the
// revocations change or now leaves the chain's validity window.
func (v *Verifier) Verify(subject ed25519.PublicKey, chain Chain, now time.Time) (Capabilities, error) {
	if len(subject) != ed25519.PublicKeySize {
		return Capabilities{}, errorf(ErrMalformed, "subject key has %d bytes, want %d", len(subject), ed25519.PublicKeySize)
	}
	if len(chain) == 0 {
		v.mu.RLock()
		ok := v.isRootLocked(subject)
		v.mu.RUnlock()
		if !ok {
			return Capabilities{}, errorf(ErrUntrusted, "key %s has no certificate chain and is not a trusted root", NodeID(subject))
		}
		return rootCapabilities(subject), nil
	}
	h, err := chain.hash()
	if err != nil {
		return Capabilities{}, err
	}
	v.mu.RLock()
	e, hit := v.cache[h]
	gen := v.gen
	if hit && e.gen == gen && bytes.Equal(e.caps.Key, subject) && !now.Before(e.caps.NotBefore) && now.Before(e.caps.NotAfter) {
		v.mu.RUnlock()
		return e.caps, nil
	}
	caps, err := v.verifyLocked(subject, chain, now)
	v.mu.RUnlock()
	if err != nil {
		return Capabilities{}, err
	}
	caps.ChainHash = h
	v.mu.Lock()
	if v.gen == gen {
		if len(v.cache) >= maxCacheEntries {
			for k := range v.cache {
				delete(v.cache, k)
				break
			}
		}
		v.cache[h] = cacheEntry{gen: gen, caps: caps}
	}
	v.mu.Unlock()
	return caps, nil
}

// verifyLocked applies every chain rule. v.mu must be held (read or write).
func (v *Verifier) verifyLocked(subject ed25519.PublicKey, chain Chain, now time.Time) (Capabilities, error) {
	if len(chain) > MaxChainDepth {
		return Capabilities{}, errorf(ErrChainTooLong, "chain has %d links, at most %d allowed", len(chain), MaxChainDepth)
	}
	parent := rootConstraints
	var nb, na time.Time
	seen := make(map[keyID]bool, len(chain)+1)
	for i, c := range chain {
		if c == nil {
			return Capabilities{}, linkErr(i, nil, ErrMalformed, "missing certificate")
		}
		if err := c.check(); err != nil {
			return Capabilities{}, linkErr(i, c, ErrMalformed, "%v", err)
		}
		if i == 0 {
			if !v.isRootLocked(c.Issuer) {
				return Capabilities{}, linkErr(i, c, ErrUntrusted, "issuer %s is not a trusted root", NodeID(c.Issuer))
			}
			seen[keyOf(c.Issuer)] = true
		} else {
			prev := chain[i-1]
			if !bytes.Equal(c.Issuer, prev.Subject) {
				return Capabilities{}, linkErr(i, c, ErrBrokenChain, "issuer %s is not the subject of link %d (%s)", NodeID(c.Issuer), i-1, NodeID(prev.Subject))
			}
		}
		if err := v.sigs.check(c); err != nil {
			return Capabilities{}, linkErr(i, c, ErrBadSignature, "%v", err)
		}
		sk := keyOf(c.Subject)
		if seen[sk] {
			return Capabilities{}, linkErr(i, c, ErrBrokenChain, "subject %s appears earlier in the chain", NodeID(c.Subject))
		}
		seen[sk] = true
		if i > 0 {
			prev := chain[i-1]
			if c.NotBefore.Before(prev.NotBefore) || c.NotAfter.After(prev.NotAfter) {
				return Capabilities{}, linkErr(i, c, ErrWidened, "validity %s..%s is not within the parent's %s..%s",
					fmtTime(c.NotBefore), fmtTime(c.NotAfter), fmtTime(prev.NotBefore), fmtTime(prev.NotAfter))
			}
		}
		if detail, s := c.Constraints.delegatedBy(parent); s != nil {
			return Capabilities{}, linkErr(i, c, s, "%s", detail)
		}
		if err := c.Constraints.narrowedBy(parent); err != nil {
			return Capabilities{}, linkErr(i, c, ErrWidened, "%v", err)
		}
		if now.Before(c.NotBefore) {
			return Capabilities{}, linkErr(i, c, ErrNotYetValid, "valid from %s, now is %s", fmtTime(c.NotBefore), fmtTime(now))
		}
		if !now.Before(c.NotAfter) {
			return Capabilities{}, linkErr(i, c, ErrExpired, "expired at %s, now is %s", fmtTime(c.NotAfter), fmtTime(now))
		}
		if revoker, ok := v.revokedInLocked(chain, i); ok {
			return Capabilities{}, linkErr(i, c, ErrRevoked, "subject %s was revoked by %s", NodeID(c.Subject), revoker)
		}
		parent = c.Constraints
		if i == 0 || c.NotBefore.After(nb) {
			nb = c.NotBefore
		}
		if i == 0 || c.NotAfter.Before(na) {
			na = c.NotAfter
		}
	}
	leaf := chain[len(chain)-1]
	if !bytes.Equal(leaf.Subject, subject) {
		return Capabilities{}, linkErr(len(chain)-1, leaf, ErrBrokenChain, "leaf subject %s is not the key being verified (%s)", NodeID(leaf.Subject), NodeID(subject))
	}
	return Capabilities{
		Key:            leaf.Subject,
		Name:           leaf.Name,
		Services:       leaf.Constraints.Services,
		KVPrefixes:     leaf.Constraints.KVPrefixes,
		SignIntentions: leaf.Constraints.SignIntentions,
		DelegateDepth:  leaf.Constraints.DelegateDepth,
		NotBefore:      nb,
		NotAfter:       na,
	}, nil
}

// revokedInLocked reports whether link i's subject is revoked in chain: by
// a root (absolute) or by the issuer of link i or of a link above it.
func (v *Verifier) revokedInLocked(chain Chain, i int) (string, bool) {
	sk := keyOf(chain[i].Subject)
	if v.absolute[sk] {
		return "a root", true
	}
	by := v.revokedBy[sk]
	if len(by) == 0 {
		return "", false
	}
	for j := 0; j <= i; j++ {
		if by[keyOf(chain[j].Issuer)] {
			return "its ancestor " + NodeID(chain[j].Issuer), true
		}
	}
	return "", false
}

// invalidateLocked drops every cached verdict. v.mu must be held for writing.
func (v *Verifier) invalidateLocked() {
	v.gen++
	clear(v.cache)
}

// sigCache remembers the SHA-256 of full certificate encodings (fields and
// signature) whose signature verified. A signature's validity never changes,
// so entries need no invalidation; links shared by many chains (the
// root-issued operator certificate above every node) are checked once.
type sigCache struct {
	mu sync.Mutex // guards ok
	ok map[[32]byte]struct{}
}

func (s *sigCache) check(c *Certificate) error {
	full, msg, err := c.signedParts()
	if err != nil {
		return err
	}
	h := sha256.Sum256(full)
	s.mu.Lock()
	_, hit := s.ok[h]
	s.mu.Unlock()
	if hit {
		return nil
	}
	if !ed25519.Verify(c.Issuer, msg, c.Signature) {
		return fmt.Errorf("signature does not verify under issuer %s", NodeID(c.Issuer))
	}
	s.mu.Lock()
	if len(s.ok) >= maxCacheEntries {
		for k := range s.ok {
			delete(s.ok, k)
			break
		}
	}
	s.ok[h] = struct{}{}
	s.mu.Unlock()
	return nil
}

func (s *sigCache) reset() {
	s.mu.Lock()
	clear(s.ok)
	s.mu.Unlock()
}

// Unrevoked returns a Verifier that trusts v's roots and the roots v
// retired, and knows no revocation: what a chain was worth before any
// trust statement cut it. A caller that judges a signed document once for
// good (a replicated intention) uses it to tell a document that was never
// valid from one whose signer was cut off since, so that the judgement
// does not depend on whether the document or the statement arrived first.
func (v *Verifier) Unrevoked() *Verifier {
	v.mu.RLock()
	defer v.mu.RUnlock()
	c := NewVerifier(v.roots...)
	for k := range v.retired {
		c.roots = append(c.roots, ed25519.PublicKey(bytes.Clone(k[:])))
	}
	return c
}

// Clone returns a Verifier with the same roots, retired roots and
// revocations and an empty cache: a scratch copy to judge a statement's
// effect before applying it.
func (v *Verifier) Clone() *Verifier {
	v.mu.RLock()
	defer v.mu.RUnlock()
	c := NewVerifier(v.roots...)
	for k, by := range v.revokedBy {
		c.revokedBy[k] = maps.Clone(by)
	}
	maps.Copy(c.absolute, v.absolute)
	maps.Copy(c.retired, v.retired)
	c.revocations = slices.Clone(v.revocations)
	return c
}
