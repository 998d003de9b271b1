package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// fixture is a store in a fresh directory that tests can close and reopen.
type fixture struct {
	tb   testing.TB
	opts Options
	s    *Store
}

func newFixture(tb testing.TB, opts Options) *fixture {
	tb.Helper()
	if opts.Path == "" {
		opts.Path = filepath.Join(tb.TempDir(), "replica.db")
	}
	f := &fixture{tb: tb, opts: opts}
	f.open()
	tb.Cleanup(func() {
		if f.s != nil {
			_ = f.s.Close()
		}
	})
	return f
}

func (f *fixture) open() {
	f.tb.Helper()
	s, err := Open(f.opts)
	if err != nil {
		f.tb.Fatalf("Open: %v", err)
	}
	f.s = s
}

func (f *fixture) reopen() {
	f.tb.Helper()
	if err := f.s.Close(); err != nil {
		f.tb.Fatalf("Close: %v", err)
	}
	f.open()
}

// entry is one recovered record.
type entry struct {
	seq Seq
	rec string
}

// recoverAll runs Recover and collects everything.
func recoverAll(tb testing.TB, s *Store) (state string, upTo Seq, log []entry) {
	tb.Helper()
	err := s.Recover(func(st []byte, u Seq) error {
		state, upTo = string(st), u
		return nil
	}, func(seq Seq, rec []byte) error {
		log = append(log, entry{seq, string(rec)})
		return nil
	})
	if err != nil {
		tb.Fatalf("Recover: %v", err)
	}
	return state, upTo, log
}

func mustAppend(tb testing.TB, s *Store, rec string) Seq {
	tb.Helper()
	seq, err := s.Append(context.Background(), []byte(rec))
	if err != nil {
		tb.Fatalf("Append(%q): %v", rec, err)
	}
	return seq
}

func TestAppendAndRecover(t *testing.T) {
	f := newFixture(t, Options{})
	if _, upTo, log := recoverAll(t, f.s); upTo != 0 || len(log) != 0 {
		t.Fatalf("new store recovered %d, %v", upTo, log)
	}
	for i := 1; i <= 5; i++ {
		if seq := mustAppend(t, f.s, fmt.Sprint("r", i)); seq != Seq(i) {
			t.Fatalf("append %d got seq %d", i, seq)
		}
	}
	last, err := f.s.AppendBatch(context.Background(), [][]byte{[]byte("b1"), []byte("b2"), {}})
	if err != nil || last != 8 {
		t.Fatalf("AppendBatch = %d, %v", last, err)
	}
	if last, err := f.s.AppendBatch(context.Background(), nil); last != 0 || err != nil {
		t.Fatalf("empty AppendBatch = %d, %v", last, err)
	}
	f.reopen()
	if f.s.LastSeq() != 8 {
		t.Fatalf("LastSeq after reopen = %d", f.s.LastSeq())
	}
	_, _, log := recoverAll(t, f.s)
	want := []entry{{1, "r1"}, {2, "r2"}, {3, "r3"}, {4, "r4"}, {5, "r5"}, {6, "b1"}, {7, "b2"}, {8, ""}}
	if fmt.Sprint(log) != fmt.Sprint(want) {
		t.Fatalf("recovered %v, want %v", log, want)
	}
	if seq := mustAppend(t, f.s, "after"); seq != 9 {
		t.Fatalf("seq after reopen = %d", seq)
	}
	var tail []entry
	if err := f.s.Replay(6, func(seq Seq, rec []byte) error {
		tail = append(tail, entry{seq, string(rec)})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(tail) != fmt.Sprint([]entry{{7, "b2"}, {8, ""}, {9, "after"}}) {
		t.Fatalf("Replay(6) = %v", tail)
	}
	stop := errors.New("stop")
	n := 0
	if err := f.s.Replay(0, func(Seq, []byte) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("Replay with failing fn = %v after %d calls", err, n)
	}
}

func TestConcurrentAppend(t *testing.T) {
	const writers, each = 16, 150
	f := newFixture(t, Options{MaxBatch: 64})
	seqs := make([][]Seq, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				seq, err := f.s.Append(context.Background(), fmt.Appendf(nil, "%d/%d", w, i))
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				seqs[w] = append(seqs[w], seq)
			}
		})
	}
	wg.Wait()
	st := f.s.Stats()
	if st.Appended != writers*each || st.LastSeq != writers*each {
		t.Fatalf("stats %+v", st)
	}
	t.Logf("%d appends in %d commits", st.Appended, st.Commits)
	f.reopen()
	_, _, log := recoverAll(t, f.s)
	if len(log) != writers*each {
		t.Fatalf("recovered %d records", len(log))
	}
	bySeq := map[Seq]string{}
	for i, e := range log {
		if e.seq != Seq(i+1) {
			t.Fatalf("record %d has seq %d", i, e.seq)
		}
		bySeq[e.seq] = e.rec
	}
	for w := range writers {
		for i, seq := range seqs[w] {
			if i > 0 && seq <= seqs[w][i-1] {
				t.Fatalf("writer %d: seq %d after %d", w, seq, seqs[w][i-1])
			}
			if want := fmt.Sprintf("%d/%d", w, i); bySeq[seq] != want {
				t.Fatalf("seq %d holds %q, want %q", seq, bySeq[seq], want)
			}
		}
	}
}

