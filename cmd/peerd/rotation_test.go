package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMeshRootRotation retires a root across a mesh: n1 and n2 hold
// certificates from the new root, n3 still one from the old root, and all
// trust both. A rotation statement submitted at a node whose own
// certificate the old root issued is refused; submitted at n1 it spreads,
// n3 is cut off everywhere, and a restarted n2 still refuses it.
func TestMeshRootRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	m := newMesh(t)
	newRoot := filepath.Join(m.dir, "root2.key")
	m.cli("keygen", "-out", newRoot)
	both := []string{"-trust", m.root + ".pub", "-trust", newRoot + ".pub"}
	n1 := m.start("n1", agentOpts{root: newRoot, extra: both})
	n2 := m.start("n2", agentOpts{root: newRoot, join: []string{"n1"}, extra: both})
	n3 := m.start("n3", agentOpts{join: []string{"n1"}, extra: both})
	all := []*agentProc{n1, n2, n3}
	expectAllAlive(t, all...)

	rot := filepath.Join(m.dir, "rotation.cbor")
	m.cli("rotate", "-old-key", m.root, "-new-key", newRoot, "-out", rot)
	out, err := m.cliErr("rotation", "submit", "-http-addr", n3.ip+":8500", rot)
	if err == nil || !strings.Contains(out, "own certificate would no longer verify") {
		t.Fatalf("submit at n3 (old-root certificate): err %v, output %q; want a refusal", err, out)
	}
	out = m.cli("rotation", "submit", "-http-addr", n1.ip+":8500", rot)
	if !strings.Contains(out, "cut off: n3") {
		t.Errorf("submit at n1: %q, want n3 listed as cut off", out)
	}
	expectNotAlive(t, n1, n3.name)
	expectNotAlive(t, n2, n3.name)
	expectMemberStatus(t, n1, n2.name, memberAlive)

	// A restarted n2 (its config still trusts the old root) re-applies the
	// rotation from its replica.
	n2.stop()
	n2.launch()
	expectMemberStatus(t, n2, n1.name, memberAlive)
	// n3 is alive in serf and keeps asking.
	expectStaysNotAlive(t, n2, n3.name, 5*time.Second, "a restarted peer trusts a node whose root was retired")
	n1.kvPut("after/rotation", "ok")
	expectKV(t, n2, "after/rotation", "ok")

	// n3 gets a certificate under the new root and reloads it: the others
	// learn its chain from its node record and let it in again, without a
	// restart (their cached "not trusted" verdict used to stay).
	m.cli("cert", "issue", "-ca-key", newRoot, "-subject", n3.key+".pub", "-name", n3.name,
		"-services", "*", "-kv", "*", "-ttl", "24h", "-out", n3.cert)
	m.cli("reload", "-http-addr", n3.ip+":8500")
	expectMemberStatus(t, n1, n3.name, memberAlive)
	expectMemberStatus(t, n2, n3.name, memberAlive)
	n3.kvPut("after/recert", "n3")
	expectKV(t, n1, "after/recert", "n3")
}
