package store

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The crash tests re-execute this test binary as a child process (the
// standard os/exec helper-process pattern): TestHelperProcess does the
// child's work when helperEnv is set and is skipped otherwise.
const (
	helperEnv     = "PEERD_STORE_HELPER"      // child mode: "appender" or "fsizelimit"
	helperPathEnv = "PEERD_STORE_HELPER_PATH" // the store file
	crashWriters  = 8
	// childLifetime bounds a child the parent failed to kill.
	childLifetime = 30 * time.Second
)

func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper process for the crash tests; runs only as their child")
	}
	path := os.Getenv(helperPathEnv)
	var err error
	switch mode {
	case "appender":
		err = childAppender(path)
	case "fsizelimit":
		err = childFileSizeLimit(path)
	default:
		err = fmt.Errorf("unknown helper mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	os.Exit(0)
}

// crashRecord is what writer w appends as its i-th record (i from 0).
func crashRecord(w, i int) []byte { return fmt.Appendf(nil, "%d %d", w, i) }

func parseCrashRecord(rec []byte) (w, i int, err error) {
	if _, err := fmt.Sscanf(string(rec), "%d %d", &w, &i); err != nil {
		return 0, 0, fmt.Errorf("record %q: %w", rec, err)
	}
	if w < 0 || w >= crashWriters {
		return 0, 0, fmt.Errorf("record %q: writer out of range", rec)
	}
	return w, i, nil
}

// foldCounts recovers s the way a replica would: the snapshot holds how many
// records each writer has, and every log record after it must be that
// writer's next one (per-writer order, no gap, no duplicate). seqOf maps
// (writer, i) to the Seq of each record still in the log.
func foldCounts(s *Store) (counts []int, upTo Seq, seqOf map[[2]int]Seq, err error) {
	seqOf = map[[2]int]Seq{}
	err = s.Recover(func(st []byte, u Seq) error {
		upTo = u
		counts, err = parseCounts(st)
		return err
	}, func(seq Seq, rec []byte) error {
		w, i, err := parseCrashRecord(rec)
		if err != nil {
			return err
		}
		if i != counts[w] {
			return fmt.Errorf("seq %d: writer %d record %d, want %d (order broken or record lost)", seq, w, i, counts[w])
		}
		counts[w]++
		seqOf[[2]int{w, i}] = seq
		return nil
	})
	return counts, upTo, seqOf, err
}

// parseCounts decodes a crash-test snapshot: crashWriters decimal counts.
func parseCounts(st []byte) ([]int, error) {
	c := make([]int, crashWriters)
	if st == nil {
		return c, nil
	}
	r := bytes.NewReader(st)
	for i := range c {
		if _, err := fmt.Fscan(r, &c[i]); err != nil {
			return nil, fmt.Errorf("snapshot %q: %w", st, err)
		}
	}
	return c, nil
}

// childAppender recovers the store, then appends from crashWriters
// goroutines until killed, printing "ack <writer> <i> <seq>" after each
// acknowledged append; a snapshotter folds the log into a snapshot (and so
// truncates it) every 150 records of writer 0.
func childAppender(path string) error {
	s, err := Open(Options{Path: path, LockTimeout: 10 * time.Second})
	if err != nil {
		return err
	}
	counts, upTo, _, err := foldCounts(s)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(childLifetime)
	var outMu sync.Mutex
	snapTick := make(chan struct{}, 1)
	errs := make(chan error, crashWriters+1)
	for w := range crashWriters {
		go func() {
			for i := counts[w]; time.Now().Before(deadline); i++ {
				seq, err := s.Append(context.Background(), crashRecord(w, i))
				if err != nil {
					errs <- err
					return
				}
				outMu.Lock()
				fmt.Fprintf(os.Stdout, "ack %d %d %d\n", w, i, seq)
				outMu.Unlock()
				if w == 0 && i%150 == 0 {
					select {
					case snapTick <- struct{}{}:
					default:
					}
				}
			}
			errs <- nil
		}()
	}
	go func() {
		// The snapshot state starts as the recovered counts minus what
		// is still in the log, i.e. the stored snapshot; re-derive it.
		folded, err := snapshotCounts(s)
		if err != nil {
			errs <- err
			return
		}
		from := upTo
		for {
			select {
			case <-snapTick:
			case <-time.After(time.Until(deadline)):
				errs <- nil
				return
			}
			next, err := s.replay(from, func(_ Seq, rec []byte) error {
				w, _, err := parseCrashRecord(rec)
				if err == nil {
					folded[w]++
				}
				return err
			})
			if err != nil {
				errs <- err
				return
			}
			if err := s.SaveSnapshot(encodeCounts(folded), next); err != nil {
				errs <- err
				return
			}
			from = next
		}
	}()
	for range crashWriters + 1 {
		if err := <-errs; err != nil {
			return err
		}
	}
	return s.Close()
}

func snapshotCounts(s *Store) ([]int, error) {
	st, _, err := s.LoadSnapshot()
	if err != nil {
		return nil, err
	}
	return parseCounts(st)
}

// ack is one "ack" line of a child.
type ack struct {
	w, i int
	seq  Seq
}

// runChild starts this test binary as a helper child and returns it with
// a scanner over its stdout; stderr is collected in the returned buffer.
func runChild(t *testing.T, mode, path string) (*exec.Cmd, *bufio.Scanner, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperPathEnv+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Backstop: never leave a child behind, whatever happens below.
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return cmd, bufio.NewScanner(out), &stderr
}

func parseAck(line string) (ack, bool) {
	var a ack
	if !strings.HasPrefix(line, "ack ") {
		return a, false
	}
	if _, err := fmt.Sscanf(line, "ack %d %d %d", &a.w, &a.i, &a.seq); err != nil {
		return a, false
	}
	return a, true
}

// TestKill9LosesNoAcknowledgedAppend kills (SIGKILL) a child process that
// appends from 8 goroutines at a random point mid-stream, several times
// over the same store, and checks after each kill that every acknowledged
// record is there with the Seq it was acknowledged with, in per-writer
// order, and that the store recovers without error.
func TestKill9LosesNoAcknowledgedAppend(t *testing.T) {
	const rounds = 5
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	path := filepath.Join(t.TempDir(), "replica.db")
	maxAcked := make([]int, crashWriters) // highest i acknowledged per writer, -1 none
	for w := range maxAcked {
		maxAcked[w] = -1
	}
	for round := range rounds {
		killAfter := 100 + rng.IntN(3000)
		cmd, lines, stderr := runChild(t, "appender", path)
		var acks []ack
		killed := false
		for lines.Scan() {
			a, ok := parseAck(lines.Text())
			if !ok {
				continue
			}
			acks = append(acks, a)
			if !killed && len(acks) >= killAfter {
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				killed = true
			}
		}
		err := cmd.Wait()
		if !killed {
			t.Fatalf("round %d: child ended after %d acks before the kill: %v\n%s", round, len(acks), err, stderr)
		}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child was not killed by SIGKILL: %v\n%s", round, err, stderr)
		}

		s, err := Open(Options{Path: path})
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		counts, upTo, seqOf, err := foldCounts(s)
		if err != nil {
			t.Fatalf("round %d: recover after kill: %v", round, err)
		}
		for _, a := range acks {
			if a.i >= counts[a.w] {
				t.Fatalf("round %d: acknowledged record %d of writer %d (seq %d) lost; store has %d", round, a.i, a.w, a.seq, counts[a.w])
			}
			if seq, inLog := seqOf[[2]int{a.w, a.i}]; inLog && seq != a.seq {
				t.Fatalf("round %d: record %d/%d acknowledged as seq %d, stored as %d", round, a.w, a.i, a.seq, seq)
			}
			if !inLogOrSnapshot(a, upTo, seqOf) {
				t.Fatalf("round %d: record %d/%d (seq %d) neither in the log nor covered by the snapshot up to %d", round, a.w, a.i, a.seq, upTo)
			}
			maxAcked[a.w] = max(maxAcked[a.w], a.i)
		}
		for w := range maxAcked {
			if counts[w] <= maxAcked[w] {
				t.Fatalf("round %d: writer %d has %d records, acknowledged up to %d earlier", round, w, counts[w], maxAcked[w])
			}
		}
		total := 0
		for _, c := range counts {
			total += c
		}
		t.Logf("round %d: killed after %d acks (asked %d); recovered %d records, snapshot up to %d, %d in the log, last seq %d",
			round, len(acks), killAfter, total, upTo, len(seqOf), s.LastSeq())
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func inLogOrSnapshot(a ack, upTo Seq, seqOf map[[2]int]Seq) bool {
	if _, ok := seqOf[[2]int{a.w, a.i}]; ok {
		return true
	}
	return a.seq <= upTo
}

// childFileSizeLimit lowers RLIMIT_FSIZE so that the store file cannot grow
// (writes fail with EFBIG, the way a full disk fails them with ENOSPC),
// appends from 4 goroutines until each one gets an error, lifts the limit
// and appends once more from each. It prints "ack ..." for every
// acknowledged append and "fail <error>" for every failed one.
func childFileSizeLimit(path string) error {
	s, err := Open(Options{Path: path})
	if err != nil {
		return err
	}
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	low := old
	low.Cur = uint64(fi.Size()) + 512<<10
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &low); err != nil {
		return err
	}
	var outMu sync.Mutex
	say := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(os.Stdout, format+"\n", args...)
	}
	rec := func(w, i int) []byte { return append(crashRecord(w, i), bytes.Repeat([]byte{' '}, 1000)...) }
	const writers = 4
	next := make([]int, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := 0; i < 100000; i++ {
				seq, err := s.Append(context.Background(), rec(w, i))
				if err != nil {
					say("fail %v", err)
					next[w] = i
					return
				}
				say("ack %d %d %d", w, i, seq)
			}
		})
	}
	wg.Wait()
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		return err
	}
	for w := range writers {
		seq, err := s.Append(context.Background(), rec(w, next[w]))
		if err != nil {
			return fmt.Errorf("append after the limit was lifted: %w", err)
		}
		say("ack %d %d %d", w, next[w], seq)
	}
	return s.Close()
}

