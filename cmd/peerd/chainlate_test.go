package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerd/peerd/identity"
)

// TestMeshChainLearntBeforeItsRoot: a node re-certified under the next
// root R1 before the rotation R0→R1, met by an agent that does not trust
// R1 yet (docs/SIM.md, "Found by these checkers", 4). All trust R0 and
// R2; n1 and n2 hold R2 certificates, n3 an R0 one; n1 and n3 trust R1
// too, n2 does not. n3 is re-certified under R1 and reloads (its node
// record carries the R1 chain, which n2 cannot verify yet), then
// overwrites a value and deletes another, stamped after the rotation's
// cut, which every agent merges live; then n3 stops (or n2, once it
// trusts R1, dials it at once and learns the chain in the handshake,
// usually before it sweeps) and R0→R1 is submitted at n2. Before the fix
// n2 had dropped n3's R1 chain, judged n3 by its R0 chain, which the
// rotation cut, and killed n3's overwrite when it swept: n2 read late/a
// absent, n1 "v2", with equal digests, for good. Now n2 holds the R1
// chain until the rotation trusts R1 and adopts it as the rotation
// applies (peer/trust.go, trustBook.wait).
func TestMeshChainLearntBeforeItsRoot(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	m := newMesh(t)
	root1, root2 := filepath.Join(m.dir, "root1.key"), filepath.Join(m.dir, "root2.key")
	m.cli("keygen", "-out", root1)
	m.cli("keygen", "-out", root2)
	// Dated a minute ago (as a statement signed some time before it is
	// submitted): every record n3 writes below is stamped after its cut.
	oldKey, err := identity.ReadPrivateKeyFile(m.root)
	if err != nil {
		t.Fatal(err)
	}
	newKey, err := identity.ReadPrivateKeyFile(root1)
	if err != nil {
		t.Fatal(err)
	}
	rot, err := identity.NewRotation(oldKey, newKey, time.Now().Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	blob, err := rot.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	rotFile := filepath.Join(m.dir, "rot01.cbor")
	if err := os.WriteFile(rotFile, blob, 0o600); err != nil {
		t.Fatal(err)
	}

	tr := func(keys ...string) (args []string) {
		for _, k := range keys {
			args = append(args, "-trust", k+".pub")
		}
		return args
	}
	n1 := m.start("n1", agentOpts{root: root2, extra: tr(m.root, root1)})
	n2 := m.start("n2", agentOpts{root: root2, join: []string{"n1"}, extra: tr(m.root)})
	n3 := m.start("n3", agentOpts{join: []string{"n1"}, extra: tr(root1, root2)})
	all := []*agentProc{n1, n2, n3}
	expectAllAlive(t, all...)
	n3.kvPut("late/a", "v1")
	n3.kvPut("late/b", "v1")
	expectKV(t, n2, "late/a", "v1")
	expectKV(t, n2, "late/b", "v1")

	// n3 under R1: n1 learns the chain, n2 merges the node record carrying
	// it (from n1) but cannot verify it yet.
	m.cli("cert", "issue", "-ca-key", root1, "-subject", n3.key+".pub", "-name", n3.name,
		"-services", "*", "-kv", "*", "-ttl", "24h", "-out", n3.cert)
	m.cli("reload", "-http-addr", n3.ip+":8500")
	equalDigests := func() error {
		d1, d2, d3 := replicaDigest(t, n1), replicaDigest(t, n2), replicaDigest(t, n3)
		if d1 != d2 || d1 != d3 {
			return fmt.Errorf("digests differ: n1 %s, n2 %s, n3 %s", d1, d2, d3)
		}
		return nil
	}
	waitFor(t, 30*time.Second, equalDigests)

	n3.kvPut("late/a", "v2")
	n3.kvDelete("late/b")
	expectKV(t, n2, "late/a", "v2")
	expectKVAbsent(t, n2, "late/b")

	// n3 away, so that n2 cannot learn its R1 chain from a handshake
	// either once it trusts R1 (it dials a member it cut off at once).
	n3.stop()
	// Submitted at n2 itself: it must not list n3 as cut off either (its
	// R1 chain verifies once R1 is a root).
	if out := m.cli("rotation", "submit", "-http-addr", n2.ip+":8500", rotFile); strings.Contains(out, "cut off") {
		t.Errorf("rotation submit at n2: %q, want nothing cut off", out)
	}
	waitFor(t, 30*time.Second, func() error {
		if got := selfStat(t, n2, "replica", "revocations"); got != "1" {
			return fmt.Errorf("n2 holds %s trust statements, want the rotation", got)
		}
		return nil
	})
	// n2 sweeps right after it merged the rotation: n3's records stamped
	// after the cut must stay as on n1.
	reads := func(p *agentProc) string {
		read := func(key string) string {
			v, err := p.kvGetRaw(key)
			switch {
			case err != nil && strings.Contains(err.Error(), "404"):
				return "absent"
			case err != nil:
				return err.Error()
			}
			return fmt.Sprintf("%q", v)
		}
		return "a=" + read("late/a") + " b=" + read("late/b")
	}
	const want = `a="v2" b=absent`
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if got := reads(n2); got != want {
			t.Fatalf("n2 reads %s after the rotation, want %s (n1 reads %s)", got, want, reads(n1))
		}
	}
	if got := reads(n1); got != want {
		t.Errorf("n1 reads %s, want %s", got, want)
	}
	// n3 back (with its R1 certificate): it counts on n2.
	n3.launch()
	expectMemberStatus(t, n2, n3.name, memberAlive)
	waitFor(t, 30*time.Second, equalDigests)
	if got := reads(n2); got != want {
		t.Errorf("n2 reads %s after n3 came back, want %s", got, want)
	}
	n3.kvPut("late/c", "after")
	expectKV(t, n2, "late/c", "after")
}
