package crdt

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

// TestNodeRecordConnectCA pins the node record body: a record without
// ConnectCA encodes exactly as before the field existed (so old records
// and their signed hashes stay valid), one with it carries key 5, and an
// unknown key is still refused.
func TestNodeRecordConnectCA(t *testing.T) {
	for _, tc := range []struct {
		name string
		node Node
		hex  string // canonical CBOR of the body
	}{
		{"without", Node{Name: "n", Cert: []byte{1}}, "a201616e044101"},
		{"with", Node{Name: "n", Cert: []byte{1}, ConnectCA: []byte{2, 3}}, "a301616e044101054202" + "03"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := marshal(tc.node)
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(b); got != tc.hex {
				t.Fatalf("encoding = %s, want %s", got, tc.hex)
			}
			n, err := DecodeNode(b)
			if err != nil {
				t.Fatal(err)
			}
			if n.Name != tc.node.Name || !bytes.Equal(n.Cert, tc.node.Cert) || !bytes.Equal(n.ConnectCA, tc.node.ConnectCA) {
				t.Fatalf("decoded %+v, want %+v", n, tc.node)
			}
		})
	}
	// Key 6 is not defined: refused like any unknown field.
	if _, err := DecodeNode([]byte{0xa1, 0x06, 0x41, 0x01}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("unknown key 6: err = %v, want ErrMalformed", err)
	}
}

// TestNodeRecordConnectCAReplicates: the field survives a delta round
// trip into another replica.
func TestNodeRecordConnectCAReplicates(t *testing.T) {
	src, _ := NewReplica("r0", hashSigner{"r0"}, Options{})
	d, err := src.PutNode(Node{Name: "n", ConnectCA: []byte{0x30, 0x00}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := EncodeDelta(d)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := DecodeDelta(b)
	if err != nil {
		t.Fatal(err)
	}
	dst, _ := NewReplica("r1", hashSigner{"r1"}, Options{})
	if err := dst.Apply(d2, hashAuth{}); err != nil {
		t.Fatal(err)
	}
	n, ok := dst.Node("r0")
	if !ok || !bytes.Equal(n.ConnectCA, []byte{0x30, 0x00}) {
		t.Fatalf("replicated node = %+v, %v", n, ok)
	}
}
