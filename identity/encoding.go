package identity

import (
	"bytes"
	"encoding/pem"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Wire format version of every structure in this package.
const wireVersion = 1

// Domain-separation prefixes: each signature covers prefix || CBOR(to-be-signed),
// so a signature made for one kind of structure never verifies as another.
const (
	certDomain       = "peerd/identity/v1 certificate\x00"
	envelopeDomain   = "peerd/identity/v1 envelope\x00"
	revocationDomain = "peerd/identity/v1 revocation\x00"
	rotationDomain   = "peerd/identity/v1 rotation\x00"
)

// Size bounds for decoders of untrusted bytes.
const (
	// MaxChainDepth is the most links a chain may have.
	MaxChainDepth = 8
	// MaxCertificateSize bounds one encoded certificate.
	MaxCertificateSize = 8 << 10
	// MaxChainSize bounds one encoded chain.
	MaxChainSize = MaxChainDepth*MaxCertificateSize + 16
	// MaxPayloadSize bounds an envelope's payload.
	MaxPayloadSize = 8 << 20
	// MaxEnvelopeSize bounds one encoded envelope.
	MaxEnvelopeSize = MaxPayloadSize + MaxChainSize + 1024
	// MaxRevocationSize bounds one encoded revocation.
	MaxRevocationSize = MaxChainSize + 1024
	// MaxRotationSize bounds one encoded rotation statement.
	MaxRotationSize = 1024
	// MaxPatterns bounds the service patterns and the KV prefixes of one certificate.
	MaxPatterns = 64
	// MaxPatternLen bounds one service pattern or KV prefix, in bytes.
	MaxPatternLen = 256
	// MaxNameLen bounds a certificate's subject name, in bytes.
	MaxNameLen = 253
	// MaxTypeLen bounds an envelope type, in bytes.
	MaxTypeLen = 64
)

var (
	encMode = mustEncMode()
	decMode = mustDecMode(false)
	// peekMode decodes only the version key and ignores the rest, so that a
	// structure from a newer version reports "unknown version", not
	// "unknown field".
	peekMode = mustDecMode(true)
)

func mustEncMode() cbor.EncMode {
	m, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic("identity: cbor encode options: " + err.Error()) // static options; a broken invariant
	}
	return m
}

func mustDecMode(lenient bool) cbor.DecMode {
	opts := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		MaxNestedLevels:  8,
		MaxArrayElements: 256,
		MaxMapPairs:      16,
	}
	if !lenient {
		opts.ExtraReturnErrors = cbor.ExtraDecErrorUnknownField
	}
	m, err := opts.DecMode()
	if err != nil {
		panic("identity: cbor decode options: " + err.Error()) // static options; a broken invariant
	}
	return m
}

// encode returns the core deterministic CBOR encoding of v.
func encode(v any) ([]byte, error) {
	b, err := encMode.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("identity: encode: %w", err)
	}
	return b, nil
}

type versionOnly struct {
	Version uint64 `cbor:"1,keyasint"`
}

// decodeCanonical decodes data (at most max bytes) into v, which must be a
// pointer to a wire struct whose key 1 is the version, and insists that data
// is exactly the core deterministic encoding of the result. The canonical
// check makes every accepted structure have one encoding, so hashes and
// signatures over encodings are unambiguous.
func decodeCanonical(data []byte, max int, what string, v any) error {
	if len(data) > max {
		return errorf(ErrMalformed, "%s is %d bytes, more than the limit of %d", what, len(data), max)
	}
	if len(data) == 0 {
		return errorf(ErrMalformed, "%s is empty", what)
	}
	var ver versionOnly
	if err := peekMode.Unmarshal(data, &ver); err != nil {
		return errorf(ErrMalformed, "%s: %v", what, err)
	}
	if ver.Version != wireVersion {
		return errorf(ErrUnknownVersion, "%s has version %d, this build reads version %d", what, ver.Version, wireVersion)
	}
	if err := decMode.Unmarshal(data, v); err != nil {
		return errorf(ErrMalformed, "%s: %v", what, err)
	}
	again, err := encMode.Marshal(v)
	if err != nil {
		return errorf(ErrMalformed, "%s: %v", what, err)
	}
	if !bytes.Equal(again, data) {
		return errorf(ErrMalformed, "%s is not in canonical (core deterministic) CBOR encoding", what)
	}
	return nil
}

// armor wraps data in a PEM-like text block of the given type.
func armor(typ string, headers map[string]string, data []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Headers: headers, Bytes: data})
}

// dearmorStrict returns the bytes inside a PEM-like block of type typ and
// insists that text is exactly what armor would produce for them: any
// changed, added or removed byte is an error, never a silently different
// reading.
func dearmorStrict(text []byte, typ, what string) ([]byte, error) {
	blk, rest := pem.Decode(text)
	if blk == nil {
		return nil, errorf(ErrMalformed, "%s: no %q block found", what, "-----BEGIN "+typ+"-----")
	}
	if blk.Type != typ {
		return nil, errorf(ErrMalformed, "%s: block type is %q, want %q", what, blk.Type, typ)
	}
	if len(rest) != 0 {
		return nil, errorf(ErrMalformed, "%s: unexpected bytes after the END line", what)
	}
	if len(blk.Headers) != 0 {
		return nil, errorf(ErrMalformed, "%s: unexpected header lines", what)
	}
	if !bytes.Equal(armor(typ, nil, blk.Bytes), text) {
		// Also catches base64 with non-zero padding bits, which pem accepts.
		return nil, errorf(ErrMalformed, "%s: block is not in canonical form (64-column base64, no extra spaces)", what)
	}
	return blk.Bytes, nil
}
