package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/fxamacker/cbor/v2"
)

// Kind says what a stream carries; the opener writes it in the header and
// the acceptor dispatches on it to the Handler registered with Handle.
type Kind uint8

// Stream kinds. Values are wire-visible: never renumber.
const (
	KindSync  Kind = 1 // gossip dissemination and anti-entropy
	KindProxy Kind = 2 // one proxied TCP connection of the data plane
)

func (k Kind) String() string {
	switch k {
	case KindSync:
		return "sync"
	case KindProxy:
		return "proxy"
	default:
		return fmt.Sprintf("kind(%d)", uint8(k))
	}
}

// HeaderVersion is the only stream header layout this build speaks.
const HeaderVersion = 1

// Header is written first on every stream by the side that opens it
// (docs/WIRE.md "## transport"): a big-endian uint16 length, then a CBOR
// array [Version, Kind, Meta].
type Header struct {
	// Version of the header layout. OpenStream sets HeaderVersion.
	Version uint8
	// Kind selects the handler on the accepting side.
	Kind Kind
	// Meta is kind-specific (for example the proxy's destination and source
	// service), by convention itself CBOR. Nil is sent as an empty byte string.
	Meta []byte
}

// Errors of header decoding. Stream resets carry the matching error code.
var (
	ErrHeaderTooLarge     = errors.New("transport: stream header too large")
	ErrBadHeader          = errors.New("transport: malformed stream header")
	ErrUnsupportedVersion = errors.New("transport: unsupported stream header version")
	ErrUnknownKind        = errors.New("transport: no handler for stream kind")
)

// wireHeader is the CBOR shape of a version-1 header.
type wireHeader struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Kind    uint8
	Meta    []byte
}

var (
	headerEnc cbor.EncMode
	headerDec cbor.DecMode
)

func init() {
	var err error
	headerEnc, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err) // static options: a broken build, not input
	}
	headerDec, err = cbor.DecOptions{
		MaxNestedLevels:  4,
		MaxArrayElements: 16,
		MaxMapPairs:      16,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// appendHeader appends h's wire form (length prefix included) to b. It fails
// if the encoding exceeds max bytes.
func appendHeader(b []byte, h Header, max int) ([]byte, error) {
	meta := h.Meta
	if meta == nil {
		meta = []byte{}
	}
	enc, err := headerEnc.Marshal(wireHeader{Version: h.Version, Kind: uint8(h.Kind), Meta: meta})
	if err != nil {
		return b, fmt.Errorf("transport: encode stream header: %w", err)
	}
	if len(enc) > max || len(enc) > MaxHeaderSizeLimit {
		return b, fmt.Errorf("%w: %d bytes, limit %d", ErrHeaderTooLarge, len(enc), max)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(enc)))
	return append(b, enc...), nil
}

// readHeader reads one length-prefixed header from r, refusing bodies longer
// than max bytes before reading them.
func readHeader(r io.Reader, max int) (Header, error) {
	var lp [2]byte
	if _, err := io.ReadFull(r, lp[:]); err != nil {
		return Header{}, fmt.Errorf("transport: read stream header: %w", err)
	}
	n := int(binary.BigEndian.Uint16(lp[:]))
	if n > max {
		return Header{}, fmt.Errorf("%w: %d bytes, limit %d", ErrHeaderTooLarge, n, max)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return Header{}, fmt.Errorf("transport: read stream header: %w", err)
	}
	return decodeHeader(buf)
}

// decodeHeader decodes the CBOR body of a header (without length prefix).
// The version is read first so that a future layout is reported as
// ErrUnsupportedVersion rather than as malformed.
func decodeHeader(b []byte) (Header, error) {
	var elems []cbor.RawMessage
	if err := headerDec.Unmarshal(b, &elems); err != nil {
		return Header{}, fmt.Errorf("%w: %v", ErrBadHeader, err)
	}
	if len(elems) == 0 {
		return Header{}, fmt.Errorf("%w: empty array", ErrBadHeader)
	}
	var version uint64
	if err := headerDec.Unmarshal(elems[0], &version); err != nil {
		return Header{}, fmt.Errorf("%w: version: %v", ErrBadHeader, err)
	}
	if version != HeaderVersion {
		return Header{}, fmt.Errorf("%w: %d", ErrUnsupportedVersion, version)
	}
	var w wireHeader
	if err := headerDec.Unmarshal(b, &w); err != nil {
		return Header{}, fmt.Errorf("%w: %v", ErrBadHeader, err)
	}
	return Header{Version: w.Version, Kind: Kind(w.Kind), Meta: w.Meta}, nil
}
