package identity

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"os"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// Chain is a delegation chain ordered from the certificate issued by a root
// to the leaf. The empty chain stands for a root key itself.
type Chain []*Certificate

// ChainBlockType is the PEM-like block type of a chain file.
const ChainBlockType = "PEERD CERTIFICATE CHAIN"

// Leaf returns the last certificate, or nil for the empty chain.
func (c Chain) Leaf() *Certificate {
	if len(c) == 0 {
		return nil
	}
	return c[len(c)-1]
}

// Marshal returns the chain's CBOR encoding: an array of certificate maps.
func (c Chain) Marshal() ([]byte, error) {
	if len(c) > MaxChainDepth {
		return nil, errorf(ErrChainTooLong, "chain has %d links, at most %d allowed", len(c), MaxChainDepth)
	}
	raws := make([]cbor.RawMessage, len(c))
	for i, cert := range c {
		if cert == nil {
			return nil, errorf(ErrInvalid, "chain link %d is nil", i)
		}
		b, err := cert.encoding()
		if err != nil {
			return nil, err
		}
		raws[i] = b
	}
	return encode(raws)
}

// Hash identifies the chain's exact bytes: SHA-256 over the byte "chain"
// length n followed by the SHA-256 of each certificate's canonical encoding,
// in order. Two chains have the same hash only if their encodings are
// identical. Verdicts are cached by it; it is cheap because each decoded or
// signed certificate keeps its own digest. A chain that cannot be encoded
// (nil link, too long) hashes to the zero value.
func (c Chain) Hash() [32]byte {
	h, _ := c.hash()
	return h
}

func (c Chain) hash() ([32]byte, error) {
	var buf [1 + MaxChainDepth*sha256.Size]byte
	if len(c) > MaxChainDepth {
		return [32]byte{}, errorf(ErrChainTooLong, "chain has %d links, at most %d allowed", len(c), MaxChainDepth)
	}
	buf[0] = byte(len(c))
	for i, cert := range c {
		if cert == nil {
			return [32]byte{}, errorf(ErrInvalid, "chain link %d is nil", i)
		}
		s, err := cert.sum()
		if err != nil {
			return [32]byte{}, err
		}
		copy(buf[1+i*sha256.Size:], s[:])
	}
	return sha256.Sum256(buf[:1+len(c)*sha256.Size]), nil
}

// UnmarshalChain decodes a chain encoded by Marshal. It checks syntax, not
// signatures or trust; Verifier.Verify does that.
func UnmarshalChain(b []byte) (Chain, error) {
	if len(b) > MaxChainSize {
		return nil, errorf(ErrMalformed, "chain is %d bytes, more than the limit of %d", len(b), MaxChainSize)
	}
	var raws []cbor.RawMessage
	if err := decMode.Unmarshal(b, &raws); err != nil {
		return nil, errorf(ErrMalformed, "chain: %v", err)
	}
	return chainFromRaw(raws, b)
}

// chainFromRaw decodes the certificates of an already split chain; whole,
// when not nil, is the chain's full encoding and must be canonical.
func chainFromRaw(raws []cbor.RawMessage, whole []byte) (Chain, error) {
	if len(raws) > MaxChainDepth {
		return nil, errorf(ErrChainTooLong, "chain has %d links, at most %d allowed", len(raws), MaxChainDepth)
	}
	c := make(Chain, len(raws))
	for i, r := range raws {
		cert, err := UnmarshalCertificate(r)
		if err != nil {
			return nil, wrap(err, "chain link %d", i)
		}
		c[i] = cert
	}
	if whole != nil {
		again, err := c.Marshal()
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(again, whole) {
			return nil, errorf(ErrMalformed, "chain is not in canonical CBOR encoding")
		}
	}
	return c, nil
}

// MarshalText returns the chain as a PEM-like text block, the chain file format.
func (c Chain) MarshalText() ([]byte, error) {
	b, err := c.Marshal()
	if err != nil {
		return nil, err
	}
	return armor(ChainBlockType, nil, b), nil
}

