package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMeshNodeRestartedWithoutItsDataDir: n2 comes back with its node key
// but an empty data dir (a lost volume) and a config dir that registers
// ghost-3 on a new port. Before it learned its past first, it wrote its new
// records under dots its earlier life had used: n1 refused them as
// equivocations and kept answering ghost-3 on the old port and ghost-1 (not
// registered any more) for good. Both agents must end with the new
// registration only, the same digest and no equivocation.
func TestMeshNodeRestartedWithoutItsDataDir(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	m := newMesh(t)
	n1 := m.start("n1", agentOpts{})
	n2 := m.start("n2", agentOpts{join: []string{"n1"}})
	expectMemberStatus(t, n1, "n2", memberAlive)
	n2.register(t, map[string]any{"Name": "ghost", "ID": "ghost-1", "Port": 1, "Check": map[string]any{"TTL": "1h", "Status": "passing"}})
	n2.register(t, map[string]any{"Name": "ghost", "ID": "ghost-3", "Port": 1})
	expectGhosts(t, n1, map[string]int{"ghost-1": 1, "ghost-3": 1})

	// The host is rebuilt: same key and certificate, empty data dir,
	// ghost-3 now on port 3 from the config dir.
	n2.kill()
	if err := os.RemoveAll(n2.dataDir); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(m.dir, "n2-config")
	os.MkdirAll(cfg, 0o700)
	os.WriteFile(filepath.Join(cfg, "ghost.json"), []byte(`{"service": {"name": "ghost", "id": "ghost-3", "port": 3}}`), 0o600)
	n2.launch("-config-dir", cfg)

	for _, p := range []*agentProc{n1, n2} {
		expectGhosts(t, p, map[string]int{"ghost-3": 3})
	}
	waitFor(t, 20*time.Second, func() error {
		if d1, d2 := replicaDigest(t, n1), replicaDigest(t, n2); d1 != d2 {
			return fmt.Errorf("digests differ: n1 %s, n2 %s", d1, d2)
		}
		return nil
	})
	if r := selfStat(t, n1, "replica", "rejected_reasons"); strings.Contains(r, "equivocation") {
		t.Errorf("n1 refused n2's new records as equivocations: %s", r)
	}
}

// expectGhosts waits until p's catalog lists exactly the given instances
// of service ghost (ID → port).
func expectGhosts(t *testing.T, p *agentProc, want map[string]int) {
	t.Helper()
	waitFor(t, 20*time.Second, func() error {
		b, err := p.get("/v1/catalog/service/ghost")
		if err != nil {
			return err
		}
		var es []struct {
			ServiceID   string
			ServicePort int
		}
		if err := json.Unmarshal(b, &es); err != nil {
			return err
		}
		got := map[string]int{}
		for _, e := range es {
			got[e.ServiceID] = e.ServicePort
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("%s lists ghost instances %v, want %v", p.name, got, want)
		}
		return nil
	})
}
