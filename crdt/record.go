package crdt

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// Signer signs with the local origin's key.
type Signer interface {
	Sign(msg []byte) ([]byte, error)
}

// Authorizer is consulted for every incoming record before it is merged.
// crdt holds no trust policy of its own. Implementations must be safe for
// concurrent use and must not call back into the replica: VerifyOrigin is
// called before a merge takes the replica's lock (several merges may call
// it at once), the others with the lock held.
type Authorizer interface {
	// VerifyOrigin checks that origin's key signed msg.
	VerifyOrigin(origin string, msg, sig []byte) error
	// MayPublishService reports whether origin may publish service name.
	MayPublishService(origin, service string) bool
	// MayWriteKV reports whether origin may write or delete key.
	MayWriteKV(origin, key string) bool
	// VerifyIntention decodes a signed intention document, checks its
	// signature and that its signer may sign intentions.
	VerifyIntention(signed []byte) (Intention, error)
	// VerifyRevocation checks a signed revocation.
	VerifyRevocation(signed []byte) error
}

// IntentionDecoder is implemented by an Authorizer that can decode a signed
// intention document without judging its signer. Apply and LoadState,
// which replay entries verified before a restart, use it when present: a
// signer whose certificate has ended since, or whose root the agent no
// longer lists, must not make the stored replica unreadable (whether such
// an intention still applies is WithdrawIntentions' judgement).
type IntentionDecoder interface {
	DecodeIntention(signed []byte) (Intention, error)
}

// IntentionJudge is implemented by an Authorizer that judges a replicated
// intention document once for good, so that every replica reaches the
// same state whatever the order in which the document and the trust
// statements arrive (docs/REPLICA.md, "Intentions and trust"). at is the
// time the relaying node stamped the record with. A document that was
// never valid is an error (refused, as by VerifyIntention); one whose
// signer was valid at at but has been revoked, or whose root retired,
// since is withdrawn: it is merged and takes its place in the pair's
// version order, and reads skip it, exactly as WithdrawIntentions leaves
// one merged before the statement arrived. Merge uses it when present.
type IntentionJudge interface {
	JudgeIntention(signed []byte, at time.Time) (in Intention, withdrawn bool, err error)
}

// decodeStoredIntention decodes a stored intention document with auth's
// DecodeIntention if it has one, else with VerifyIntention.
func decodeStoredIntention(auth Authorizer, signed []byte) (Intention, error) {
	if d, ok := auth.(IntentionDecoder); ok {
		return d.DecodeIntention(signed)
	}
	return auth.VerifyIntention(signed)
}

// Kind is the type of a replicated record.
type Kind uint8

// Record kinds.
const (
	KindNode       Kind = 1 // key: origin
	KindService    Kind = 2 // key: origin "/" service ID
	KindCheck      Kind = 3 // key: origin "/" check ID
	KindKV         Kind = 4 // key: KV key
	KindIntention  Kind = 5 // key: source "\x00" destination
	KindRevocation Kind = 6 // key: hex SHA-256 of the signed blob
)

