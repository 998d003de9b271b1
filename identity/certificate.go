package identity

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"
)

// Certificate delegates rights from Issuer to Subject. It is signed by the
// issuer over certDomain || CBOR(certificate without key 9).
//
// A Certificate is immutable once signed or decoded: it keeps the encoding it
// was signed or decoded with, which Chain.Hash and Chain.Marshal use and which
// verification checks against the fields.
type Certificate struct {
	Version     int               // wire version, 1
	Serial      uint64            // chosen by the issuer, for the operator's records
	Issuer      ed25519.PublicKey // the signing key: a root or the previous link's subject
	Subject     ed25519.PublicKey // the key receiving the rights
	Name        string            // the subject's name, e.g. "web-01" (node name or operator)
	Constraints Constraints       // what the subject may do
	NotBefore   time.Time         // first instant of validity (whole seconds, UTC)
	NotAfter    time.Time         // end of validity, exclusive (whole seconds, UTC)
	Signature   []byte            // Ed25519 signature by Issuer

	raw    []byte   // full canonical encoding, set by Sign and UnmarshalCertificate
	rawSum [32]byte // SHA-256 of raw, valid when raw != nil
}

// wireCertificate is the CBOR form of a certificate (integer map keys).
type wireCertificate struct {
	Version     uint64          `cbor:"1,keyasint"`
	Serial      uint64          `cbor:"2,keyasint"`
	Issuer      []byte          `cbor:"3,keyasint"`
	Subject     []byte          `cbor:"4,keyasint"`
	Name        string          `cbor:"5,keyasint"`
	Constraints wireConstraints `cbor:"6,keyasint"`
	NotBefore   int64           `cbor:"7,keyasint"` // Unix seconds
	NotAfter    int64           `cbor:"8,keyasint"` // Unix seconds
	Signature   []byte          `cbor:"9,keyasint,omitempty"`
}

type wireConstraints struct {
	Services       []string `cbor:"1,keyasint,omitempty"`
	KVPrefixes     []string `cbor:"2,keyasint,omitempty"`
	SignIntentions bool     `cbor:"3,keyasint,omitempty"`
	DelegateDepth  uint64   `cbor:"4,keyasint,omitempty"`
}

func (c *Certificate) wire(withSig bool) wireCertificate {
	w := wireCertificate{
		Version: uint64(c.Version),
		Serial:  c.Serial,
		Issuer:  c.Issuer,
		Subject: c.Subject,
		Name:    c.Name,
		Constraints: wireConstraints{
			Services:       c.Constraints.Services,
			KVPrefixes:     c.Constraints.KVPrefixes,
			SignIntentions: c.Constraints.SignIntentions,
			DelegateDepth:  uint64(max(c.Constraints.DelegateDepth, 0)),
		},
		NotBefore: c.NotBefore.Unix(),
		NotAfter:  c.NotAfter.Unix(),
	}
	if withSig {
		w.Signature = c.Signature
	}
	return w
}

// check validates every field except the signature.
func (c *Certificate) check() error {
	switch {
	case c.Version != wireVersion:
		return fmt.Errorf("version %d, want %d", c.Version, wireVersion)
	case len(c.Issuer) != ed25519.PublicKeySize:
		return fmt.Errorf("issuer key has %d bytes, want %d", len(c.Issuer), ed25519.PublicKeySize)
	case len(c.Subject) != ed25519.PublicKeySize:
		return fmt.Errorf("subject key has %d bytes, want %d", len(c.Subject), ed25519.PublicKeySize)
	case c.NotBefore.Unix() < 0 || c.NotAfter.Unix() > maxUnixTime:
		return fmt.Errorf("validity times must lie between 1970 and 9999")
	case !c.NotBefore.Before(c.NotAfter):
		return fmt.Errorf("not-before %s is not before not-after %s", fmtTime(c.NotBefore), fmtTime(c.NotAfter))
	case !c.NotBefore.Equal(c.NotBefore.Truncate(time.Second)) || !c.NotAfter.Equal(c.NotAfter.Truncate(time.Second)):
		return fmt.Errorf("validity times must be whole seconds")
	}
	if err := validName(c.Name); err != nil {
		return err
	}
	return c.Constraints.validate()
}

// maxUnixTime is 9999-12-31T23:59:59Z; later times do not round-trip through time.Time arithmetic safely.
const maxUnixTime = 253402300799

func validName(n string) error {
	if n == "" {
		return fmt.Errorf("empty subject name")
	}
	if len(n) > MaxNameLen {
		return fmt.Errorf("subject name longer than %d bytes", MaxNameLen)
	}
	if !utf8.ValidString(n) {
		return fmt.Errorf("subject name is not valid UTF-8")
	}
	for _, r := range n {
		if unicode.IsControl(r) || unicode.IsSpace(r) || unicode.Is(unicode.Cf, r) {
			return fmt.Errorf("subject name %q contains a space, control or format character", n)
		}
	}
	return nil
}

