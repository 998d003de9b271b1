package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Seq numbers log records: the first record appended to a new store is 1,
// each next one is one more, and numbers are never reused, even after the
// records are truncated by a snapshot. 0 means "no record".
type Seq uint64

// ErrClosed is returned by every method called after (or racing with) Close.
var ErrClosed = errors.New("store: closed")

// Store is an open durable store. Its methods are safe for concurrent use.
type Store struct {
	db     *bolt.DB
	opts   Options
	logger *slog.Logger

	// queue carries appends to the writer goroutine (writer.go).
	queue chan *appendReq
	// mu guards closed and sends on queue: senders hold it for reading
	// while they send, Close holds it for writing while it closes queue,
	// so nothing is ever sent on a closed channel.
	mu     sync.RWMutex
	closed bool

	writerDone chan struct{} // closed when the writer goroutine has exited
	closeOnce  sync.Once
	closeErr   error

	lastSeq       atomic.Uint64 // last durable Seq, written by the writer
	appended      atomic.Uint64
	commits       atomic.Uint64
	failedCommits atomic.Uint64

	// beforeCommit, when set (tests only, before the writer starts), runs
	// inside each group-commit transaction after the records are put; an
	// error from it aborts the transaction as a failed write would.
	beforeCommit func(records int) error
}

// Stats are counters since Open.
type Stats struct {
	Appended      uint64 // records acknowledged as durable
	Commits       uint64 // group-commit transactions that succeeded
	FailedCommits uint64 // group-commit transactions that failed
	LastSeq       Seq    // last durable Seq, including ones from before Open
}

// Open opens or creates the store at opts.Path and starts its writer
// goroutine. It refuses a file written in an unknown format version
// (ErrUnsupportedFormat) and a bbolt file that is not a peerd store. Call
// Recover to read back what the file holds, and Close when done.
func Open(opts Options) (*Store, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	var db *bolt.DB
	err = guard(func() (err error) {
		db, err = bolt.Open(opts.Path, opts.FileMode, &bolt.Options{
			Timeout: opts.LockTimeout,
			NoSync:  opts.NoSync,
			// Why the freelist stays synced (NoFreelistSync false, unlike
			// etcd): without it Open rebuilds the freelist by walking every
			// page in a goroutine bbolt owns, and on a damaged page bbolt
			// panics there, where no recover can reach: the process dies
			// instead of Open returning an error. The price is one more page
			// write per commit (same number of fsyncs).
			FreelistType: bolt.FreelistMapType,
			MaxSize:      opts.MaxSize,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", opts.Path, err)
	}
	var last Seq
	err = guard(func() (err error) {
		last, err = initOrCheck(db)
		return err
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: open %s: %w", opts.Path, err)
	}
	s := &Store{
		db:         db,
		opts:       opts,
		logger:     opts.Logger,
		queue:      make(chan *appendReq, opts.QueueDepth),
		writerDone: make(chan struct{}),
	}
	s.lastSeq.Store(uint64(last))
	go s.runWriter()
	return s, nil
}

// initOrCheck creates the buckets of a new file, or checks the format of an
// existing one. It returns the last Seq ever assigned.
func initOrCheck(db *bolt.DB) (Seq, error) {
	var last Seq
	isNew := false
	err := db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			empty := true
			_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
			if !empty {
				return errors.New("the file is a bbolt database but not a peerd store (no meta bucket)")
			}
			isNew = true
			return nil
		}
		raw := meta.Get(keyFormat)
		if raw == nil {
			return fmt.Errorf("%w: no format version key", ErrCorrupt)
		}
		v, err := decodeFormat(raw)
		if err != nil {
			return err
		}
		if v != formatVersion {
			return fmt.Errorf("%w: the file has format version %d, this build reads version %d", ErrUnsupportedFormat, v, formatVersion)
		}
		for _, name := range [][]byte{bucketLog, bucketSnap, bucketUser} {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("%w: bucket %q missing", ErrCorrupt, name)
			}
		}
		last = Seq(tx.Bucket(bucketLog).Sequence())
		return nil
	})
	if err != nil || !isNew {
		return last, err
	}
	return 0, db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketLog, bucketSnap, bucketUser} {
			if _, err := tx.CreateBucket(name); err != nil {
				return fmt.Errorf("create bucket %q: %w", name, err)
			}
		}
		return tx.Bucket(bucketMeta).Put(keyFormat, encodeFormat(formatVersion))
	})
}

// LastSeq returns the Seq of the last durable record (0 if none was ever
// appended).
func (s *Store) LastSeq() Seq { return Seq(s.lastSeq.Load()) }

// Stats returns the counters since Open.
func (s *Store) Stats() Stats {
	return Stats{
		Appended:      s.appended.Load(),
		Commits:       s.commits.Load(),
		FailedCommits: s.failedCommits.Load(),
		LastSeq:       s.LastSeq(),
	}
}

// Close stops accepting appends, lets the writer commit everything already
// queued (those callers get their normal answer), waits for the writer to
// exit and closes the file. It is idempotent; later calls return the first
// call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.queue)
		s.mu.Unlock()
		<-s.writerDone
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("store: close: %w", err)
		}
	})
	return s.closeErr
}

// update and view run a bbolt transaction under guard and turn "database
// not open" into ErrClosed.
func (s *Store) update(fn func(*bolt.Tx) error) error {
	return guard(func() error { return closedErr(s.db.Update(fn)) })
}

func (s *Store) view(fn func(*bolt.Tx) error) error {
	return guard(func() error { return closedErr(s.db.View(fn)) })
}

// guard runs fn and turns a panic into an error wrapping ErrCorrupt. Why:
// bbolt panics (or faults, reading a page id past the mapping) when it
// meets a damaged page, and the file is input we must not crash on. bbolt's
// View and Update roll the transaction back on a panic, releasing its
// locks, so the store stays usable for whatever is not damaged. Faults are
// turned into panics for the duration of fn.
func guard(fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			err = fmt.Errorf("store: %w: bbolt failed on a damaged page: %v", ErrCorrupt, r)
		}
	}()
	return fn()
}

func closedErr(err error) error {
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) || errors.Is(err, bolterrors.ErrTxClosed) {
		return ErrClosed
	}
	return err
}

// ctxErr wraps a context error for an append that was not written.
func ctxErr(ctx context.Context) error {
	return fmt.Errorf("store: append not written: %w", ctx.Err())
}
