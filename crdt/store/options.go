package store

import (
	"errors"
	"log/slog"
	"os"
	"time"
)

// Options configures Open. Only Path is required; every other field's zero
// value picks the default written next to it.
type Options struct {
	// Path is the bbolt file. Required. Its directory must exist; the file
	// is created if missing.
	Path string

	// NoSync skips fsync on commit. Zero (false): every commit is fsync'd
	// before any caller is acknowledged. True exists only for tests and
	// benchmark comparisons: after a crash of the machine (not of the
	// process) acknowledged appends may be lost or the file damaged.
	NoSync bool

	// MaxBatch is the most records one group commit writes. Zero: 1024.
	// A single AppendBatch larger than this is still written whole, in one
	// transaction.
	MaxBatch int

	// MaxBatchBytes is the most record bytes one group commit gathers before
	// it commits. Zero: 16 MiB. Same caveat as MaxBatch for AppendBatch.
	MaxBatchBytes int

	// QueueDepth is how many Append/AppendBatch calls may wait for the
	// writer; when the queue is full Append blocks until there is room or
	// its context ends. Zero: 4096.
	QueueDepth int

	// MaxSize caps the file size in bytes: a commit that would grow the file
	// past it fails with an error (bbolt's ErrMaxSizeReached), like a full
	// disk. Zero: no cap.
	MaxSize int

	// LockTimeout is how long Open waits for another process that holds the
	// file. Zero: 1 s. Negative: fail at once if the file is held.
	LockTimeout time.Duration

	// FileMode is the permission of a newly created file. Zero: 0600.
	FileMode os.FileMode

	// Logger receives warnings (failed commits). Zero: discarded.
	Logger *slog.Logger
}

const (
	defaultMaxBatch      = 1024
	defaultMaxBatchBytes = 16 << 20
	defaultQueueDepth    = 4096
	defaultLockTimeout   = time.Second
)

// withDefaults fills zero values and rejects nonsense.
func (o Options) withDefaults() (Options, error) {
	if o.Path == "" {
		return o, errors.New("store: Options.Path is required")
	}
	if o.MaxBatch < 0 || o.MaxBatchBytes < 0 || o.QueueDepth < 0 || o.MaxSize < 0 {
		return o, errors.New("store: Options.MaxBatch, MaxBatchBytes, QueueDepth and MaxSize must not be negative")
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = defaultMaxBatch
	}
	if o.MaxBatchBytes == 0 {
		o.MaxBatchBytes = defaultMaxBatchBytes
	}
	if o.QueueDepth == 0 {
		o.QueueDepth = defaultQueueDepth
	}
	switch {
	case o.LockTimeout == 0:
		o.LockTimeout = defaultLockTimeout
	case o.LockTimeout < 0:
		// bbolt treats 0 as "wait forever"; the shortest real wait it
		// offers is one poll.
		o.LockTimeout = time.Nanosecond
	}
	if o.FileMode == 0 {
		o.FileMode = 0o600
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}
