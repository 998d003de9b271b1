// Package store is the durable store of a peerd replica: an append-only log
// of deltas plus the latest snapshot, in one bbolt file.
//
// The replica (package crdt) is pure and lives in memory. Every mutation
// yields a delta and the whole state can be serialised as a snapshot; both
// reach this package as opaque bytes. The store makes them durable:
//
//   - Append and AppendBatch add records to the log with group commit: one
//     writer goroutine folds every queued record into a single bbolt
//     transaction (one commit, one fsync) and then acknowledges each caller.
//     An append returns only after its record is on disk.
//   - SaveSnapshot stores a snapshot and, in the same transaction, drops the
//     log records it covers.
//   - Recover hands back the last snapshot and the records after it, in
//     order, which is all a restarted replica needs.
//   - GetMeta/PutMeta keep a few small values (counters, membership hints).
//
// store knows nothing about what the bytes mean: it must not decode deltas or
// snapshots, and it must not import the network. Its on-disk framing (format
// version, per-value checksums) is described in format.go. A damaged or
// foreign file yields an error (ErrCorrupt, ErrUnsupportedFormat), never a
// panic: bbolt's own panics on damaged pages are caught and turned into
// ErrCorrupt.
package store
