package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// consulCLI runs the real consul binary (bin/tools/consul) against one
// agent's HTTP API and returns what it printed and its exit status.
type consulCLI struct {
	t   *testing.T
	bin string
}

func (c consulCLI) run(p *agentProc, args ...string) (string, int) {
	c.t.Helper()
	cmd := exec.Command(c.bin, args...)
	// Only the environment decides where the consul CLI goes; a token or
	// address from the caller's environment must not leak in.
	cmd.Env = append(os.Environ(), "CONSUL_HTTP_ADDR="+p.ip+":8500", "CONSUL_HTTP_TOKEN=")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee):
		return out.String(), ee.ExitCode()
	}
	c.t.Fatalf("consul %s: %v", strings.Join(args, " "), err)
	return "", -1
}

// ok runs a command that must succeed and returns its output.
func (c consulCLI) ok(p *agentProc, args ...string) string {
	c.t.Helper()
	out, rc := c.run(p, args...)
	if rc != 0 {
		c.t.Fatalf("consul %s on %s: exit %d:\n%s", strings.Join(args, " "), p.name, rc, out)
	}
	return out
}

// expect runs a command until its exit status is rc and its output
// matches re (other agents see a change after gossip carried it).
func (c consulCLI) expect(p *agentProc, rc int, re string, args ...string) string {
	c.t.Helper()
	var out string
	waitFor(c.t, 30*time.Second, func() error {
		var got int
		out, got = c.run(p, args...)
		if got != rc || !regexp.MustCompile(re).MatchString(out) {
			return fmt.Errorf("consul %s on %s: exit %d, want %d; output does not match %q:\n%s", strings.Join(args, " "), p.name, got, rc, re, out)
		}
		return nil
	})
	return out
}

