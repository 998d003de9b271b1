package identity

import (
	"syscall"
	"testing"
	"time"
)

// cpuNow returns the CPU time (user + system) this process has used. The
// benchmarks report it per operation as cpu-ns/op next to Go's wall-clock
// ns/op: on this shared 2-core machine other processes inflate wall-clock
// figures, while CPU time measures what an operation costs.
func cpuNow() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loop runs op b.N times (via b.Loop) and reports CPU time per operation.
func loop(b *testing.B, op func()) {
	b.Helper()
	b.ReportAllocs()
	start := cpuNow()
	for b.Loop() {
		op()
	}
	if b.N > 0 {
		b.ReportMetric(float64(cpuNow()-start)/float64(b.N), "cpu-ns/op")
	}
}

// threeLinks returns a verifier and a 3-link chain root -> a -> b -> leaf.
func threeLinks(b testing.TB) (*Verifier, Chain, *fixture) {
	b.Helper()
	f := newFixture(b)
	a, bk, leaf := testKey("a"), testKey("b"), testKey("leaf")
	c, err := Issue(f.root, nil, pubOf(a), "a", Constraints{Services: []string{"*"}, KVPrefixes: []string{"*"}, DelegateDepth: 2}, t0.Add(-time.Hour), t0.Add(time.Hour), 1)
	if err == nil {
		c, err = Issue(a, c, pubOf(bk), "b", Constraints{Services: []string{"web-*"}, KVPrefixes: []string{"config/"}, DelegateDepth: 1}, t0.Add(-time.Hour), t0.Add(time.Hour), 2)
	}
	if err == nil {
		c, err = Issue(bk, c, pubOf(leaf), "leaf", Constraints{Services: []string{"web-1"}, KVPrefixes: []string{"config/web/"}}, t0.Add(-time.Hour), t0.Add(time.Hour), 3)
	}
	if err != nil {
		b.Fatal(err)
	}
	return f.v, c, f
}

func BenchmarkSign(b *testing.B) {
	f := newFixture(b)
	payload := make([]byte, 256)
	loop(b, func() {
		if _, err := Seal("peerd/delta", payload, f.node, f.nodeChain); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkVerifyEnvelope opens a root-signed envelope: one signature, no chain.
func BenchmarkVerifyEnvelope(b *testing.B) {
	f := newFixture(b)
	e, _ := Seal("peerd/delta", make([]byte, 256), f.root, nil)
	loop(b, func() {
		if _, err := f.v.Open(e, t0); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkVerifyChain3Uncached verifies a 3-link chain from scratch: no
// cached verdict, no remembered signature (3 Ed25519 verifications).
func BenchmarkVerifyChain3Uncached(b *testing.B) {
	v, c, _ := threeLinks(b)
	leaf := c.Leaf().Subject
	loop(b, func() {
		v.mu.Lock()
		v.invalidateLocked()
		v.mu.Unlock()
		v.sigs.reset()
		if _, err := v.Verify(leaf, c, t0); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkVerifyChain3Revalidate is the cost after the verdict cache was
// dropped (any revocation or rotation): every rule is checked again, but
// the signatures are remembered.
func BenchmarkVerifyChain3Revalidate(b *testing.B) {
	v, c, _ := threeLinks(b)
	leaf := c.Leaf().Subject
	loop(b, func() {
		v.mu.Lock()
		v.invalidateLocked()
		v.mu.Unlock()
		if _, err := v.Verify(leaf, c, t0); err != nil {
			b.Fatal(err)
		}
	})
}

func BenchmarkVerifyChain3Cached(b *testing.B) {
	v, c, _ := threeLinks(b)
	leaf := c.Leaf().Subject
	if _, err := v.Verify(leaf, c, t0); err != nil {
		b.Fatal(err)
	}
	loop(b, func() {
		if _, err := v.Verify(leaf, c, t0); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkOpenChain3Cached is the common receive path: an envelope from a
// node with a 3-link chain whose verdict is cached (one signature check).
func BenchmarkOpenChain3Cached(b *testing.B) {
	v, c, _ := threeLinks(b)
	e, err := Seal("peerd/delta", make([]byte, 256), testKey("leaf"), c)
	if err != nil {
		b.Fatal(err)
	}
	loop(b, func() {
		if _, err := v.Open(e, t0); err != nil {
			b.Fatal(err)
		}
	})
}

func BenchmarkUnmarshalChain3(b *testing.B) {
	_, c, _ := threeLinks(b)
	raw, _ := c.Marshal()
	loop(b, func() {
		if _, err := UnmarshalChain(raw); err != nil {
			b.Fatal(err)
		}
	})
}
