package identity

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
)

func TestIssueRefuses(t *testing.T) {
	f := newFixture(t)
	node := pubOf(f.node)
	nb, na := t0.Add(-time.Minute), t0.Add(time.Hour)
	cases := []struct {
		name     string
		issue    func() (Chain, error)
		sentinel error
		detail   string
	}{
		{"short issuer key", func() (Chain, error) {
			return Issue(f.ops[:10], f.opsChain, node, "n", Constraints{}, nb, na, 1)
		}, ErrInvalid, "private key"},
		{"issuer is not the parent leaf", func() (Chain, error) {
			return Issue(f.node, f.opsChain, node, "n", Constraints{}, nb, na, 1)
		}, ErrBrokenChain, "not the subject"},
		{"service widened", func() (Chain, error) {
			return Issue(f.ops, f.opsChain, node, "n", Constraints{Services: []string{"db"}}, nb, na, 1)
		}, ErrWidened, `service pattern "db"`},
		{"KV widened", func() (Chain, error) {
			return Issue(f.ops, f.opsChain, node, "n", Constraints{KVPrefixes: []string{"*"}}, nb, na, 1)
		}, ErrWidened, "KV prefix"},
		{"depth widened", func() (Chain, error) {
			return Issue(f.ops, f.opsChain, node, "n", Constraints{DelegateDepth: 1}, nb, na, 1)
		}, ErrWidened, "delegate depth 1"},
		{"no delegation", func() (Chain, error) {
			return Issue(f.node, f.nodeChain, pubOf(testKey("x")), "x", Constraints{}, nb, na, 1)
		}, ErrNoDelegation, "depth is 0"},
		{"outlives parent", func() (Chain, error) {
			return Issue(f.ops, f.opsChain, node, "n", Constraints{}, nb, t0.Add(365*24*time.Hour), 1)
		}, ErrWidened, "not within the parent's"},
		{"empty window", func() (Chain, error) {
			return Issue(f.root, nil, node, "n", Constraints{}, na, nb, 1)
		}, ErrInvalid, "not before not-after"},
		{"empty name", func() (Chain, error) {
			return Issue(f.root, nil, node, "", Constraints{}, nb, na, 1)
		}, ErrInvalid, "empty subject name"},
		{"name with space", func() (Chain, error) {
			return Issue(f.root, nil, node, "a b", Constraints{}, nb, na, 1)
		}, ErrInvalid, "space"},
		{"bidi override in name", func() (Chain, error) {
			return Issue(f.root, nil, node, "web\u202e10", Constraints{}, nb, na, 1)
		}, ErrInvalid, "format character"},
		{"year 10000", func() (Chain, error) {
			return Issue(f.root, nil, node, "n", Constraints{}, nb, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), 1)
		}, ErrInvalid, "between 1970 and 9999"},
		{"bad subject", func() (Chain, error) {
			return Issue(f.root, nil, node[:5], "n", Constraints{}, nb, na, 1)
		}, ErrInvalid, "subject key has 5 bytes"},
		{"bad pattern", func() (Chain, error) {
			return Issue(f.root, nil, node, "n", Constraints{KVPrefixes: []string{""}}, nb, na, 1)
		}, ErrInvalid, "empty KV prefix"},
		{"too deep", func() (Chain, error) {
			c := make(Chain, MaxChainDepth)
			for i := range c {
				c[i] = f.opsChain[0]
			}
			return Issue(f.ops, c, node, "n", Constraints{}, nb, na, 1)
		}, ErrChainTooLong, "exceed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.issue()
			if !errors.Is(err, c.sentinel) || !strings.Contains(err.Error(), c.detail) {
				t.Fatalf("err = %v, want %v containing %q", err, c.sentinel, c.detail)
			}
		})
	}
}

func TestIssueDoesNotAlias(t *testing.T) {
	f := newFixture(t)
	svc := []string{"web-1"}
	c, err := Issue(f.ops, f.opsChain, pubOf(f.node), "n", Constraints{Services: svc}, t0, t0.Add(time.Hour), 1)
	if err != nil {
		t.Fatal(err)
	}
	svc[0] = "api"
	if _, err := f.v.Verify(pubOf(f.node), c, t0); err != nil {
		t.Fatalf("caller's slice changed the certificate: %v", err)
	}
	if len(f.opsChain) != 1 {
		t.Fatal("Issue appended into the parent chain")
	}
}