// TestToolsConsulCLI runs the consul command (Consul 1.20.6, built by
// `make compat-tools`) against two peerd agents, the commands operators
// type: members, info, kv (with CAS, flags, export and import), services
// register and deregister, catalog, maint, rtt, watch with a handler,
// event and watch -type=event, monitor, reload, leave, and the commands
// peerd refuses with a reason (lock, snapshot save, operator raft,
// force-leave of an unknown node).
// Writes go to one agent, reads to the other.
func TestToolsConsulCLI(t *testing.T) {
	c := consulCLI{t: t, bin: toolBinary(t, "consul")}
	m, n1, n2 := twoAgents(t)

	// members: consul's table, both nodes alive, from either agent.
	for _, p := range []*agentProc{n1, n2} {
		c.expect(p, 0, `(?m)^n1\s+\S+:\d+\s+alive\s+client\b[\s\S]*^n2\s+\S+:\d+\s+alive\s+client\b`, "members")
	}
	c.expect(n1, 0, `(?m)^n2\s+\S+\s+alive\s+\S*peerd_trust=verified`, "members", "-status=alive", "-detailed")
	if out := c.ok(n1, "info"); !strings.Contains(out, "agent:") || !strings.Contains(out, "node = n1") {
		t.Fatalf("consul info:\n%s", out)
	}

	// kv: written through n1, read through n2.
	if out := c.ok(n1, "kv", "put", "app/config", "v1"); !strings.Contains(out, "Success! Data written to: app/config") {
		t.Fatalf("kv put: %s", out)
	}
	c.ok(n1, "kv", "put", "-flags=42", "app/flagged", "f")
	c.expect(n2, 0, `^v1\n$`, "kv", "get", "app/config")
	c.expect(n2, 0, `^app/config\napp/flagged\n$`, "kv", "get", "-keys", "app/")
	c.expect(n2, 0, `(?m)^Flags\s+42$`, "kv", "get", "-detailed", "app/flagged")
	c.expect(n2, 0, `^app/config:v1\napp/flagged:f\n$`, "kv", "get", "-recurse", "app")
	// CAS against a stale index fails as in consul: exit 1, nothing written.
	if out, rc := c.run(n1, "kv", "put", "-cas", "-modify-index=1", "app/config", "v2"); rc != 1 || !strings.Contains(out, "Error! Did not write to app/config") {
		t.Fatalf("kv put -cas with a stale index: exit %d, %s", rc, out)
	}
	if out := c.ok(n1, "kv", "get", "app/config"); out != "v1\n" {
		t.Fatalf("after a failed CAS: %q", out)
	}
	export := c.ok(n2, "kv", "export", "app/")
	c.ok(n2, "kv", "delete", "-recurse", "app/")
	c.expect(n1, 0, `^$`, "kv", "get", "-recurse", "app/")
	if out := c.ok(n1, "kv", "import", export); !strings.Contains(out, "Imported: app/config") {
		t.Fatalf("kv import: %s", out)
	}
	c.expect(n2, 0, `^v1\n$`, "kv", "get", "app/config")
	if out, rc := c.run(n2, "kv", "get", "app/missing"); rc != 1 || !strings.Contains(out, "No key exists at: app/missing") {
		t.Fatalf("kv get of a missing key: exit %d, %s", rc, out)
	}

	// services: registered from a file on n2, listed through n1.
	def := filepath.Join(m.dir, "web.hcl")
	if err := os.WriteFile(def, []byte(`service {
  name = "web"
  id   = "web-2"
  port = 8080
  tags = ["blue"]
  check { ttl = "10m" status = "passing" }
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := c.ok(n2, "services", "register", def); !strings.Contains(out, "Registered service: web") {
		t.Fatalf("services register: %s", out)
	}
	c.expect(n1, 0, `(?m)^web\s+blue$`, "catalog", "services", "-tags")
	c.expect(n1, 0, `(?m)^n2\s`, "catalog", "nodes", "-service=web")
	c.expect(n1, 0, `(?m)^web$`, "catalog", "services", "-node=n2")

	// watch with a handler: each change of the key on n2 runs the handler
	// of a watch held on n1.
	got := filepath.Join(m.dir, "watched")
	watch := startTool(t, c.bin, "watch", "-http-addr="+n1.ip+":8500", "-type=key", "-key=app/config",
		"cat >> "+got+"; echo >> "+got)
	expectContains := func(want string) {
		t.Helper()
		waitFor(t, 30*time.Second, func() error {
			if watch.exited() {
				return fmt.Errorf("consul watch exited: %v", watch.err)
			}
			b, _ := os.ReadFile(got)
			if !strings.Contains(string(b), want) {
				return fmt.Errorf("handler input %q lacks %q", b, want)
			}
			return nil
		})
	}
	expectContains(`"Value":"djE="`) // v1, the value when the watch starts
	c.ok(n2, "kv", "put", "app/config", "v2")
	expectContains(`"Value":"djI="`)

	// maint on n2: its instance leaves ?passing on n1 and comes back.
	c.ok(n2, "maint", "-enable", "-reason=upgrade")
	c.expect(n2, 0, `Reason: upgrade`, "maint")
	c.expect(n1, 0, `^\[\]\s*$`, "watch", "-type=service", "-service=web", "-passingonly=true")
	c.ok(n2, "maint", "-disable")
	c.expect(n1, 0, `"ID": "web-2"`, "watch", "-type=service", "-service=web", "-passingonly=true")

	if out := c.ok(n1, "rtt", "n1", "n2"); !strings.Contains(out, "Estimated n1 <-> n2 rtt:") {
		t.Fatalf("rtt: %s", out)
	}
	if out := c.ok(n2, "reload"); !strings.Contains(out, "Configuration reload triggered") {
		t.Fatalf("reload: %s", out)
	}
	if out := c.ok(n2, "services", "deregister", "-id=web-2"); !strings.Contains(out, "Deregistered service: web-2") {
		t.Fatalf("services deregister: %s", out)
	}
	c.expect(n1, 0, `^No services match`, "catalog", "services")

	// event: fired through n2, listed by a watch on n1.
	out := c.ok(n2, "event", "-name=deploy", "v2")
	id := strings.TrimSpace(strings.TrimPrefix(out, "Event ID:"))
	if !strings.HasPrefix(out, "Event ID: ") || len(id) != 36 {
		t.Fatalf("event: %q", out)
	}
	c.expect(n1, 0, `"ID": "`+id+`"[\s\S]*"Payload": "djI="`, "watch", "-type=event", "-name=deploy")

	// monitor: n1's log lines as they are written, here a failed join.
	mon := startTool(t, c.bin, "monitor", "-http-addr="+n1.ip+":8500", "-log-level=debug")
	waitFor(t, 30*time.Second, func() error {
		c.run(n1, "join", "127.0.0.1:9")
		if !strings.Contains(mon.output(), "failed to join 127.0.0.1:9") {
			return fmt.Errorf("consul monitor printed %q", tail(mon.output(), 5))
		}
		return nil
	})

	// What needs consensus is refused with the reason, not a hang.
	if out, rc := c.run(n1, "lock", "app/lock", "true"); rc == 0 || !strings.Contains(out, "consensus") {
		t.Fatalf("lock: exit %d, %s", rc, out)
	}
	if out, rc := c.run(n1, "snapshot", "save", filepath.Join(m.dir, "snap")); rc == 0 || !strings.Contains(out, "kv export") {
		t.Fatalf("snapshot save: exit %d, %s", rc, out)
	}
	if out, rc := c.run(n1, "operator", "raft", "list-peers"); rc == 0 || !strings.Contains(out, "no Raft") {
		t.Fatalf("operator raft list-peers: exit %d, %s", rc, out)
	}
	if out, rc := c.run(n1, "force-leave", "nobody"); rc != 1 || !strings.Contains(out, "nobody") {
		t.Fatalf("force-leave of an unknown node: exit %d, %s", rc, out)
	}

	// leave: n2 leaves and exits; n1 lists it as left.
	c.ok(n2, "leave")
	c.expect(n1, 0, `(?m)^n2\s+\S+\s+left\b`, "members")
}
