package gossip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testLogger logs to stderr when GOSSIP_TEST_LOG is set, else nowhere.
func testLogger(tb testing.TB) *slog.Logger {
	tb.Helper()
	if os.Getenv("GOSSIP_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// clusterNode is one serf member of a loopback test cluster.
type clusterNode struct {
	m      *Membership
	name   string
	port   int
	events *eventLog
}

type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *eventLog) saw(typ EventType, name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events {
		if e.Type != typ {
			continue
		}
		for _, m := range e.Members {
			if m.Name == name {
				return true
			}
		}
	}
	return false
}

type nodeOpts struct {
	name     string
	id       string // TagID; empty: name
	port     int    // 0: ephemeral
	snapshot string
	admit    func(Member) bool
}

func startNode(tb testing.TB, o nodeOpts) *clusterNode {
	tb.Helper()
	port := o.port
	if port == 0 {
		port = -1
	}
	log := &eventLog{}
	id := o.id
	if id == "" {
		id = o.name
	}
	m, err := New(Config{
		NodeName:     o.name,
		BindAddr:     "127.0.0.1",
		BindPort:     port,
		Tags:         map[string]string{"id": id, "peer": "127.0.0.1:1"},
		SnapshotPath: o.snapshot,
		Profile:      ProfileLocal,
		OnEvent:      log.add,
		Admit:        o.admit,
		Logger:       testLogger(tb),
	})
	if err != nil {
		tb.Fatalf("start %s: %v", o.name, err)
	}
	tb.Cleanup(func() { _ = m.Close() })
	return &clusterNode{m: m, name: o.name, port: int(m.LocalMember().Port), events: log}
}

func (n *clusterNode) addr() string { return "127.0.0.1:" + strconv.Itoa(n.port) }

// waitFor polls cond every 20 ms until it holds or the deadline passes.
func waitFor(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	waitForDescribed(tb, within, what, cond, nil)
}

// waitForDescribed is waitFor that adds describe() to the failure.
func waitForDescribed(tb testing.TB, within time.Duration, what string, cond func() bool, describe func() string) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			if describe != nil {
				what += ": " + describe()
			}
			tb.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func statusOf(m *Membership, name string) MemberStatus {
	for _, mem := range m.Members() {
		if mem.Name == name {
			return mem.Status
		}
	}
	return StatusNone
}

func allSee(nodes []*clusterNode, name string, st MemberStatus) func() bool {
	return func() bool {
		for _, n := range nodes {
			if n.name != name && statusOf(n.m, name) != st {
				return false
			}
		}
		return true
	}
}

// views describes how each node sees name, for failure messages.
func views(nodes []*clusterNode, name string) string {
	var s []string
	for _, n := range nodes {
		s = append(s, fmt.Sprintf("%s:%v", n.name, statusOf(n.m, name)))
	}
	return strings.Join(s, " ")
}

func startCluster(tb testing.TB, n int) []*clusterNode {
	tb.Helper()
	var nodes []*clusterNode
	for i := range n {
		nodes = append(nodes, startNode(tb, nodeOpts{name: fmt.Sprintf("n%d", i)}))
	}
	for _, nd := range nodes[1:] {
		if _, err := nd.m.Join([]string{nodes[0].addr()}); err != nil {
			tb.Fatalf("join %s: %v", nd.name, err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := true
		for _, nd := range nodes {
			if nd.m.NumMembers() != n {
				ok = false
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			for _, nd := range nodes {
				var s []string
				for _, m := range nd.m.Members() {
					s = append(s, fmt.Sprintf("%s:%v", m.Name, m.Status))
				}
				tb.Logf("%s sees %v", nd.name, s)
			}
			tb.Fatalf("cluster of %d did not form within 30 s", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nodes
}

func TestMembershipJoinLeaveFail(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 4)
	for _, nd := range nodes {
		for _, other := range nodes {
			if st := statusOf(nd.m, other.name); st != StatusAlive {
				t.Fatalf("%s sees %s as %v", nd.name, other.name, st)
			}
		}
		if got := len(nd.m.Admitted()); got != 3 {
			t.Fatalf("%s admitted %d peers, want 3", nd.name, got)
		}
	}
	waitFor(t, 10*time.Second, "join events", func() bool {
		return nodes[0].events.saw(EventJoin, "n3")
	})
	// Vivaldi coordinates arrive with the probes (every second).
	waitFor(t, 15*time.Second, "coordinates", func() bool {
		_, ok := nodes[0].m.Distance("n1")
		return ok
	})
	if _, err := nodes[0].m.Coordinate(); err != nil {
		t.Fatal(err)
	}
	if tags := nodes[0].m.Members(); len(tags) != 4 {
		t.Fatalf("members: %d", len(tags))
	}

	// Graceful leave: seen as left.
	if err := nodes[3].m.Leave(5 * time.Second); err != nil {
		t.Fatalf("leave: %v", err)
	}
	_ = nodes[3].m.Close()
	// Bounded by serf's push-pull (15 s) in case the leave intent missed a
	// node.
	waitForDescribed(t, 25*time.Second, "n3 left", allSee(nodes[:3], "n3", StatusLeft),
		func() string { return views(nodes[:3], "n3") })
	waitFor(t, 10*time.Second, "leave event", func() bool { return nodes[0].events.saw(EventLeave, "n3") })

	// Crash (no leave): seen as failed.
	_ = nodes[2].m.Close()
	waitForDescribed(t, 30*time.Second, "n2 failed", allSee(nodes[:2], "n2", StatusFailed),
		func() string { return views(nodes[:2], "n2") })
	waitFor(t, 10*time.Second, "failed event", func() bool { return nodes[1].events.saw(EventFailed, "n2") })
	if got := len(nodes[0].m.Admitted()); got != 1 {
		t.Fatalf("admitted after leave+fail: %d, want 1", got)
	}
}

func TestMembershipSnapshotRejoin(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	snap := filepath.Join(dir, "serf.snapshot")
	nodes := startCluster(t, 2)
	r := startNode(t, nodeOpts{name: "restarted", snapshot: snap})
	if _, err := r.m.Join([]string{nodes[0].addr()}); err != nil {
		t.Fatal(err)
	}
	all := append(nodes, r)
	waitFor(t, 20*time.Second, "restarted alive", allSee(all, "restarted", StatusAlive))
	// Let the snapshot record the other members (it is written as events
	// arrive, flushed on shutdown).
	waitFor(t, 10*time.Second, "join events at restarted", func() bool {
		return r.events.saw(EventJoin, "n0") && r.events.saw(EventJoin, "n1")
	})
	_ = r.m.Close() // crash: no leave
	waitFor(t, 30*time.Second, "restarted failed", allSee(nodes, "restarted", StatusFailed))

	r2 := startNode(t, nodeOpts{name: "restarted", snapshot: snap, port: r.port})
	// No Join: serf rejoins the members recorded in the snapshot. The
	// bound is shorter than serf's 30 s reconnect interval, so the others
	// reconnecting to it cannot be what brings it back.
	waitFor(t, 10*time.Second, "rejoined from snapshot", func() bool {
		return allSee(nodes, "restarted", StatusAlive)() && r2.m.NumMembers() == 3
	})
}

func TestMembershipAdmit(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	banned := map[string]bool{}
	admit := func(m Member) bool {
		mu.Lock()
		defer mu.Unlock()
		return !banned[m.Tags["id"]]
	}
	a := startNode(t, nodeOpts{name: "a", admit: admit})
	b := startNode(t, nodeOpts{name: "b"})
	c := startNode(t, nodeOpts{name: "c"})
	for _, n := range []*clusterNode{b, c} {
		if _, err := n.m.Join([]string{a.addr()}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "3 members", func() bool { return a.m.NumMembers() == 3 })
	if got := len(a.m.Admitted()); got != 2 {
		t.Fatalf("admitted %d, want 2", got)
	}
	mu.Lock()
	banned["b"] = true
	mu.Unlock()
	if got := len(a.m.Admitted()); got != 2 {
		t.Fatalf("cached verdict changed without Reevaluate: %d", got)
	}
	a.m.Reevaluate()
	got := a.m.Admitted()
	if len(got) != 1 || got[0].Name != "c" {
		t.Fatalf("admitted after revocation: %+v", got)
	}
	if ids := a.m.AdmittedIDs(); !slices.Equal(ids, []string{"c"}) {
		t.Fatalf("AdmittedIDs = %v", ids)
	}
	if ap, err := got[0].PeerAddr(); err != nil || ap.String() != "127.0.0.1:1" {
		t.Fatalf("PeerAddr = %v, %v", ap, err)
	}
	// A tags change is an update event, and it drops the cached verdict.
	mu.Lock()
	banned["b"] = false
	banned["c2"] = true
	mu.Unlock()
	if err := c.m.SetTags(map[string]string{"id": "c2", "peer": "127.0.0.1:2"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "update event", func() bool { return a.events.saw(EventUpdate, "c") })
	waitForDescribed(t, 10*time.Second, "re-admission after tags change", func() bool {
		got := a.m.AdmittedIDs()
		return !slices.Contains(got, "c2")
	}, func() string { return fmt.Sprint(a.m.AdmittedIDs()) })
}

func TestMembershipRetryJoin(t *testing.T) {
	t.Parallel()
	seed := startNode(t, nodeOpts{name: "seed"})
	port := seed.port
	_ = seed.m.Close()
	late := startNode(t, nodeOpts{name: "late"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	late.m.RetryJoin(ctx, []string{"127.0.0.1:" + strconv.Itoa(port)}, 100*time.Millisecond)
	// The seed comes up after the first attempts failed.
	waitFor(t, 10*time.Second, "failed attempts", func() bool { return late.m.joinAttempts.Load() >= 2 })
	seed2 := startNode(t, nodeOpts{name: "seed", port: port})
	waitFor(t, 20*time.Second, "retry join", func() bool {
		return seed2.m.NumMembers() == 2 && late.m.NumMembers() == 2
	})
	if _, err := late.m.Join(nil); err == nil {
		t.Fatal("join without addresses succeeded")
	}
}

// TestMembershipNameConflict: a node that joins under a name the cluster
// already has (another node ID) is refused with ErrNameConflict, and the
// node that had the name keeps gossiping — also when the two are alone,
// where serf's own conflict resolution used to shut both down.
func TestMembershipNameConflict(t *testing.T) {
	for _, tc := range []struct {
		name   string
		others int // members besides the one named "dup"
	}{
		{"alone", 0},
		{"with two others", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dup := startNode(t, nodeOpts{name: "dup", id: "id-first"})
			nodes := []*clusterNode{dup}
			for i := range tc.others {
				o := startNode(t, nodeOpts{name: fmt.Sprintf("o%d", i)})
				if _, err := o.m.Join([]string{dup.addr()}); err != nil {
					t.Fatal(err)
				}
				nodes = append(nodes, o)
			}
			waitFor(t, 10*time.Second, "cluster formed", func() bool { return dup.m.NumMembers() == len(nodes) })

			newcomer := startNode(t, nodeOpts{name: "dup", id: "id-second"})
			n, err := newcomer.m.Join([]string{dup.addr()})
			if !errors.Is(err, ErrNameConflict) || n != 0 {
				t.Fatalf("join under a taken name: n=%d err=%v, want 0 and ErrNameConflict", n, err)
			}
			// The established node still gossips: a new member gets in and
			// both see each other.
			late := startNode(t, nodeOpts{name: "late"})
			if _, err := late.m.Join([]string{dup.addr()}); err != nil {
				t.Fatalf("join after the conflict: %v", err)
			}
			waitFor(t, 10*time.Second, "dup and late see each other", func() bool {
				return statusOf(dup.m, "late") == StatusAlive && statusOf(late.m, "dup") == StatusAlive
			})
			for _, nd := range append(nodes, late) {
				for _, mem := range nd.m.Members() {
					if mem.Name == "dup" && mem.Tags[TagID] != "id-first" {
						t.Errorf("%s lists the newcomer: %+v", nd.name, mem)
					}
				}
			}
			select {
			case <-dup.m.Lost():
				t.Fatal("the established node lost its gossip")
			default:
			}
		})
	}
}

// TestMembershipLost: Lost is closed when serf shuts down by itself, not
// when Close is called.
func TestMembershipLost(t *testing.T) {
	a := startNode(t, nodeOpts{name: "a"})
	b := startNode(t, nodeOpts{name: "b"})
	if err := b.m.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.m.Lost():
		t.Fatal("Lost closed by Close")
	default:
	}
	if err := a.m.serf.Shutdown(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.m.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("Lost not closed after serf shut down")
	}
}

// TestMembershipAskStatus: the other members answer how they see the asked
// node IDs; a member that left does not answer.
func TestMembershipAskStatus(t *testing.T) {
	nodes := startCluster(t, 4)
	if err := nodes[3].m.Leave(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitForDescribed(t, 10*time.Second, "n3 left everywhere", allSee(nodes[:3], "n3", StatusLeft), func() string { return views(nodes, "n3") })
	got, err := nodes[0].m.AskStatus(context.Background(), []string{"n3", "n1", "never-seen"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]MemberStatus{
		"n3":         {StatusLeft, StatusLeft},
		"n1":         {StatusAlive, StatusAlive},
		"never-seen": {StatusNone, StatusNone},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("AskStatus = %v, want %v (answers from n1 and n2 only)", got, want)
	}
	one, err := nodes[0].m.AskStatus(context.Background(), []string{"n3"}, 1)
	if err != nil || len(one["n3"]) != 1 || one["n3"][0] != StatusLeft {
		t.Fatalf("AskStatus of one member = %v, %v; want one answer: left", one, err)
	}
	if _, err := nodes[0].m.AskStatus(context.Background(), make([]string, MaxAskIDs+1), 0); err == nil {
		t.Fatal("AskStatus accepted more than MaxAskIDs ids")
	}
}
