package crdt

import (
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"
)

func benchDeltas(b *testing.B, n int, signer Signer, origin string) []*Delta {
	b.Helper()
	r, err := NewReplica(origin, signer, Options{})
	if err != nil {
		b.Fatal(err)
	}
	out := make([]*Delta, n)
	for i := range n {
		d, err := r.KVPut(fmt.Sprintf("app/config/key-%d", i%1000), []byte("some-value-of-moderate-size-0123456789"), 0, t0)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = d
	}
	return out
}

// BenchmarkMergeDelta merges single-write deltas from a remote origin,
// with Ed25519 verification (ed25519) or the cheap fake (hash).
func BenchmarkMergeDelta(b *testing.B) {
	for _, tc := range []struct {
		name string
		auth Authorizer
		mk   func() (string, Signer)
	}{
		{"ed25519", newEdFixture().auth, func() (string, Signer) { o, s := newEdSigner(7); return o, s }},
		{"hash", hashAuth{}, func() (string, Signer) { return "remote", hashSigner{"remote"} }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			origin, s := tc.mk()
			ds := benchDeltas(b, b.N, s, origin)
			r := newEdReplica(b, 1)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := r.Merge(ds[i], tc.auth, t0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deltas/s")
		})
	}
}

// BenchmarkKVPut is the in-memory local KV write rate, signing included.
func BenchmarkKVPut(b *testing.B) {
	for _, tc := range []struct {
		name string
		mk   func() *Replica
	}{
		{"ed25519", func() *Replica { return newEdReplica(b, 1) }},
		{"hash", func() *Replica { r, _ := NewReplica("local", hashSigner{"local"}, Options{}); return r }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := tc.mk()
			val := make([]byte, 64)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := r.KVPut(fmt.Sprintf("k/%d", i%10000), val, 0, t0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
		})
	}
}

func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkMemory10kServices reports the heap held by a replica with
// 10,000 service instances from 100 remote nodes (Ed25519 signatures,
// 64-character origin IDs).
func BenchmarkMemory10kServices(b *testing.B) {
	for range b.N {
		srcs := make([]*Replica, 100)
		for i := range srcs {
			srcs[i] = newEdReplica(b, byte(i+10)) // 64-hex-char origins, real signatures
		}
		var ds []*Delta
		for i := range 10000 {
			src := srcs[i%100]
			d, err := src.PutService(Service{
				ID: fmt.Sprintf("web-%d", i), Name: fmt.Sprintf("svc-%d", i%50), Tags: []string{"prod", "v2"},
				Address: "10.1.2.3", Port: 8000 + i%1000, Meta: map[string]string{"version": "1.2.3"},
				Weights: Weights{Passing: 1, Warning: 1},
			}, t0)
			if err != nil {
				b.Fatal(err)
			}
			ds = append(ds, d)
		}
		before := heapInUse()
		r, _ := NewReplica("local", hashSigner{"local"}, Options{})
		auth := newEdFixture().auth
		for _, d := range ds {
			if _, err := r.Merge(d, auth, t0); err != nil {
				b.Fatal(err)
			}
		}
		ds = nil
		after := heapInUse()
		b.ReportMetric(float64(after-before)/(1<<20), "MiB/10k-services")
		runtime.KeepAlive(r)
	}
}

// BenchmarkDigest computes the digest of a replica that has seen 1,000
// origins; the digest is 32 bytes however many origins there are. Digest
// caches its result until the causal context changes; this measures the
// uncached computation.
func BenchmarkDigest(b *testing.B) {
	r, _ := NewReplica("local", hashSigner{"local"}, Options{})
	for i := range 1000 {
		o := fmt.Sprintf("origin-%04d", i)
		src, _ := NewReplica(o, hashSigner{o}, Options{})
		d, _ := src.PutNode(Node{Name: o}, t0)
		if _, err := r.Merge(d, hashAuth{}, t0); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		r.mu.Lock()
		r.digestOK = false // measure the computation, not the cache
		r.mu.Unlock()
		r.Digest()
	}
}

// BenchmarkRepairLag1000 is "what is missing" when one replica lags by
// 1,000 writes behind a replica holding 10,000 records from 10 origins:
// heads exchange, DeltaSince, encoding, and merge on the lagging side.
func BenchmarkRepairLag1000(b *testing.B) {
	srcs := make([]*Replica, 10)
	for i := range srcs {
		o := fmt.Sprintf("origin-%02d", i)
		srcs[i], _ = NewReplica(o, hashSigner{o}, Options{})
	}
	full, _ := NewReplica("full", hashSigner{"full"}, Options{})
	for i := range 11000 {
		d, err := srcs[i%10].KVPut(fmt.Sprintf("k/%d/%d", i%10, i), []byte("value-0123456789"), 0, t0)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := full.Merge(d, hashAuth{}, t0); err != nil {
			b.Fatal(err)
		}
	}
	st, _ := full.MarshalState()
	var base []Entry
	for _, d := range full.DeltaSince(VersionVector{}, 0) {
		for _, e := range d.Entries {
			if _, _, dot, _ := DecodeEntryHeader(e.Header); dot.Counter <= 1000 {
				base = append(base, e)
			}
		}
	}
	var bytes int
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		// The lagging replica holds the first 10,000 writes.
		lag, _ := NewReplica("lag", hashSigner{"lag"}, Options{})
		if err := lag.Apply(&Delta{Entries: base}, hashAuth{}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if lag.Digest() == full.Digest() {
			b.Fatal("no lag")
		}
		bytes = 0
		for _, d := range full.DeltaSince(lag.Heads(), 256<<10) {
			wire, _ := EncodeDelta(d)
			bytes += len(wire)
			d2, err := DecodeDelta(wire)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := lag.Merge(d2, hashAuth{}, t0); err != nil {
				b.Fatal(err)
			}
		}
		if lag.Digest() != full.Digest() {
			b.Fatal("repair incomplete")
		}
	}
	b.ReportMetric(float64(bytes), "repair-bytes")
	b.ReportMetric(float64(len(st)), "full-state-bytes")
}

