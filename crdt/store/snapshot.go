package store

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// ErrStaleSnapshot is returned by SaveSnapshot when upTo is below the
// stored snapshot's: the records in between are already truncated, so the
// older state would lose them.
var ErrStaleSnapshot = errors.New("snapshot older than the stored one")

// replayChunk is how many records Replay reads per read transaction. It
// calls fn outside any transaction, so fn may use the store freely.
const replayChunk = 1024

// SaveSnapshot stores state as the snapshot covering every record with
// Seq <= upTo and, in the same transaction, deletes those records from the
// log. It returns once durable. upTo must not exceed LastSeq, nor be below
// the stored snapshot's upTo (ErrStaleSnapshot); equal replaces it. The
// commit holds bbolt's writer lock, so appends wait for it.
func (s *Store) SaveSnapshot(state []byte, upTo Seq) error {
	if len(state) > bolt.MaxValueSize-maxFrameHeader-8 {
		return fmt.Errorf("store: save snapshot: snapshot of %d bytes exceeds the bbolt value limit", len(state))
	}
	frame := encodeSnapshot(state, upTo)
	err := s.update(func(tx *bolt.Tx) error {
		logb := tx.Bucket(bucketLog)
		if last := Seq(logb.Sequence()); upTo > last {
			return fmt.Errorf("snapshot upTo %d is past the last appended record %d", upTo, last)
		}
		snapb := tx.Bucket(bucketSnap)
		if old := snapb.Get(keyState); old != nil {
			// A damaged old snapshot is simply replaced.
			if _, oldUpTo, err := decodeSnapshot(old); err == nil && upTo < oldUpTo {
				return fmt.Errorf("%w: upTo %d < stored %d", ErrStaleSnapshot, upTo, oldUpTo)
			}
		}
		if err := snapb.Put(keyState, frame); err != nil {
			return fmt.Errorf("put snapshot: %w", err)
		}
		// Collect first, delete after: deleting under a live cursor is
		// a known way to skip keys in bbolt.
		var doomed [][]byte
		c := logb.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			seq, err := keySeq(k)
			if err != nil {
				return err
			}
			if seq > upTo {
				break
			}
			doomed = append(doomed, append([]byte(nil), k...))
		}
		for _, k := range doomed {
			if err := logb.Delete(k); err != nil {
				return fmt.Errorf("truncate log: %w", err)
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrClosed) {
		return fmt.Errorf("store: save snapshot: %w", err)
	}
	return err
}

// LoadSnapshot returns a copy of the stored snapshot and the Seq it covers;
// (nil, 0, nil) when none was saved.
func (s *Store) LoadSnapshot() (state []byte, upTo Seq, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		state, upTo, err = loadSnapshotTx(tx)
		return err
	})
	return state, upTo, err
}

func loadSnapshotTx(tx *bolt.Tx) ([]byte, Seq, error) {
	raw := tx.Bucket(bucketSnap).Get(keyState)
	if raw == nil {
		return nil, 0, nil
	}
	st, upTo, err := decodeSnapshot(raw)
	if err != nil {
		return nil, 0, fmt.Errorf("store: %w", err)
	}
	return append([]byte{}, st...), upTo, nil
}

// Replay calls fn, in Seq order, for every log record with Seq > after that
// is in the log when each chunk is read. rec is a copy fn may keep. fn runs
// outside any transaction. An error from fn stops Replay and is returned as
// is; a damaged record or a gap in the log stops it with an error wrapping
// ErrCorrupt.
func (s *Store) Replay(after Seq, fn func(seq Seq, rec []byte) error) error {
	_, err := s.replay(after, fn)
	return err
}

// replay is Replay that also reports the last Seq it delivered (after if none).
func (s *Store) replay(after Seq, fn func(seq Seq, rec []byte) error) (Seq, error) {
	type item struct {
		seq Seq
		rec []byte
	}
	if after == ^Seq(0) {
		return after, nil
	}
	prev := after
	first := true
	chunk := make([]item, 0, replayChunk)
	for {
		chunk = chunk[:0]
		err := s.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketLog).Cursor()
			for k, v := c.Seek(seqKey(prev + 1)); k != nil && len(chunk) < replayChunk; k, v = c.Next() {
				seq, err := keySeq(k)
				if err != nil {
					return fmt.Errorf("store: %w", err)
				}
				if !first && seq != prev+1 {
					return fmt.Errorf("store: %w: log gap, record %d follows %d", ErrCorrupt, seq, prev)
				}
				rec, err := decodeRecord(seq, v)
				if err != nil {
					return fmt.Errorf("store: %w", err)
				}
				chunk = append(chunk, item{seq, append([]byte{}, rec...)})
				prev, first = seq, false
			}
			return nil
		})
		if err != nil {
			return prev, err
		}
		for _, it := range chunk {
			if err := fn(it.seq, it.rec); err != nil {
				return prev, err
			}
		}
		if len(chunk) < replayChunk {
			return prev, nil
		}
	}
}

// Recover is what a restarted replica runs: it calls restore once with the
// stored snapshot (nil, 0 when none was saved; state is a copy restore may
// keep), then apply, in Seq order, for every log record after it. It checks
// that the log runs without gaps from upTo+1 to the last Seq assigned when
// Recover started, and stops at the first error from a callback (returned
// as is) or from the data (wrapping ErrCorrupt). The callbacks run outside
// any transaction. Run it before appending: a SaveSnapshot running
// concurrently may truncate records it has not read yet (it then reports a
// gap).
func (s *Store) Recover(restore func(state []byte, upTo Seq) error, apply func(seq Seq, rec []byte) error) error {
	var (
		state              []byte
		upTo               Seq
		assigned, firstKey Seq
	)
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		state, upTo, err = loadSnapshotTx(tx)
		if err != nil {
			return err
		}
		b := tx.Bucket(bucketLog)
		assigned = Seq(b.Sequence())
		if k, _ := b.Cursor().First(); k != nil {
			if firstKey, err = keySeq(k); err != nil {
				return fmt.Errorf("store: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if firstKey != 0 && firstKey <= upTo {
		// SaveSnapshot deletes these in the same transaction; finding one
		// means the file was changed behind our back.
		return fmt.Errorf("store: %w: log record %d is covered by the snapshot up to %d", ErrCorrupt, firstKey, upTo)
	}
	if firstKey != 0 && firstKey != upTo+1 {
		return fmt.Errorf("store: %w: log starts at %d, snapshot covers up to %d", ErrCorrupt, firstKey, upTo)
	}
	if firstKey == 0 && upTo < assigned {
		return fmt.Errorf("store: %w: log is empty but records up to %d were written and the snapshot covers up to %d", ErrCorrupt, assigned, upTo)
	}
	if err := restore(state, upTo); err != nil {
		return err
	}
	last, err := s.replay(upTo, apply)
	if err != nil {
		return err
	}
	if last < assigned {
		return fmt.Errorf("store: %w: log ends at %d but records up to %d were written", ErrCorrupt, last, assigned)
	}
	return nil
}
