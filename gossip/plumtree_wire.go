package gossip

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// MessageID identifies a broadcast payload: the first 16 bytes of the
// SHA-256 of the payload. It is never sent with the payload (the receiver
// recomputes it), only in IHAVE and GRAFT lists.
type MessageID [16]byte

// IDOf returns the MessageID of payload.
func IDOf(payload []byte) MessageID {
	sum := sha256.Sum256(payload)
	var id MessageID
	copy(id[:], sum[:])
	return id
}

func (id MessageID) String() string { return hex.EncodeToString(id[:]) }

// TreeKey names the broadcast tree a message travels on: one tree per
// origin (TreeOf(origin)). Two origins that collide on a key simply share a
// tree.
type TreeKey uint64

// TreeOf returns the tree key of an origin peer ID: the first 8 bytes of
// its SHA-256, big-endian.
func TreeOf(origin string) TreeKey {
	sum := sha256.Sum256([]byte(origin))
	return TreeKey(binary.BigEndian.Uint64(sum[:8]))
}

// MsgType is the kind of a Plumtree message.
type MsgType uint8

// Plumtree message types (wire values; never renumber).
const (
	MsgGossip     MsgType = 1 // eager push of a payload
	MsgIHave      MsgType = 2 // lazy announcement of message IDs
	MsgGraft      MsgType = 3 // "make me eager and send me these IDs" (or only "make me eager")
	MsgPrune      MsgType = 4 // "make me lazy"
	MsgNeighbor   MsgType = 5 // "add me to your view" (answered by NEIGHBOR_ACK or DISCONNECT)
	MsgDisconnect MsgType = 6 // "drop me from your view" / "I will not add you"
	// MsgNeighborAck answers NEIGHBOR: "you are in my view". Version 2.
	MsgNeighborAck MsgType = 7
)

func (t MsgType) String() string {
	switch t {
	case MsgGossip:
		return "gossip"
	case MsgIHave:
		return "ihave"
	case MsgGraft:
		return "graft"
	case MsgPrune:
		return "prune"
	case MsgNeighbor:
		return "neighbor"
	case MsgDisconnect:
		return "disconnect"
	case MsgNeighborAck:
		return "neighbor-ack"
	default:
		return fmt.Sprintf("type(%d)", uint8(t))
	}
}

// Wire bounds. A decoder rejects anything larger.
const (
	// WireVersion is the version of the Plumtree wire format. Version 2
	// added NEIGHBOR_ACK; other versions are rejected.
	WireVersion = 2
	// MaxPayloadSize bounds one broadcast payload (a signed delta batch).
	MaxPayloadSize = 1 << 20
	// MaxIDsPerMessage bounds the IDs of one IHAVE or GRAFT.
	MaxIDsPerMessage = 1024
	// maxWireSize bounds an encoded message: the payload plus headers, or
	// an IHAVE full of IDs and rounds.
	maxWireSize = MaxPayloadSize + 4096
)

// Message is one Plumtree message, as the state machine emits and accepts
// it. Which fields are set depends on Type:
//
//	Gossip:     Payload, Round (hops from the origin), Tree
//	IHave:      IDs, Rounds, Trees (same length)
//	Graft:      IDs, Trees (same length), or only Trees (version 2: "make me
//	            eager in these trees", nothing to send)
//	Prune:      Trees (at least one)
//	Neighbor, NeighborAck, Disconnect: nothing
type Message struct {
	Type    MsgType
	Payload []byte
	Round   uint32
	Tree    TreeKey
	IDs     []MessageID
	Rounds  []uint32
	Trees   []TreeKey
}

// wireMessage is the CBOR form (integer keys, see docs/GOSSIP.md).
type wireMessage struct {
	V       uint8    `cbor:"1,keyasint"`
	T       uint8    `cbor:"2,keyasint"`
	Payload []byte   `cbor:"3,keyasint,omitempty"`
	Round   uint32   `cbor:"4,keyasint,omitempty"`
	IDs     [][]byte `cbor:"5,keyasint,omitempty"`
	Rounds  []uint32 `cbor:"6,keyasint,omitempty"`
	Tree    uint64   `cbor:"7,keyasint,omitempty"`
	Trees   []uint64 `cbor:"8,keyasint,omitempty"`
}

var (
	wireEnc cbor.EncMode
	wireDec cbor.DecMode
)

func init() {
	var err error
	wireEnc, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	wireDec, err = cbor.DecOptions{
		MaxNestedLevels:   4,
		MaxArrayElements:  MaxIDsPerMessage,
		MaxMapPairs:       16,
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// errWire is wrapped by every decoding error.
var errWire = errors.New("gossip: bad message")

// EncodeMessage returns the CBOR encoding of m.
func EncodeMessage(m Message) ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	w := wireMessage{V: WireVersion, T: uint8(m.Type), Payload: m.Payload, Round: m.Round, Rounds: m.Rounds, Tree: uint64(m.Tree)}
	if len(m.Trees) > 0 {
		w.Trees = make([]uint64, len(m.Trees))
		for i, t := range m.Trees {
			w.Trees[i] = uint64(t)
		}
	}
	if len(m.IDs) > 0 {
		w.IDs = make([][]byte, len(m.IDs))
		for i := range m.IDs {
			w.IDs[i] = m.IDs[i][:]
		}
	}
	b, err := wireEnc.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("gossip: encode %v: %w", m.Type, err)
	}
	return b, nil
}

// DecodeMessage parses an encoded Message from an untrusted peer.
func DecodeMessage(b []byte) (Message, error) {
	if len(b) > maxWireSize {
		return Message{}, fmt.Errorf("%w: %d bytes exceeds %d", errWire, len(b), maxWireSize)
	}
	var w wireMessage
	if err := wireDec.Unmarshal(b, &w); err != nil {
		return Message{}, fmt.Errorf("%w: %w", errWire, err)
	}
	if w.V != WireVersion {
		return Message{}, fmt.Errorf("%w: unsupported version %d", errWire, w.V)
	}
	m := Message{Type: MsgType(w.T), Payload: w.Payload, Round: w.Round, Rounds: w.Rounds, Tree: TreeKey(w.Tree)}
	if len(w.Trees) > 0 {
		m.Trees = make([]TreeKey, len(w.Trees))
		for i, t := range w.Trees {
			m.Trees[i] = TreeKey(t)
		}
	}
	if len(w.IDs) > 0 {
		m.IDs = make([]MessageID, len(w.IDs))
		for i, raw := range w.IDs {
			if len(raw) != len(MessageID{}) {
				return Message{}, fmt.Errorf("%w: message ID of %d bytes", errWire, len(raw))
			}
			copy(m.IDs[i][:], raw)
		}
	}
	if err := m.validate(); err != nil {
		return Message{}, err
	}
	return m, nil
}

// validate checks that only the fields of m's type are set and within
// bounds.
func (m Message) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %v: %s", errWire, m.Type, fmt.Sprintf(format, args...))
	}
	switch m.Type {
	case MsgGossip:
		if len(m.Payload) == 0 || len(m.Payload) > MaxPayloadSize {
			return bad("payload of %d bytes", len(m.Payload))
		}
		if len(m.IDs) != 0 || len(m.Rounds) != 0 || len(m.Trees) != 0 {
			return bad("unexpected lists")
		}
	case MsgIHave:
		if len(m.IDs) == 0 || len(m.IDs) > MaxIDsPerMessage || len(m.Rounds) != len(m.IDs) || len(m.Trees) != len(m.IDs) {
			return bad("%d IDs, %d rounds, %d trees", len(m.IDs), len(m.Rounds), len(m.Trees))
		}
		if len(m.Payload) != 0 || m.Round != 0 || m.Tree != 0 {
			return bad("unexpected fields")
		}
	case MsgGraft:
		if len(m.IDs) > MaxIDsPerMessage || len(m.Trees) == 0 || len(m.Trees) > MaxIDsPerMessage ||
			len(m.IDs) != 0 && len(m.Trees) != len(m.IDs) {
			return bad("%d IDs, %d trees", len(m.IDs), len(m.Trees))
		}
		if len(m.Rounds) != 0 || len(m.Payload) != 0 || m.Round != 0 || m.Tree != 0 {
			return bad("unexpected fields")
		}
	case MsgPrune:
		if len(m.Trees) == 0 || len(m.Trees) > MaxIDsPerMessage {
			return bad("%d trees", len(m.Trees))
		}
		if len(m.IDs) != 0 || len(m.Rounds) != 0 || len(m.Payload) != 0 || m.Round != 0 || m.Tree != 0 {
			return bad("unexpected fields")
		}
	case MsgNeighbor, MsgNeighborAck, MsgDisconnect:
		if len(m.IDs) != 0 || len(m.Rounds) != 0 || len(m.Trees) != 0 || len(m.Payload) != 0 || m.Round != 0 || m.Tree != 0 {
			return bad("unexpected fields")
		}
	default:
		return fmt.Errorf("%w: unknown type %d", errWire, uint8(m.Type))
	}
	return nil
}
