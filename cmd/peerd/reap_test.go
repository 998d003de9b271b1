package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestReapLeftNodeOnLateJoiner: a node that left is hidden and then reaped
// by the agents that saw it leave; an agent that joins afterwards gets its
// records by anti-entropy but never meets it in serf. Before the fix that
// agent listed the node (with a critical serfHealth) and its services
// forever. Now it asks the others, who saw it leave, and forgets it.
func TestReapLeftNodeOnLateJoiner(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	dig := digBinary(t)
	m := newMesh(t)
	n1 := m.start("n1", agentOpts{})
	n2 := m.start("n2", agentOpts{join: []string{"n1"}})
	leaver := m.start("n4", agentOpts{join: []string{"n1"}})
	leaver.register(t, map[string]any{"Name": "leaver", "Port": 4444})
	waitFor(t, 20*time.Second, func() error {
		if got := catalogServiceNodes(t, n2, "leaver"); len(got) != 1 {
			return fmt.Errorf("n2 lists leaver on %v", got)
		}
		return nil
	})

	m.cli("leave", "-http-addr", leaver.ip+":8500")
	select {
	case <-leaver.done:
	case <-time.After(20 * time.Second):
		t.Fatal("n4 did not exit after leave")
	}
	expectMemberStatus(t, n1, leaver.name, memberLeft)

	late := m.start("n6", agentOpts{join: []string{"n1", "n2"}})
	n2.kvPut("reap/marker", "after-the-leave")
	expectKV(t, late, "reap/marker", "after-the-leave") // caught up

	all := []*agentProc{n1, n2, late}
	waitFor(t, 20*time.Second, func() error {
		for _, p := range all {
			if got := catalogServiceNodes(t, p, "leaver"); len(got) != 0 {
				return fmt.Errorf("%s lists service leaver on %v", p.name, got)
			}
			if nodes := catalogNodeNames(t, p); strings.Contains(" "+strings.Join(nodes, " ")+" ", " n4 ") {
				return fmt.Errorf("%s lists node n4: %v", p.name, nodes)
			}
			if a := p.dig(t, dig, "leaver.service.consul", "A"); len(a) != 0 {
				return fmt.Errorf("%s answers leaver.service.consul: %v", p.name, a)
			}
			// A left node is not answered by name either (as in the
			// catalog), also on agents that saw the leave.
			if a := p.dig(t, dig, "n4.node.consul", "A"); len(a) != 0 {
				return fmt.Errorf("%s answers n4.node.consul: %v", p.name, a)
			}
		}
		// The scenario happened: n6 got n4's records and forgot them.
		if !hasLogLine(late.Logs(), "forgetting the records", "node=n4") {
			return fmt.Errorf("n6 has not forgotten n4's records (no 'forgetting the records' line)")
		}
		return nil
	})
}

func catalogServiceNodes(t *testing.T, p *agentProc, service string) []string {
	t.Helper()
	b, err := p.get("/v1/catalog/service/" + service)
	if err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	var es []struct{ Node string }
	if err := json.Unmarshal(b, &es); err != nil {
		t.Fatalf("%s: %v: %s", p.name, err, b)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Node)
	}
	return out
}

func catalogNodeNames(t *testing.T, p *agentProc) []string {
	t.Helper()
	b, err := p.get("/v1/catalog/nodes")
	if err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	var ns []struct{ Node string }
	if err := json.Unmarshal(b, &ns); err != nil {
		t.Fatalf("%s: %v: %s", p.name, err, b)
	}
	var out []string
	for _, n := range ns {
		out = append(out, n.Node)
	}
	return out
}
