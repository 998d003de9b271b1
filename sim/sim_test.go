package sim

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func logWriter(t testing.TB) io.Writer {
	if testing.Verbose() {
		return os.Stderr
	}
	return nil
}

func runOK(t *testing.T, sc Scenario) *Result {
	t.Helper()
	res, err := RunVirtual(t, sc, logWriter(t))
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() {
		var sb strings.Builder
		res.WriteSummary(&sb)
		t.Fatalf("seed %d failed:\n%s", sc.Seed, sb.String())
	}
	return res
}

// TestBroadcastGlomers is modelled on Gossip Glomers 3d/3e: 25 peers,
// 100 ms links, 100 operations per second (half writes, half reads):
// fewer than 20 messages per operation (every message between peers,
// membership included), median latency to every peer under 400 ms and
// maximum under 600 ms, both at once.
func TestBroadcastGlomers(t *testing.T) {
	sc := Scenario{
		Name: "glomers", Peers: 25, Seed: 1, Services: 1,
		Network:  LinkProfile{Latency: 100 * time.Millisecond},
		Tick:     *glomersTick,
		Batch:    *glomersBatch,
		Fanout:   *glomersFanout,
		Duration: 20 * time.Second,
		Workload: Workload{Rate: 100, Reads: 0.5, Keys: 1000, Start: 2 * time.Second},
		Expect: Expect{MsgsPerOp: 20, P50Convergence: 400 * time.Millisecond,
			MaxConvergence: 600 * time.Millisecond, ConvergeWithin: 10 * time.Second},
	}
	res := runOK(t, sc)
	t.Logf("messages per op %.1f (dissemination+repair %.1f), stable latency %s",
		res.MsgsPerOp, res.DisseminationMsgsPerOp, res.ReachAll)
}

var (
	glomersTick   = flagDuration("glomers.tick", 500*time.Millisecond, "Plumtree tick of TestBroadcastGlomers")
	glomersBatch  = flagDuration("glomers.batch", 50*time.Millisecond, "outbox interval of TestBroadcastGlomers")
	glomersFanout = flag.Int("glomers.fanout", 8, "Plumtree fanout of TestBroadcastGlomers")
)

// TestSeedSweep runs many seeds with mixed faults; every checker must pass.
func TestSeedSweep(t *testing.T) {
	seeds, peers := 20, 50
	if testing.Short() {
		seeds, peers = 5, 20
	}
	for seed := 1; seed <= seeds; seed++ {
		sc := sweepScenario(uint64(seed), peers)
		t.Run(fmt.Sprintf("seed=%d/%s", seed, sc.Name), func(t *testing.T) {
			runOK(t, sc)
		})
	}
}

// sweepScenario picks a fault mix by seed, with writes throughout.
func sweepScenario(seed uint64, peers int) Scenario {
	sc := Scenario{
		Peers: peers, Seed: seed, Duration: 16 * time.Second, Skew: 2 * time.Second, Idle: time.Second,
		Network:  LinkProfile{Latency: 5 * time.Millisecond, Jitter: 5 * time.Millisecond, Reorder: 0.05, Duplicate: 0.02},
		Workload: Workload{Rate: 30, Reads: 0.3, Deletes: 0.25, Keys: 40, Intentions: 8, IntentionPairs: 2},
		Expect:   Expect{ConvergeWithin: 30 * time.Second},
	}
	at := func(s int) time.Duration { return time.Duration(s) * time.Second }

	switch seed % 6 {
	case 0:
		sc.Name = "partition"
		sc.Events = []Event{{At: at(2), Action: "partition", Groups: 2, Node: -1}, {At: at(12), Action: "heal", Node: -1}}
	case 1:
		sc.Name = "asymmetric+isolate"
		sc.Events = []Event{{At: at(2), Action: "partition", Sides: []float64{0.3, 0.7}, Asymmetric: true, Node: -1},
			{At: at(6), Action: "isolate", Node: -1}, {At: at(12), Action: "heal", Node: -1}}
	case 2:
		sc.Name = "crash-restart"
		sc.Events = []Event{{At: at(2), Action: "crash", Count: 3, Node: -1}, {At: at(9), Action: "restart", Node: -1},
			{At: at(10), Action: "crash", Count: 1, Node: -1}}
	case 3:
		sc.Name = "loss20"
		sc.Events = []Event{{At: at(1), Action: "network", Node: -1, Link: LinkProfile{Latency: 20 * time.Millisecond, Jitter: 10 * time.Millisecond, Loss: 0.2}},
			{At: at(12), Action: "network", Node: -1, Link: sc.Network}}
	case 4:
		sc.Name = "swizzle"
		sc.Events = []Event{{At: at(1), Action: "swizzle", Fraction: 0.2, Step: 500 * time.Millisecond, Node: -1}}
	case 5:
		sc.Name = "rolling+partition3"
		sc.Events = []Event{{At: at(1), Action: "rolling", Count: 4, Step: 2 * time.Second, Down: time.Second, Node: -1},
			{At: at(10), Action: "partition", Groups: 3, Node: -1}, {At: at(14), Action: "heal", Node: -1}}
	}
	// An older intention version replayed in the middle of every fault mix.
	sc.Events = append(sc.Events, Event{At: at(8), Action: "replay_intention", Node: -1})
	return sc
}