// tbs returns the bytes the issuer signs.
func (c *Certificate) tbs() ([]byte, error) {
	b, err := encode(c.wire(false))
	if err != nil {
		return nil, err
	}
	return append([]byte(certDomain), b...), nil
}

// Sign fills in Version (when 0) and Issuer, checks every field, and signs
// the certificate with issuer. It does not check the certificate against a
// parent; Issue does. Sign is for tools and tests; use Issue.
func (c *Certificate) Sign(issuer ed25519.PrivateKey) error {
	if len(issuer) != ed25519.PrivateKeySize {
		return errorf(ErrInvalid, "issuer private key has %d bytes, want %d", len(issuer), ed25519.PrivateKeySize)
	}
	if c.Version == 0 {
		c.Version = wireVersion
	}
	c.Issuer = issuer.Public().(ed25519.PublicKey)
	if err := c.check(); err != nil {
		return errorf(ErrInvalid, "certificate %q: %v", c.Name, err)
	}
	msg, err := c.tbs()
	if err != nil {
		return err
	}
	c.Signature = ed25519.Sign(issuer, msg)
	raw, err := encode(c.wire(true))
	if err != nil {
		return err
	}
	c.raw, c.rawSum = raw, sha256.Sum256(raw)
	return nil
}

// Marshal returns the certificate's canonical CBOR encoding.
func (c *Certificate) Marshal() ([]byte, error) {
	if c.raw != nil {
		return bytes.Clone(c.raw), nil
	}
	return encode(c.wire(true))
}

// encoding returns the canonical encoding without copying; callers must not modify it.
func (c *Certificate) encoding() ([]byte, error) {
	if c.raw != nil {
		return c.raw, nil
	}
	return encode(c.wire(true))
}

// sum returns SHA-256 of the certificate's canonical encoding.
func (c *Certificate) sum() ([32]byte, error) {
	if c.raw != nil {
		return c.rawSum, nil
	}
	b, err := encode(c.wire(true))
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(b), nil
}

// UnmarshalCertificate decodes one certificate. It checks the syntax of
// every field but not the signature; Verifier.Verify does that.
func UnmarshalCertificate(b []byte) (*Certificate, error) {
	var w wireCertificate
	if err := decodeCanonical(b, MaxCertificateSize, "certificate", &w); err != nil {
		return nil, err
	}
	if w.Constraints.DelegateDepth > MaxChainDepth {
		return nil, errorf(ErrMalformed, "certificate: delegate depth %d outside 0..%d", w.Constraints.DelegateDepth, MaxChainDepth-1)
	}
	c := &Certificate{
		Version: int(w.Version),
		Serial:  w.Serial,
		Issuer:  ed25519.PublicKey(w.Issuer),
		Subject: ed25519.PublicKey(w.Subject),
		Name:    w.Name,
		Constraints: Constraints{
			Services:       w.Constraints.Services,
			KVPrefixes:     w.Constraints.KVPrefixes,
			SignIntentions: w.Constraints.SignIntentions,
			DelegateDepth:  int(w.Constraints.DelegateDepth),
		},
		NotBefore: time.Unix(w.NotBefore, 0).UTC(),
		NotAfter:  time.Unix(w.NotAfter, 0).UTC(),
		Signature: w.Signature,
		raw:       bytes.Clone(b),
		rawSum:    sha256.Sum256(b),
	}
	if err := c.check(); err != nil {
		return nil, errorf(ErrMalformed, "certificate: %v", err)
	}
	if len(c.Signature) != ed25519.SignatureSize {
		return nil, errorf(ErrMalformed, "certificate: signature has %d bytes, want %d", len(c.Signature), ed25519.SignatureSize)
	}
	return c, nil
}

// signedParts returns the certificate's full encoding (from its fields) and
// the message its issuer signed. It fails when the fields no longer match
// the encoding the certificate was decoded or signed with.
func (c *Certificate) signedParts() (full, msg []byte, err error) {
	if len(c.Issuer) != ed25519.PublicKeySize || len(c.Signature) != ed25519.SignatureSize {
		return nil, nil, fmt.Errorf("issuer key or signature has the wrong size")
	}
	if msg, err = c.tbs(); err != nil {
		return nil, nil, err
	}
	if full, err = encode(c.wire(true)); err != nil {
		return nil, nil, err
	}
	if c.raw != nil && !bytes.Equal(full, c.raw) {
		return nil, nil, fmt.Errorf("certificate fields were modified after it was signed or decoded")
	}
	return full, msg, nil
}

func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }
