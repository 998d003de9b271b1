package identity

import (
	"bytes"
	"crypto/ed25519"

	"github.com/mr-tron/base58"
)

// A node ID is the libp2p PeerID text form of an Ed25519 public key: the
// base58btc encoding of an identity multihash (code 0x00, length 36) of the
// protobuf-encoded libp2p PublicKey message {Type: Ed25519 (1), Data: key}.
// Such IDs start with "12D3KooW".
var nodeIDPrefix = []byte{
	0x00, 0x24, // multihash: identity function, 36-byte digest
	0x08, 0x01, // protobuf field 1 (KeyType), varint 1 = Ed25519
	0x12, 0x20, // protobuf field 2 (Data), 32 bytes follow
}

const nodeIDLen = 6 + ed25519.PublicKeySize

// NodeID returns the node ID ("12D3KooW...") of pub. It returns "" when pub
// is not an Ed25519 public key of the right size.
func NodeID(pub ed25519.PublicKey) string {
	if len(pub) != ed25519.PublicKeySize {
		return ""
	}
	var b [nodeIDLen]byte
	copy(b[:], nodeIDPrefix)
	copy(b[len(nodeIDPrefix):], pub)
	return base58.Encode(b[:])
}

// ParseNodeID returns the public key named by a node ID produced by NodeID.
// Other libp2p ID forms (CIDv1, non-Ed25519 keys, hashed keys) are rejected.
func ParseNodeID(s string) (ed25519.PublicKey, error) {
	if len(s) == 0 || len(s) > 64 {
		return nil, errorf(ErrMalformed, "node ID %q has the wrong length", s)
	}
	b, err := base58.Decode(s)
	if err != nil {
		return nil, errorf(ErrMalformed, "node ID %q is not base58: %v", s, err)
	}
	if len(b) != nodeIDLen || !bytes.Equal(b[:len(nodeIDPrefix)], nodeIDPrefix) {
		return nil, errorf(ErrMalformed, "node ID %q is not an Ed25519 libp2p peer ID (want the 12D3KooW... form)", s)
	}
	return ed25519.PublicKey(bytes.Clone(b[len(nodeIDPrefix):])), nil
}
