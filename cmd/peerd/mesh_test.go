package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Serf member status codes as Consul's /v1/agent/members reports them.
const (
	memberAlive  = 1
	memberLeft   = 3
	memberFailed = 4
)

// healthCheck is the subset of a Consul health check the tests read.
type healthCheck struct {
	Node    string
	CheckID string
	Status  string
}

func (p *agentProc) nodeHealth(node string) ([]healthCheck, error) {
	b, err := p.get("/v1/health/node/" + node)
	if err != nil {
		return nil, err
	}
	var cs []healthCheck
	err = json.Unmarshal(b, &cs)
	return cs, err
}

// expectMembers waits until p sees exactly the named members with status.
func expectMemberStatus(t *testing.T, p *agentProc, name string, status int) {
	t.Helper()
	waitFor(t, 30*time.Second, func() error {
		ms, err := p.members()
		if err != nil {
			return err
		}
		for _, m := range ms {
			if m.Name == name {
				if m.Status != status {
					return fmt.Errorf("%s sees %s with status %d, want %d", p.name, name, m.Status, status)
				}
				return nil
			}
		}
		return fmt.Errorf("%s does not list %s (has %v)", p.name, name, ms)
	})
}

// expectAllAlive waits until every agent lists every other as alive.
func expectAllAlive(t *testing.T, all ...*agentProc) {
	t.Helper()
	for _, p := range all {
		for _, q := range all {
			expectMemberStatus(t, p, q.name, memberAlive)
		}
	}
}

// expectKVAbsent waits until key reads as absent (404) on p.
func expectKVAbsent(t *testing.T, p *agentProc, key string) {
	t.Helper()
	waitFor(t, 30*time.Second, func() error {
		got, err := p.kvGetRaw(key)
		if err != nil && strings.Contains(err.Error(), "404") {
			return nil
		}
		return fmt.Errorf("%s: %s = %q (%v), want absent", p.name, key, got, err)
	})
}

// aliveAt reports whether p lists name as an alive member.
func aliveAt(t *testing.T, p *agentProc, name string) bool {
	t.Helper()
	ms, err := p.members()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Name == name && m.Status == memberAlive {
			return true
		}
	}
	return false
}

// expectNotAlive waits until p no longer lists name as alive (a revoked or
// untrusted node).
func expectNotAlive(t *testing.T, p *agentProc, name string) {
	t.Helper()
	waitFor(t, 10*time.Second, func() error {
		if aliveAt(t, p, name) {
			return fmt.Errorf("%s still lists %s as alive", p.name, name)
		}
		return nil
	})
}

// expectStaysNotAlive checks, every 200 ms for d, that p never lists name
// as alive (a node that keeps asking to be let in).
func expectStaysNotAlive(t *testing.T, p *agentProc, name string, d time.Duration, why string) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if aliveAt(t, p, name) {
			t.Fatalf("%s lists %s as alive: %s", p.name, name, why)
		}
	}
}

func expectKV(t *testing.T, p *agentProc, key, want string) {
	t.Helper()
	waitFor(t, 30*time.Second, func() error {
		got, err := p.kvGetRaw(key)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		if got != want {
			return fmt.Errorf("%s: %s = %q, want %q", p.name, key, got, want)
		}
		return nil
	})
}

