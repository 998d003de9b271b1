package identity

import (
	"bytes"
	"crypto/ed25519"
	"fmt"

	"time"

	"github.com/fxamacker/cbor/v2"
)

// Envelope is a signed message: delta batches, intentions and revocations
// travel in envelopes. The signature covers envelopeDomain || CBOR{1:
// version, 2: type, 3: payload, 4: signer, 5: SHA-256 of the chain
// encoding}, so neither the type, the payload nor the attached chain can be
// swapped.
//
// Wire form (CBOR map, integer keys): 1 version (1), 2 type (text, 1..64
// printable ASCII bytes), 3 payload (bytes, at most MaxPayloadSize), 4
// signer key (32 bytes), 5 signer chain (array of certificates; empty for a
// root), 6 signature (64 bytes).
type Envelope struct {
	Type      string            // what the payload is, e.g. "peerd/delta"
	Payload   []byte            // opaque to this package
	Signer    ed25519.PublicKey // the signing key
	Chain     Chain             // the signer's chain; empty when Signer is a root
	Signature []byte
}

type wireEnvelope struct {
	Version   uint64            `cbor:"1,keyasint"`
	Type      string            `cbor:"2,keyasint"`
	Payload   []byte            `cbor:"3,keyasint"`
	Signer    []byte            `cbor:"4,keyasint"`
	Chain     []cbor.RawMessage `cbor:"5,keyasint"`
	Signature []byte            `cbor:"6,keyasint"`
}

type envelopeTBS struct {
	Version   uint64 `cbor:"1,keyasint"`
	Type      string `cbor:"2,keyasint"`
	Payload   []byte `cbor:"3,keyasint"`
	Signer    []byte `cbor:"4,keyasint"`
	ChainHash []byte `cbor:"5,keyasint"`
}

func validType(t string) error {
	if t == "" || len(t) > MaxTypeLen {
		return fmt.Errorf("envelope type must be 1..%d bytes", MaxTypeLen)
	}
	for i := 0; i < len(t); i++ {
		if t[i] <= ' ' || t[i] > '~' {
			return fmt.Errorf("envelope type %q: only printable ASCII without spaces", t)
		}
	}
	return nil
}

func envelopeMsg(typ string, payload []byte, signer ed25519.PublicKey, chainHash [32]byte) ([]byte, error) {
	if payload == nil {
		payload = []byte{} // a byte string on the wire, never null
	}
	b, err := encode(envelopeTBS{Version: wireVersion, Type: typ, Payload: payload, Signer: signer, ChainHash: chainHash[:]})
	if err != nil {
		return nil, err
	}
	return append([]byte(envelopeDomain), b...), nil
}

// Seal signs payload as an envelope of type typ with key, attaching chain
// (the key's chain; empty for a root key). Seal does not check the chain
// beyond its shape; the receiver's Open does.
func Seal(typ string, payload []byte, key ed25519.PrivateKey, chain Chain) (*Envelope, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, errorf(ErrInvalid, "signing key has %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	if err := validType(typ); err != nil {
		return nil, errorf(ErrInvalid, "%v", err)
	}
	if len(payload) > MaxPayloadSize {
		return nil, errorf(ErrInvalid, "payload is %d bytes, more than %d", len(payload), MaxPayloadSize)
	}
	pub := key.Public().(ed25519.PublicKey)
	if leaf := chain.Leaf(); leaf != nil && !bytes.Equal(leaf.Subject, pub) {
		return nil, errorf(ErrBrokenChain, "the signing key %s is not the subject of its chain's leaf (%s)", NodeID(pub), NodeID(leaf.Subject))
	}
	h, err := chain.hash()
	if err != nil {
		return nil, err
	}
	msg, err := envelopeMsg(typ, payload, pub, h)
	if err != nil {
		return nil, err
	}
	return &Envelope{Type: typ, Payload: payload, Signer: pub, Chain: chain, Signature: ed25519.Sign(key, msg)}, nil
}

// Open checks the envelope's signature and the signer's chain at now and
// returns the signer's capabilities. The caller then checks that the
// capabilities allow what the payload does.
func (v *Verifier) Open(e *Envelope, now time.Time) (Capabilities, error) {
	if e == nil {
		return Capabilities{}, errorf(ErrMalformed, "nil envelope")
	}
	if len(e.Signer) != ed25519.PublicKeySize || len(e.Signature) != ed25519.SignatureSize {
		return Capabilities{}, errorf(ErrMalformed, "envelope signer key or signature has the wrong size")
	}
	if err := validType(e.Type); err != nil {
		return Capabilities{}, errorf(ErrMalformed, "%v", err)
	}
	h, err := e.Chain.hash()
	if err != nil {
		return Capabilities{}, err
	}
	msg, err := envelopeMsg(e.Type, e.Payload, e.Signer, h)
	if err != nil {
		return Capabilities{}, err
	}
	if !ed25519.Verify(e.Signer, msg, e.Signature) {
		return Capabilities{}, errorf(ErrBadSignature, "envelope %q: signature does not verify under signer %s", e.Type, NodeID(e.Signer))
	}
	caps, err := v.Verify(e.Signer, e.Chain, now)
	if err != nil {
		return Capabilities{}, wrap(err, "envelope %q from %s", e.Type, NodeID(e.Signer))
	}
	return caps, nil
}

// Marshal returns the envelope's canonical CBOR encoding.
func (e *Envelope) Marshal() ([]byte, error) {
	raws := make([]cbor.RawMessage, len(e.Chain))
	for i, c := range e.Chain {
		if c == nil {
			return nil, errorf(ErrInvalid, "envelope chain link %d is nil", i)
		}
		b, err := c.encoding()
		if err != nil {
			return nil, err
		}
		raws[i] = b
	}
	payload := e.Payload
	if payload == nil {
		payload = []byte{}
	}
	return encode(wireEnvelope{Version: wireVersion, Type: e.Type, Payload: payload, Signer: e.Signer, Chain: raws, Signature: e.Signature})
}

// UnmarshalEnvelope decodes an envelope (syntax only; Verifier.Open checks it).
func UnmarshalEnvelope(b []byte) (*Envelope, error) {
	var w wireEnvelope
	if err := decodeCanonical(b, MaxEnvelopeSize, "envelope", &w); err != nil {
		return nil, err
	}
	if err := validType(w.Type); err != nil {
		return nil, errorf(ErrMalformed, "%v", err)
	}
	if w.Payload == nil {
		return nil, errorf(ErrMalformed, "envelope payload is missing or null")
	}
	if len(w.Payload) > MaxPayloadSize {
		return nil, errorf(ErrMalformed, "envelope payload is %d bytes, more than %d", len(w.Payload), MaxPayloadSize)
	}
	if len(w.Signer) != ed25519.PublicKeySize || len(w.Signature) != ed25519.SignatureSize {
		return nil, errorf(ErrMalformed, "envelope signer key or signature has the wrong size")
	}
	chain, err := chainFromRaw(w.Chain, nil)
	if err != nil {
		return nil, wrap(err, "envelope chain")
	}
	return &Envelope{Type: w.Type, Payload: w.Payload, Signer: w.Signer, Chain: chain, Signature: w.Signature}, nil
}
