package identity

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestVerifyValid(t *testing.T) {
	f := newFixture(t)
	caps, err := f.v.Verify(pubOf(f.node), f.nodeChain, t0)
	if err != nil {
		t.Fatal(err)
	}
	if caps.Root || caps.Name != "web-01" || caps.SignIntentions || caps.DelegateDepth != 0 {
		t.Fatalf("caps = %+v", caps)
	}
	if caps.ChainHash != f.nodeChain.Hash() {
		t.Fatal("caps.ChainHash differs from Chain.Hash")
	}
	if !caps.NotAfter.Equal(t0.Add(24*time.Hour)) || !caps.NotBefore.Equal(t0.Add(-time.Minute)) {
		t.Fatalf("window %v..%v", caps.NotBefore, caps.NotAfter)
	}
	for _, s := range []struct {
		name string
		want bool
	}{{"web-1", true}, {"web-10", true}, {"web-2", false}, {"api", false}, {"", false}} {
		if got := caps.MayPublishService(s.name); got != s.want {
			t.Errorf("MayPublishService(%q) = %v, want %v", s.name, got, s.want)
		}
	}
	for _, k := range []struct {
		key  string
		want bool
	}{{"config/web/x", true}, {"config/web/", true}, {"config/db/x", false}, {"config/webx", false}, {"*", false}} {
		if got := caps.MayWriteKV(k.key); got != k.want {
			t.Errorf("MayWriteKV(%q) = %v, want %v", k.key, got, k.want)
		}
	}
	ops, err := f.v.Verify(pubOf(f.ops), f.opsChain, t0)
	if err != nil || !ops.SignIntentions || ops.DelegateDepth != 1 {
		t.Fatalf("ops: %+v, %v", ops, err)
	}
	root, err := f.v.Verify(pubOf(f.root), nil, t0)
	if err != nil || !root.Root || !root.MayPublishService("anything") || !root.MayWriteKV("x/y") || !root.SignIntentions {
		t.Fatalf("root: %+v, %v", root, err)
	}
}

