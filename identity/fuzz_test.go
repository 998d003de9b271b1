package identity

import (
	"bytes"
	"testing"
	"time"
)

// Every decoder of untrusted bytes has a fuzz target. Each checks that the
// decoder never panics and that whatever it accepts re-encodes to the same
// bytes (one encoding per value) and can be verified without panicking.

func fuzzSeeds(f *testing.F) *fixture {
	fx := newFixture(f)
	return fx
}

func FuzzUnmarshalChain(f *testing.F) {
	fx := fuzzSeeds(f)
	b, _ := fx.nodeChain.Marshal()
	f.Add(b)
	f.Add([]byte{0x80})
	f.Add([]byte{0x81, 0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := UnmarshalChain(b)
		if err != nil {
			return
		}
		again, err := c.Marshal()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted chain re-encodes differently: %v", err)
		}
		if len(c) > 0 {
			_, _ = fx.v.Verify(c.Leaf().Subject, c, t0)
		}
	})
}

func FuzzParseChainText(f *testing.F) {
	fx := fuzzSeeds(f)
	text, _ := fx.nodeChain.MarshalText()
	f.Add(text)
	f.Add([]byte("-----BEGIN PEERD CERTIFICATE CHAIN-----\n-----END PEERD CERTIFICATE CHAIN-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseChainText(b)
		if err != nil {
			return
		}
		if len(c) == 0 {
			t.Fatal("accepted an empty chain file")
		}
		_, _ = fx.v.Verify(c.Leaf().Subject, c, t0)
	})
}

func FuzzUnmarshalEnvelope(f *testing.F) {
	fx := fuzzSeeds(f)
	for _, e := range []*Envelope{
		must(Seal("peerd/delta", []byte("batch"), fx.node, fx.nodeChain)),
		must(Seal("peerd/intention", nil, fx.root, nil)),
	} {
		f.Add(must(e.Marshal()))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := UnmarshalEnvelope(b)
		if err != nil {
			return
		}
		again, err := e.Marshal()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted envelope re-encodes differently: %v", err)
		}
		_, _ = fx.v.Open(e, t0)
	})
}

func FuzzUnmarshalRevocation(f *testing.F) {
	fx := fuzzSeeds(f)
	f.Add(must(must(NewRevocation(fx.root, nil, pubOf(fx.node), t0)).Marshal()))
	f.Add(must(must(NewRevocation(fx.ops, fx.opsChain, pubOf(fx.node), t0)).Marshal()))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := UnmarshalRevocation(b)
		if err != nil {
			return
		}
		again, err := r.Marshal()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted revocation re-encodes differently: %v", err)
		}
		_ = NewVerifier(pubOf(fx.root)).AddRevocation(r, t0)
	})
}

func FuzzUnmarshalRotation(f *testing.F) {
	fx := fuzzSeeds(f)
	f.Add(must(must(NewRotation(fx.root, testKey("new"), t0)).Marshal()))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := UnmarshalRotation(b)
		if err != nil {
			return
		}
		again, err := r.Marshal()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted rotation re-encodes differently: %v", err)
		}
		_ = NewVerifier(pubOf(fx.root)).Rotate(r, t0.Add(time.Hour))
	})
}

func FuzzParseKeyFile(f *testing.F) {
	k := testKey("fuzz")
	f.Add(must(MarshalPrivateKey(k)))
	f.Add(must(MarshalPublicKey(pubOf(k))))
	f.Add([]byte("-----BEGIN PEERD ED25519 PUBLIC KEY-----\nNode-ID: x\n\nAAAA\n-----END PEERD ED25519 PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		priv, errPriv := ParsePrivateKey(b)
		pub, errPub := ParsePublicKey(b)
		if errPriv == nil && (errPub != nil || !pub.Equal(priv.Public())) {
			t.Fatalf("private key parses but its public half does not: %v", errPub)
		}
	})
}

func FuzzParseNodeID(f *testing.F) {
	f.Add(NodeID(pubOf(testKey("a"))))
	f.Add("12D3KooW")
	f.Add("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")
	f.Fuzz(func(t *testing.T, s string) {
		pub, err := ParseNodeID(s)
		if err != nil {
			return
		}
		if NodeID(pub) != s {
			t.Fatalf("ParseNodeID(%q) round-trips to %q", s, NodeID(pub))
		}
	})
}
