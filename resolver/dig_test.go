package resolver

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// digPath returns the path of dig, installing dnsutils when it is missing
// and the test runs as root (the project's machines); otherwise it skips.
func digPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("dig"); err == nil {
		return p
	}
	if os.Geteuid() != 0 {
		t.Skip("dig is not installed and the test is not root: install dnsutils (apt-get install -y dnsutils) to run it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", "apt-get update && apt-get install -y dnsutils")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("dig is not installed and installing dnsutils failed: %v\n%s", err, out)
	}
	p, err := exec.LookPath("dig")
	if err != nil {
		t.Skipf("dnsutils installed but dig not found: %v", err)
	}
	return p
}

func TestDig(t *testing.T) {
	dig := digPath(t)
	src := testSource()
	src.services["big"] = bigSource(40).services["big"]
	s := startServer(t, Config{}, src)
	addr := s.Addr()
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		base := []string{"@" + addr.Addr().String(), "-p", itoa(addr.Port()), "+time=5", "+tries=1"}
		out, err := exec.CommandContext(ctx, dig, append(base, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("dig %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	lines := func(s string) []string { return strings.Fields(strings.TrimSpace(s)) }

	if got := lines(run("+short", "web.service.consul", "A")); len(got) != 10 {
		t.Errorf("A: %q", got)
	}
	srv := strings.Split(strings.TrimSpace(run("+short", "_web._tcp.service.consul", "SRV")), "\n")
	if len(srv) != 10 || !strings.HasSuffix(srv[0], ".node.dc1.consul.") {
		t.Errorf("SRV: %q", srv)
	}
	full := run("_web._primary.service.consul", "SRV")
	if !strings.Contains(full, "status: NOERROR") || !strings.Contains(full, "ADDITIONAL SECTION") || !strings.Contains(full, "flags: qr aa rd") {
		t.Errorf("SRV full answer:\n%s", full)
	}
	if out := run("nope.service.consul", "A"); !strings.Contains(out, "status: NXDOMAIN") || !strings.Contains(out, "SOA") {
		t.Errorf("NXDOMAIN:\n%s", out)
	}
	if out := run("web.service.consul", "AAAA"); !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "ANSWER: 0") || !strings.Contains(out, "SOA") {
		t.Errorf("NODATA:\n%s", out)
	}
	if got := lines(run("+short", "node-0.node.consul", "TXT")); len(got) != 2 {
		t.Errorf("TXT: %q", got)
	}
	if out := run("example.com", "A"); !strings.Contains(out, "status: REFUSED") {
		t.Errorf("outside the domain:\n%s", out)
	}
	// Without EDNS0 the UDP answer holds 3 records and sets TC; dig then
	// retries over TCP by itself and shows all 40.
	out := run("+noedns", "big.service.consul", "A")
	if !strings.Contains(out, "Truncated, retrying in TCP mode") || !strings.Contains(out, "ANSWER: 40") {
		t.Errorf("TC fallback:\n%s", out)
	}
	// +ignore keeps the truncated UDP answer.
	if out := run("+noedns", "+ignore", "big.service.consul", "A"); !strings.Contains(out, " tc ") || !strings.Contains(out, "ANSWER: 3") {
		t.Errorf("truncated UDP answer:\n%s", out)
	}
}