func TestMeta(t *testing.T) {
	f := newFixture(t, Options{})
	if _, ok, err := f.s.GetMeta("incarnation"); ok || err != nil {
		t.Fatalf("missing key: ok=%v err=%v", ok, err)
	}
	if err := f.s.PutMeta("incarnation", []byte{0, 7}); err != nil {
		t.Fatal(err)
	}
	if err := f.s.PutMeta("empty", nil); err != nil {
		t.Fatal(err)
	}
	f.reopen()
	if v, ok, err := f.s.GetMeta("incarnation"); !ok || err != nil || !bytes.Equal(v, []byte{0, 7}) {
		t.Fatalf("GetMeta = %x, %v, %v", v, ok, err)
	}
	if v, ok, err := f.s.GetMeta("empty"); !ok || err != nil || len(v) != 0 {
		t.Fatalf("GetMeta(empty) = %x, %v, %v", v, ok, err)
	}
	if err := f.s.DeleteMeta("incarnation"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := f.s.GetMeta("incarnation"); ok {
		t.Fatal("deleted key still there")
	}
	if err := f.s.PutMeta("", nil); err == nil {
		t.Fatal("empty key accepted")
	}
}

// rawUpdate edits the closed store's file with bbolt directly.
func rawUpdate(tb testing.TB, path string, fn func(tx *bolt.Tx) error) {
	tb.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		tb.Fatal(err)
	}
}

func TestOpenRefuses(t *testing.T) {
	cases := []struct {
		name    string
		damage  func(tx *bolt.Tx) error
		wantIs  error
		wantMsg string
	}{
		{"future format", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keyFormat, encodeFormat(99))
		}, ErrUnsupportedFormat, "format version 99"},
		{"no format key", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Delete(keyFormat)
		}, ErrCorrupt, "no format version"},
		{"garbage format", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keyFormat, []byte{0xff})
		}, ErrCorrupt, "format version value"},
		{"missing bucket", func(tx *bolt.Tx) error {
			return tx.DeleteBucket(bucketLog)
		}, ErrCorrupt, "bucket"},
		{"foreign bbolt file", func(tx *bolt.Tx) error {
			if err := tx.DeleteBucket(bucketMeta); err != nil {
				return err
			}
			_, err := tx.CreateBucket([]byte("other"))
			return err
		}, nil, "not a peerd store"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			mustAppend(t, f.s, "x")
			if err := f.s.Close(); err != nil {
				t.Fatal(err)
			}
			rawUpdate(t, f.opts.Path, c.damage)
			_, err := Open(f.opts)
			if err == nil {
				t.Fatal("Open accepted a damaged file")
			}
			if c.wantIs != nil && !errors.Is(err, c.wantIs) {
				t.Fatalf("err = %v, want %v", err, c.wantIs)
			}
			if !bytes.Contains([]byte(err.Error()), []byte(c.wantMsg)) {
				t.Fatalf("err = %q, want it to mention %q", err, c.wantMsg)
			}
			t.Logf("Open: %v", err)
		})
	}
}

