package gossip

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"

	"github.com/fxamacker/cbor/v2"
)

// fakeReplica is a map-based Replica: a set of batches (origin, seq,
// data). Heads is the highest contiguous seq per origin; Missing returns
// every batch above the remote's contiguous head (resending out-of-order
// ones is harmless: Apply is idempotent). Batches whose data starts with
// "bad" are refused, like a forged signature.
type fakeReplica struct {
	mu      sync.Mutex
	batches map[string]map[uint64][]byte // origin -> seq -> encoded batch
}

func newFakeReplica() *fakeReplica {
	return &fakeReplica{batches: map[string]map[uint64][]byte{}}
}

var _ Replica = (*fakeReplica)(nil)

func encodeFakeBatch(origin string, seq uint64, data []byte) []byte {
	return fmt.Appendf(nil, "%s|%d|%s", origin, seq, data)
}

func parseFakeBatch(b []byte) (origin string, seq uint64, data []byte, err error) {
	parts := bytes.SplitN(b, []byte("|"), 3)
	if len(parts) != 3 || len(parts[0]) == 0 {
		return "", 0, nil, errors.New("fake: malformed batch")
	}
	seq, err = strconv.ParseUint(string(parts[1]), 10, 64)
	if err != nil || seq == 0 {
		return "", 0, nil, errors.New("fake: bad seq")
	}
	return string(parts[0]), seq, parts[2], nil
}

// write adds the next batch of origin and returns it encoded.
func (r *fakeReplica) write(origin string, data []byte) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.batches[origin]
	if m == nil {
		m = map[uint64][]byte{}
		r.batches[origin] = m
	}
	seq := uint64(len(m)) + 1
	for m[seq] != nil {
		seq++
	}
	b := encodeFakeBatch(origin, seq, data)
	m[seq] = b
	return b
}

func (r *fakeReplica) Apply(_ string, b []byte) error {
	origin, seq, data, err := parseFakeBatch(b)
	if err != nil {
		return err
	}
	if bytes.HasPrefix(data, []byte("bad")) {
		return errors.New("fake: bad signature")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.batches[origin]
	if m == nil {
		m = map[uint64][]byte{}
		r.batches[origin] = m
	}
	m[seq] = slices.Clone(b)
	return nil
}

func (r *fakeReplica) headsLocked() map[string]uint64 {
	h := map[string]uint64{}
	for origin, m := range r.batches {
		var n uint64
		for m[n+1] != nil {
			n++
		}
		h[origin] = n
	}
	return h
}

func (r *fakeReplica) Heads() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, err := wireEnc.Marshal(r.headsLocked())
	if err != nil {
		panic(err)
	}
	return b
}

// Digest hashes every (origin, seq) held.
func (r *fakeReplica) Digest() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := sha256.New()
	for _, origin := range slices.Sorted(maps.Keys(r.batches)) {
		for _, seq := range slices.Sorted(maps.Keys(r.batches[origin])) {
			fmt.Fprintf(h, "%s/%d;", origin, seq)
		}
	}
	return h.Sum(nil)
}

func (r *fakeReplica) Missing(remoteHeads []byte, maxBytes int) ([][]byte, error) {
	remote := map[string]uint64{}
	if len(remoteHeads) > 0 {
		if err := cbor.Unmarshal(remoteHeads, &remote); err != nil {
			return nil, fmt.Errorf("fake: heads: %w", err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][]byte
	total := 0
	for _, origin := range slices.Sorted(maps.Keys(r.batches)) {
		for _, seq := range slices.Sorted(maps.Keys(r.batches[origin])) {
			if seq <= remote[origin] {
				continue
			}
			if total >= maxBytes {
				return out, nil
			}
			b := r.batches[origin][seq]
			out = append(out, b)
			total += len(b)
		}
	}
	return out, nil
}

func (r *fakeReplica) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.batches {
		n += len(m)
	}
	return n
}
