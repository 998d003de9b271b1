package gossip

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// aeNode is one replica with its AntiEntropy on a MemNet.
type aeNode struct {
	name string
	rep  *fakeReplica
	ae   *AntiEntropy
}

type aeClusterOpts struct {
	n          int
	chunkBytes int
	maxChunks  int
	net        *MemNet // nil: a new lossless one
}

func newAECluster(tb testing.TB, o aeClusterOpts) []*aeNode {
	tb.Helper()
	net := o.net
	if net == nil {
		net = &MemNet{}
	}
	var names []string
	for i := range o.n {
		names = append(names, fmt.Sprintf("r%d", i))
	}
	var nodes []*aeNode
	for i, name := range names {
		rep := newFakeReplica()
		others := slices.DeleteFunc(slices.Clone(names), func(s string) bool { return s == name })
		ae, err := NewAntiEntropy(AntiEntropyConfig{
			Replica:    rep,
			Dialer:     net.Endpoint(name),
			Peers:      func() []string { return others },
			ChunkBytes: o.chunkBytes,
			MaxChunks:  o.maxChunks,
			Seed:       uint64(i + 1),
			Logger:     testLogger(tb),
		})
		if err != nil {
			tb.Fatal(err)
		}
		net.ListenExchange(name, ae.HandleExchange)
		tb.Cleanup(func() { ae.Close() })
		nodes = append(nodes, &aeNode{name: name, rep: rep, ae: ae})
	}
	return nodes
}

func converged(nodes []*aeNode) bool {
	d := nodes[0].rep.Digest()
	for _, n := range nodes[1:] {
		if !bytes.Equal(n.rep.Digest(), d) {
			return false
		}
	}
	return true
}

func TestAntiEntropyConverges(t *testing.T) {
	nodes := newAECluster(t, aeClusterOpts{n: 3})
	// Different histories: each writes its own batches, and r0 also holds
	// some of r1's (as if partially gossiped).
	for i := range 20 {
		nodes[i%3].rep.write(nodes[i%3].name, fmt.Appendf(nil, "w%d", i))
	}
	for _, b := range [][]byte{encodeFakeBatch("r1", 1, []byte("w1")), encodeFakeBatch("r1", 5, []byte("x"))} {
		if err := nodes[0].rep.Apply("r1", b); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	for round := 0; !converged(nodes); round++ {
		if round > 10 {
			t.Fatal("not converged after 10 rounds")
		}
		for _, n := range nodes {
			n.ae.RunRound(ctx)
		}
	}
	if got := nodes[2].rep.count(); got != 20 {
		t.Fatalf("r2 holds %d batches, want 20", got)
	}
	// Converged: a session stops at the digest.
	before := nodes[0].ae.Stats()
	if err := nodes[0].ae.SyncWith(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	after := nodes[0].ae.Stats()
	if after.DigestsEqual != before.DigestsEqual+1 || after.Chunks != before.Chunks {
		t.Fatalf("equal session did more than a digest: %+v -> %+v", before, after)
	}
}

func TestAntiEntropyChunked(t *testing.T) {
	nodes := newAECluster(t, aeClusterOpts{n: 2, chunkBytes: 4096, maxChunks: 5})
	a, b := nodes[0], nodes[1]
	for range 100 {
		a.rep.write("r0", bytes.Repeat([]byte("x"), 1000))
	}
	ctx := context.Background()
	if err := b.ae.SyncWith(ctx, "r0"); err != nil {
		t.Fatal(err)
	}
	st := b.ae.Stats()
	// 5 chunks of at most 4096 bytes: 4 batches of ~1005 bytes each.
	if st.Chunks != 5 || st.BatchesPulled != 20 || b.rep.count() != 20 {
		t.Fatalf("after one bounded session: stats %+v, held %d", st, b.rep.count())
	}
	if st.BytesPulled < 20*1000 || st.BytesPulled > 5*4096 || st.DigestsDiffer != 1 {
		t.Fatalf("stats %+v", st)
	}
	for i := 0; b.rep.count() < 100; i++ {
		if i > 5 {
			t.Fatalf("still %d batches after 5 more sessions", b.rep.count())
		}
		if err := b.ae.SyncWith(ctx, "r0"); err != nil {
			t.Fatal(err)
		}
	}
	if !converged(nodes) {
		t.Fatal("digests differ")
	}
}

func TestAntiEntropyPushesAndRefusesBad(t *testing.T) {
	nodes := newAECluster(t, aeClusterOpts{n: 2})
	a, b := nodes[0], nodes[1]
	a.rep.write("r0", []byte("good"))
	a.rep.write("r0", []byte("bad forged"))
	b.rep.write("r1", []byte("theirs"))
	if err := a.ae.SyncWith(context.Background(), "r1"); err != nil {
		t.Fatal(err)
	}
	// a pushed its good batch to b and pulled b's; b refused the forged one.
	if a.rep.count() != 3 || b.rep.count() != 2 {
		t.Fatalf("a holds %d, b holds %d", a.rep.count(), b.rep.count())
	}
	if b.ae.Stats().ApplyErrors == 0 {
		t.Fatal("forged batch not counted")
	}
}

func TestAntiEntropyErrors(t *testing.T) {
	net := &MemNet{}
	nodes := newAECluster(t, aeClusterOpts{n: 2, net: net})
	net.SetDown("r1", true)
	if err := nodes[0].ae.SyncWith(context.Background(), "r1"); err == nil {
		t.Fatal("sync with a down peer succeeded")
	}
	if nodes[0].ae.Stats().ExchangeErrors != 1 {
		t.Fatalf("stats %+v", nodes[0].ae.Stats())
	}
	if _, err := nodes[1].ae.HandleExchange(context.Background(), "r0", []byte{0x01}); err == nil {
		t.Fatal("garbage request answered")
	}
	// A response type as a request is refused.
	req, _ := encodeAE(aeMessage{T: uint8(aeSyncResp)})
	if _, err := nodes[1].ae.HandleExchange(context.Background(), "r0", req); err == nil {
		t.Fatal("response accepted as request")
	}
}

func TestAntiEntropyBackground(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nodes := newAECluster(t, aeClusterOpts{n: 4})
		for i, n := range nodes {
			for j := range 5 {
				n.rep.write(n.name, fmt.Appendf(nil, "%d-%d", i, j))
			}
			n.ae.Start()
		}
		// Rounds every 1–2 s: bounded virtual time.
		for i := 0; i < 60 && !converged(nodes); i++ {
			time.Sleep(time.Second)
			synctest.Wait()
		}
		if !converged(nodes) {
			t.Fatal("not converged within 60 s of virtual time")
		}
		for _, n := range nodes {
			n.ae.Close()
			n.ae.Close()
		}
	})
}