// TestScenarioFiles checks that the shipped scenarios parse.
func TestScenarioFiles(t *testing.T) {
	files, _ := os.ReadDir("scenarios")
	if len(files) == 0 {
		t.Fatal("no scenarios")
	}
	for _, f := range files {
		if _, err := LoadScenario("scenarios/" + f.Name()); err != nil {
			t.Error(err)
		}
	}
}

// TestReplaySchedule: two runs of a seed play the same schedule (joins,
// every operation with its peer, key, value and dot, every fault and its
// random choices), although serf, memberlist and the scheduler make the
// rest of the run differ; another seed plays another schedule.
func TestReplaySchedule(t *testing.T) {
	sc := func(seed uint64) Scenario {
		return Scenario{
			Name: "replay", Peers: 12, Seed: seed, Duration: 12 * time.Second, Idle: time.Second, Skew: time.Second,
			Network:  LinkProfile{Latency: 5 * time.Millisecond, Jitter: 5 * time.Millisecond, Reorder: 0.1, Duplicate: 0.05},
			Workload: Workload{Rate: 20, Reads: 0.3, Deletes: 0.2, Keys: 10},
			Events: []Event{
				{At: time.Second, Action: "partition", Groups: 2, Node: -1},
				{At: 3 * time.Second, Action: "crash", Count: 2, Node: -1},
				{At: 4 * time.Second, Action: "network", Node: -1, Link: LinkProfile{Latency: 10 * time.Millisecond, Loss: 0.2}},
				{At: 5 * time.Second, Action: "heal", Node: -1},
				{At: 6 * time.Second, Action: "restart", Node: -1},
				{At: 7 * time.Second, Action: "swizzle", Fraction: 0.25, Step: 500 * time.Millisecond, Node: -1},
				{At: 8 * time.Second, Action: "isolate", Node: -1},
			},
			Expect: Expect{ConvergeWithin: 30 * time.Second},
		}
	}
	a, b, c := runOK(t, sc(5)), runOK(t, sc(5)), runOK(t, sc(6))
	if len(a.Schedule) < 100 {
		t.Fatalf("schedule of %d lines, want a workload and faults", len(a.Schedule))
	}
	for i := range max(len(a.Schedule), len(b.Schedule)) {
		var x, y string
		if i < len(a.Schedule) {
			x = a.Schedule[i]
		}
		if i < len(b.Schedule) {
			y = b.Schedule[i]
		}
		if x != y {
			t.Fatalf("runs of seed 5 differ at schedule line %d:\n  %s\n  %s", i, x, y)
		}
	}
	if a.ScheduleFingerprint() != b.ScheduleFingerprint() || a.ScheduleFingerprint() == c.ScheduleFingerprint() {
		t.Fatalf("fingerprints %s %s (seed 5), %s (seed 6)", a.ScheduleFingerprint(), b.ScheduleFingerprint(), c.ScheduleFingerprint())
	}
}
