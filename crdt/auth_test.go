package crdt

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// edSigner signs with a real Ed25519 key; its origin is the hex public key.
type edSigner struct{ priv ed25519.PrivateKey }

func (s edSigner) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.priv, msg), nil }

func newEdSigner(seed byte) (string, edSigner) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	return hex.EncodeToString(priv.Public().(ed25519.PublicKey)), edSigner{priv}
}

// testIntentionDoc is the test's signed intention format: a CBOR array of
// the intention and an Ed25519 signature by the intention key.
type testIntentionDoc struct {
	_   struct{} `cbor:",toarray"`
	In  []byte
	Sig []byte
}

// edAuth verifies Ed25519 origins (hex public keys) and applies simple
// rules: denied services and KV prefixes per origin, one intention key.
type edAuth struct {
	intentionKey ed25519.PublicKey
	denyService  map[string]bool // "origin/name"
	denyKVPrefix string
}

func (a *edAuth) VerifyOrigin(origin string, msg, sig []byte) error {
	pub, err := hex.DecodeString(origin)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("origin is not a hex Ed25519 key")
	}
	if !ed25519.Verify(pub, msg, sig) {
		return errors.New("signature does not verify")
	}
	return nil
}

func (a *edAuth) MayPublishService(origin, service string) bool {
	return !a.denyService[origin+"/"+service]
}

func (a *edAuth) MayWriteKV(origin, key string) bool {
	return a.denyKVPrefix == "" || !strings.HasPrefix(key, a.denyKVPrefix)
}

func (a *edAuth) VerifyIntention(signed []byte) (Intention, error) {
	var d testIntentionDoc
	if err := unmarshal(signed, &d); err != nil {
		return Intention{}, err
	}
	if !ed25519.Verify(a.intentionKey, d.In, d.Sig) {
		return Intention{}, errors.New("intention signature does not verify")
	}
	var in Intention
	return in, unmarshal(d.In, &in)
}

func (a *edAuth) VerifyRevocation(signed []byte) error {
	if !bytes.HasPrefix(signed, []byte("revoke:")) {
		return errors.New("not a revocation")
	}
	return nil
}

func signIntention(priv ed25519.PrivateKey, in Intention) []byte {
	b, err := marshal(&in)
	if err != nil {
		panic(err)
	}
	d, err := marshal(&testIntentionDoc{In: b, Sig: ed25519.Sign(priv, b)})
	if err != nil {
		panic(err)
	}
	return d
}

// hashSigner is a cheap fake for property tests: the "signature" is a hash
// of the origin and the message; hashAuth checks it and allows everything.
type hashSigner struct{ origin string }

func (s hashSigner) Sign(msg []byte) ([]byte, error) { return fakeSig(s.origin, msg), nil }

func fakeSig(origin string, msg []byte) []byte {
	h := sha256.New()
	h.Write([]byte(origin))
	h.Write(msg)
	return h.Sum(nil)[:16]
}

type hashAuth struct{}

func (hashAuth) VerifyOrigin(origin string, msg, sig []byte) error {
	if !bytes.Equal(sig, fakeSig(origin, msg)) {
		return errors.New("bad fake signature")
	}
	return nil
}
func (hashAuth) MayPublishService(string, string) bool { return true }
func (hashAuth) MayWriteKV(string, string) bool        { return true }

// Intentions in property tests are plain CBOR (no signature).
func (hashAuth) VerifyIntention(signed []byte) (Intention, error) {
	var in Intention
	return in, unmarshal(signed, &in)
}
func (hashAuth) VerifyRevocation([]byte) error { return nil }
