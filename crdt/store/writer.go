package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// maxRecordSize is the largest record Append takes: bbolt's value limit
// minus the frame header.
const maxRecordSize = bolt.MaxValueSize - maxFrameHeader

// appendReq is one Append or AppendBatch call waiting for the writer.
// Requests are pooled: the caller owns one until it has read done.
type appendReq struct {
	ctx  context.Context
	recs [][]byte
	one  [1][]byte  // backing array of recs for Append, saves an allocation
	size int        // total bytes of recs
	last Seq        // set by the writer before done is signalled
	done chan error // buffered(1); the writer sends exactly once per use
}

var reqPool = sync.Pool{New: func() any { return &appendReq{done: make(chan error, 1)} }}

// Append writes rec to the log and returns its Seq once the record is
// durable: committed and, unless Options.NoSync, fsync'd. rec is not
// retained after Append returns.
//
// ctx bounds only the wait before the record is handed to a commit: if it
// ends while Append waits for queue space, or before the writer picks the
// record up, Append returns an error wrapping ctx.Err() and the record is
// not written. Once the record is in a commit, Append waits for the outcome,
// because returning early would leave the caller not knowing whether it is
// durable.
//
// An error means the record is not acknowledged. If the commit itself failed
// (disk full, I/O error), every caller in that group commit gets the error,
// the store stays usable, and in the rare case of a failing final fsync the
// record may still turn up after a restart: an error means "not known to be
// durable", never "known absent".
func (s *Store) Append(ctx context.Context, rec []byte) (Seq, error) {
	req := reqPool.Get().(*appendReq)
	req.one[0] = rec
	req.recs = req.one[:]
	return s.append(ctx, req)
}

// AppendBatch writes recs atomically, in one transaction, in order; they get
// consecutive Seqs ending at the returned last. Zero records write nothing
// and return (0, nil). Everything said for Append holds.
func (s *Store) AppendBatch(ctx context.Context, recs [][]byte) (last Seq, err error) {
	if len(recs) == 0 {
		return 0, nil
	}
	req := reqPool.Get().(*appendReq)
	req.recs = recs
	return s.append(ctx, req)
}

// append validates req, queues it and waits for the writer's answer. It
// returns req to the pool.
func (s *Store) append(ctx context.Context, req *appendReq) (Seq, error) {
	defer func() {
		req.ctx, req.recs, req.one[0], req.last = nil, nil, nil, 0
		reqPool.Put(req)
	}()
	size := 0
	for i, r := range req.recs {
		if len(r) > maxRecordSize {
			return 0, fmt.Errorf("store: record %d of %d bytes exceeds the %d-byte limit", i, len(r), maxRecordSize)
		}
		size += len(r)
	}
	if ctx.Err() != nil {
		return 0, ctxErr(ctx)
	}
	req.ctx, req.size = ctx, size

	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return 0, ErrClosed
	}
	select {
	case s.queue <- req:
	case <-ctx.Done():
		s.mu.RUnlock()
		return 0, ctxErr(ctx)
	}
	s.mu.RUnlock()

	if err := <-req.done; err != nil {
		return 0, err
	}
	return req.last, nil
}

// runWriter is the group-commit loop: it takes the first queued append,
// gathers whatever else is queued up to MaxBatch records / MaxBatchBytes
// without waiting, commits it all in one transaction, answers every caller,
// and repeats. It exits when Close has closed the queue and it is drained.
func (s *Store) runWriter() {
	defer close(s.writerDone)
	var batch []*appendReq
	var bufs batchBuffers
	for {
		req, ok := <-s.queue
		if !ok {
			return
		}
		batch = append(batch[:0], req)
		n, size := len(req.recs), req.size
	gather:
		for n < s.opts.MaxBatch && size < s.opts.MaxBatchBytes {
			select {
			case req, ok := <-s.queue:
				if !ok {
					break gather // commit what we have; the next receive exits
				}
				batch = append(batch, req)
				n += len(req.recs)
				size += req.size
			default:
				break gather
			}
		}
		s.commit(batch, &bufs)
		clear(batch) // drop references to answered requests
	}
}

// maxKeptBuffer is the largest frame buffer the writer keeps between commits.
const maxKeptBuffer = 4 << 20

// batchBuffers are the writer's reusable buffers for one group commit's keys
// and frames. bbolt keeps references to put keys and values until the
// transaction ends, so they are reused only after the commit returned.
type batchBuffers struct {
	keys   []byte
	values []byte
	live   []*appendReq
}

// commit writes one group commit and answers each request in it exactly once.
func (s *Store) commit(batch []*appendReq, bufs *batchBuffers) {
	live := bufs.live[:0]
	defer func() { clear(live); bufs.live = live[:0] }()
	records, size := 0, 0
	for _, req := range batch {
		if req.ctx.Err() != nil {
			req.done <- ctxErr(req.ctx)
			continue
		}
		live = append(live, req)
		records += len(req.recs)
		size += req.size
	}
	if len(live) == 0 {
		return
	}
	// Size both buffers up front: the slices handed to Put must not move.
	keys := slices.Grow(bufs.keys[:0], 8*records)
	values := slices.Grow(bufs.values[:0], records*maxFrameHeader+size)
	defer func() {
		if cap(values) > maxKeptBuffer { // don't pin a huge AppendBatch's buffer
			keys, values = nil, nil
		}
		bufs.keys, bufs.values = keys[:0], values[:0]
	}()
	var last Seq
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLog)
		b.FillPercent = 1.0 // keys only ever grow: pack pages full
		seq := Seq(b.Sequence())
		for _, req := range live {
			for _, rec := range req.recs {
				seq++
				k := len(keys)
				keys = binary.BigEndian.AppendUint64(keys, uint64(seq))
				v := len(values)
				values = appendFrame(values, kindRecord, uint64(seq), rec)
				if err := b.Put(keys[k:len(keys):len(keys)], values[v:len(values):len(values)]); err != nil {
					return err
				}
			}
			req.last = seq
		}
		if s.beforeCommit != nil {
			if err := s.beforeCommit(records); err != nil {
				return err
			}
		}
		last = seq
		return b.SetSequence(uint64(seq))
	})
	if err != nil {
		s.failedCommits.Add(1)
		if err != ErrClosed {
			err = fmt.Errorf("store: commit of %d records failed, none acknowledged: %w", records, err)
		}
		s.logger.Warn("store: group commit failed", "records", records, "err", err)
		for _, req := range live {
			req.done <- err
		}
		return
	}
	s.lastSeq.Store(uint64(last))
	s.commits.Add(1)
	s.appended.Add(uint64(records))
	for _, req := range live {
		req.done <- nil
	}
}
