package identity

import (
	"crypto/ed25519"
	"crypto/sha256"
	"testing"
	"time"
)

// t0 is the fixed "now" of the tests.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// testKey returns a deterministic key derived from name.
func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("peerd identity test key " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

// fixture is a root, an operator who may delegate once, and a node below it:
// root -> ops (depth 1, web-*, config/, intentions) -> node (web-1*, config/web/).
type fixture struct {
	root, ops, node ed25519.PrivateKey
	opsChain        Chain
	nodeChain       Chain
	v               *Verifier
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{root: testKey("root"), ops: testKey("ops"), node: testKey("node")}
	var err error
	f.opsChain, err = Issue(f.root, nil, pubOf(f.ops), "ops", Constraints{
		Services: []string{"web-*", "api"}, KVPrefixes: []string{"config/"}, SignIntentions: true, DelegateDepth: 1,
	}, t0.Add(-time.Hour), t0.Add(30*24*time.Hour), 1)
	if err != nil {
		t.Fatal(err)
	}
	f.nodeChain, err = Issue(f.ops, f.opsChain, pubOf(f.node), "web-01", Constraints{
		Services: []string{"web-1*"}, KVPrefixes: []string{"config/web/"},
	}, t0.Add(-time.Minute), t0.Add(24*time.Hour), 2)
	if err != nil {
		t.Fatal(err)
	}
	f.v = NewVerifier(pubOf(f.root))
	return f
}

// resign signs cert again with key after a test changed its fields, bypassing Issue's checks.
func resign(t testing.TB, c *Certificate, key ed25519.PrivateKey) *Certificate {
	t.Helper()
	c.raw = nil
	if err := c.Sign(key); err != nil {
		t.Fatal(err)
	}
	return c
}

// cloneCert returns a deep enough copy for tests to mutate.
func cloneCert(c *Certificate) *Certificate {
	d := *c
	d.Constraints.Services = append([]string(nil), c.Constraints.Services...)
	d.Constraints.KVPrefixes = append([]string(nil), c.Constraints.KVPrefixes...)
	if len(d.Constraints.Services) == 0 {
		d.Constraints.Services = nil
	}
	if len(d.Constraints.KVPrefixes) == 0 {
		d.Constraints.KVPrefixes = nil
	}
	d.raw = nil
	return &d
}
