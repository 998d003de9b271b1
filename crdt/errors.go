package crdt

import "errors"

// Errors callers branch on. Returned errors wrap them with detail.
var (
	// ErrValueTooLarge: a KV value exceeds Options.MaxValueSize.
	ErrValueTooLarge = errors.New("crdt: value too large")
	// ErrClockDrift: a remote HLC timestamp is too far ahead of local time.
	ErrClockDrift = errors.New("crdt: remote clock too far ahead")
	// ErrRollback: an intention version is older than the one held.
	ErrRollback = errors.New("crdt: intention version rollback")
	// ErrUnauthorized: the Authorizer refused the record.
	ErrUnauthorized = errors.New("crdt: not authorized")
	// ErrBadSignature: a record's signature does not verify.
	ErrBadSignature = errors.New("crdt: bad signature")
	// ErrMalformed: bytes do not decode into a valid record, delta or state.
	ErrMalformed = errors.New("crdt: malformed")
	// ErrInvalid: a local write is rejected (empty ID, bad status, ...).
	ErrInvalid = errors.New("crdt: invalid record")
	// ErrEquivocation: an origin signed two different records for one dot.
	ErrEquivocation = errors.New("crdt: equivocation")
	// ErrOriginRevoked: an Authorizer's VerifyOrigin returns an error
	// wrapping it when the signature DOES verify under the origin's key but
	// that key is revoked for good. Merge then records the dot as seen and
	// keeps the version as a dead stub whose context is not applied
	// (docs/REPLICA.md, "Revoked origins"). An Authorizer must return it
	// only after checking the signature: otherwise anyone could burn the
	// dots of a revoked origin.
	ErrOriginRevoked = errors.New("crdt: origin revoked")
)

// Rejection reasons counted by Merge (see Replica.Rejected).
const (
	RejectMalformed    = "malformed"
	RejectSignature    = "signature"
	RejectUnauthorized = "unauthorized"
	RejectNotOwner     = "not-owner"
	RejectClockDrift   = "clock-drift"
	RejectTooLarge     = "too-large"
	RejectRollback     = "rollback"
	RejectIntention    = "intention"
	RejectRevocation   = "revocation"
	RejectUnconfirmed  = "unconfirmed-stub"
	// RejectEquivocation: a correctly signed record whose dot this replica
	// already holds with different content — its origin signed two records
	// for one dot: two processes run with the same node key (a cloned data
	// dir or key), or the origin is faulty. The held record stays.
	RejectEquivocation = "equivocation"
	// RejectRevokedOrigin: a correctly signed record of a revoked origin
	// (ErrOriginRevoked); kept as a dead stub, its context not applied.
	RejectRevokedOrigin = "revoked-origin"
)

// ErrNotFound: a local delete names a record this node does not hold.
var ErrNotFound = errors.New("crdt: not found")
