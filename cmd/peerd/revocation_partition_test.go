package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/peerd/peerd/identity"
)

// TestMeshRevocationDuringPartition: n3's key is revoked at n1 while n2,
// which merged n3's later writes, is down; n1 learns those writes only
// after it holds the revocation, n2 learns the revocation after them.
// Before crdt kept a revoked origin's records as dead stubs, n1 dropped
// them, the two replicas never agreed and anti-entropy re-offered the
// records forever. Both must end with equal digests and equal values:
// n3's write from before the revocation kept, its write and its delete
// from after it — the delete stands, the write does not.
func TestMeshRevocationDuringPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	m := newMesh(t)
	n1 := m.start("n1", agentOpts{})
	n2 := m.start("n2", agentOpts{join: []string{"n1"}})
	n3 := m.start("n3", agentOpts{join: []string{"n1"}})
	all := []*agentProc{n1, n2, n3}
	expectAllAlive(t, all...)
	n2.kvPut("shared", "from-n2")
	n3.kvPut("from/n3", "before")
	for _, p := range all {
		expectKV(t, p, "shared", "from-n2")
		expectKV(t, p, "from/n3", "before")
	}

	// The root signs the revocation now; n3's next writes are stamped
	// after the end of its second (the cut: docs/REPLICA.md).
	rev := filepath.Join(m.dir, "n3.rev")
	m.cli("revoke", "-ca-key", m.root, "-subject", n3.key+".pub", "-out", rev)
	cut := revocationCut(t, rev)
	waitFor(t, 3*time.Second, func() error {
		if !time.Now().After(cut) {
			return errors.New("still within the revocation's second")
		}
		return nil
	})

	// n1 is away; n3, unaware, writes and deletes; only n2 merges it.
	n1.kill()
	n3.kvPut("late/n3", "after")
	n3.kvDelete("shared")
	expectKV(t, n2, "late/n3", "after")
	expectKVAbsent(t, n2, "shared")
	n2.stop()
	n3.stop()

	// n1 comes back and holds the revocation first; then n2 comes back
	// with n3's late records.
	n1.launch()
	n1.waitHTTP()
	m.cli("revocation", "submit", "-http-addr", n1.ip+":8500", rev)
	n2.launch()
	n2.waitHTTP()
	expectMemberStatus(t, n1, n2.name, memberAlive)

	waitFor(t, 30*time.Second, func() error {
		d1, d2 := replicaDigest(t, n1), replicaDigest(t, n2)
		if d1 != d2 {
			return fmt.Errorf("digests differ: %s %s, %s %s", n1.name, d1, n2.name, d2)
		}
		return nil
	})
	for _, p := range []*agentProc{n1, n2} {
		expectKV(t, p, "from/n3", "before") // written before the revocation: kept
		expectKVAbsent(t, p, "late/n3")     // written after it: not counted
		expectKVAbsent(t, p, "shared")      // deleted after it, seen by n2 first: stands
	}
}

func revocationCut(t testing.TB, path string) time.Time {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := identity.UnmarshalRevocation(b)
	if err != nil {
		t.Fatal(err)
	}
	return r.At.Add(time.Second)
}

// replicaDigest is the replica digest /v1/agent/self reports (first 8 bytes).
func replicaDigest(t testing.TB, p *agentProc) string {
	t.Helper()
	return selfStat(t, p, "replica", "digest")
}

// selfStat is one of the Stats of /v1/agent/self ("" when p does not
// answer).
func selfStat(t testing.TB, p *agentProc, section, key string) string {
	t.Helper()
	b, err := p.get("/v1/agent/self")
	if err != nil {
		return "unreachable: " + err.Error()
	}
	var self struct {
		Stats map[string]map[string]string
	}
	if err := json.Unmarshal(b, &self); err != nil {
		t.Fatal(err)
	}
	return self.Stats[section][key]
}
