package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNameCollisionRefusesNewcomer: an agent started under a node name the
// mesh already has (its own key, address and data dir, -join to the
// holder of the name) is refused: it exits non-zero with an ERROR that
// names the fix (-node NAME). The holder of the name logs an ERROR naming
// the newcomer's address and keeps gossiping. Before the fix serf's
// conflict resolution found no other member to vote, shut down serf on
// both, and both kept serving HTTP with stale data.
func TestNameCollisionRefusesNewcomer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	m := newMesh(t)
	n1 := m.start("n1", agentOpts{})

	key, cert := m.nodeIdentity("dup", m.root)
	ip := fmt.Sprintf("%s%d", m.subnet, 40)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, m.bin, "agent", "-node", n1.name, "-bind", ip, "-client", ip,
		"-data-dir", filepath.Join(m.dir, "dup-data"), "-trust", m.root+".pub",
		"-node-key", key, "-node-cert", cert, "-fast-gossip", "-join", n1.ip)
	cmd.Env = append(os.Environ(), "CONSUL_HTTP_ADDR=", "PEERD_HTTP_ADDR=")
	b, err := cmd.CombinedOutput()
	out := string(b)
	if ctx.Err() != nil {
		t.Fatalf("the agent started under n1's name was still running after 15 s:\n%s", tail(out, 30))
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("the agent under a taken name: %v, want exit status 1:\n%s", err, tail(out, 30))
	}
	if !hasLogLine(out, "level=ERROR", "node name conflict", "-node NAME") {
		t.Errorf("the refused agent logged no ERROR naming the conflict and -node NAME:\n%s", tail(out, 30))
	}

	// The holder of the name says which address claimed it.
	waitFor(t, 10*time.Second, func() error {
		if !hasLogLine(n1.Logs(), "level=ERROR", "node name conflict", ip) {
			return fmt.Errorf("n1 logged no ERROR about the conflict with %s", ip)
		}
		return nil
	})
	// ... and still gossips: a new member gets in and both see each other.
	n3 := m.start("n3", agentOpts{join: []string{"n1"}})
	expectMemberStatus(t, n1, n3.name, memberAlive)
	expectMemberStatus(t, n3, n1.name, memberAlive)
	if !n1.running() {
		t.Fatalf("n1 exited:\n%s", tail(n1.Logs(), 30))
	}
}

// hasLogLine reports whether one line of logs contains every part.
func hasLogLine(logs string, parts ...string) bool {
	for _, l := range strings.Split(logs, "\n") {
		all := true
		for _, p := range parts {
			if !strings.Contains(l, p) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}
