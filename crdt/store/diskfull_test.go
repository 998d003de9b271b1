package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// TestRealDiskFull runs only when PEERD_STORE_ENOSPC_DIR names a directory
// on a small file system of its own (it needs root to set up), e.g.
//
//	mkdir -p /tmp/enospc && mount -t tmpfs -o size=2m tmpfs /tmp/enospc
//	PEERD_STORE_ENOSPC_DIR=/tmp/enospc go test -run TestRealDiskFull ./crdt/store
//
// It puts a 256 KiB ballast file next to the store, appends from 8
// goroutines until the file system is full, checks every failed append got
// an ENOSPC error, deletes the ballast, appends again, and checks after a
// reopen that exactly the acknowledged records are there.
func TestRealDiskFull(t *testing.T) {
	root := os.Getenv("PEERD_STORE_ENOSPC_DIR")
	if root == "" {
		t.Skip("set PEERD_STORE_ENOSPC_DIR to a small dedicated file system to run")
	}
	dir, err := os.MkdirTemp(root, "store")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	ballast := filepath.Join(dir, "ballast")
	if err := os.WriteFile(ballast, make([]byte, 256<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, Options{Path: filepath.Join(dir, "replica.db")})
	const writers = 8
	rec := func(w, i int) []byte {
		return append(fmt.Appendf(nil, "%d %d ", w, i), bytes.Repeat([]byte{'.'}, 500)...)
	}
	var mu sync.Mutex
	acked := map[Seq]string{}
	var fails []error
	next := make([]int, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := 0; i < 1_000_000; i++ {
				r := rec(w, i)
				seq, err := f.s.Append(context.Background(), r)
				mu.Lock()
				if err != nil {
					fails = append(fails, err)
					next[w] = i
					mu.Unlock()
					return
				}
				acked[seq] = string(r)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, err := range fails {
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("failed append without ENOSPC: %v", err)
		}
	}
	t.Logf("%d acknowledged, %d failed; e.g. %v", len(acked), len(fails), fails[0])
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	for w := range writers {
		r := rec(w, next[w])
		seq, err := f.s.Append(context.Background(), r)
		if err != nil {
			t.Fatalf("append after freeing space: %v", err)
		}
		acked[seq] = string(r)
	}
	f.reopen()
	_, _, log := recoverAll(t, f.s)
	if len(log) != len(acked) {
		t.Fatalf("%d records recovered, %d acknowledged", len(log), len(acked))
	}
	for _, e := range log {
		if acked[e.seq] != e.rec {
			t.Fatalf("seq %d: recovered %.20q, acknowledged %.20q", e.seq, e.rec, acked[e.seq])
		}
	}
}
