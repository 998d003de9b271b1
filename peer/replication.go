package peer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/crdt/store"
)

// How the local write path works: a mutation of the replica and the
// enqueueing of its delta happen under writeMu, so deltas reach the store in
// the order of their dots; the commitQueue writes whatever has queued up in
// one store transaction (one fsync) and only then acknowledges the callers
// and hands the deltas to dissemination. A local write is therefore never
// gossiped before it is durable, and a crash never keeps a later dot of this
// origin while losing an earlier one.

// pendingWrite is one local delta waiting for its group commit.
type pendingWrite struct {
	delta *crdt.Delta
	rec   []byte
	done  chan error // buffered; receives the commit's result once
}

// commitQueue batches local deltas into store transactions.
//
// When a commit fails (a full disk), its deltas are already applied to the
// in-memory replica and their dots are taken. Dropping them would let a
// later write reuse those dots; so they are kept, in order, and retried
// every second until the store takes them, and until then every new local
// write is refused before it touches the replica (ErrStoreUnavailable).
// Only the writes of the failing batch have an ambiguous outcome: their
// callers got an error, yet the writes are kept and become durable when
// space returns, like a write whose answer timed out.
type commitQueue struct {
	st  *store.Store
	log *slog.Logger
	in  chan *pendingWrite

	mu sync.Mutex // serializes mutate+enqueue (see above)

	// failing is set while a failed batch waits to be retried; commit then
	// refuses new writes up front.
	failing atomic.Bool
}

// ErrStoreUnavailable is returned for local writes while the store cannot
// write (for example a full disk); nothing was changed.
var ErrStoreUnavailable = errors.New("peer: the local store cannot write (disk full?); writes are refused until it can, nothing was changed")

// retryInterval is how often a failed batch is written again.
const retryInterval = time.Second

const (
	commitQueueDepth = 8192
	commitMaxBatch   = 1024
)

func newCommitQueue(st *store.Store, log *slog.Logger) *commitQueue {
	return &commitQueue{st: st, log: log, in: make(chan *pendingWrite, commitQueueDepth)}
}

// run writes batches until ctx ends; committed deltas go to published.
func (q *commitQueue) run(ctx context.Context, published func([]*crdt.Delta)) {
	batch := make([]*pendingWrite, 0, commitMaxBatch)
	var (
		stuckRecs   [][]byte      // records of a failed commit, oldest first
		stuckDeltas []*crdt.Delta // their deltas, published once durable
	)
	retry := time.NewTicker(retryInterval)
	defer retry.Stop()
	for {
		batch = batch[:0]
		select {
		case w := <-q.in:
			batch = append(batch, w)
		case <-retry.C:
			if len(stuckRecs) == 0 {
				continue
			}
		case <-ctx.Done():
			q.drainOnClose()
			return
		}
	fill:
		for len(batch) < commitMaxBatch {
			select {
			case w := <-q.in:
				batch = append(batch, w)
			default:
				break fill
			}
		}
		recs := append([][]byte(nil), stuckRecs...)
		deltas := append([]*crdt.Delta(nil), stuckDeltas...)
		for _, w := range batch {
			recs = append(recs, w.rec)
			deltas = append(deltas, w.delta)
		}
		_, err := q.st.AppendBatch(context.WithoutCancel(ctx), recs)
		if err != nil {
			if len(stuckRecs) == 0 {
				q.log.Error("local writes not committed; refusing writes until the store can write", "writes", len(batch), "err", err)
			}
			stuckRecs, stuckDeltas = recs, deltas
			q.failing.Store(true)
			err = fmt.Errorf("peer: write not made durable: %w (the write stays applied in memory and is written when the store can write again; see docs/RELIABILITY.md)", err)
		} else {
			if len(stuckRecs) > 0 {
				q.log.Info("store writes again; kept writes are durable", "writes", len(stuckRecs))
			}
			stuckRecs, stuckDeltas = nil, nil
			q.failing.Store(false)
		}
		for _, w := range batch {
			w.done <- err
		}
		if err == nil {
			published(deltas)
		}
	}
}

// drainOnClose fails writes still queued when the agent stops.
func (q *commitQueue) drainOnClose() {
	for {
		select {
		case w := <-q.in:
			w.done <- errors.New("peer: agent is shutting down")
		default:
			return
		}
	}
}

