package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDNSAgentFigures measures DNS through a real agent process: one agent
// with 10 instances of web registered over its HTTP API, and the resolver's
// load generator (resolver/internal/dnsload) as a separate process. It
// prints the generator's table instead of asserting; `make bench` runs it
// with PEERD_BENCH=1 and docs/BENCHMARKS.md records the output.
func TestDNSAgentFigures(t *testing.T) {
	if os.Getenv("PEERD_BENCH") == "" {
		t.Skip("set PEERD_BENCH=1 (make bench) to measure DNS through an agent")
	}
	loader := filepath.Join(t.TempDir(), "dnsload")
	if out, err := exec.Command("go", "build", "-o", loader, "github.com/peerd/peerd/resolver/internal/dnsload").CombinedOutput(); err != nil {
		t.Fatalf("build dnsload: %v\n%s", err, out)
	}
	m := newMesh(t)
	n1 := m.start("n1", agentOpts{extra: []string{"-log-level", "warn"}})
	for i := 1; i <= 10; i++ {
		n1.register(t, map[string]any{"Name": "web", "ID": fmt.Sprintf("web-%d", i), "Address": fmt.Sprintf("10.0.0.%d", i), "Port": 80})
	}
	dig := digBinary(t)
	waitFor(t, 30*time.Second, func() error {
		if got := len(n1.dig(t, dig, "web.service.consul", "A")); got != 10 {
			return fmt.Errorf("%d answers, want 10", got)
		}
		return nil
	})
	for _, qt := range []string{"A", "SRV"} {
		out, err := exec.Command(loader, "-server", n1.ip+":8600", "-name", "web.service.consul.", "-type", qt,
			"-c", "1,4,16,64", "-duration", "3s").CombinedOutput()
		if err != nil {
			t.Fatalf("dnsload: %v\n%s", err, out)
		}
		t.Logf("%s web.service.consul. (10 instances) through a real agent:\n%s", qt, strings.TrimRight(string(out), "\n"))
	}
}
