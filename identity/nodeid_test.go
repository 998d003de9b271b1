package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// The libp2p peer-ids spec key (seed 7e08...; public key 1ed1...) and the
// peer ID go-libp2p derives for it.
func TestNodeIDVector(t *testing.T) {
	seed, _ := hex.DecodeString("7e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d")
	wantPub, _ := hex.DecodeString("1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e")
	pub := pubOf(ed25519.NewKeyFromSeed(seed))
	if !bytes.Equal(pub, wantPub) {
		t.Fatalf("public key %x", pub)
	}
	const want = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
	if got := NodeID(pub); got != want {
		t.Fatalf("NodeID = %s, want %s", got, want)
	}
	back, err := ParseNodeID(want)
	if err != nil || !bytes.Equal(back, pub) {
		t.Fatalf("ParseNodeID = %x, %v", back, err)
	}
}

func TestNodeIDRoundTrip(t *testing.T) {
	for _, name := range []string{"a", "b", "c", "d"} {
		pub := pubOf(testKey(name))
		id := NodeID(pub)
		if !strings.HasPrefix(id, "12D3KooW") {
			t.Fatalf("%s does not start with 12D3KooW", id)
		}
		back, err := ParseNodeID(id)
		if err != nil || !bytes.Equal(back, pub) {
			t.Fatalf("round trip of %s: %x, %v", id, back, err)
		}
	}
	if NodeID(ed25519.PublicKey{1}) != "" {
		t.Fatal("NodeID of a short key is not empty")
	}
}

func TestParseNodeIDErrors(t *testing.T) {
	good := NodeID(pubOf(testKey("a")))
	cases := map[string]string{
		"empty":             "",
		"not base58":        "12D3KooW0OIl",
		"truncated":         good[:len(good)-2],
		"extended":          good + "1",
		"sha256 (RSA) form": "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",
		"too long":          strings.Repeat("1", 70),
	}
	for name, s := range cases {
		if _, err := ParseNodeID(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}
