package main

import (
	"path/filepath"
	"testing"
	"time"
)

// TestMeshRevocation revokes a running node's key with the CLI: every other
// agent stops trusting it, drops it from membership and refuses its writes.
func TestMeshRevocation(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	m := newMesh(t)
	n1 := m.start("n1", agentOpts{})
	n2 := m.start("n2", agentOpts{join: []string{"n1"}})
	n3 := m.start("n3", agentOpts{join: []string{"n1"}})
	all := []*agentProc{n1, n2, n3}
	expectAllAlive(t, all...)
	n3.kvPut("from/n3", "before")
	for _, p := range all {
		expectKV(t, p, "from/n3", "before")
	}

	rev := filepath.Join(m.dir, "n3.rev")
	m.cli("revoke", "-ca-key", m.root, "-subject", n3.key+".pub", "-out", rev)
	m.cli("revocation", "submit", "-http-addr", n1.ip+":8500", rev)

	// The revocation spreads and cuts n3 off everywhere.
	expectNotAlive(t, n1, n3.name)
	expectNotAlive(t, n2, n3.name)
	// n3 itself may already know it is revoked (then it refuses the write
	// with 403); if it does not, its write must not be accepted elsewhere.
	if b, err := n3.put("/v1/kv/from/n3", "after-revocation"); err != nil {
		t.Logf("revoked node refused the write itself: %v %s", err, b)
	}
	n1.kvPut("marker", "after-revocation")
	for _, p := range []*agentProc{n1, n2} {
		expectKV(t, p, "marker", "after-revocation")
		if v, _ := p.kvGetRaw("from/n3"); v != "before" {
			t.Errorf("%s: from/n3 = %q: a revoked node's write was accepted", p.name, v)
		}
	}

	// A restart must not forget the revocation: n2 comes back from its
	// data dir (the revocation is a record in its replica, not in its
	// config) and must still refuse n3, which keeps trying to talk to it.
	n2.stop()
	n2.launch()
	expectMemberStatus(t, n2, n1.name, memberAlive)
	// n3 is alive in serf and keeps asking.
	expectStaysNotAlive(t, n2, n3.name, 5*time.Second, "a restarted peer trusts a revoked node again")
}
