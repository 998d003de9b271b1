package gossip

import (
	"errors"
	"testing"
	"time"
)

func TestMembershipForceLeave(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 4)

	if err := nodes[0].m.ForceLeave("nobody", false); !errors.Is(err, ErrNoMember) {
		t.Fatalf("force leave of an unknown name: %v, want ErrNoMember", err)
	}

	// An alive member refutes the leave intent about itself and stays; it
	// may not be pruned (it would vanish from the member lists for good).
	if err := nodes[0].m.ForceLeave("n1", false); err != nil {
		t.Fatalf("force leave of an alive member: %v", err)
	}
	waitForDescribed(t, 25*time.Second, "n1 alive again", allSee(nodes, "n1", StatusAlive),
		func() string { return views(nodes, "n1") })
	if err := nodes[0].m.ForceLeave("n1", true); !errors.Is(err, ErrPruneAlive) {
		t.Fatalf("prune of an alive member: %v, want ErrPruneAlive", err)
	}

	// Failed members: force-leave makes them left everywhere, prune erases them.
	_ = nodes[2].m.Close()
	_ = nodes[3].m.Close()
	live := nodes[:2]
	for _, name := range []string{"n2", "n3"} {
		waitForDescribed(t, 30*time.Second, name+" failed", allSee(live, name, StatusFailed),
			func() string { return views(live, name) })
	}
	if err := nodes[0].m.ForceLeave("n2", false); err != nil {
		t.Fatalf("force leave n2: %v", err)
	}
	if st := statusOf(nodes[0].m, "n2"); st != StatusLeft {
		t.Fatalf("n2 on n0 right after force leave: %v, want left", st)
	}
	waitForDescribed(t, 25*time.Second, "n2 left", allSee(live, "n2", StatusLeft),
		func() string { return views(live, "n2") })
	waitFor(t, 10*time.Second, "leave event for n2 on n1", func() bool { return nodes[1].events.saw(EventLeave, "n2") })

	if err := nodes[1].m.ForceLeave("n3", true); err != nil {
		t.Fatalf("force leave -prune n3: %v", err)
	}
	gone := func() bool {
		for _, n := range live {
			for _, mem := range n.m.Members() {
				if mem.Name == "n3" {
					return false
				}
			}
		}
		return true
	}
	waitForDescribed(t, 25*time.Second, "n3 pruned from every member list", gone,
		func() string { return views(live, "n3") })
	waitFor(t, 10*time.Second, "reap event for n3 on n0", func() bool { return nodes[0].events.saw(EventReap, "n3") })
	if st := statusOf(nodes[0].m, "n2"); st != StatusLeft {
		t.Fatalf("n2 after pruning n3: %v, want still left", st)
	}
	if !allSee(nodes[:2], "n1", StatusAlive)() {
		t.Fatalf("n1 after the refused prune: %s, want alive everywhere", views(nodes[:2], "n1"))
	}
}
