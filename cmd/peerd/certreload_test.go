package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestNodeCertificateReload renews a node's certificate without a restart:
// n2 runs with a certificate that allows only service "web"; a new one for
// the same key allowing every service is written over the file and
// `peerd reload` takes it. n2 may then publish "api", and n1 — which only
// knew the narrow certificate — accepts the record (it learned the new one
// from n2's node record).
func TestNodeCertificateReload(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	m := newMesh(t)
	n1 := m.start("n1", agentOpts{})
	n2 := m.start("n2", agentOpts{join: []string{"n1"}})
	issue := func(services string) {
		m.cli("cert", "issue", "-ca-key", m.root, "-subject", n2.key+".pub", "-name", "n2",
			"-services", services, "-kv", "*", "-ttl", "24h", "-out", n2.cert)
	}
	issue("web")
	n2.stop()
	n2.launch()
	expectMemberStatus(t, n1, n2.name, memberAlive)
	if b, err := n2.put("/v1/agent/service/register", `{"Name":"api","Port":81}`); err == nil {
		t.Fatalf("the narrow certificate let n2 publish api: %s", b)
	}

	issue("*")
	out := m.cli("reload", "-http-addr", n2.ip+":8500")
	t.Logf("reload: %s", strings.TrimSpace(out))
	info, _ := n2.get("/v1/agent/peerd/info")
	if !strings.Contains(string(info), `"not_after"`) {
		t.Errorf("info has no certificate expiry: %s", info)
	}
	if b, err := n2.put("/v1/agent/service/register", `{"Name":"api","Port":81}`); err != nil {
		t.Fatalf("after the reload n2 still may not publish api: %v %s", err, b)
	}
	waitFor(t, 15*time.Second, func() error {
		b, err := n1.get("/v1/catalog/service/api")
		if err != nil {
			return err
		}
		if !strings.Contains(string(b), `"Node":"n2"`) {
			return fmt.Errorf("n1 does not list n2's api instance: %s", b)
		}
		return nil
	})
}
