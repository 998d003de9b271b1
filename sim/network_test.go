package sim

import (
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
				tt.setup(n)
				got := false
				err := n.stream(tt.from, tt.to, ClassTree, []byte("x"), func([]byte) { got = true })
				time.Sleep(time.Second)
				if got != tt.want || (err == nil) != tt.want {
					t.Fatalf("delivered=%v err=%v, want delivered=%v", got, err, tt.want)
				}
			})
		})
	}
}

func TestNetworkLatencyLossBandwidth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := NewNetwork(2, LinkProfile{Latency: 50 * time.Millisecond, Bandwidth: 1000}, 7)
		start := time.Now()
		var at []time.Duration
		for range 2 {
			n.stream(0, 1, ClassTree, make([]byte, 500), func([]byte) { at = append(at, time.Since(start)) })
		}
		time.Sleep(5 * time.Second)
		// 500 bytes at 1000 B/s: 0.5 s each, queued behind each other.
		if len(at) != 2 || at[0] != 550*time.Millisecond || at[1] != 1050*time.Millisecond {
			t.Fatalf("arrivals %v", at)
		}
		n.SetProfile(LinkProfile{Loss: 0.5})
		got := 0
		for range 1000 {
			n.datagram(0, 1, ClassMember, []byte("y"), func([]byte) { got++ })
		}
		time.Sleep(time.Second)
		if got < 400 || got > 600 {
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
