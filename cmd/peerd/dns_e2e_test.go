package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"
)

// digBinary returns dig, installing dnsutils when running as root without
// it, or skips the test with the reason.
func digBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("dig"); err == nil {
		return p
	}
	if os.Geteuid() != 0 {
		t.Skip("dig is not installed and the test is not root: apt-get install -y dnsutils")
	}
	out, err := exec.Command("bash", "-c", "apt-get update -qq && apt-get install -y -qq dnsutils").CombinedOutput()
	if err != nil {
		t.Skipf("dig missing and dnsutils could not be installed: %v\n%s", err, tail(string(out), 5))
	}
	p, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig still missing after installing dnsutils")
	}
	return p
}

// dig runs dig against an agent's DNS port and returns the answer lines.
func (p *agentProc) dig(t *testing.T, dig string, args ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	full := append([]string{"@" + p.ip, "-p", "8600", "+short", "+time=2", "+tries=1"}, args...)
	out, err := exec.CommandContext(ctx, dig, full...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", full, err, out)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, ";") {
			lines = append(lines, l)
		}
	}
	sort.Strings(lines)
	return lines
}

// TestDNSFollowsHealthOnAnotherPeer runs dig against real agents: a service
// registered on n2 resolves on n1, disappears from n1's answers when its
// TTL check fails on n2, comes back when it passes again, and disappears
// when n2 dies.
func TestDNSFollowsHealthOnAnotherPeer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	dig := digBinary(t)
	m := newMesh(t)
	n1 := m.start("n1", agentOpts{})
	n2 := m.start("n2", agentOpts{join: []string{"n1"}})
	expectMemberStatus(t, n1, n2.name, memberAlive)

	def := fmt.Sprintf(`{"ID":"web-1","Name":"web","Tags":["v1"],"Address":%q,"Port":8080,
		"Check":{"CheckID":"web-ttl","TTL":"60s","Status":"passing"}}`, n2.ip)
	if b, err := n2.put("/v1/agent/service/register", def); err != nil {
		t.Fatalf("register: %v %s", err, b)
	}
	want := []string{n2.ip}
	expectDig := func(name, qtype string, want []string) {
		t.Helper()
		waitFor(t, 30*time.Second, func() error {
			got := n1.dig(t, dig, name, qtype)
			if strings.Join(got, ",") != strings.Join(want, ",") {
				return fmt.Errorf("dig %s %s at n1 = %v, want %v", name, qtype, got, want)
			}
			return nil
		})
	}
	expectDig("web.service.consul", "A", want)
	expectDig("v1.web.service.consul", "A", want)
	expectDig("_web._tcp.service.consul", "SRV", []string{"1 1 8080 n2.node.dc1.consul."})
	expectDig("n2.node.consul", "A", want)

	if b, err := n2.put("/v1/agent/check/fail/web-ttl?note=down", ""); err != nil {
		t.Fatalf("fail check: %v %s", err, b)
	}
	expectDig("web.service.consul", "A", nil)

	if b, err := n2.put("/v1/agent/check/pass/web-ttl", ""); err != nil {
		t.Fatalf("pass check: %v %s", err, b)
	}
	expectDig("web.service.consul", "A", want)

	// The node dies: its record and checks stay in the replica as they
	// were, only membership changes, and n1's answers (cached per service)
	// must follow it.
	n2.kill()
	expectMemberStatus(t, n1, n2.name, memberFailed)
	expectDig("web.service.consul", "A", nil)
}
