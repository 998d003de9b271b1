package identity

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors callers branch on with errors.Is. Every error this package
// returns wraps at most one of them and carries a human-readable detail.
var (
	// ErrMalformed: bytes that do not decode into the expected structure
	// (bad CBOR, non-canonical encoding, wrong lengths, oversized input).
	ErrMalformed = errors.New("malformed")
	// ErrUnknownVersion: a structure carries a version this build does not know.
	ErrUnknownVersion = errors.New("unknown version")
	// ErrBadSignature: a signature does not verify under the claimed key.
	ErrBadSignature = errors.New("bad signature")
	// ErrUntrusted: a chain does not start at a trusted root, or a key that
	// must be a trusted root is not.
	ErrUntrusted = errors.New("untrusted root")
	// ErrExpired: now is at or after a certificate's not-after time.
	ErrExpired = errors.New("expired")
	// ErrNotYetValid: now is before a certificate's not-before time.
	ErrNotYetValid = errors.New("not yet valid")
	// ErrWidened: a certificate grants more than its parent holds
	// (services, KV prefixes, intention signing, delegation depth or validity window).
	ErrWidened = errors.New("constraints widened")
	// ErrNoDelegation: a certificate was issued by a key that may not delegate.
	ErrNoDelegation = errors.New("issuer may not delegate")
	// ErrBrokenChain: links do not connect (issuer is not the previous
	// subject), the leaf is not the claimed subject, or a key repeats.
	ErrBrokenChain = errors.New("broken chain")
	// ErrChainTooLong: more than MaxChainDepth links.
	ErrChainTooLong = errors.New("chain too long")
	// ErrRevoked: a key in the chain was revoked by the root or by one of its
	// ancestors in that chain.
	ErrRevoked = errors.New("revoked")
	// ErrNotAncestor: a revocation's issuer cannot be an ancestor of anything
	// (it may not delegate), or tries to revoke a root.
	ErrNotAncestor = errors.New("issuer may not revoke")
	// ErrKeyPermissions: a private key file is readable by group or others.
	ErrKeyPermissions = errors.New("private key file permissions too open")
	// ErrInvalid: a value given to a constructor (Issue, Seal, NewRevocation,
	// NewRotation) breaks a rule; nothing was signed.
	ErrInvalid = errors.New("invalid argument")
)

// LinkError reports which link of a chain failed and which rule it broke.
type LinkError struct {
	Index  int    // 0 is the certificate issued by the root
	Name   string // the link's subject name
	Err    error  // one of the sentinel errors
	Detail string // the rule, in words
}

func (e *LinkError) Error() string {
	return fmt.Sprintf("identity: chain link %d (%q): %v: %s", e.Index, e.Name, e.Err, e.Detail)
}

func (e *LinkError) Unwrap() error { return e.Err }

func linkErr(i int, c *Certificate, sentinel error, format string, args ...any) error {
	name := ""
	if c != nil {
		name = c.Name
	}
	return &LinkError{Index: i, Name: name, Err: sentinel, Detail: fmt.Sprintf(format, args...)}
}

// errorf returns "identity: <detail>: <sentinel>"-style errors that wrap sentinel.
func errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("identity: %s: %w", fmt.Sprintf(format, args...), sentinel)
}

// wrapError adds context in front of an error from this package without
// repeating the "identity: " prefix; errors.Is and errors.As see through it.
type wrapError struct {
	msg string
	err error
}

func (e *wrapError) Error() string { return e.msg }
func (e *wrapError) Unwrap() error { return e.err }

// wrap returns "identity: <context>: <err without its identity: prefix>".
func wrap(err error, format string, args ...any) error {
	inner := strings.TrimPrefix(err.Error(), "identity: ")
	return &wrapError{msg: "identity: " + fmt.Sprintf(format, args...) + ": " + inner, err: err}
}