func (k Kind) String() string {
	switch k {
	case KindNode:
		return "node"
	case KindService:
		return "service"
	case KindCheck:
		return "check"
	case KindKV:
		return "kv"
	case KindIntention:
		return "intention"
	case KindRevocation:
		return "revocation"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// singleWriter kinds are owned by one origin, named in the key.
func (k Kind) singleWriter() bool { return k == KindNode || k == KindService || k == KindCheck }

// ordered kinds resolve by a total order on content instead of by causal
// context (intentions by version, revocations are grow-only).
func (k Kind) ordered() bool { return k == KindIntention || k == KindRevocation }

// Op is what a record version does.
type Op uint8

// Record operations.
const (
	OpPut    Op = 0
	OpDelete Op = 1
)

// recordVersion is the version of the record header format.
const recordVersion = 1

// signDomain prefixes every signed record header so that a record signature
// can never be confused with another peerd signature.
const signDomain = "peerd/crdt/record/v1\x00"

// Limits on decoded records; they bound memory for untrusted input.
const (
	maxOriginLen   = 256
	maxKeyLen      = 2048
	maxContextDots = 256
	maxHeaderLen   = 64 << 10
	maxSigLen      = 1024
)

// header is the signed part of a record version. The body is covered by
// BodyHash, so a dead version can travel as a verifiable header-only stub.
type header struct {
	V        uint8  `cbor:"1,keyasint"`
	Kind     Kind   `cbor:"2,keyasint"`
	Op       Op     `cbor:"3,keyasint,omitempty"`
	Key      string `cbor:"4,keyasint"`
	Origin   string `cbor:"5,keyasint"`
	Counter  uint64 `cbor:"6,keyasint"`
	HLC      HLC    `cbor:"7,keyasint,omitempty"`
	Context  []Dot  `cbor:"8,keyasint,omitempty"` // versions at Key this one supersedes
	BodyHash []byte `cbor:"9,keyasint,omitempty"`
}

func (h *header) dot() Dot { return Dot{Origin: h.Origin, Counter: h.Counter} }

func (h *header) validate() error {
	switch {
	case h.V != recordVersion:
		return fmt.Errorf("record version %d (want %d)", h.V, recordVersion)
	case h.Kind < KindNode || h.Kind > KindRevocation:
		return fmt.Errorf("unknown kind %d", h.Kind)
	case h.Op > OpDelete:
		return fmt.Errorf("unknown op %d", h.Op)
	case h.Origin == "" || len(h.Origin) > maxOriginLen:
		return fmt.Errorf("origin length %d", len(h.Origin))
	case len(h.Key) > maxKeyLen:
		return fmt.Errorf("key length %d exceeds %d", len(h.Key), maxKeyLen)
	case h.Counter == 0:
		return fmt.Errorf("counter 0")
	case len(h.Context) > maxContextDots:
		return fmt.Errorf("context of %d dots exceeds %d", len(h.Context), maxContextDots)
	case h.Op == OpPut && len(h.BodyHash) != sha256.Size:
		return fmt.Errorf("put without a body hash")
	case h.Op == OpDelete && len(h.BodyHash) != 0:
		return fmt.Errorf("delete with a body hash")
	case h.Op == OpDelete && h.Kind.ordered():
		return fmt.Errorf("%s records cannot be deleted by op", h.Kind)
	case h.Kind.ordered() && len(h.Context) > 0:
		return fmt.Errorf("%s records carry no context", h.Kind)
	}
	for _, d := range h.Context {
		if d.Origin == "" || len(d.Origin) > maxOriginLen || d.Counter == 0 {
			return fmt.Errorf("bad context dot")
		}
	}
	if h.Kind.singleWriter() {
		if owner, ok := ownerOf(h.Kind, h.Key); !ok || owner != h.Origin {
			return errNotOwner
		}
		for _, d := range h.Context {
			if d.Origin != h.Origin {
				return errNotOwner
			}
		}
	}
	return nil
}

var errNotOwner = fmt.Errorf("origin does not own the record")

// ownerOf returns the owning origin encoded in a single-writer key.
func ownerOf(k Kind, key string) (string, bool) {
	if k == KindNode {
		return key, key != ""
	}
	origin, id, ok := strings.Cut(key, "/")
	return origin, ok && origin != "" && id != ""
}

// Entry is one signed record version as it travels and is stored. Body is
// nil in a stub (a dead version kept only to make its dot verifiable).
type Entry struct {
	_      struct{} `cbor:",toarray"`
	Header []byte   // canonical CBOR of the header
	Sig    []byte   // origin's signature over signDomain || Header
	Body   []byte   // canonical CBOR of the record body; nil in a stub
}

// signedMessage is what the origin signs for a header.
func signedMessage(hdr []byte) []byte {
	msg := make([]byte, 0, len(signDomain)+len(hdr))
	msg = append(msg, signDomain...)
	return append(msg, hdr...)
}

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
	// catalogDecMode decodes node, service and check bodies: as decMode,
	// but a key it does not know is skipped, so that a field added by a
	// newer agent does not make its catalog records undecodable on older
	// ones (the signed bytes are kept and relayed as they are). Headers,
	// KV, intention and revocation bodies stay strict: an unknown key there
	// may change what a record means.
	catalogDecMode cbor.DecMode
)

func init() {
	var err error
	if encMode, err = cbor.CoreDetEncOptions().EncMode(); err != nil {
		panic(err)
	}
	opts := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:  24,
		MaxArrayElements: 1 << 18,
		MaxMapPairs:      1 << 12,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		// Free-form values (Proxy.Config) decode to JSON-friendly maps.
		DefaultMapType: reflect.TypeOf(map[string]any(nil)),
	}
	if catalogDecMode, err = opts.DecMode(); err != nil {
		panic(err)
	}
	opts.ExtraReturnErrors = cbor.ExtraDecErrorUnknownField
	if decMode, err = opts.DecMode(); err != nil {
		panic(err)
	}
}

func marshal(v any) ([]byte, error) { return encMode.Marshal(v) }

func unmarshal(b []byte, v any) error {
	if err := decMode.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

func unmarshalCatalog(b []byte, v any) error {
	if err := catalogDecMode.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

// decodeHeader decodes and validates a header.
func decodeHeader(b []byte) (header, error) {
	var h header
	if len(b) > maxHeaderLen {
		return h, fmt.Errorf("%w: header of %d bytes", ErrMalformed, len(b))
	}
	if err := unmarshal(b, &h); err != nil {
		return h, err
	}
	if err := h.validate(); err != nil {
		return h, fmt.Errorf("%w: %s %s: %v", ErrMalformed, h.Kind, h.dot(), err)
	}
	return h, nil
}

func (d Dot) String() string { return fmt.Sprintf("%s:%d", d.Origin, d.Counter) }

// DecodeNode, DecodeService, DecodeCheck and DecodeIntentionBody decode
// record bodies (exported for fuzzing and for tools).
func DecodeNode(b []byte) (Node, error) {
	var n Node
	return n, unmarshalCatalog(b, &n)
}

// DecodeService decodes a service body.
func DecodeService(b []byte) (Service, error) {
	var s Service
	return s, unmarshalCatalog(b, &s)
}

// DecodeCheck decodes a check body.
func DecodeCheck(b []byte) (Check, error) {
	var c Check
	return c, unmarshalCatalog(b, &c)
}

// decodeBody decodes the body of a put for kind k.
func decodeBody(k Kind, b []byte) (any, error) {
	switch k {
	case KindNode:
		n, err := DecodeNode(b)
		return &n, err
	case KindService:
		s, err := DecodeService(b)
		return &s, err
	case KindCheck:
		c, err := DecodeCheck(b)
		return &c, err
	case KindKV:
		var kv kvBody
		err := unmarshal(b, &kv)
		return &kv, err
	case KindIntention, KindRevocation:
		// The body is the signed document itself, a CBOR byte string.
		var blob []byte
		if err := unmarshal(b, &blob); err != nil {
			return nil, err
		}
		return blob, nil
	}
	return nil, fmt.Errorf("%w: kind %d", ErrMalformed, k)
}

func bodyHash(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:]
}

func hashMatches(h, body []byte) bool { return bytes.Equal(h, bodyHash(body)) }
