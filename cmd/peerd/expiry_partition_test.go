package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/peerd/peerd/identity"
)

// TestMeshCertExpiryDuringPartition: n3's certificate expires while n1 is
// away. Before, n3 wrote a key that only n2 merged; n1 comes back after
// the expiry and gets the record from n2. Before the fix n1 answered it
// with an ordinary error (n3's chain does not verify any more): dropped,
// offered again by n2 in every anti-entropy session, digests never equal.
// Now a record stamped before the certificate's end counts everywhere
// (docs/REPLICA.md, "Cut-off origins"), and n1 cuts n3 off.
// (Written by the replica session.)
func TestMeshCertExpiryDuringPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	m := newMesh(t)
	n1 := m.start("n1", agentOpts{})
	n2 := m.start("n2", agentOpts{join: []string{"n1"}})
	// n3 starts alone, then for good with a certificate that ends soon
	// and a fresh data dir: no record of it carries a longer-lived chain.
	n3 := m.start("n3", agentOpts{})
	short := filepath.Join(m.dir, "n3-short.cert")
	m.cli("cert", "issue", "-ca-key", m.root, "-subject", n3.key+".pub", "-name", "n3",
		"-services", "*", "-kv", "*", "-ttl", "12s", "-out", short)
	chain, err := identity.ReadChainFile(short)
	if err != nil {
		t.Fatal(err)
	}
	notAfter := chain.Leaf().NotAfter
	n3.stop()
	if err := os.RemoveAll(n3.dataDir); err != nil {
		t.Fatal(err)
	}
	n3.cert = short
	n3.extra = append(n3.extra, "-retry-join", n1.ip)
	n3.launch()
	all := []*agentProc{n1, n2, n3}
	expectAllAlive(t, all...)

	// n1 away; n3 writes while valid; only n2 merges it.
	n1.kill()
	n3.kvPut("from/n3", "before")
	expectKV(t, n2, "from/n3", "before")
	if !time.Now().Before(notAfter) {
		t.Skipf("the machine is too slow: n3's certificate ended before its write was spread")
	}
	n2.stop()
	waitFor(t, 20*time.Second, func() error {
		if !time.Now().After(notAfter.Add(time.Second)) {
			return errors.New("n3's certificate has not ended yet")
		}
		return nil
	})

	// Both come back after the end; n1 learns n3's record from n2.
	n1.launch()
	n2.launch()
	expectMemberStatus(t, n1, n2.name, memberAlive)
	waitFor(t, 30*time.Second, func() error {
		if d1, d2 := replicaDigest(t, n1), replicaDigest(t, n2); d1 != d2 {
			return fmt.Errorf("digests differ: %s %s, %s %s", n1.name, d1, n2.name, d2)
		}
		return nil
	})
	for _, p := range []*agentProc{n1, n2} {
		expectKV(t, p, "from/n3", "before") // stamped before the end: counts
	}
	expectNotAlive(t, n1, n3.name)
}
