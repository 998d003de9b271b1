package store

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkAppend measures durable appends of 128-byte records from G
// concurrent goroutines. Besides ns/op it reports appends/s, per-append
// latency p50/p99 in µs, and records per group commit. "maxbatch=1" turns
// group commit off (one fsync per record) for comparison; "nosync" skips
// fsync (not durable, for comparison only).
func BenchmarkAppend(b *testing.B) {
	cases := []struct {
		name       string
		goroutines int
		opts       Options
	}{
		{"sync/g=1", 1, Options{}},
		{"sync/g=8", 8, Options{}},
		{"sync/g=64", 64, Options{}},
		{"sync/g=256", 256, Options{}},
		{"sync/g=64/maxbatch=1", 64, Options{MaxBatch: 1}},
		{"nosync/g=64", 64, Options{NoSync: true}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			c.opts.Path = filepath.Join(b.TempDir(), "bench.db")
			s, err := Open(c.opts)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			benchAppend(b, s, c.goroutines)
		})
	}
}

func benchAppend(b *testing.B, s *Store, goroutines int) {
	rec := bytes.Repeat([]byte{0xd7}, 128)
	lat := make([][]time.Duration, goroutines)
	var next atomic.Int64
	var wg sync.WaitGroup
	commits0 := s.Stats().Commits
	cpu0 := processCPU(b)
	b.SetBytes(int64(len(rec)))
	b.ResetTimer()
	start := time.Now()
	for g := range goroutines {
		wg.Go(func() {
			mine := make([]time.Duration, 0, b.N/goroutines+1)
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if _, err := s.Append(context.Background(), rec); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			lat[g] = mine
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	cpu := processCPU(b) - cpu0
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	pct := func(p float64) float64 {
		return float64(all[min(len(all)-1, int(p*float64(len(all))))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "appends/s")
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	// CPU time (user+system, whole process) per append: unlike the
	// latencies it hardly depends on how busy the machine's other
	// processes keep the cores.
	b.ReportMetric(float64(cpu.Nanoseconds())/1e3/float64(len(all)), "cpu-µs/op")
	if commits := s.Stats().Commits - commits0; commits > 0 {
		b.ReportMetric(float64(len(all))/float64(commits), "recs/commit")
	}
}

// BenchmarkRecover measures a restart: Recover over a 1 MiB snapshot and
// 100,000 128-byte log records.
func BenchmarkRecover(b *testing.B) {
	const records = 100_000
	path := filepath.Join(b.TempDir(), "bench.db")
	s, err := Open(Options{Path: path, NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	rec := bytes.Repeat([]byte{0x11}, 128)
	batch := make([][]byte, 1000)
	for i := range batch {
		batch[i] = rec
	}
	for range records / len(batch) {
		if _, err := s.AppendBatch(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.SaveSnapshot(bytes.Repeat([]byte{0x22}, 1<<20), 0); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		s, err := Open(Options{Path: path})
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		if err := s.Recover(func([]byte, Seq) error { return nil }, func(Seq, []byte) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		if n != records {
			b.Fatalf("recovered %d records", n)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkSaveSnapshot measures a durable 1 MiB snapshot that truncates
// 10,000 log records.
func BenchmarkSaveSnapshot(b *testing.B) {
	s, err := Open(Options{Path: filepath.Join(b.TempDir(), "bench.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	state := bytes.Repeat([]byte{0x33}, 1<<20)
	batch := make([][]byte, 10_000)
	for i := range batch {
		batch[i] = fmt.Appendf(nil, "%0128d", i)
	}
	b.SetBytes(int64(len(state)))
	for b.Loop() {
		b.StopTimer()
		last, err := s.AppendBatch(context.Background(), batch)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := s.SaveSnapshot(state, last); err != nil {
			b.Fatal(err)
		}
	}
}

// processCPU is the user+system CPU time this process has used.
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