func TestChoosePeers(t *testing.T) {
	peers := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	rng := rand.New(rand.NewPCG(1, 2))
	dist := func(p string) (time.Duration, bool) {
		if p == "h" {
			return 0, false
		}
		return time.Duration(p[0]-'a'+1) * time.Millisecond, true
	}
	counts := map[string]int{}
	const rounds = 4000
	for range rounds {
		got := choosePeers(rng, peers, map[string]bool{"g": true}, dist, 2)
		if len(got) != 2 || got[0] == got[1] {
			t.Fatalf("choosePeers = %v", got)
		}
		for _, p := range got {
			counts[p]++
		}
	}
	// g lags: it is chosen in about half of the first picks and more.
	if counts["g"] < rounds/2 {
		t.Fatalf("lagging peer chosen %d times of %d rounds", counts["g"], rounds)
	}
	// The three nearest (a, b, c) beat the far ones (e, f).
	if counts["a"] <= 2*counts["e"] || counts["c"] <= 2*counts["f"] {
		t.Fatalf("no nearness bias: %v", counts)
	}
	if got := choosePeers(rng, []string{"x"}, nil, nil, 3); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("choosePeers with one peer = %v", got)
	}
	if got := choosePeers(rng, nil, nil, nil, 1); len(got) != 0 {
		t.Fatalf("choosePeers with none = %v", got)
	}
}

