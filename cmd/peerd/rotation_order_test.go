package main

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// TestMeshRootRotationsOutOfOrder: two root rotations (R0→R1, then R1→R2)
// reach an agent in the opposite order. All agents trust R0, R1 and R2
// (the operator adds each new root before rotating, docs/OPERATIONS.md);
// n1 and n2 hold R2 certificates, n3 an R0 certificate. n2 is away while
// R0→R1 is submitted at n1; n1 is away while R1→R2 is submitted at n2;
// then both meet, and n3 comes back. Before the fix, n2 refused R0→R1 as
// a "replay" (dated before the rotation it had applied), for good: the
// replica kept the refused record's dot, so it never came again, and n2
// trusted R0 forever — it let n3 in while n1 cut it off. Now a retired
// root never comes back and the order does not matter: both cut n3 off.
// (Written by the replica session; docs/IDENTITY.md "Statements out of
// order".)
func TestMeshRootRotationsOutOfOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	m := newMesh(t)
	root1, root2 := filepath.Join(m.dir, "root1.key"), filepath.Join(m.dir, "root2.key")
	m.cli("keygen", "-out", root1)
	m.cli("keygen", "-out", root2)
	all3 := []string{"-trust", m.root + ".pub", "-trust", root1 + ".pub", "-trust", root2 + ".pub"}
	n2 := m.start("n2", agentOpts{root: root2, extra: all3})
	n1 := m.start("n1", agentOpts{root: root2, join: []string{"n2"}, extra: all3})
	n3 := m.start("n3", agentOpts{extra: append([]string{"-retry-join", n1.ip}, all3...)})
	all := []*agentProc{n1, n2, n3}
	expectAllAlive(t, all...)

	rot01, rot12 := filepath.Join(m.dir, "rot01.cbor"), filepath.Join(m.dir, "rot12.cbor")
	m.cli("rotate", "-old-key", m.root, "-new-key", root1, "-out", rot01)
	m.cli("rotate", "-old-key", root1, "-new-key", root2, "-out", rot12)

	// n2 away: R0→R1 at n1, which cuts n3 off.
	n2.stop()
	m.cli("rotation", "submit", "-http-addr", n1.ip+":8500", rot01)
	expectNotAlive(t, n1, n3.name)
	n1.stop()
	n3.stop()

	// n1 away: R1→R2 at n2, which has not seen R0→R1.
	n2.launch()
	m.cli("rotation", "submit", "-http-addr", n2.ip+":8500", rot12)

	// They meet: n2 gets R0→R1 after R1→R2, n1 gets R1→R2.
	n1.launch()
	expectMemberStatus(t, n1, n2.name, memberAlive)
	expectMemberStatus(t, n2, n1.name, memberAlive)
	waitFor(t, 30*time.Second, func() error {
		if d1, d2 := replicaDigest(t, n1), replicaDigest(t, n2); d1 != d2 {
			return fmt.Errorf("digests differ: %s %s, %s %s", n1.name, d1, n2.name, d2)
		}
		return nil
	})
	// n3 (R0 certificate) comes back and asks both.
	n3.launch()
	expectStaysNotAlive(t, n1, n3.name, 5*time.Second, "n1 trusts a node of the retired root R0")
	expectStaysNotAlive(t, n2, n3.name, 5*time.Second, "n2 got the rotations in the wrong order and still trusts R0")
	n1.kvPut("after/rotations", "ok")
	expectKV(t, n2, "after/rotations", "ok")
}