// TestMeshOfFiveProcesses is the agent issue's acceptance: five real peerd
// processes converge on writes, detect a kill -9, take a restarted node
// back from its snapshot without -join, and keep a node certified by
// another root out.
func TestMeshOfFiveProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	m := newMesh(t)
	a1 := m.start("n1", agentOpts{})
	var all = []*agentProc{a1}
	for i := 2; i <= 5; i++ {
		all = append(all, m.start(fmt.Sprintf("n%d", i), agentOpts{join: []string{"n1"}}))
	}
	expectAllAlive(t, all...)

	// A write on one is visible on all.
	all[2].kvPut("config/a", "one")
	for _, p := range all {
		expectKV(t, p, "config/a", "one")
	}

	// kill -9: the node-level check goes critical everywhere else.
	victim := all[4]
	victim.kill()
	for _, p := range all[:4] {
		waitFor(t, 30*time.Second, func() error {
			cs, err := p.nodeHealth(victim.name)
			if err != nil {
				return err
			}
			for _, c := range cs {
				if c.CheckID == "serfHealth" && c.Status == "critical" {
					return nil
				}
			}
			return fmt.Errorf("%s: serfHealth of %s not critical yet: %+v", p.name, victim.name, cs)
		})
	}

	// While it is down the others keep writing; after a restart without
	// -join it rejoins from its serf snapshot and catches up.
	all[1].kvPut("config/b", "written-while-down")
	victim.extra = nil // no -join: the snapshot must be enough
	victim.launch()
	for _, p := range all[:4] {
		expectMemberStatus(t, p, victim.name, memberAlive)
	}
	expectKV(t, victim, "config/b", "written-while-down")
	expectKV(t, victim, "config/a", "one")

	// A node whose certificate comes from another root cannot get in.
	otherRoot := filepath.Join(m.dir, "other-root.key")
	m.cli("keygen", "-out", otherRoot)
	rogue := m.start("rogue", agentOpts{root: otherRoot, join: []string{"n1"}})
	rogue.kvPut("config/rogue", "injected")
	rogue.kvPut("config/a", "overwritten-by-rogue")
	// Give the mesh a full anti-entropy round trip with a fresh write from a
	// legitimate node, and check the rogue's writes never arrived.
	all[0].kvPut("config/marker", "after-rogue")
	for _, p := range all {
		expectKV(t, p, "config/marker", "after-rogue")
		if v, err := p.kvGetRaw("config/rogue"); err == nil {
			t.Errorf("%s has the rogue's key: %q", p.name, v)
		}
		if v, _ := p.kvGetRaw("config/a"); v != "one" {
			t.Errorf("%s: config/a = %q, the rogue overwrote it", p.name, v)
		}
		ms, err := p.members()
		if err != nil {
			t.Fatal(err)
		}
		for _, mb := range ms {
			if mb.Name == rogue.name && mb.Status == memberAlive {
				t.Errorf("%s lists the rogue as an alive member", p.name)
			}
		}
	}
}

// TestRejoinAfterLeave: an agent that left gracefully waits for an explicit
// join when it starts again, unless it runs with -rejoin (Consul's
// rejoin_after_leave); then it rejoins the members it knew.
func TestRejoinAfterLeave(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	m := newMesh(t)
	n1 := m.start("n1", agentOpts{})
	plain := m.start("plain", agentOpts{join: []string{"n1"}})
	rejoiner := m.start("rejoiner", agentOpts{join: []string{"n1"}, extra: []string{"-rejoin"}})
	expectMemberStatus(t, n1, plain.name, memberAlive)
	expectMemberStatus(t, n1, rejoiner.name, memberAlive)

	for _, p := range []*agentProc{plain, rejoiner} {
		m.cli("leave", "-http-addr", p.ip+":8500")
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s did not exit after leave", p.name)
		}
		expectMemberStatus(t, n1, p.name, memberLeft)
		// A member that left is still judged by its certificate: listed
		// as left, not as untrusted (`peerd members`).
		ms, err := n1.members()
		if err != nil {
			t.Fatal(err)
		}
		for _, mb := range ms {
			if mb.Name == p.name && mb.Tags["peerd_trust"] != "verified" {
				t.Errorf("%s lists %s (left) with peerd_trust=%q, want verified", n1.name, p.name, mb.Tags["peerd_trust"])
			}
		}
	}
	// Started again without -join, the plain agent stays out (checked for
	// 3 s) ...
	plain.extra = nil
	plain.launch()
	expectStaysNotAlive(t, n1, plain.name, 3*time.Second, "it rejoined after a leave without -rejoin")
	// ... and the -rejoin one comes back by itself.
	rejoiner.extra = []string{"-rejoin"}
	rejoiner.launch()
	expectMemberStatus(t, n1, rejoiner.name, memberAlive)
	expectMemberStatus(t, rejoiner, n1.name, memberAlive)
}