func FuzzAntiEntropyRequest(f *testing.F) {
	for _, m := range []aeMessage{
		{T: uint8(aeDigestReq), Digest: []byte{1, 2, 3}},
		{T: uint8(aeSyncReq), Heads: []byte{0xa0}, Batches: [][]byte{encodeFakeBatch("x", 1, []byte("d"))}, Max: 1000},
		{T: uint8(aeSyncReq), Max: 10},
		{T: uint8(aeDigestResp), Equal: true},
		{T: uint8(aeSyncResp), Heads: []byte{0xa0}},
	} {
		b, err := encodeAE(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rep := newFakeReplica()
		rep.write("self", []byte("data"))
		ae, err := NewAntiEntropy(AntiEntropyConfig{
			Replica: rep, Dialer: &MemEndpoint{net: &MemNet{}}, Peers: func() []string { return nil }, Seed: 1,
		})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := ae.HandleExchange(context.Background(), "peer", b)
		if err != nil {
			return
		}
		if _, err := decodeAE(resp); err != nil {
			t.Fatalf("answer does not decode: %v", err)
		}
		if m, err := decodeAE(b); err == nil {
			b2, err := encodeAE(m)
			if err != nil {
				t.Fatalf("decoded request does not re-encode: %v", err)
			}
			if _, err := decodeAE(b2); err != nil {
				t.Fatalf("re-encoded request does not decode: %v", err)
			}
		}
	})
}

// TestDriverWithAntiEntropyUnderLoss: Plumtree and anti-entropy together
// over a network that loses 20% of messages from the start (including
// NEIGHBOR requests and first pushes). Every replica ends up identical.
func TestDriverWithAntiEntropyUnderLoss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 30
		net := &MemNet{}
		net.SetLoss(0.2, 5)
		var names []string
		for i := range n {
			names = append(names, fmt.Sprintf("r%d", i))
		}
		reps := map[string]*fakeReplica{}
		drivers := map[string]*Driver{}
		var nodes []*aeNode
		for i, name := range names {
			rep := newFakeReplica()
			reps[name] = rep
			d, err := NewDriver(DriverConfig{
				Plumtree: PlumtreeConfig{Self: name, Seed: uint64(i + 1)},
				Net:      net.Endpoint(name),
				Deliver:  func(from string, p []byte) bool { return rep.Apply(from, p) == nil },
			})
			if err != nil {
				t.Fatal(err)
			}
			drivers[name] = d
			net.Listen(name, func(from string, msg []byte) { _ = d.HandleMessage(from, msg) })
			others := slices.DeleteFunc(slices.Clone(names), func(s string) bool { return s == name })
			ae, err := NewAntiEntropy(AntiEntropyConfig{
				Replica: rep, Dialer: net.Endpoint(name), Peers: func() []string { return others }, Seed: uint64(i + 1),
			})
			if err != nil {
				t.Fatal(err)
			}
			net.ListenExchange(name, ae.HandleExchange)
			nodes = append(nodes, &aeNode{name: name, rep: rep, ae: ae})
			t.Cleanup(func() { d.Close(); ae.Close() })
		}
		for _, name := range names {
			drivers[name].SetPeers(names)
			drivers[name].Start()
		}
		for _, node := range nodes {
			node.ae.Start()
		}
		for i := range 60 {
			origin := names[(i*7)%n]
			b := reps[origin].write(origin, fmt.Appendf(nil, "update %d", i))
			if _, err := drivers[origin].Broadcast(b); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		for i := 0; i < 120 && !converged(nodes); i++ {
			time.Sleep(time.Second)
			synctest.Wait()
		}
		if !converged(nodes) {
			t.Fatal("replicas differ after 120 s of virtual time")
		}
		for _, node := range nodes {
			if c := node.rep.count(); c != 60 {
				t.Fatalf("%s holds %d batches, want 60", node.name, c)
			}
		}
		var pulled uint64
		for _, node := range nodes {
			pulled += node.ae.Stats().BatchesPulled
		}
		t.Logf("anti-entropy moved %d batches", pulled)
	})
}

