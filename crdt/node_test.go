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
}

// TestCatalogBodiesSkipUnknownKeys: a key added by a newer agent to a
// node, service or check body is skipped (the known fields decode), so a
// mixed-version mesh keeps its catalog; a KV body or a header with an
// unknown key is still malformed.
func TestCatalogBodiesSkipUnknownKeys(t *testing.T) {
	// {1: "n", 99: h'01'}: name "n" and an unknown key 99.
	body := []byte{0xa2, 0x01, 0x61, 0x6e, 0x18, 0x63, 0x41, 0x01}
	n, err := DecodeNode(body)
	if err != nil || n.Name != "n" {
		t.Fatalf("node with key 99: %+v, %v", n, err)
	}
	if s, err := DecodeService(body); err != nil || s.ID != "n" {
		t.Fatalf("service with key 99: %+v, %v", s, err)
	}
	if c, err := DecodeCheck(body); err != nil || c.ID != "n" {
		t.Fatalf("check with key 99: %+v, %v", c, err)
	}
	if _, err := decodeBody(KindKV, body); !errors.Is(err, ErrMalformed) {
		t.Fatalf("kv body with key 99: err = %v, want ErrMalformed", err)
	}
	// A header with an unknown key: take a real one and add key 99.
	src, _ := NewReplica("r0", hashSigner{"r0"}, Options{})
	d, err := src.PutNode(Node{Name: "n"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	h := d.Entries[0].Header
	if h[0]&0xe0 != 0xa0 || h[0]&0x1f >= 23 {
		t.Fatalf("header does not start with a short map: %x", h[:1])
	}
	bad := append([]byte{h[0] + 1}, h[1:]...)
	bad = append(bad, 0x18, 0x63, 0x01)
	if _, err := decodeHeader(bad); !errors.Is(err, ErrMalformed) {
		t.Fatalf("header with key 99: err = %v, want ErrMalformed", err)
	}
}

// TestNodeRecordWithUnknownKeyMerges: a correctly signed node record from a
// newer agent, carrying a key this build does not know, merges and is
// relayed with its bytes unchanged.
func TestNodeRecordWithUnknownKeyMerges(t *testing.T) {
	src, _ := NewReplica("r0", hashSigner{"r0"}, Options{})
	d, err := src.PutNode(Node{Name: "n"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	// Rewrite the body as a newer agent would write it, and sign again.
	e := &d.Entries[0]
	e.Body = []byte{0xa2, 0x01, 0x61, 0x6e, 0x18, 0x63, 0x41, 0x01}
	hd, err := decodeHeader(e.Header)
	if err != nil {
		t.Fatal(err)
	}
	hd.BodyHash = bodyHash(e.Body)
	if e.Header, err = marshal(hd); err != nil {
		t.Fatal(err)
	}
	if e.Sig, err = (hashSigner{"r0"}).Sign(SignedMessage(e.Header)); err != nil {
		t.Fatal(err)
	}
	dst, _ := NewReplica("r1", hashSigner{"r1"}, Options{})
	if res, err := dst.Merge(d, hashAuth{}, t0); err != nil || res.Accepted != 1 {
		t.Fatalf("merge: %+v %v", res, err)
	}
	if n, ok := dst.Node("r0"); !ok || n.Name != "n" {
		t.Fatalf("node = %+v, %v", n, ok)
	}
	relayed := dst.DeltaSince(VersionVector{}, 10)
	if len(relayed) != 1 || !bytes.Equal(relayed[0].Entries[0].Body, e.Body) {
		t.Fatalf("relayed body changed: %+v", relayed)
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

// TestBodyMatches: the exported checks a caller runs on an entry before
// merging it (peer reads node records so): the body named by the header,
// nothing else.
func TestBodyMatches(t *testing.T) {
	src, _ := NewReplica("r0", hashSigner{"r0"}, Options{})
	d, err := src.PutNode(Node{Name: "n"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	e := d.Entries[0]
	if !BodyMatches(e.Header, e.Body) {
		t.Fatal("the entry's own body does not match")
	}
	if BodyMatches(e.Header, append([]byte{}, e.Body[:len(e.Body)-1]...)) || BodyMatches(e.Header, nil) || BodyMatches([]byte{0xa0}, e.Body) {
		t.Fatal("another body, no body or a bad header matches")
	}
	if sig, _ := (hashSigner{"r0"}).Sign(SignedMessage(e.Header)); !bytes.Equal(sig, e.Sig) {
		t.Fatal("SignedMessage is not what the origin signs")
	}
}

// TestNewestNodeRecord: the newest node record a replica holds, with the
// counter that orders it among the node's records.
func TestNewestNodeRecord(t *testing.T) {
	src, _ := NewReplica("r0", hashSigner{"r0"}, Options{})
	dst, _ := NewReplica("r1", hashSigner{"r1"}, Options{})
	var last uint64
	for _, name := range []string{"a", "b"} {
		d, err := src.PutNode(Node{Name: name}, t0)
		if err != nil {
			t.Fatal(err)
		}
		_, _, dot, _ := DecodeEntryHeader(d.Entries[0].Header)
		last = dot.Counter
		if _, err := dst.Merge(d, hashAuth{}, t0); err != nil {
			t.Fatal(err)
		}
	}
	n, c, ok := dst.NewestNodeRecord("r0")
	if !ok || n.Name != "b" || c != last {
		t.Fatalf("newest node record: %+v counter %d %v, want b at %d", n, c, ok, last)
	}
	if _, _, ok := dst.NewestNodeRecord("nobody"); ok {
		t.Fatal("a record for an unknown origin")
	}
}