func TestRecoverReportsCorruption(t *testing.T) {
	cases := []struct {
		name   string
		damage func(tx *bolt.Tx) error
	}{
		{"flipped byte in record", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketLog)
			v := append([]byte{}, b.Get(seqKey(2))...)
			v[len(v)-1] ^= 1
			return b.Put(seqKey(2), v)
		}},
		{"truncated record", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketLog)
			v := append([]byte{}, b.Get(seqKey(3))...)
			return b.Put(seqKey(3), v[:len(v)-2])
		}},
		{"record under wrong key", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketLog)
			v := append([]byte{}, b.Get(seqKey(1))...)
			return b.Put(seqKey(2), v)
		}},
		{"gap in log", func(tx *bolt.Tx) error { return tx.Bucket(bucketLog).Delete(seqKey(2)) }},
		{"lost tail", func(tx *bolt.Tx) error { return tx.Bucket(bucketLog).Delete(seqKey(4)) }},
		{"lost head", func(tx *bolt.Tx) error { return tx.Bucket(bucketLog).Delete(seqKey(1)) }},
		{"bad key", func(tx *bolt.Tx) error { return tx.Bucket(bucketLog).Put([]byte{1}, []byte{1}) }},
		{"damaged snapshot", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketSnap).Put(keyState, []byte{kindSnapshot, 1, 2})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			for i := range 4 {
				mustAppend(t, f.s, fmt.Sprint("rec", i))
			}
			if err := f.s.Close(); err != nil {
				t.Fatal(err)
			}
			rawUpdate(t, f.opts.Path, c.damage)
			f.open()
			err := f.s.Recover(func([]byte, Seq) error { return nil }, func(Seq, []byte) error { return nil })
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Recover err = %v, want ErrCorrupt", err)
			}
			t.Logf("Recover: %v", err)
		})
	}
}