// TestFileSizeLimitFailsCleanly runs childFileSizeLimit and checks that the
// appends that hit the limit got a clear error, the store kept working once
// the limit was lifted, and every acknowledged record is in the file, in
// per-writer order, with its acknowledged Seq.
func TestFileSizeLimitFailsCleanly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "replica.db")
	cmd, lines, stderr := runChild(t, "fsizelimit", path)
	var acks []ack
	var fails []string
	for lines.Scan() {
		if a, ok := parseAck(lines.Text()); ok {
			acks = append(acks, a)
		} else if f, ok := strings.CutPrefix(lines.Text(), "fail "); ok {
			fails = append(fails, f)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v\n%s", err, stderr)
	}
	if len(fails) == 0 {
		t.Fatal("no append failed under the file size limit")
	}
	for _, f := range fails {
		if !strings.Contains(f, "none acknowledged") || !strings.Contains(f, "file too large") {
			t.Fatalf("unclear error for a failed append: %s", f)
		}
	}
	t.Logf("%d acks, %d failed appends, e.g. %s", len(acks), len(fails), fails[0])

	s, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := map[Seq]string{}
	if err := s.Replay(0, func(seq Seq, rec []byte) error {
		got[seq] = string(rec)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	lastPerWriter := map[int]Seq{}
	for _, a := range acks {
		rec, ok := got[a.seq]
		if !ok {
			t.Fatalf("acknowledged seq %d missing", a.seq)
		}
		w, i, err := parseCrashRecord([]byte(strings.TrimRight(rec, " ")))
		if err != nil || w != a.w || i != a.i {
			t.Fatalf("seq %d holds %q, acknowledged as %d/%d", a.seq, rec, a.w, a.i)
		}
		if a.seq <= lastPerWriter[w] {
			t.Fatalf("writer %d: seq %d after %d", w, a.seq, lastPerWriter[w])
		}
		lastPerWriter[w] = a.seq
	}
	if len(got) != len(acks) {
		t.Fatalf("%d records stored, %d acknowledged: a failed commit left records behind", len(got), len(acks))
	}
}
