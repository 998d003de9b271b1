package sim

import (
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestNetworkFaults(t *testing.T) {
	tests := []struct {
		name  string
		setup func(n *Network)
		from  int
		to    int
		want  bool
	}{
		{"clean", func(n *Network) {}, 0, 1, true},
		{"partition", func(n *Network) { n.Partition([][]int{{0, 1}, {2, 3}}, false) }, 0, 2, false},
		{"partition same side", func(n *Network) { n.Partition([][]int{{0, 1}, {2, 3}}, false) }, 0, 1, true},
		{"asymmetric forward cut", func(n *Network) { n.Partition([][]int{{0, 1}, {2, 3}}, true) }, 0, 2, false},
		{"asymmetric backward flows", func(n *Network) { n.Partition([][]int{{0, 1}, {2, 3}}, true) }, 2, 0, true},
		{"isolated sender", func(n *Network) { n.Isolate(3, true) }, 3, 0, false},
		{"isolated receiver", func(n *Network) { n.Isolate(3, true) }, 0, 3, false},
		{"healed", func(n *Network) { n.Isolate(3, true); n.Partition([][]int{{0}}, false); n.Heal() }, 0, 3, true},
		{"down", func(n *Network) { n.SetDown(1, true) }, 0, 1, false},
		{"single link", func(n *Network) { n.Cut(0, 1, true) }, 0, 1, false},
		{"single link other way", func(n *Network) { n.Cut(0, 1, true) }, 1, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := NewNetwork(4, LinkProfile{Latency: 10 * time.Millisecond}, 1)
				defer n.Close()
				tt.setup(n)
				// Deliveries run on the network's goroutines.
				var got atomic.Bool
				err := n.stream(tt.from, tt.to, ClassTree, []byte("x"), func([]byte) { got.Store(true) })
				time.Sleep(time.Second)
				if got.Load() != tt.want || (err == nil) != tt.want {
					t.Fatalf("delivered=%v err=%v, want delivered=%v", got.Load(), err, tt.want)
				}
			})
		})
	}
}

func TestNetworkLatencyLossBandwidth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := NewNetwork(2, LinkProfile{Latency: 50 * time.Millisecond, Bandwidth: 1000}, 7)
		defer n.Close()
		start := time.Now()
		var (
			mu sync.Mutex // deliveries run on the network's goroutines
			at []time.Duration
		)
		for range 2 {
			n.stream(0, 1, ClassTree, make([]byte, 500), func([]byte) {
				mu.Lock()
				at = append(at, time.Since(start))
				mu.Unlock()
			})
		}
		time.Sleep(5 * time.Second)
		mu.Lock()
		defer mu.Unlock()
		// 500 bytes at 1000 B/s: 0.5 s each, queued behind each other.
		if len(at) != 2 || at[0] != 550*time.Millisecond || at[1] != 1050*time.Millisecond {
			t.Fatalf("arrivals %v", at)
		}
		n.SetProfile(LinkProfile{Loss: 0.5})
		var passed atomic.Int64
		for range 1000 {
			n.datagram(0, 1, ClassMember, []byte("y"), func([]byte) { passed.Add(1) })
		}
		time.Sleep(time.Second)
		if got := passed.Load(); got < 400 || got > 600 {
			t.Fatalf("%d of 1000 datagrams passed at 50%% loss", got)
		}
	})
}

func FuzzParseScenario(f *testing.F) {
	f.Add(`peers = 3
network { latency = "1ms" }
event { at = "1s" action = "partition" groups = 2 }`)
	f.Add(`workload { rate = 1 } expect { msgs_per_op = 3 }`)
	f.Add(`event { action = "network" loss = 0.5 bandwidth = "1MB" }`)
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = ParseScenario(s)
	})
}

func TestNodeIndex(t *testing.T) {
	for _, i := range []int{0, 1, 254, 255, 256, 999, 65535, 59999} {
		addr := nodeIP(i) + ":7946"
		got, err := nodeIndex(addr)
		if err != nil || got != i {
			t.Fatalf("nodeIndex(%q) = %d, %v; want %d", addr, got, err, i)
		}
	}
	for _, bad := range []string{"", "10.", "10.0.0:1", "10.0.0.1", "11.0.0.1:1", "10.0.0.256:1", "10.0.0.1234:1", "10..0.1:1"} {
		if _, ok := fastNodeIndex(bad); ok {
			t.Errorf("fastNodeIndex(%q) accepted", bad)
		}
	}
}

// TestLinkDrawsIndependentOfInterleaving: the k-th message on a directed
// link gets the same delay in every run of a seed, whatever the order in
// which links are used (the property replay relies on).
func TestLinkDrawsIndependentOfInterleaving(t *testing.T) {
	prof := LinkProfile{Latency: 5 * time.Millisecond, Jitter: 5 * time.Millisecond, Reorder: 0.3, Loss: 0.2}
	links := [][2]int{{0, 1}, {1, 0}, {1, 2}, {2, 0}}
	run := func(seed uint64, order func(k, l int) int) map[[2]int][]time.Duration {
		n := NewNetwork(3, prof, seed)
		defer n.Close()
		got := map[[2]int][]time.Duration{}
		const msgs = 200
		for i := range msgs * len(links) {
			lk := links[order(i/len(links), i%len(links))]
			d, err := n.transit(lk[0], lk[1], ClassTree, []byte("m"))
			if err != nil {
				t.Fatal(err)
			}
			got[lk] = append(got[lk], d)
		}
		return got
	}
	inOrder := func(k, l int) int { return l }
	reversed := func(k, l int) int { return len(links) - 1 - l }
	rotated := func(k, l int) int { return (k + l) % len(links) }
	a, b, c := run(42, inOrder), run(42, reversed), run(42, rotated)
	other := run(43, inOrder)
	same := func(x, y map[[2]int][]time.Duration) bool {
		for _, lk := range links {
			if len(x[lk]) != len(y[lk]) {
				return false
			}
			for i := range x[lk] {
				if x[lk][i] != y[lk][i] {
					return false
				}
			}
		}
		return true
	}
	if !same(a, b) || !same(a, c) {
		t.Fatal("per-link delays depend on the order in which links were used")
	}
	if same(a, other) {
		t.Fatal("seeds 42 and 43 gave the same delays")
	}
	if same(map[[2]int][]time.Duration{links[0]: a[links[0]]}, map[[2]int][]time.Duration{links[0]: a[links[1]]}) {
		t.Fatal("two links share their draws")
	}
}
