package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMeshOperatorKeyRevocation: an operator key certified by the root
// (it may sign intentions and issue node certificates) is revoked. The node
// it certified leaves discovery everywhere, and the intention it signed
// stops applying: after an operator-key compromise nothing it vouched for
// keeps steering traffic.
func TestMeshOperatorKeyRevocation(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	m := newMesh(t)
	op, opCert := filepath.Join(m.dir, "op.key"), filepath.Join(m.dir, "op.cert")
	m.cli("keygen", "-out", op)
	m.cli("cert", "issue", "-ca-key", m.root, "-subject", op+".pub", "-name", "op", "-intentions", "-delegate", "1", "-services", "*", "-kv", "*",
		"-ttl", "24h", "-out", opCert)
	n1 := m.start("n1", agentOpts{})
	n2 := m.start("n2", agentOpts{join: []string{"n1"}})
	// n5's certificate is issued by the operator key, not by the root.
	n5key, n5cert := filepath.Join(m.dir, "n5.key"), filepath.Join(m.dir, "n5.cert")
	m.cli("keygen", "-out", n5key)
	m.cli("cert", "issue", "-ca-key", op, "-ca-cert", opCert, "-subject", n5key+".pub", "-name", "n5",
		"-services", "*", "-kv", "*", "-ttl", "24h", "-out", n5cert)
	n5 := &agentProc{m: m, name: "n5", ip: fmt.Sprintf("%s%d", m.subnet, len(m.agents)+1),
		dataDir: filepath.Join(m.dir, "n5-data"), key: n5key, cert: n5cert, root: m.root + ".pub",
		extra: []string{"-join", n1.ip}}
	m.agents = append(m.agents, n5)
	n5.launch()
	expectMemberStatus(t, n1, "n5", memberAlive)
	n5.register(t, map[string]any{"Name": "db", "Port": 5432})
	waitFor(t, 20*time.Second, func() error {
		if got := catalogServiceNodes(t, n2, "db"); len(got) != 1 {
			return fmt.Errorf("n2 lists db on %v", got)
		}
		return nil
	})
	m.cli("intention", "create", "-http-addr", n1.ip+":8500", "-from", "db", "-to", "api", "-sign-key", op, "-sign-cert", opCert)
	expectIntentionCheck(t, m, n2, "db", "api", "Allowed")

	rev := filepath.Join(m.dir, "op.rev")
	m.cli("revoke", "-ca-key", m.root, "-subject", op+".pub", "-out", rev)
	m.cli("revocation", "submit", "-http-addr", n1.ip+":8500", rev)
	for _, p := range []*agentProc{n1, n2} {
		expectNotAlive(t, p, "n5")
		waitFor(t, 20*time.Second, func() error {
			if got := catalogServiceNodes(t, p, "db"); len(got) != 0 {
				return fmt.Errorf("%s still lists db on %v after the operator key was revoked", p.name, got)
			}
			return nil
		})
		expectIntentionCheck(t, m, p, "db", "api", "Denied")
	}
}

// expectIntentionCheck waits until `peerd intention check SRC DST` at p
// prints want ("Allowed" or "Denied").
func expectIntentionCheck(t *testing.T, m *meshFixture, p *agentProc, src, dst, want string) {
	t.Helper()
	waitFor(t, 20*time.Second, func() error {
		out, _ := m.cliErr("intention", "check", "-http-addr", p.ip+":8500", src, dst)
		if !strings.Contains(out, want) {
			return fmt.Errorf("%s: intention check %s %s: %q, want %s", p.name, src, dst, strings.TrimSpace(out), want)
		}
		return nil
	})
}
