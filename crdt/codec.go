package crdt

import (
	"crypto/sha256"
	"fmt"
)

// deltaVersion is the version of the delta wire format.
const deltaVersion = 1

// MaxDeltaBytes bounds an encoded delta accepted by DecodeDelta.
const MaxDeltaBytes = 64 << 20

// wireDelta is a Delta on the wire: CBOR array [version, entries, horizon].
type wireDelta struct {
	_       struct{} `cbor:",toarray"`
	V       uint8
	Entries []Entry
	Horizon map[string]Range
}

// EncodeDelta encodes d as deterministic CBOR.
func EncodeDelta(d *Delta) ([]byte, error) {
	if d == nil {
		return nil, fmt.Errorf("crdt: encode nil delta")
	}
	b, err := marshal(&wireDelta{V: deltaVersion, Entries: d.Entries, Horizon: d.Horizon})
	if err != nil {
		return nil, fmt.Errorf("crdt: encode delta: %w", err)
	}
	return b, nil
}

// DecodeDelta decodes an untrusted delta. It checks only the framing and
// sizes; Merge verifies every entry.
func DecodeDelta(b []byte) (*Delta, error) {
	if len(b) > MaxDeltaBytes {
		return nil, fmt.Errorf("%w: delta of %d bytes exceeds %d", ErrMalformed, len(b), MaxDeltaBytes)
	}
	var w wireDelta
	if err := unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("crdt: decode delta: %w", err)
	}
	if w.V != deltaVersion {
		return nil, fmt.Errorf("%w: delta version %d (want %d)", ErrMalformed, w.V, deltaVersion)
	}
	for i, e := range w.Entries {
		if len(e.Header) == 0 || len(e.Header) > maxHeaderLen || len(e.Sig) > maxSigLen {
			return nil, fmt.Errorf("%w: delta entry %d: header %d bytes, signature %d bytes", ErrMalformed, i, len(e.Header), len(e.Sig))
		}
	}
	for o, rg := range w.Horizon {
		if o == "" || len(o) > maxOriginLen || rg.To <= rg.From {
			return nil, fmt.Errorf("%w: delta horizon for origin of %d bytes: (%d, %d]", ErrMalformed, len(o), rg.From, rg.To)
		}
	}
	return &Delta{Entries: w.Entries, Horizon: w.Horizon}, nil
}

// DecodeEntryHeader decodes and validates the signed header of an entry,
// returning its kind, key and dot (for tools, logs and fuzzing).
func DecodeEntryHeader(b []byte) (Kind, string, Dot, error) {
	h, err := decodeHeader(b)
	return h.Kind, h.Key, h.dot(), err
}

// EntryHLC returns the HLC timestamp in an entry's signed header (for
// checkers and tools: a revoked origin's KV records count when stamped
// before the revocation).
func EntryHLC(header []byte) (HLC, error) {
	h, err := decodeHeader(header)
	return h.HLC, err
}

// SignedMessage is what an entry's origin signs: the record sign domain
// followed by the header (for callers that check an entry's signature
// before merging it, as peer's trust book does with node records).
func SignedMessage(header []byte) []byte { return signedMessage(header) }

// BodyMatches reports whether body is the one a valid header names by its
// body hash.
func BodyMatches(header, body []byte) bool {
	h, err := decodeHeader(header)
	return err == nil && len(h.BodyHash) == sha256.Size && hashMatches(h.BodyHash, body)
}