func TestCloseIsIdempotentAndFlushes(t *testing.T) {
	f := newFixture(t, Options{QueueDepth: 8})
	const n = 64
	var wg sync.WaitGroup
	results := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, results[i] = f.s.Append(context.Background(), []byte("x"))
		})
	}
	if err := f.s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	wg.Wait()
	acked := 0
	for _, err := range results {
		switch {
		case err == nil:
			acked++
		case !errors.Is(err, ErrClosed):
			t.Fatalf("append racing Close: %v", err)
		}
	}
	if _, err := f.s.Append(context.Background(), []byte("late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
	if err := f.s.SaveSnapshot(nil, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("SaveSnapshot after Close = %v", err)
	}
	if _, _, err := f.s.GetMeta("k"); !errors.Is(err, ErrClosed) {
		t.Fatalf("GetMeta after Close = %v", err)
	}
	f.open()
	if _, _, log := recoverAll(t, f.s); len(log) != acked {
		t.Fatalf("%d acknowledged, %d recovered", acked, len(log))
	}
}

func TestAppendContext(t *testing.T) {
	f := newFixture(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.s.Append(ctx, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Append = %v", err)
	}
	if seq := mustAppend(t, f.s, "y"); seq != 1 {
		t.Fatalf("seq = %d: the cancelled record took a number", seq)
	}
}

// TestFailedCommitAnswersEveryCaller injects a write failure into one group
// commit: every caller in it gets the error, nothing of it is acknowledged
// or recovered, and the store keeps working.
func TestFailedCommitAnswersEveryCaller(t *testing.T) {
	f := newFixture(t, Options{})
	mustAppend(t, f.s, "before")
	if err := f.s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	f.s = s
	injected := errors.New("injected EIO")
	var mu sync.Mutex
	failNext := true
	s.writerHookForTest(func(int) error {
		mu.Lock()
		defer mu.Unlock()
		if failNext {
			failNext = false
			return injected
		}
		return nil
	})
	last, err := s.AppendBatch(context.Background(), [][]byte{[]byte("a"), []byte("b"), []byte("c")})
	if !errors.Is(err, injected) || last != 0 {
		t.Fatalf("AppendBatch in failed commit = %d, %v", last, err)
	}
	t.Logf("failed commit: %v", err)
	if seq := mustAppend(t, s, "after"); seq != 2 {
		t.Fatalf("seq after failed commit = %d, want 2", seq)
	}
	if st := s.Stats(); st.FailedCommits != 1 || st.Appended != 1 {
		t.Fatalf("stats %+v", st)
	}
	f.reopen()
	_, _, log := recoverAll(t, f.s)
	if fmt.Sprint(log) != fmt.Sprint([]entry{{1, "before"}, {2, "after"}}) {
		t.Fatalf("recovered %v", log)
	}
}

// TestDiskFull fills a store capped by MaxSize (bbolt refuses to grow the
// file, as with a full disk): the failing appends get a clear error, every
// acknowledged record survives, and once a snapshot frees space the store
// accepts appends again.
func TestDiskFull(t *testing.T) {
	f := newFixture(t, Options{MaxSize: 1 << 20})
	rec := bytes.Repeat([]byte{0x5a}, 2000)
	var acked []Seq
	var fullErr error
	for range 2000 {
		seq, err := f.s.Append(context.Background(), rec)
		if err != nil {
			fullErr = err
			break
		}
		acked = append(acked, seq)
	}
	if fullErr == nil {
		t.Fatal("a 1 MiB store took 4 MB of records")
	}
	if !errors.Is(fullErr, bolterrors.ErrMaxSizeReached) {
		t.Fatalf("full error = %v", fullErr)
	}
	t.Logf("after %d appends: %v", len(acked), fullErr)
	// Still consistent and readable.
	_, _, log := recoverAll(t, f.s)
	if len(log) != len(acked) || log[len(log)-1].seq != acked[len(acked)-1] {
		t.Fatalf("recovered %d records, acknowledged %d", len(log), len(acked))
	}
	// Truncating frees pages for reuse.
	if err := f.s.SaveSnapshot([]byte("compact"), f.s.LastSeq()); err != nil {
		t.Fatalf("SaveSnapshot on a full store: %v", err)
	}
	seq := mustAppend(t, f.s, "room again")
	if seq != acked[len(acked)-1]+1 {
		t.Fatalf("seq after full = %d", seq)
	}
	f.reopen()
	st, upTo, log := recoverAll(t, f.s)
	if st != "compact" || upTo != seq-1 || len(log) != 1 || log[0].rec != "room again" {
		t.Fatalf("after reopen: %q %d %v", st, upTo, log)
	}
}

// writerHookForTest installs beforeCommit. The writer reads the field only
// while it holds a request, and a request is sent after this returns
// (channel send happens-before receive), so this is race-free as long as
// no append is in flight.
func (s *Store) writerHookForTest(fn func(records int) error) {
	s.mu.Lock()
	s.beforeCommit = fn
	s.mu.Unlock()
}

// TestQueueFullHonoursContext blocks the writer inside a commit, fills the
// one-slot queue, and checks that a further Append gives up when its
// context ends, without writing anything.
func TestQueueFullHonoursContext(t *testing.T) {
	f := newFixture(t, Options{QueueDepth: 1})
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	f.s.writerHookForTest(func(int) error {
		once.Do(func() {
			close(entered)
			<-release
		})
		return nil
	})
	results := make(chan error, 2)
	go func() { _, err := f.s.Append(context.Background(), []byte("in commit")); results <- err }()
	<-entered // the writer holds "in commit" inside its transaction
	go func() { _, err := f.s.Append(context.Background(), []byte("queued")); results <- err }()
	// Wait until "queued" sits in the queue, filling it.
	for deadline := time.Now().Add(10 * time.Second); len(f.s.queue) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("second append never reached the queue")
		}
		runtime.Gosched()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := f.s.Append(ctx, []byte("dropped")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Append on a full queue = %v, want DeadlineExceeded", err)
	}
	close(release)
	for range 2 {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	f.reopen()
	if _, _, log := recoverAll(t, f.s); fmt.Sprint(log) != fmt.Sprint([]entry{{1, "in commit"}, {2, "queued"}}) {
		t.Fatalf("recovered %v", log)
	}
}