// commit applies a local mutation and waits until its delta is durable.
// A nil delta (nothing changed) returns at once.
func (a *Agent) commit(ctx context.Context, mutate func(now time.Time) (*crdt.Delta, error)) error {
	q := a.writes
	if q.failing.Load() {
		return ErrStoreUnavailable
	}
	q.mu.Lock()
	d, err := mutate(time.Now())
	if err != nil || d == nil {
		q.mu.Unlock()
		return err
	}
	rec, err := crdt.EncodeDelta(d)
	if err != nil {
		q.mu.Unlock()
		return err
	}
	w := &pendingWrite{delta: d, rec: rec, done: make(chan error, 1)}
	select {
	case q.in <- w:
	case <-a.ctx.Done():
		q.mu.Unlock()
		return errors.New("peer: agent is shutting down")
	}
	q.mu.Unlock()
	a.stats.localWrites.Add(1)
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// commitCAS is commit for mutations that may decline (CAS): ok reports
// whether the mutation happened.
func (a *Agent) commitCAS(ctx context.Context, mutate func(now time.Time) (bool, *crdt.Delta, error)) (bool, error) {
	var ok bool
	err := a.commit(ctx, func(now time.Time) (*crdt.Delta, error) {
		var d *crdt.Delta
		var err error
		ok, d, err = mutate(now)
		return d, err
	})
	return ok, err
}

// agentStats are counters reported by /v1/agent/self and `peerd info`.
type agentStats struct {
	localWrites     atomic.Uint64
	broadcasts      atomic.Uint64
	broadcastBytes  atomic.Uint64
	deliveries      atomic.Uint64
	mergedEntries   atomic.Uint64
	duplicate       atomic.Uint64
	rejectedEntries atomic.Uint64
	badPayloads     atomic.Uint64
	snapshots       atomic.Uint64
	collected       atomic.Uint64 // record versions dropped by garbage collection
	dirty           atomic.Bool   // remote state merged since the last snapshot
}

// outbox collects committed local deltas until the next broadcast tick.
type outbox struct {
	mu      sync.Mutex
	entries []crdt.Entry // guarded by mu
	wake    chan struct{}
}

func (a *Agent) outboxAdd(ds []*crdt.Delta) {
	ob := &a.outbox
	ob.mu.Lock()
	for _, d := range ds {
		ob.entries = append(ob.entries, d.Entries...)
	}
	ob.mu.Unlock()
	select {
	case ob.wake <- struct{}{}:
	default:
	}
}

// broadcastLoop sends what the outbox holds once per SyncInterval, as one
// delta, through the broadcast tree.
func (a *Agent) broadcastLoop() {
	t := time.NewTicker(a.cfg.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-a.outbox.wake:
		}
		// Wait out the rest of the tick so that a burst goes as one batch.
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		}
		a.outbox.mu.Lock()
		entries := a.outbox.entries
		a.outbox.entries = nil
		a.outbox.mu.Unlock()
		for len(entries) > 0 {
			n := min(len(entries), maxBroadcastEntries)
			payload, err := crdt.EncodeDelta(&crdt.Delta{Entries: entries[:n]})
			entries = entries[n:]
			if err != nil {
				a.log.Error("encoding a broadcast", "err", err)
				continue
			}
			if _, err := a.driver.Broadcast(payload); err != nil {
				a.log.Warn("broadcast failed; anti-entropy will repair", "err", err)
				continue
			}
			a.stats.broadcasts.Add(1)
			a.stats.broadcastBytes.Add(uint64(len(payload)))
		}
	}
}

// maxBroadcastEntries keeps one broadcast payload well under the transport's
// message limit.
const maxBroadcastEntries = 2048

// deliver is the Plumtree Deliver callback: verify and merge a delta that
// arrived through the broadcast tree. Payloads none of whose entries could be
// used are reported invalid and not forwarded.
func (a *Agent) deliver(from string, payload []byte) bool {
	a.stats.deliveries.Add(1)
	ok, err := a.mergeRemote(payload)
	if err != nil {
		a.log.Debug("broadcast payload refused", "peer", from, "err", err)
	}
	return ok
}

// mergeRemote decodes, verifies and merges a delta from another peer.
func (a *Agent) mergeRemote(payload []byte) (useful bool, err error) {
	d, err := crdt.DecodeDelta(payload)
	if err != nil {
		a.stats.badPayloads.Add(1)
		return false, err
	}
	a.trust.learnFromDelta(d)
	ownBefore := a.replica.OwnCounter()
	res, err := a.replica.Merge(d, a.trust, time.Now())
	if res.Accepted > 0 && a.replica.OwnCounter() > ownBefore && returnsOwn(d, a.id, ownBefore) {
		a.ownRecordsReturned() // reincarnation.go
	}
	a.stats.mergedEntries.Add(uint64(res.Accepted))
	a.stats.duplicate.Add(uint64(res.Duplicates))
	a.stats.rejectedEntries.Add(uint64(res.Rejected))
	if n := res.Reasons[crdt.RejectEquivocation]; n > 0 {
		a.log.Error("records refused: their origin signed two different records for one dot", "records", n, "err", err,
			"hint", "two processes are running with the same node key (a copied data dir or key file); stop one and give it its own key")
	}
	if res.Accepted > 0 {
		a.stats.dirty.Store(true)
	}
	return res.Accepted+res.Duplicates > 0, err
}

// snapshotInterval is how often remote state merged since the last snapshot
// is saved. Local writes are durable on their own (the log); remote ones
// lost in a crash come back through anti-entropy.
const snapshotInterval = 10 * time.Second

// snapshotEvery bounds the local log: after that many local writes a
// snapshot replaces it.
const snapshotEvery = 50_000

func (a *Agent) snapshotLoop() {
	t := time.NewTicker(snapshotInterval)
	defer t.Stop()
	var lastWrites uint64
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		}
		writes := a.stats.localWrites.Load()
		if !a.stats.dirty.Load() && writes-lastWrites < snapshotEvery {
			continue
		}
		if err := a.saveSnapshot(); err != nil {
			a.log.Warn("snapshot failed", "err", err)
			continue
		}
		lastWrites = writes
	}
}

// saveSnapshot stores the replica's state and truncates the log up to it.
// It holds the commit lock, so no local mutation happens between reading
// the log position and marshalling the state: the state holds every record
// up to that position (and perhaps a few queued after it, which replay
// applies again harmlessly — Apply is idempotent).
func (a *Agent) saveSnapshot() error {
	q := a.writes
	q.mu.Lock()
	upTo := a.store.LastSeq()
	state, err := a.replica.MarshalState()
	q.mu.Unlock()
	if err != nil {
		return err
	}
	a.stats.dirty.Store(false)
	if err := a.store.SaveSnapshot(state, upTo); err != nil && !errors.Is(err, store.ErrStaleSnapshot) {
		return err
	}
	a.stats.snapshots.Add(1)
	return nil
}