// ParseChainText decodes a chain file: the text block written by
// MarshalText, or the bare CBOR encoding. The text must be exactly as
// MarshalText writes it; any altered byte is an error.
func ParseChainText(text []byte) (Chain, error) {
	if len(text) > 2*MaxChainSize {
		return nil, errorf(ErrMalformed, "chain file is larger than %d bytes", 2*MaxChainSize)
	}
	b := text
	if bytes.HasPrefix(text, []byte("-----BEGIN ")) {
		var err error
		if b, err = dearmorStrict(text, ChainBlockType, "chain file"); err != nil {
			return nil, err
		}
	}
	c, err := UnmarshalChain(b)
	if err != nil {
		return nil, err
	}
	if len(c) == 0 {
		return nil, errorf(ErrMalformed, "chain file holds no certificate")
	}
	return c, nil
}

// WriteChainFile writes c to path (mode 0644) in the text format, replacing
// the file if it exists.
func WriteChainFile(path string, c Chain) error {
	if len(c) == 0 {
		return errorf(ErrInvalid, "refusing to write an empty chain")
	}
	text, err := c.MarshalText()
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, text, 0o644); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	return nil
}

// ReadChainFile reads a chain file written by WriteChainFile.
func ReadChainFile(path string) (Chain, error) {
	text, err := readBounded(path, 2*MaxChainSize)
	if err != nil {
		return nil, err
	}
	c, err := ParseChainText(text)
	if err != nil {
		return nil, wrap(err, "%s", path)
	}
	return c, nil
}

// Issue signs a certificate for subject with issuer and returns parent
// followed by it. parent is the issuer's own chain: empty when issuer is a
// root, otherwise a chain whose leaf subject is the issuer's public key.
// Issue refuses to sign what verification would reject for structural
// reasons: constraints or validity wider than the parent's, an issuer that
// may not delegate, a chain longer than MaxChainDepth. It does not check
// trust, revocation or the current time. Times are truncated to seconds.
func Issue(issuer ed25519.PrivateKey, parent Chain, subject ed25519.PublicKey, name string, c Constraints, notBefore, notAfter time.Time, serial uint64) (Chain, error) {
	if len(issuer) != ed25519.PrivateKeySize {
		return nil, errorf(ErrInvalid, "issuer private key has %d bytes, want %d", len(issuer), ed25519.PrivateKeySize)
	}
	if len(parent)+1 > MaxChainDepth {
		return nil, errorf(ErrChainTooLong, "issuing below a %d-link chain would exceed %d links", len(parent), MaxChainDepth)
	}
	cert := &Certificate{
		Version:     wireVersion,
		Serial:      serial,
		Subject:     bytes.Clone(subject),
		Name:        name,
		Constraints: cloneConstraints(c),
		NotBefore:   notBefore.Truncate(time.Second).UTC(),
		NotAfter:    notAfter.Truncate(time.Second).UTC(),
	}
	issuerPub := issuer.Public().(ed25519.PublicKey)
	pc := rootConstraints
	if leaf := parent.Leaf(); leaf != nil {
		if !bytes.Equal(leaf.Subject, issuerPub) {
			return nil, errorf(ErrBrokenChain, "the issuer key %s is not the subject of the parent chain's leaf (%s)", NodeID(issuerPub), NodeID(leaf.Subject))
		}
		pc = leaf.Constraints
		if cert.NotBefore.Before(leaf.NotBefore) || cert.NotAfter.After(leaf.NotAfter) {
			return nil, errorf(ErrWidened, "validity %s..%s is not within the parent's %s..%s", fmtTime(cert.NotBefore), fmtTime(cert.NotAfter), fmtTime(leaf.NotBefore), fmtTime(leaf.NotAfter))
		}
	}
	if err := cert.Constraints.validate(); err != nil {
		return nil, errorf(ErrInvalid, "certificate %q: %v", name, err)
	}
	if detail, s := cert.Constraints.delegatedBy(pc); s != nil {
		return nil, errorf(s, "certificate %q: %s", name, detail)
	}
	if err := cert.Constraints.narrowedBy(pc); err != nil {
		return nil, errorf(ErrWidened, "certificate %q: %v", name, err)
	}
	if err := cert.Sign(issuer); err != nil {
		return nil, err
	}
	out := make(Chain, 0, len(parent)+1)
	return append(append(out, parent...), cert), nil
}

func cloneConstraints(c Constraints) Constraints {
	c.Services = cloneNonEmpty(c.Services)
	c.KVPrefixes = cloneNonEmpty(c.KVPrefixes)
	return c
}

// cloneNonEmpty copies s, mapping an empty slice to nil so that encodings
// round-trip (empty lists are omitted on the wire).
func cloneNonEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return append([]string(nil), s...)
}
