package crdt

import (
	"errors"
	"fmt"
	"time"
)

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
	// ErrOriginRevoked: an Authorizer's VerifyOrigin returns an
	// *OriginRevokedError (which matches it) when the signature DOES
	// verify under the origin's key but that key is revoked for good.
	ErrOriginRevoked = errors.New("crdt: origin revoked")
	// ErrNotYetApplicable: an Authorizer's VerifyRevocation wraps it for a
	// trust statement that it cannot apply with the trust it holds now but
	// may apply once trust changes (a root rotation whose old root is
	// trusted only after an earlier rotation it has not received yet).
	// Merge holds such a record (RejectPending) and RetryStatements applies
	// it later; any other refusal is final.
	ErrNotYetApplicable = errors.New("crdt: trust statement not applicable yet")
)

// OriginRevokedError is what an Authorizer's VerifyOrigin returns (or
// wraps) for a record that verifies under its origin's key when that key
// is revoked for good (not merely unknown, expired or badly chained: those
// are ordinary errors). At is when the revocation was issued (the signed
// time of the earliest revocation of the key); zero means "always".
//
// Merge keeps such a record as a dead stub — its dot seen, its context not
// applied — unless it is a KV record signed with an HLC before At, which
// is judged as from any origin; RevokeOrigins brings a replica that merged
// the origin's records before it held the revocation to the same state.
// docs/REPLICA.md, "Revoked origins", explains the rules.
//
// An Authorizer must check the signature first: a forged record of a
// revoked origin is a bad signature, or anyone could burn its dots.
//
// Renewable marks a cut that belongs to the certificate chain the
// Authorizer holds for the origin rather than to its key: the chain
// expired, its root was retired by a rotation, or a delegated issuer
// revoked a key in it. The node may come back with a new chain, so
// neither Merge nor RevokeOrigins remembers the origin as revoked: each
// record is judged by what the Authorizer says when it arrives.
type OriginRevokedError struct {
	At        time.Time
	Renewable bool
}

func (e *OriginRevokedError) Error() string {
	if e.At.IsZero() {
		return ErrOriginRevoked.Error()
	}
	return fmt.Sprintf("%v at %s", ErrOriginRevoked, e.At.UTC().Format(time.RFC3339))
}

// Is makes errors.Is(err, ErrOriginRevoked) true.
func (e *OriginRevokedError) Is(target error) bool { return target == ErrOriginRevoked }

// revokedFor returns the cut an error carries, whether it is an
// OriginRevokedError at all, and whether the cut is for good (not Renewable).
func revokedFor(err error) (at time.Time, revoked, forGood bool) {
	var re *OriginRevokedError
	if errors.As(err, &re) {
		return re.At, true, !re.Renewable
	}
	return time.Time{}, false, false
}

// before reports whether a record stamped h was signed before a
// revocation issued at at (never, for a zero at).
func before(h HLC, at time.Time) bool {
	return !at.IsZero() && at.UnixMilli() > 0 && h.Physical() < uint64(at.UnixMilli())
}

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
	// (ErrOriginRevoked) that does not count: a node, service or check
	// record, or a KV record stamped at or after the revocation. Kept as a
	// dead stub, its context not applied.
	RejectRevokedOrigin = "revoked-origin"
	// RejectPending: a trust statement the Authorizer cannot apply yet
	// (ErrNotYetApplicable). Its dot is seen and the record kept dead with
	// its body; RetryStatements applies it when trust has changed.
	RejectPending = "statement-pending"
)

// ErrNotFound: a local delete names a record this node does not hold.
var ErrNotFound = errors.New("crdt: not found")
