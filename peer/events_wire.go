package peer

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
)

// The wire form of a user event (docs/GOSSIP.md, "User events"): a CBOR
// map {1: body, 2: signature}, where body is the core deterministic CBOR
// encoding of eventBody and signature is the origin node key's Ed25519
// signature over eventSignDomain followed by body. It travels as the
// payload of a serf user event (gossip.Membership.FireUserEvent).

// eventSignDomain separates event signatures from every other signature
// made with a node key (replica records sign "peerd/crdt/record/v1\x00"
// followed by a header).
const eventSignDomain = "peerd/event/v1\x00"

// eventWireVersion is the version of eventBody this agent writes and the
// only one it accepts.
const eventWireVersion = 1

// MaxEventSize bounds a user event's name, payload and filters together,
// in bytes. Consul's serf refuses more than 512 bytes for its encoded
// event, ID and name included, so every event Consul accepts fits.
const MaxEventSize = 512

// maxEventWire bounds an encoded event before it is decoded: the body
// (MaxEventSize plus origin, ID, time and framing) and the signature.
const maxEventWire = 1024

// eventBody is what the origin signs.
type eventBody struct {
	Version       uint64 `cbor:"1,keyasint"`
	ID            []byte `cbor:"2,keyasint"` // 16 random bytes; shown as a UUID
	Origin        string `cbor:"3,keyasint"` // node ID of the firing node
	Time          int64  `cbor:"4,keyasint"` // Unix seconds when fired
	Name          string `cbor:"5,keyasint"`
	Payload       []byte `cbor:"6,keyasint,omitempty"`
	NodeFilter    string `cbor:"7,keyasint,omitempty"`
	ServiceFilter string `cbor:"8,keyasint,omitempty"`
	TagFilter     string `cbor:"9,keyasint,omitempty"`
}

type signedEvent struct {
	Body []byte `cbor:"1,keyasint"`
	Sig  []byte `cbor:"2,keyasint"`
}

var (
	eventEncMode cbor.EncMode
	// eventDecMode is strict and bounded, like crdt's record decoding: no
	// unknown or duplicate keys, no indefinite lengths, no tags, shallow.
	eventDecMode cbor.DecMode
)

func init() {
	var err error
	if eventEncMode, err = cbor.CoreDetEncOptions().EncMode(); err != nil {
		panic(err)
	}
	eventDecMode, err = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:   4,
		MaxArrayElements:  16,
		MaxMapPairs:       16,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

func eventSignedMessage(body []byte) []byte {
	msg := make([]byte, 0, len(eventSignDomain)+len(body))
	msg = append(msg, eventSignDomain...)
	return append(msg, body...)
}

// validate checks what a body must satisfy to be sent or accepted; the
// filters' regular expressions are compiled when they are applied.
func (b *eventBody) validate() error {
	switch {
	case b.Version != eventWireVersion:
		return fmt.Errorf("events: version %d, want %d", b.Version, eventWireVersion)
	case len(b.ID) != 16:
		return fmt.Errorf("events: ID of %d bytes, want 16", len(b.ID))
	case b.Origin == "" || len(b.Origin) > 128:
		return errors.New("events: bad origin")
	case b.Name == "":
		return errors.New("events: missing name")
	case b.TagFilter != "" && b.ServiceFilter == "":
		return errors.New("events: tag filter without service filter")
	case eventSize(b.Name, b.Payload, b.NodeFilter, b.ServiceFilter, b.TagFilter) > MaxEventSize:
		return fmt.Errorf("events: name, payload and filters above %d bytes", MaxEventSize)
	}
	for _, s := range []string{b.Origin, b.Name, b.NodeFilter, b.ServiceFilter, b.TagFilter} {
		if !utf8.ValidString(s) {
			return errors.New("events: invalid UTF-8")
		}
	}
	return nil
}

func eventSize(name string, payload []byte, filters ...string) int {
	n := len(name) + len(payload)
	for _, f := range filters {
		n += len(f)
	}
	return n
}

// encodeEvent signs body with key and returns the wire form.
func encodeEvent(body eventBody, key ed25519.PrivateKey) ([]byte, error) {
	if err := body.validate(); err != nil {
		return nil, err
	}
	b, err := eventEncMode.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("events: encode: %w", err)
	}
	wire, err := eventEncMode.Marshal(signedEvent{Body: b, Sig: ed25519.Sign(key, eventSignedMessage(b))})
	if err != nil {
		return nil, fmt.Errorf("events: encode: %w", err)
	}
	return wire, nil
}

// decodeEvent parses the wire form of an event. It does not check the
// signature (see eventState.receive): it returns the signed message and
// the signature for that.
func decodeEvent(wire []byte) (body eventBody, msg, sig []byte, err error) {
	if len(wire) > maxEventWire {
		return eventBody{}, nil, nil, fmt.Errorf("events: %d bytes, at most %d", len(wire), maxEventWire)
	}
	var se signedEvent
	if err := eventDecMode.Unmarshal(wire, &se); err != nil {
		return eventBody{}, nil, nil, fmt.Errorf("events: decode: %w", err)
	}
	if len(se.Sig) != ed25519.SignatureSize {
		return eventBody{}, nil, nil, fmt.Errorf("events: signature of %d bytes", len(se.Sig))
	}
	if err := eventDecMode.Unmarshal(se.Body, &body); err != nil {
		return eventBody{}, nil, nil, fmt.Errorf("events: decode body: %w", err)
	}
	if err := body.validate(); err != nil {
		return eventBody{}, nil, nil, err
	}
	return body, eventSignedMessage(se.Body), se.Sig, nil
}

// firedAt is the body's time.
func (b *eventBody) firedAt() time.Time { return time.Unix(b.Time, 0) }