// BenchmarkAntiEntropySession measures one session between two replicas
// of 1,000 origins: equal digests (the steady state: one small exchange),
// and one missing 1 KiB batch (digest, heads, one sync exchange). Bytes
// count both directions.
func BenchmarkAntiEntropySession(b *testing.B) {
	for _, differ := range []bool{false, true} {
		name := "equal"
		if differ {
			name = "one-batch-missing"
		}
		b.Run(name, func(b *testing.B) {
			net := &MemNet{}
			nodes := newAECluster(b, aeClusterOpts{n: 2, net: net})
			for i := range 1000 {
				origin := fmt.Sprintf("origin-%04d", i)
				batch := nodes[0].rep.write(origin, bytes.Repeat([]byte{1}, 1024))
				if err := nodes[1].rep.Apply(origin, batch); err != nil {
					b.Fatal(err)
				}
			}
			ctx := context.Background()
			_, _, bytes0 := net.Stats()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if differ {
					b.StopTimer()
					nodes[0].rep.write("origin-0000", fmt.Appendf(nil, "%01024d", i))
					b.StartTimer()
				}
				if err := nodes[1].ae.SyncWith(ctx, "r0"); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			_, _, bytes1 := net.Stats()
			b.ReportMetric(float64(bytes1-bytes0)/float64(b.N), "wire-bytes/session")
		})
	}
}

func TestAntiEntropyChunkedPush(t *testing.T) {
	nodes := newAECluster(t, aeClusterOpts{n: 2, chunkBytes: 4096, maxChunks: 5})
	a, b := nodes[0], nodes[1]
	for range 30 {
		a.rep.write("r0", bytes.Repeat([]byte("x"), 1000))
	}
	b.rep.write("r1", []byte("one"))
	ctx := context.Background()
	if err := a.ae.SyncWith(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	st := a.ae.Stats()
	if b.rep.count() != 21 || a.rep.count() != 31 || st.BatchesPushed != 20 || st.Chunks != 5 {
		t.Fatalf("a holds %d, b holds %d, stats %+v", a.rep.count(), b.rep.count(), st)
	}
	if err := a.ae.SyncWith(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	if !converged(nodes) {
		t.Fatalf("a holds %d, b holds %d", a.rep.count(), b.rep.count())
	}
}

// TestAntiEntropyFailedPeersHealPartition: two sides that each hold the
// other as failed (as serf does after a partition) repair each other by
// anti-entropy alone once the network heals, without membership
// re-merging; with Failed unset they never do.
func TestAntiEntropyFailedPeersHealPartition(t *testing.T) {
	tests := []struct {
		name      string
		failed    bool
		share     float64
		converges bool
	}{
		{"failed peers tried", true, 0, true},
		{"failed peers never tried", true, -1, false},
		{"no Failed callback", false, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				net := &MemNet{}
				names := []string{"a0", "a1", "a2", "b0", "b1", "b2"}
				side := func(s string) []string {
					return slices.DeleteFunc(slices.Clone(names), func(x string) bool { return x[0] != s[0] })
				}
				var nodes []*aeNode
				for i, name := range names {
					rep := newFakeReplica()
					mine := slices.DeleteFunc(side(name), func(x string) bool { return x == name })
					others := slices.DeleteFunc(slices.Clone(names), func(x string) bool { return x[0] == name[0] })
					cfg := AntiEntropyConfig{
						Replica:     rep,
						Dialer:      net.Endpoint(name),
						Peers:       func() []string { return mine },
						FailedShare: tt.share,
						Seed:        uint64(i + 1),
						Logger:      testLogger(t),
					}
					if tt.failed {
						cfg.Failed = func() []string { return others }
					}
					ae, err := NewAntiEntropy(cfg)
					if err != nil {
						t.Fatal(err)
					}
					net.ListenExchange(name, ae.HandleExchange)
					defer ae.Close()
					rep.write(name, []byte("w-"+name))
					nodes = append(nodes, &aeNode{name: name, rep: rep, ae: ae})
				}
				for _, n := range nodes {
					n.ae.Start()
				}
				for i := 0; i < 60 && !converged(nodes); i++ {
					time.Sleep(time.Second)
					synctest.Wait()
				}
				if got := converged(nodes); got != tt.converges {
					t.Fatalf("converged=%v within 60 s, want %v", got, tt.converges)
				}
				var tried, reached uint64
				for _, n := range nodes {
					st := n.ae.Stats()
					tried += st.FailedTried
					reached += st.FailedReached
				}
				if tt.converges && reached == 0 {
					t.Fatalf("converged without a session with a failed peer (tried %d)", tried)
				}
				if !tt.converges && tried != 0 {
					t.Fatalf("%d sessions with failed peers, want none", tried)
				}
			})
		})
	}
}

