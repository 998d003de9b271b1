package gossip

import (
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// aeType is the kind of an anti-entropy message.
type aeType uint8

// Anti-entropy message types (wire values; never renumber).
const (
	aeDigestReq  aeType = 1 // "my digest is D"
	aeDigestResp aeType = 2 // "equal" or "different, here are my heads"
	aeSyncReq    aeType = 3 // "my heads are H; here is what you lack; send me what I lack"
	aeSyncResp   aeType = 4 // "here is what you lack (and my heads, if you have more)"
)

// Anti-entropy wire bounds.
const (
	// AEWireVersion is the version of the anti-entropy wire format.
	AEWireVersion = 1
	// MaxDigestSize bounds a replica digest.
	MaxDigestSize = 64
	// MaxHeadsSize bounds encoded heads (a version vector: ~50 bytes per
	// origin, so about 20,000 origins).
	MaxHeadsSize = 1 << 20
	// MaxChunkBytes bounds the batches carried by one anti-entropy message.
	MaxChunkBytes = 4 << 20
	// maxAEBatches bounds the number of batches in one message.
	maxAEBatches = 1 << 16
	maxAEWire    = MaxHeadsSize + MaxChunkBytes + 3*maxAEBatches + 1024
)

// aeMessage is one anti-entropy message (CBOR, integer keys).
type aeMessage struct {
	V       uint8    `cbor:"1,keyasint"`
	T       uint8    `cbor:"2,keyasint"`
	Digest  []byte   `cbor:"3,keyasint,omitempty"`
	Equal   bool     `cbor:"4,keyasint,omitempty"`
	Heads   []byte   `cbor:"5,keyasint,omitempty"`
	Batches [][]byte `cbor:"6,keyasint,omitempty"`
	Max     uint32   `cbor:"7,keyasint,omitempty"` // SyncReq: bytes the sender accepts back
	More    bool     `cbor:"8,keyasint,omitempty"` // the sender's batches were cut at the chunk limit
}

var aeDec cbor.DecMode

func init() {
	var err error
	aeDec, err = cbor.DecOptions{
		MaxNestedLevels:   4,
		MaxArrayElements:  maxAEBatches,
		MaxMapPairs:       16,
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

func encodeAE(m aeMessage) ([]byte, error) {
	m.V = AEWireVersion
	if err := m.validate(); err != nil {
		return nil, err
	}
	b, err := wireEnc.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("gossip: anti-entropy: encode: %w", err)
	}
	return b, nil
}

// decodeAE parses an anti-entropy message from an untrusted peer.
func decodeAE(b []byte) (aeMessage, error) {
	if len(b) > maxAEWire {
		return aeMessage{}, fmt.Errorf("%w: anti-entropy message of %d bytes", errWire, len(b))
	}
	var m aeMessage
	if err := aeDec.Unmarshal(b, &m); err != nil {
		return aeMessage{}, fmt.Errorf("%w: anti-entropy: %w", errWire, err)
	}
	if err := m.validate(); err != nil {
		return aeMessage{}, err
	}
	return m, nil
}

func (m aeMessage) validate() error {
	bad := func(what string) error {
		return fmt.Errorf("%w: anti-entropy type %d: %s", errWire, m.T, what)
	}
	if m.V != AEWireVersion {
		return fmt.Errorf("%w: anti-entropy: unsupported version %d", errWire, m.V)
	}
	if len(m.Digest) > MaxDigestSize {
		return bad("digest too long")
	}
	if len(m.Heads) > MaxHeadsSize {
		return bad("heads too long")
	}
	total := 0
	for _, b := range m.Batches {
		if len(b) == 0 {
			return bad("empty batch")
		}
		total += len(b)
	}
	if total > MaxChunkBytes {
		return bad("batches too large")
	}
	switch aeType(m.T) {
	case aeDigestReq:
		if len(m.Digest) == 0 || m.Equal || len(m.Heads) != 0 || len(m.Batches) != 0 || m.Max != 0 || m.More {
			return bad("malformed")
		}
	case aeDigestResp:
		if len(m.Digest) != 0 || len(m.Batches) != 0 || m.Max != 0 || m.More || (m.Equal && len(m.Heads) != 0) {
			return bad("malformed")
		}
	case aeSyncReq:
		if len(m.Digest) != 0 || m.Equal || m.Max == 0 || m.Max > MaxChunkBytes {
			return bad("malformed")
		}
	case aeSyncResp:
		if len(m.Digest) != 0 || m.Equal || m.Max != 0 {
			return bad("malformed")
		}
	default:
		return fmt.Errorf("%w: anti-entropy: unknown type %d", errWire, m.T)
	}
	return nil
}
