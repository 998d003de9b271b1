package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestSnapshotTruncatesAndRecovers(t *testing.T) {
	f := newFixture(t, Options{})
	if st, upTo, err := f.s.LoadSnapshot(); st != nil || upTo != 0 || err != nil {
		t.Fatalf("LoadSnapshot on new store = %q, %d, %v", st, upTo, err)
	}
	for i := 1; i <= 100; i++ {
		mustAppend(t, f.s, fmt.Sprint("r", i))
	}
	if err := f.s.SaveSnapshot([]byte("state@60"), 60); err != nil {
		t.Fatal(err)
	}
	var logged []Seq
	if err := f.s.Replay(0, func(seq Seq, _ []byte) error { logged = append(logged, seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(logged) != 40 || logged[0] != 61 || logged[39] != 100 {
		t.Fatalf("log after truncation holds %d records from %v", len(logged), logged[:min(3, len(logged))])
	}
	f.reopen()
	st, upTo, log := recoverAll(t, f.s)
	if st != "state@60" || upTo != 60 || len(log) != 40 || log[0] != (entry{61, "r61"}) || log[39] != (entry{100, "r100"}) {
		t.Fatalf("recovered %q up to %d with %d records", st, upTo, len(log))
	}

	cases := []struct {
		name  string
		state string
		upTo  Seq
		isErr error // nil: must succeed
		fails bool
	}{
		{"past the last record", "x", 101, nil, true},
		{"older than stored", "x", 59, ErrStaleSnapshot, true},
		{"same upTo replaces", "state@60 v2", 60, nil, false},
		{"everything", "state@100", 100, nil, false},
	}
	for _, c := range cases {
		err := f.s.SaveSnapshot([]byte(c.state), c.upTo)
		if c.fails != (err != nil) || (c.isErr != nil && !errors.Is(err, c.isErr)) {
			t.Fatalf("%s: SaveSnapshot(%d) = %v", c.name, c.upTo, err)
		}
		if err != nil {
			t.Logf("%s: %v", c.name, err)
		}
	}
	// An empty log after a full truncation must not restart numbering.
	f.reopen()
	st, upTo, log = recoverAll(t, f.s)
	if st != "state@100" || upTo != 100 || len(log) != 0 {
		t.Fatalf("after full truncation: %q %d %v", st, upTo, log)
	}
	if seq := mustAppend(t, f.s, "r101"); seq != 101 {
		t.Fatalf("seq after full truncation = %d", seq)
	}
}

// TestSnapshotWhileAppending takes snapshots (folding the log the way a
// replica would) while writers append, then checks the fold of snapshot +
// log after a reopen equals everything acknowledged.
func TestSnapshotWhileAppending(t *testing.T) {
	f := newFixture(t, Options{})
	const writers, each = 4, 200
	ctx := context.Background()
	done := make(chan struct{})
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			for range each {
				if _, err := f.s.Append(ctx, []byte{byte(w)}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	// The snapshot state is the count of records per writer.
	go func() {
		defer close(done)
		var counts [writers]int
		var upTo Seq
		for range 20 {
			next, err := f.s.replay(upTo, func(_ Seq, rec []byte) error { counts[rec[0]]++; return nil })
			if err != nil {
				t.Error(err)
				return
			}
			if err := f.s.SaveSnapshot(encodeCounts(counts[:]), next); err != nil {
				t.Error(err)
				return
			}
			upTo = next
		}
	}()
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	<-done
	f.reopen()
	st, _, log := recoverAll(t, f.s)
	counts := decodeCounts(t, []byte(st), writers)
	for _, e := range log {
		counts[e.rec[0]]++
	}
	for w, n := range counts {
		if n != each {
			t.Fatalf("writer %d: %d records in snapshot+log, want %d", w, n, each)
		}
	}
}

func encodeCounts(c []int) []byte {
	var b bytes.Buffer
	for _, n := range c {
		fmt.Fprintf(&b, "%d ", n)
	}
	return b.Bytes()
}

func decodeCounts(tb testing.TB, b []byte, n int) []int {
	tb.Helper()
	c := make([]int, n)
	if len(b) == 0 {
		return c
	}
	r := bytes.NewReader(b)
	for i := range c {
		if _, err := fmt.Fscan(r, &c[i]); err != nil {
			tb.Fatalf("bad counts %q: %v", b, err)
		}
	}
	return c
}
