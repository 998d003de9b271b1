package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDamagedFileNeverPanics overwrites or cuts parts of a real store file
// and checks that Open and Recover either work or return an error; they
// must not panic.
func TestDamagedFileNeverPanics(t *testing.T) {
	src := filepath.Join(t.TempDir(), "good.db")
	f := newFixture(t, Options{Path: src})
	for i := range 300 {
		mustAppend(t, f.s, fmt.Sprintf("record %d with some padding to fill pages", i))
	}
	if err := f.s.SaveSnapshot([]byte("snap"), 100); err != nil {
		t.Fatal(err)
	}
	if err := f.s.PutMeta("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := f.s.Close(); err != nil {
		t.Fatal(err)
	}
	f.s = nil
	good, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	const pageSize = 4096
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	type damage struct {
		name string
		fn   func([]byte) []byte
	}
	cases := []damage{
		{"empty file", func([]byte) []byte { return nil }},
		{"half file", func(b []byte) []byte { return b[:len(b)/2] }},
		{"one page", func(b []byte) []byte { return b[:pageSize] }},
		{"zeroed meta pages", func(b []byte) []byte {
			clear(b[:2*pageSize])
			return b
		}},
	}
	for range 40 {
		page := 2 + rng.IntN(len(good)/pageSize-2)
		off := page*pageSize + rng.IntN(pageSize)
		n := 1 + rng.IntN(64)
		cases = append(cases, damage{fmt.Sprintf("garbage %d at page %d+%d", n, page, off%pageSize), func(b []byte) []byte {
			for j := off; j < min(off+n, len(b)); j++ {
				b[j] = byte(rng.Uint32())
			}
			return b
		}})
	}
	outcomes := map[string]int{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "damaged.db")
			if err := os.WriteFile(path, c.fn(append([]byte{}, good...)), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(Options{Path: path})
			if err != nil {
				outcomes["open error"]++
				t.Logf("Open: %v", err)
				return
			}
			defer s.Close()
			err = s.Recover(func([]byte, Seq) error { return nil }, func(Seq, []byte) error { return nil })
			switch {
			case err == nil:
				outcomes["recovered"]++
			case errors.Is(err, ErrCorrupt):
				outcomes["corrupt"]++
				t.Logf("Recover: %v", err)
			default:
				outcomes["other error"]++
				t.Logf("Recover: %v", err)
			}
		})
	}
	t.Logf("outcomes: %v", outcomes)
}
