package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestForceLeave: an alive node refutes a force-leave and stays (and may
// not be pruned). A killed node is failed on the others and its service is
// still listed (critical serfHealth); `peerd force-leave` on one agent makes
// it left on every agent and its service disappears from the health and
// catalog answers and DNS of every agent, as after a graceful leave. -prune (through HashiCorp's client)
// erases it from the member lists, and when it starts again with its data
// dir it is listed again. An unknown node is refused with Consul's words
// and exit status.
func TestForceLeave(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	dig := digBinary(t)
	m := newMesh(t)
	n1 := m.start("n1", agentOpts{})
	n2 := m.start("n2", agentOpts{join: []string{"n1"}})
	n3 := m.start("n3", agentOpts{join: []string{"n1"}})
	n3.register(t, map[string]any{"Name": "doomed", "Port": 4444})
	rest := []*agentProc{n1, n2}
	for _, p := range rest {
		expectHealthNodes(t, p, "doomed", "n3")
	}

	// An alive node refutes the leave and stays, as with Consul; pruning
	// it is refused (serf would erase it from the member lists for good).
	if out := m.cli("force-leave", "-http-addr", n1.ip+":8500", "n3"); out != "" {
		t.Fatalf("force-leave of an alive node printed %q", out)
	}
	out, err := m.cliErr("force-leave", "-prune", "-http-addr", n1.ip+":8500", "n3")
	if exitCodeOf(err) != 1 || !strings.Contains(out, "Error force leaving: Unexpected response code: 400 (agent: Refusing to prune alive node 'n3'") {
		t.Fatalf("force-leave -prune of an alive node: %v\n%s", err, out)
	}
	waitFor(t, 30*time.Second, func() error {
		for _, p := range rest {
			ms, err := p.members()
			if err != nil {
				return err
			}
			for _, mb := range ms {
				if mb.Name == "n3" && mb.Status != memberAlive {
					return fmt.Errorf("%s sees n3 with status %d", p.name, mb.Status)
				}
			}
			b, err := p.get("/v1/health/service/doomed?passing")
			if err != nil {
				return err
			}
			if !strings.Contains(string(b), `"Node":"n3"`) {
				return fmt.Errorf("%s: n3's service is not passing: %s", p.name, b)
			}
		}
		return nil
	})

	n3.kill()
	for _, p := range rest {
		expectMemberStatus(t, p, "n3", memberFailed)
		expectHealthNodes(t, p, "doomed", "n3") // failed: listed, critical
		if got := catalogServiceNodes(t, p, "doomed"); len(got) != 1 {
			t.Fatalf("%s: catalog of a failed node's service: %v, want [n3]", p.name, got)
		}
	}

	out, err = m.cliErr("force-leave", "-http-addr", n1.ip+":8500", "nobody")
	if err == nil || !strings.Contains(out, "Error force leaving: Unexpected response code: 500 (agent: No node found with name 'nobody')") {
		t.Fatalf("force-leave of an unknown node: %v\n%s", err, out)
	}
	if code := exitCodeOf(err); code != 1 {
		t.Fatalf("force-leave of an unknown node exited %d, want 1", code)
	}

	if out := m.cli("force-leave", "-http-addr", n1.ip+":8500", "n3"); out != "" {
		t.Fatalf("force-leave printed %q, want nothing (as consul)", out)
	}
	for _, p := range rest {
		expectMemberStatus(t, p, "n3", memberLeft)
		expectHealthNodes(t, p, "doomed")
		// Gone from the catalog and DNS too, as after a graceful leave.
		waitFor(t, 30*time.Second, func() error {
			if got := catalogServiceNodes(t, p, "doomed"); len(got) != 0 {
				return fmt.Errorf("%s: catalog lists doomed on %v", p.name, got)
			}
			if a := p.dig(t, dig, "doomed.service.consul", "A"); len(a) != 0 {
				return fmt.Errorf("%s answers doomed.service.consul: %v", p.name, a)
			}
			if a := p.dig(t, dig, "n3.node.consul", "A"); len(a) != 0 {
				return fmt.Errorf("%s answers n3.node.consul: %v", p.name, a)
			}
			return nil
		})
	}
	if out := m.cli("members", "-http-addr", n2.ip+":8500"); !hasLogLine(out, "n3", "left") {
		t.Fatalf("peerd members on n2 does not show n3 left:\n%s", out)
	}

	// HashiCorp's client: an unknown node is an error, -prune erases n3.
	api := consulClient(t, n2, "").Agent()
	if err := api.ForceLeave("nobody"); err == nil || !strings.Contains(err.Error(), "No node found with name 'nobody'") {
		t.Fatalf("consul/api ForceLeave(nobody): %v", err)
	}
	if err := api.ForceLeavePrune("n3"); err != nil {
		t.Fatalf("consul/api ForceLeavePrune(n3): %v", err)
	}
	waitFor(t, 30*time.Second, func() error {
		for _, p := range rest {
			ms, err := p.members()
			if err != nil {
				return err
			}
			for _, mb := range ms {
				if mb.Name == "n3" {
					return fmt.Errorf("%s still lists n3 (status %d)", p.name, mb.Status)
				}
			}
			if got := healthNodes(t, p, "doomed"); len(got) != 0 {
				return fmt.Errorf("%s lists doomed on %v after the prune", p.name, got)
			}
		}
		return nil
	})

	// n3 comes back with its data dir: the others forgot its records when
	// they pruned it, and its replica still holds them as live, so it
	// writes them again at start and is listed again everywhere.
	n3.launch()
	for _, p := range rest {
		expectMemberStatus(t, p, "n3", memberAlive)
		expectHealthNodes(t, p, "doomed", "n3")
	}
}

// healthNodes returns the nodes /v1/health/service/NAME lists on p.
func healthNodes(t testing.TB, p *agentProc, service string) []string {
	t.Helper()
	b, err := p.get("/v1/health/service/" + service)
	if err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	var es []struct{ Node struct{ Node string } }
	if err := json.Unmarshal(b, &es); err != nil {
		t.Fatalf("%s: %v: %s", p.name, err, b)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Node.Node)
	}
	return out
}

// expectHealthNodes waits until /v1/health/service/NAME on p lists exactly
// the given nodes.
func expectHealthNodes(t testing.TB, p *agentProc, service string, nodes ...string) {
	t.Helper()
	want := strings.Join(nodes, ",")
	waitFor(t, 30*time.Second, func() error {
		if got := strings.Join(healthNodes(t, p, service), ","); got != want {
			return fmt.Errorf("%s: health of %s lists [%s], want [%s]", p.name, service, got, want)
		}
		return nil
	})
}

// exitCodeOf is the exit status behind a cliErr error (0 for nil).
func exitCodeOf(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