// TestAntiEntropyFailedShare: how often a round tries a failed peer is
// min(FailedShare, f/(f+a)); a dead peer costs at most one session in
// flight, and its timeout does not hold up the rounds.
func TestAntiEntropyFailedShare(t *testing.T) {
	alive := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("p%d", i))
		}
		return out
	}
	tests := []struct {
		name     string
		share    float64
		alive    []string
		failed   []string
		min, max float64 // accepted fraction of rounds that try a failed peer
	}{
		{"one dead among 99", 0, alive(99), []string{"dead"}, 0, 0.02},
		{"half failed, default cap", 0, alive(10), []string{"f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "f9", "f10"}, 0.45, 0.55},
		{"mostly failed, default cap", 0, alive(1), []string{"f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "f9"}, 0.45, 0.55},
		{"mostly failed, cap 0.1", 0.1, alive(1), []string{"f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "f9"}, 0.07, 0.13},
		{"failed listed as alive too", 0, alive(3), []string{"p0", "p1"}, 0, 0},
		{"disabled", -1, alive(1), []string{"f1"}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := NewAntiEntropy(AntiEntropyConfig{
				Replica: newFakeReplica(), Dialer: (&MemNet{}).Endpoint("self"),
				Peers: func() []string { return tt.alive }, Failed: func() []string { return tt.failed },
				FailedShare: tt.share, Seed: 7,
			})
			if err != nil {
				t.Fatal(err)
			}
			const rounds = 20000
			hits := 0
			for range rounds {
				a.mu.Lock()
				p := ""
				if a.cfg.FailedShare > 0 {
					p = a.chooseFailedLocked(tt.alive, tt.failed)
				}
				a.mu.Unlock()
				if p != "" {
					hits++
					if !slices.Contains(tt.failed, p) || slices.Contains(tt.alive, p) {
						t.Fatalf("picked %q", p)
					}
				}
			}
			if f := float64(hits) / rounds; f < tt.min || f > tt.max {
				t.Fatalf("failed peer tried in %.3f of rounds, want [%.2f, %.2f]", f, tt.min, tt.max)
			}
		})
	}
	// A dead peer whose exchange hangs until the timeout: rounds with the
	// alive peer go on meanwhile, and only one session with it is in flight.
	synctest.Test(t, func(t *testing.T) {
		hang := DialerFunc(func(ctx context.Context, to string, req []byte) ([]byte, error) {
			if to == "dead" {
				<-ctx.Done()
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("refused")
		})
		a, err := NewAntiEntropy(AntiEntropyConfig{
			Replica: newFakeReplica(), Dialer: hang, Seed: 3, FailedShare: 1,
			Peers: func() []string { return []string{"alive"} }, Failed: func() []string { return []string{"dead"} },
			ExchangeTimeout: 30 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		a.Start()
		time.Sleep(29 * time.Second)
		st := a.Stats()
		if st.FailedTried != 1 || st.Rounds < 10 {
			t.Fatalf("after 29 s: %d sessions with the dead peer, %d rounds; want 1 and ≥ 10", st.FailedTried, st.Rounds)
		}
		a.Close()
	})
}

func TestSortedUnique(t *testing.T) {
	tests := []struct{ in, want []string }{
		{nil, nil},
		{[]string{"a"}, []string{"a"}},
		{[]string{"a", "b", "c"}, []string{"a", "b", "c"}},
		{[]string{"c", "a", "b"}, []string{"a", "b", "c"}},
		{[]string{"a", "b", "b", "c"}, []string{"a", "b", "c"}},
		{[]string{"b", "a", "b"}, []string{"a", "b"}},
	}
	for _, tt := range tests {
		in := slices.Clone(tt.in)
		if got := sortedUnique(in); !slices.Equal(got, tt.want) {
			t.Errorf("sortedUnique(%v) = %v, want %v", tt.in, got, tt.want)
		}
		if !slices.Equal(in, tt.in) {
			t.Errorf("sortedUnique modified its input %v -> %v", tt.in, in)
		}
	}
	// choosePeers accepts unsorted lists with duplicates.
	rng := rand.New(rand.NewPCG(3, 4))
	for range 100 {
		got := choosePeers(rng, []string{"c", "a", "c", "b"}, map[string]bool{"b": true, "gone": true}, nil, 3)
		if s := slices.Sorted(slices.Values(got)); !slices.Equal(s, []string{"a", "b", "c"}) {
			t.Fatalf("choosePeers = %v", got)
		}
	}
}