// BenchmarkWriteWith10kWatchers is a local KV write while 10,000 blocking
// queries wait on distinct KV prefixes and service scopes: a write wakes
// only the watchers of its own key's prefixes.
func BenchmarkWriteWith10kWatchers(b *testing.B) {
	r, _ := NewReplica("local", hashSigner{"local"}, Options{})
	for i := range 5000 {
		r.Watch(fmt.Sprintf("%sapp/%d/", ScopeKV, i))
		r.Watch(ScopeService(fmt.Sprintf("svc-%d", i)))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := r.KVPut(fmt.Sprintf("other/%d", i%1000), []byte("v"), 0, t0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServicesQuery is a health query for one service name (200
// instances with a check each) in a replica of 10,000 instances.
func BenchmarkServicesQuery(b *testing.B) {
	r, _ := NewReplica("local", hashSigner{"local"}, Options{})
	for i := range 100 {
		o := fmt.Sprintf("node-%03d", i)
		src, _ := NewReplica(o, hashSigner{o}, Options{})
		for j := range 100 {
			for _, d := range []*Delta{
				mustD(src.PutService(Service{ID: fmt.Sprintf("s%d", j), Name: fmt.Sprintf("svc-%d", j%50), Tags: []string{"prod"}}, t0)),
				mustD(src.PutCheck(Check{ID: fmt.Sprintf("c%d", j), ServiceID: fmt.Sprintf("s%d", j), Status: StatusPassing}, t0)),
			} {
				if _, err := r.Merge(d, hashAuth{}, t0); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if got := r.Services("svc-7", []string{"prod"}); len(got) != 200 || len(got[0].Checks) != 1 {
			b.Fatalf("%d instances", len(got))
		}
	}
}

// BenchmarkKVListPrefix lists one prefix of 100 keys in a replica holding
// 10,000 keys under 100 prefixes and 20,000 service and check records (what
// consul-template's `ls`/`tree` costs per wake-up).
func BenchmarkKVListPrefix(b *testing.B) {
	r, _ := NewReplica("local", hashSigner{"local"}, Options{})
	for i := range 10000 {
		if _, err := r.KVPut(fmt.Sprintf("app-%02d/key-%04d", i%100, i), []byte("v"), 0, t0); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 10000 {
		mustD(r.PutService(Service{ID: fmt.Sprintf("s%d", i), Name: "web"}, t0))
		mustD(r.PutCheck(Check{ID: fmt.Sprintf("c%d", i), ServiceID: fmt.Sprintf("s%d", i), Status: StatusPassing}, t0))
	}
	b.Run("list", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if got := r.KVList("app-07/"); len(got) != 100 {
				b.Fatalf("%d keys", len(got))
			}
		}
	})
	b.Run("keys", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if got := r.KVKeys("app-", "/"); len(got) != 100 {
				b.Fatalf("%d keys", len(got))
			}
		}
	})
}

// BenchmarkReadDuringRepair measures what a reader (a DNS or HTTP query:
// KVGet) waits while another goroutine merges repair batches of 1,000
// Ed25519-signed records: p50/p99/max of the read, per merged batch.
func BenchmarkReadDuringRepair(b *testing.B) {
	fx := newEdFixture()
	src := newEdReplica(b, 1)
	var batches []*Delta
	for i := range 4000 {
		d, err := src.KVPut(fmt.Sprintf("app/k-%d", i), []byte("v"), 0, t0)
		if err != nil {
			b.Fatal(err)
		}
		if i%1000 == 0 {
			batches = append(batches, &Delta{})
		}
		last := batches[len(batches)-1]
		last.Entries = append(last.Entries, d.Entries...)
	}
	var lat []time.Duration
	b.ResetTimer()
	for range b.N {
		dst := newEdReplica(b, 2)
		if _, err := dst.KVPut("probe", []byte("x"), 0, t0); err != nil {
			b.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for _, d := range batches {
				if _, err := dst.Merge(d, fx.auth, t0); err != nil {
					b.Error(err)
					return
				}
			}
		}()
		for running := true; running; {
			select {
			case <-done:
				running = false
			default:
			}
			start := time.Now()
			if _, ok := dst.KVGet("probe"); !ok {
				b.Fatal("probe missing")
			}
			lat = append(lat, time.Since(start))
			time.Sleep(100 * time.Microsecond)
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "read-p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "read-p99-µs")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "read-max-µs")
}