// TestVerifyFailures covers every rule: each case builds a chain that
// breaks exactly one rule and checks the sentinel and the failing link.
func TestVerifyFailures(t *testing.T) {
	other := testKey("other")
	cases := []struct {
		name     string
		build    func(f *fixture) (subject ed25519.PublicKey, c Chain, now time.Time)
		sentinel error
		link     int // -1: not a *LinkError
		detail   string
	}{
		{"untrusted root", func(f *fixture) (ed25519.PublicKey, Chain, time.Time) {
			f.v = NewVerifier(pubOf(other))
			return pubOf(f.node), f.nodeChain, t0
		}, ErrUntrusted, 0, "not a trusted root"},
		{"no chain and not a root", func(f *fixture) (ed25519.PublicKey, Chain, time.Time) {
			return pubOf(f.node), nil, t0
		}, ErrUntrusted, -1, "no certificate chain"},
		{"bad signature on leaf", func(f *fixture) (ed25519.PublicKey, Chain, time.Time) {
			leaf := cloneCert(f.nodeChain[1])
			leaf.Signature = append([]byte(nil), leaf.Signature...)
			leaf.Signature[5] ^= 1
			return pubOf(f.node), Chain{f.nodeChain[0], leaf}, t0
		}, ErrBadSignature, 1, "does not verify"},
		{"leaf signed by the wrong key", func(f *fixture) (ed25519.PublicKey, Chain, time.Time) {
			leaf := cloneCert(f.nodeChain[1])
			resign(t, leaf, other)
			leaf.Issuer = pubOf(f.ops) // claims ops, signed by other
			leaf.raw = nil
			return pubOf(f.node), Chain{f.nodeChain[0], leaf}, t0
		}, ErrBadSignature, 1, "does not verify"},
		{"fields changed after decoding", func(f *fixture) (ed25519.PublicKey, Chain, time.Time) {
			b, _ := f.nodeChain.Marshal()
			c, err := UnmarshalChain(b)
			if err != nil {
				t.Fatal(err)
			}
			c[1].Constraints.Services = []string{"*"}
			return pubOf(f.node), c, t0
		}, ErrBadSignature, 1, "modified"},
		{"issuer is not the previous subject", func(f *fixture) (ed25519.PublicKey, Chain, time.Time) {
			leaf := resign(t, cloneCert(f.nodeChain[1]), other)
			return pubOf(f.node), Chain{f.nodeChain[0], leaf}, t0
		}, ErrBrokenChain, 1, "is not the subject of link 0"},
		{"leaf is another key", func(f *fixture) (ed25519.PublicKey, Chain, time.Time) {
			return pubOf(other), f.nodeChain, t0
		}, ErrBrokenChain, 1, "is not the key being verified"},
		{"key repeats", func(f *fixture) (ed25519.PublicKey, Chain, time.Time) {
			leaf := cloneCert(f.nodeChain[1])
			leaf.Subject = pubOf(f.ops)
			resign(t, leaf, f.ops)
			return pubOf(f.ops), Chain{f.nodeChain[0], leaf}, t0
		}, ErrBrokenChain, 1, "appears earlier"},
		{"expired leaf", func(f *fixture) (ed25519.PublicKey, Chain, time.Time) {
			return pubOf(f.node), f.nodeChain, t0.Add(24 * time.Hour)
		}, ErrExpired, 1, "expired at"},
		{"expired intermediate", func(f *fixture) (ed25519.PublicKey, Chain, time.Time) {
			return pubOf(f.node), f.nodeChain, t0.Add(31 * 24 * time.Hour)
		}, ErrExpired, 0, "expired at"},
		{"not yet valid", func(f *fixture) (ed25519.PublicKey, Chain, time.Time) {
			return pubOf(f.node), f.nodeChain, t0.Add(-30 * time.Minute)
		}, ErrNotYetValid, 1, "valid from"},
		{"validity outlives parent", func(f *fixture) (ed25519.PublicKey, Chain, time.Time) {
			leaf := cloneCert(f.nodeChain[1])
			leaf.NotAfter = f.opsChain[0].NotAfter.Add(time.Second)
			return pubOf(f.node), Chain{f.nodeChain[0], resign(t, leaf, f.ops)}, t0
		}, ErrWidened, 1, "not within the parent's"},
		{"validity starts before parent", func(f *fixture) (ed25519.PublicKey, Chain, time.Time) {
			leaf := cloneCert(f.nodeChain[1])
			leaf.NotBefore = f.opsChain[0].NotBefore.Add(-time.Second)
			return pubOf(f.node), Chain{f.nodeChain[0], resign(t, leaf, f.ops)}, t0
		}, ErrWidened, 1, "not within the parent's"},
		{"service widened", func(f *fixture) (ed25519.PublicKey, Chain, time.Time) {
			leaf := cloneCert(f.nodeChain[1])
			leaf.Constraints.Services = []string{"web*"}
			return pubOf(f.node), Chain{f.nodeChain[0], resign(t, leaf, f.ops)}, t0
		}, ErrWidened, 1, `service pattern "web*" is not covered`},
		{"service outside", func(f *fixture) (ed25519.PublicKey, Chain, time.Time) {
			leaf := cloneCert(f.nodeChain[1])
			leaf.Constraints.Services = []string{"db"}
			return pubOf(f.node), Chain{f.nodeChain[0], resign(t, leaf, f.ops)}, t0
		}, ErrWidened, 1, `service pattern "db"`},
		{"KV widened", func(f *fixture) (ed25519.PublicKey, Chain, time.Time) {
			leaf := cloneCert(f.nodeChain[1])
			leaf.Constraints.KVPrefixes = []string{"conf"}
			return pubOf(f.node), Chain{f.nodeChain[0], resign(t, leaf, f.ops)}, t0
		}, ErrWidened, 1, `KV prefix "conf" is not under`},
		{"KV star under a prefix", func(f *fixture) (ed25519.PublicKey, Chain, time.Time) {
			leaf := cloneCert(f.nodeChain[1])
			leaf.Constraints.KVPrefixes = []string{"*"}
			return pubOf(f.node), Chain{f.nodeChain[0], resign(t, leaf, f.ops)}, t0
		}, ErrWidened, 1, `KV prefix "*"`},
		{"intentions widened", func(f *fixture) (ed25519.PublicKey, Chain, time.Time) {
			ops := cloneCert(f.opsChain[0])
			ops.Constraints.SignIntentions = false
			ops = resign(t, ops, f.root)
			leaf := cloneCert(f.nodeChain[1])
			leaf.Constraints.SignIntentions = true
			return pubOf(f.node), Chain{ops, resign(t, leaf, f.ops)}, t0
		}, ErrWidened, 1, "may sign intentions"},
		{"issuer may not delegate", func(f *fixture) (ed25519.PublicKey, Chain, time.Time) {
			below := &Certificate{Subject: pubOf(other), Name: "x", NotBefore: t0.Add(-time.Second), NotAfter: t0.Add(time.Hour)}
			return pubOf(other), append(append(Chain{}, f.nodeChain...), resign(t, below, f.node)), t0
		}, ErrNoDelegation, 2, "depth is 0"},
		{"depth not decreasing", func(f *fixture) (ed25519.PublicKey, Chain, time.Time) {
			leaf := cloneCert(f.nodeChain[1])
			leaf.Constraints.DelegateDepth = 1
			return pubOf(f.node), Chain{f.nodeChain[0], resign(t, leaf, f.ops)}, t0
		}, ErrWidened, 1, "allows at most 0"},
		{"leaf revoked by root", func(f *fixture) (ed25519.PublicKey, Chain, time.Time) {
			addRevocation(t, f.v, f.root, nil, pubOf(f.node))
			return pubOf(f.node), f.nodeChain, t0
		}, ErrRevoked, 1, "revoked by a root"},
		{"ancestor revoked by root", func(f *fixture) (ed25519.PublicKey, Chain, time.Time) {
			addRevocation(t, f.v, f.root, nil, pubOf(f.ops))
			return pubOf(f.node), f.nodeChain, t0
		}, ErrRevoked, 0, "revoked by a root"},
		{"leaf revoked by its issuer", func(f *fixture) (ed25519.PublicKey, Chain, time.Time) {
			addRevocation(t, f.v, f.ops, f.opsChain, pubOf(f.node))
			return pubOf(f.node), f.nodeChain, t0
		}, ErrRevoked, 1, "revoked by its ancestor"},
		{"chain too long", func(f *fixture) (ed25519.PublicKey, Chain, time.Time) {
			c := make(Chain, MaxChainDepth+1)
			for i := range c {
				c[i] = f.nodeChain[0]
			}
			return pubOf(f.node), c, t0
		}, ErrChainTooLong, -1, "at most 8"},
		{"nil link", func(f *fixture) (ed25519.PublicKey, Chain, time.Time) {
			return pubOf(f.node), Chain{f.nodeChain[0], nil}, t0
		}, ErrInvalid, -1, "nil"},
		{"subject of the wrong size", func(f *fixture) (ed25519.PublicKey, Chain, time.Time) {
			return pubOf(f.node)[:31], f.nodeChain, t0
		}, ErrMalformed, -1, "31 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			subject, chain, now := tc.build(f)
			_, err := f.v.Verify(subject, chain, now)
			if !errors.Is(err, tc.sentinel) {
				t.Fatalf("err = %v, want %v", err, tc.sentinel)
			}
			if !strings.Contains(err.Error(), tc.detail) || !strings.HasPrefix(err.Error(), "identity: ") {
				t.Errorf("err = %q, want it to contain %q", err, tc.detail)
			}
			var le *LinkError
			switch {
			case tc.link < 0 && errors.As(err, &le):
				t.Errorf("got a LinkError for link %d, want none", le.Index)
			case tc.link >= 0 && !errors.As(err, &le):
				t.Errorf("err %v is not a *LinkError", err)
			case tc.link >= 0 && le.Index != tc.link:
				t.Errorf("failing link = %d, want %d", le.Index, tc.link)
			case tc.link >= 0 && le.Name != chain[tc.link].Name:
				t.Errorf("failing link name = %q, want %q", le.Name, chain[tc.link].Name)
			}
		})
	}
}

