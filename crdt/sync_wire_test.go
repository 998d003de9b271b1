package crdt

import (
	"errors"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

func TestHeadsOnTheWire(t *testing.T) {
	r := newEdReplica(t, 1)
	if _, err := r.KVPut("k", []byte("v"), 0, t0); err != nil {
		t.Fatal(err)
	}
	vv, err := DecodeHeads(r.EncodeHeads())
	if err != nil {
		t.Fatal(err)
	}
	if vv[r.Origin()] == 0 || len(vv) != len(r.Heads()) {
		t.Fatalf("heads %v, want %v", vv, r.Heads())
	}
	empty, err := cbor.Marshal(VersionVector{})
	if err != nil {
		t.Fatal(err)
	}
	missing, err := r.MissingEncoded(empty, 0)
	if err != nil || len(missing) == 0 {
		t.Fatalf("a replica with nothing should miss the write: %d deltas, %v", len(missing), err)
	}
	if _, err := DecodeDelta(missing[0]); err != nil {
		t.Fatalf("missing delta does not decode: %v", err)
	}
	if none, err := r.MissingEncoded(r.EncodeHeads(), 0); err != nil || len(none) != 0 {
		t.Fatalf("an equal replica misses nothing: %d deltas, %v", len(none), err)
	}
	if _, err := DecodeHeads([]byte{0xff, 0x00}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("garbage heads: %v", err)
	}
}