func TestMaximalChain(t *testing.T) {
	root := testKey("root")
	v := NewVerifier(pubOf(root))
	var chain Chain
	issuer := root
	for i := 0; i < MaxChainDepth; i++ {
		k := testKey(string(rune('a' + i)))
		var err error
		chain, err = Issue(issuer, chain, pubOf(k), "l", Constraints{Services: []string{"*"}, DelegateDepth: MaxChainDepth - 1 - i},
			t0.Add(-time.Hour), t0.Add(time.Hour), uint64(i))
		if err != nil {
			t.Fatal(i, err)
		}
		issuer = k
	}
	b, err := chain.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalChain(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(pubOf(issuer), back, t0); err != nil {
		t.Fatal(err)
	}
}

func TestChainEncodingRoundTrip(t *testing.T) {
	f := newFixture(t)
	b, err := f.nodeChain.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalChain(b)
	if err != nil {
		t.Fatal(err)
	}
	if back.Hash() != f.nodeChain.Hash() {
		t.Fatal("hash changed across a round trip")
	}
	b2, _ := back.Marshal()
	if !bytes.Equal(b, b2) {
		t.Fatal("encoding changed across a round trip")
	}
	for i := range back {
		if back[i].Name != f.nodeChain[i].Name || !back[i].NotAfter.Equal(f.nodeChain[i].NotAfter) ||
			strings.Join(back[i].Constraints.Services, ",") != strings.Join(f.nodeChain[i].Constraints.Services, ",") {
			t.Fatalf("link %d differs: %+v", i, back[i])
		}
	}
	// Hash of a certificate without a cached encoding equals the cached one.
	fresh := Chain{cloneCert(f.nodeChain[0]), cloneCert(f.nodeChain[1])}
	if fresh.Hash() != f.nodeChain.Hash() {
		t.Fatal("hash depends on the cached encoding")
	}
}

func TestUnmarshalChainRejects(t *testing.T) {
	f := newFixture(t)
	good, _ := f.nodeChain.Marshal()
	leafRaw, _ := f.nodeChain[1].Marshal()

	var w wireCertificate
	if err := decMode.Unmarshal(leafRaw, &w); err != nil {
		t.Fatal(err)
	}
	enc := func(v any) []byte {
		b, err := encMode.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	chainOf := func(certs ...[]byte) []byte {
		raws := make([]cbor.RawMessage, len(certs))
		for i, c := range certs {
			raws[i] = c
		}
		return enc(raws)
	}
	v2 := w
	v2.Version = 2
	type extra struct {
		wireCertificate
		X int `cbor:"10,keyasint"`
	}
	shortKey := w
	shortKey.Subject = w.Subject[:31]
	noSig := w
	noSig.Signature = nil
	deep := w
	deep.Constraints.DelegateDepth = 1 << 40
	// A non-canonical encoding of the same certificate: a 2-byte length for the name.
	nonCanon := bytes.Replace(leafRaw, []byte{0x05, 0x66, 'w', 'e', 'b', '-', '0', '1'}, []byte{0x05, 0x78, 0x06, 'w', 'e', 'b', '-', '0', '1'}, 1)
	if bytes.Equal(nonCanon, leafRaw) {
		t.Fatal("test setup: name not found in encoding")
	}
	nine := make([][]byte, MaxChainDepth+1)
	for i := range nine {
		nine[i] = leafRaw
	}
	cases := []struct {
		name     string
		b        []byte
		sentinel error
		detail   string
	}{
		{"empty", nil, ErrMalformed, ""},
		{"garbage", []byte("hello world"), ErrMalformed, ""},
		{"truncated", good[:len(good)-1], ErrMalformed, ""},
		{"trailing bytes", append(append([]byte(nil), good...), 0), ErrMalformed, ""},
		{"not an array", leafRaw, ErrMalformed, ""},
		{"unknown version", chainOf(enc(v2)), ErrUnknownVersion, "version 2"},
		{"unknown field", chainOf(enc(extra{wireCertificate: w, X: 1})), ErrMalformed, "unknown field"},
		{"short key", chainOf(enc(shortKey)), ErrMalformed, "31 bytes"},
		{"missing signature", chainOf(enc(noSig)), ErrMalformed, "signature"},
		{"huge depth", chainOf(enc(deep)), ErrMalformed, "delegate depth"},
		{"non-canonical", chainOf(nonCanon), ErrMalformed, "canonical"},
		{"too many links", chainOf(nine...), ErrChainTooLong, "at most 8"},
		{"oversized", make([]byte, MaxChainSize+1), ErrMalformed, "limit"},
		{"indefinite array", append(append([]byte{0x9f}, good[1:]...), 0xff), ErrMalformed, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := UnmarshalChain(c.b)
			if !errors.Is(err, c.sentinel) || !strings.Contains(err.Error(), c.detail) {
				t.Fatalf("err = %v, want %v containing %q", err, c.sentinel, c.detail)
			}
		})
	}
}

// TestChainFileEveryByteFlip flips each byte of a chain file in turn: every
// variant must fail to parse or to verify, never verify.
func TestChainFileEveryByteFlip(t *testing.T) {
	f := newFixture(t)
	text, err := f.nodeChain.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseChainText(text); err != nil {
		t.Fatal(err)
	}
	node := pubOf(f.node)
	for i := range text {
		for _, mask := range []byte{0x01, 0xff} {
			mut := bytes.Clone(text)
			mut[i] ^= mask
			c, err := ParseChainText(mut)
			if err == nil {
				_, err = f.v.Verify(node, c, t0)
			}
			if err == nil {
				t.Fatalf("flipping byte %d with %#x still verifies", i, mask)
			}
		}
	}
}

func TestChainFile(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "node.cert")
	if err := WriteChainFile(p, f.nodeChain); err != nil {
		t.Fatal(err)
	}
	text, _ := os.ReadFile(p)
	if !bytes.HasPrefix(text, []byte("-----BEGIN PEERD CERTIFICATE CHAIN-----\n")) {
		t.Fatalf("file starts with %q", text[:40])
	}
	c, err := ReadChainFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Hash() != f.nodeChain.Hash() {
		t.Fatal("chain changed through the file")
	}
	// Bare CBOR is accepted too.
	b, _ := f.nodeChain.Marshal()
	bare := filepath.Join(dir, "bare.cbor")
	os.WriteFile(bare, b, 0o644)
	if _, err := ReadChainFile(bare); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string][]byte{
		"empty.cert":   nil,
		"garbage.cert": []byte("-----BEGIN PEERD CERTIFICATE CHAIN-----\n!!!\n-----END PEERD CERTIFICATE CHAIN-----\n"),
		"key.cert":     armor(PublicKeyBlockType, nil, pubOf(f.node)),
		"nochain.cert": armor(ChainBlockType, nil, []byte{0x80}),
		"crlf.cert":    bytes.ReplaceAll(text, []byte("\n"), []byte("\r\n")),
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, content, 0o644)
		if _, err := ReadChainFile(p); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	if _, err := ReadChainFile(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
	if err := WriteChainFile(filepath.Join(dir, "x"), nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty chain written: %v", err)
	}
}
