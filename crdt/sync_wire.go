package crdt

import (
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// MaxHeadsBytes bounds an encoded version vector accepted by DecodeHeads.
const MaxHeadsBytes = 4 << 20

// EncodeHeads encodes heads for the anti-entropy wire: a CBOR map from
// origin to counter.
func (r *Replica) EncodeHeads() []byte {
	b, err := cbor.Marshal(r.Heads())
	if err != nil {
		// A map of strings to integers always encodes.
		panic(fmt.Sprintf("crdt: encoding heads: %v", err))
	}
	return b
}

// DecodeHeads decodes heads written by EncodeHeads.
func DecodeHeads(b []byte) (VersionVector, error) {
	if len(b) > MaxHeadsBytes {
		return nil, fmt.Errorf("%w: heads of %d bytes", ErrMalformed, len(b))
	}
	var vv VersionVector
	if err := cbor.Unmarshal(b, &vv); err != nil {
		return nil, fmt.Errorf("%w: heads: %v", ErrMalformed, err)
	}
	return vv, nil
}

// MissingEncoded is DeltaSince for a replica whose heads arrived encoded,
// with every delta encoded for the wire.
func (r *Replica) MissingEncoded(remoteHeads []byte, maxBytes int) ([][]byte, error) {
	vv, err := DecodeHeads(remoteHeads)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, d := range r.DeltaSince(vv, maxBytes) {
		b, err := EncodeDelta(d)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}