func addRevocation(t testing.TB, v *Verifier, issuer ed25519.PrivateKey, issuerChain Chain, subject ed25519.PublicKey) {
	t.Helper()
	r, err := NewRevocation(issuer, issuerChain, subject, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.AddRevocation(r, t0); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyCache(t *testing.T) {
	f := newFixture(t)
	node := pubOf(f.node)
	if _, err := f.v.Verify(node, f.nodeChain, t0); err != nil {
		t.Fatal(err)
	}
	if len(f.v.cache) != 1 {
		t.Fatalf("cache has %d entries, want 1", len(f.v.cache))
	}
	// A hit still honours the validity window.
	if _, err := f.v.Verify(node, f.nodeChain, t0.Add(25*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Fatalf("cached chain after expiry: %v", err)
	}
	if _, err := f.v.Verify(node, f.nodeChain, t0.Add(-2*time.Minute)); !errors.Is(err, ErrNotYetValid) {
		t.Fatalf("cached chain before validity: %v", err)
	}
	// A hit is bound to the subject.
	if _, err := f.v.Verify(pubOf(f.ops), f.nodeChain, t0); !errors.Is(err, ErrBrokenChain) {
		t.Fatalf("cached chain for another subject: %v", err)
	}
	// A revocation invalidates the cached verdict.
	addRevocation(t, f.v, f.root, nil, pubOf(f.ops))
	if _, err := f.v.Verify(node, f.nodeChain, t0); !errors.Is(err, ErrRevoked) {
		t.Fatalf("after revocation: %v", err)
	}
	// A chain that differs in any certificate byte misses the cache.
	g := newFixture(t)
	if _, err := g.v.Verify(node, g.nodeChain, t0); err != nil {
		t.Fatal(err)
	}
	leaf := cloneCert(g.nodeChain[1])
	leaf.Constraints.Services = []string{"*"} // same signature, wider rights
	if _, err := g.v.Verify(node, Chain{g.nodeChain[0], leaf}, t0); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("tampered chain with a cached sibling: %v", err)
	}
}

func TestVerifyCacheBounded(t *testing.T) {
	f := newFixture(t)
	for i := 0; i < maxCacheEntries+10; i++ {
		c, err := Issue(f.root, nil, pubOf(f.node), "n", Constraints{}, t0.Add(-time.Hour), t0.Add(time.Hour), uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.v.Verify(pubOf(f.node), c, t0); err != nil {
			t.Fatal(err)
		}
		if testing.Short() && i > 100 {
			return
		}
	}
	if n := len(f.v.cache); n > maxCacheEntries {
		t.Fatalf("cache grew to %d entries", n)
	}
}

// TestVerifierConcurrent exercises Verify, AddRevocation and Rotate from
// several goroutines; run with -race.
func TestVerifierConcurrent(t *testing.T) {
	f := newFixture(t)
	newRoot := testKey("root2")
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				_, _ = f.v.Verify(pubOf(f.node), f.nodeChain, t0)
				_ = f.v.IsRevoked(pubOf(f.node))
				_ = f.v.Roots()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		r, _ := NewRevocation(f.root, nil, pubOf(testKey("someone")), t0)
		_ = f.v.AddRevocation(r, t0)
		rot, _ := NewRotation(f.root, newRoot, t0)
		_ = f.v.Rotate(rot, t0)
	}()
	wg.Wait()
	if _, err := f.v.Verify(pubOf(f.node), f.nodeChain, t0); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("after rotation the old root's chain verified: %v", err)
	}
}

func TestNewVerifierIgnoresBadRoots(t *testing.T) {
	v := NewVerifier(nil, pubOf(testKey("a")), pubOf(testKey("a")), ed25519.PublicKey{1, 2})
	if n := len(v.Roots()); n != 1 {
		t.Fatalf("roots = %d, want 1", n)
	}
}
