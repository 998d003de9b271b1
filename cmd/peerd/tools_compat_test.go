package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Real builds of the Consul tools users point at an agent, run unchanged
// against real peerd agents (docs/COMPATIBILITY.md, "Consul tools"):
// consul-template, Fabio, Prometheus's Consul service discovery and
// Traefik's consulCatalog provider. `make compat-tools` builds them into
// bin/tools (versions pinned in the Makefile) and runs these tests; without
// the binaries they skip, so that `make test` needs neither the network
// nor the extra time.

const toolsHint = "run `make compat-tools` (builds the tools into bin/tools, then runs these tests)"

// toolBinary returns bin/tools/<name>, skipping the test when it is absent
// (failing instead when PEERD_TOOLS=1 asks for the tools explicitly);
// PEERD_TOOLS=0 skips the tests even when the binaries are there.
func toolBinary(t *testing.T, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real processes")
	}
	if os.Getenv("PEERD_TOOLS") == "0" {
		t.Skip("PEERD_TOOLS=0")
	}
	path := filepath.Join(repoRoot(t), "bin", "tools", name)
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("PEERD_TOOLS") == "1" {
			t.Fatalf("PEERD_TOOLS=1 but %s is missing: %s", path, toolsHint)
		}
		t.Skipf("%s not built: %s", path, toolsHint)
	}
	return path
}

// toolProc is a tool process of the test; its output is kept for the
// failure log and for tests that read what it prints.
type toolProc struct {
	name string
	cmd  *exec.Cmd
	out  lockedBuffer // its stdout and stderr
	done chan struct{}
	err  error // exit status, valid once done is closed
}

func (p *toolProc) output() string { return p.out.String() }

func (p *toolProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// startTool starts bin/tools/<name> with args in its own process group; the
// cleanup kills the group and, if the test failed, logs the output.
func startTool(t *testing.T, bin string, args ...string) *toolProc {
	t.Helper()
	p := &toolProc{name: filepath.Base(bin), done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	// The tools read CONSUL_HTTP_ADDR and friends: only the flags count.
	p.cmd.Env = append(os.Environ(), "CONSUL_HTTP_ADDR=", "CONSUL_HTTP_TOKEN=")
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			t.Logf("---- output of %s %s ----\n%s", p.name, strings.Join(args, " "), tail(p.output(), 40))
		}
	})
	return p
}

// twoAgents starts n1 and n2 joined, as every tool test needs.
func twoAgents(t *testing.T) (*meshFixture, *agentProc, *agentProc) {
	t.Helper()
	m := newMesh(t)
	n1 := m.start("n1", agentOpts{})
	n2 := m.start("n2", agentOpts{join: []string{"n1"}})
	expectMemberStatus(t, n1, "n2", memberAlive)
	expectMemberStatus(t, n2, "n1", memberAlive)
	return m, n1, n2
}

// ttlService is a service definition with a TTL check in status.
func ttlService(id, name, addr string, port int, status string, tags ...string) map[string]any {
	return map[string]any{"ID": id, "Name": name, "Address": addr, "Port": port, "Tags": tags,
		"Check": map[string]any{"CheckID": id + "-ttl", "TTL": "10m", "Status": status}}
}

// deregister removes a service from the agent that registered it.
func (p *agentProc) deregister(t testing.TB, id string) {
	t.Helper()
	if _, err := p.put("/v1/agent/service/deregister/"+id, ""); err != nil {
		t.Fatalf("deregister %s on %s: %v", id, p.name, err)
	}
}

// expectFile waits until path holds exactly want, or the tool exits.
func expectFile(t *testing.T, tool *toolProc, path, want string) {
	t.Helper()
	waitFor(t, 30*time.Second, func() error {
		if tool != nil && tool.exited() {
			return fmt.Errorf("%s exited (%v) before rendering %q", tool.name, tool.err, want)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if string(b) != want {
			return fmt.Errorf("%s holds %q, want %q", path, b, want)
		}
		return nil
	}, func(err error) bool { return strings.Contains(err.Error(), "exited") })
}

func TestToolsConsulTemplate(t *testing.T) {
	ct := toolBinary(t, "consul-template")
	_, n1, n2 := twoAgents(t)

	n1.register(t, ttlService("web-1", "web", n1.ip, 8080, "passing"))
	// Critical instances are not rendered: `service` asks for ?passing.
	n2.register(t, ttlService("web-down", "web", n2.ip, 8089, "critical"))
	n1.kvPut("app/config", "v1")
	n1.kvPut("app/a", "1")
	n1.kvPut("app/b", "2")
	// The template is rendered from n1: wait until n1's replica has n2's
	// instance and its critical check, so that the first render is
	// deterministic. (n2 replicates the service before its check: for a
	// moment n1 lists web-down without it, hence passing; see
	// docs/COMPATIBILITY.md.)
	waitFor(t, 30*time.Second, func() error {
		b, err := n1.get("/v1/health/service/web")
		if err != nil {
			return err
		}
		var entries []struct {
			Service struct{ ID string }
			Checks  []struct{ CheckID, Status string }
		}
		if err := json.Unmarshal(b, &entries); err != nil {
			return err
		}
		for _, e := range entries {
			for _, c := range e.Checks {
				if e.Service.ID == "web-down" && c.CheckID == "web-down-ttl" && c.Status == "critical" {
					return nil
				}
			}
		}
		return fmt.Errorf("n1 does not list web-down with its critical check yet: %s", b)
	})

	dir := t.TempDir()
	tmpl := filepath.Join(dir, "in.tmpl")
	const text = `web: {{ range service "web" }}{{ .Address }}:{{ .Port }} {{ end }}
config: {{ key "app/config" }}
ls: {{ range ls "app/" }}{{ .Key }}={{ .Value }} {{ end }}
`
	if err := os.WriteFile(tmpl, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	render := func(web, config, ls string) string {
		return fmt.Sprintf("web: %s\nconfig: %s\nls: %s\n", web, config, ls)
	}
	web1 := fmt.Sprintf("%s:8080 ", n1.ip)
	web2 := fmt.Sprintf("%s:8081 ", n2.ip)

	t.Run("once", func(t *testing.T) {
		out := filepath.Join(dir, "once.out")
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, ct, "-consul-addr", n1.ip+":8500", "-template", tmpl+":"+out, "-once", "-log-level", "debug")
		cmd.Env = append(os.Environ(), "CONSUL_HTTP_ADDR=", "CONSUL_HTTP_TOKEN=")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("consul-template -once: %v\n%s", err, tail(string(b), 40))
		}
		expectFile(t, nil, out, render(web1, "v1", "a=1 b=2 config=v1 "))
	})

	t.Run("watch", func(t *testing.T) {
		out := filepath.Join(dir, "watch.out")
		tool := startTool(t, ct, "-consul-addr", n1.ip+":8500", "-template", tmpl+":"+out, "-log-level", "debug")
		expectFile(t, tool, out, render(web1, "v1", "a=1 b=2 config=v1 "))

		// A KV write on n2 re-renders the file rendered from n1.
		n2.kvPut("app/config", "v2")
		expectFile(t, tool, out, render(web1, "v2", "a=1 b=2 config=v2 "))
		n2.kvPut("app/c", "3")
		expectFile(t, tool, out, render(web1, "v2", "a=1 b=2 c=3 config=v2 "))

		// A new passing instance on n2 appears, in Consul's order (node name).
		n2.register(t, ttlService("web-2", "web", n2.ip, 8081, "passing"))
		expectFile(t, tool, out, render(web1+web2, "v2", "a=1 b=2 c=3 config=v2 "))

		// Failing its check, then deregistering it, removes it again.
		if _, err := n2.put("/v1/agent/check/pass/web-down-ttl", ""); err != nil {
			t.Fatal(err)
		}
		expectFile(t, tool, out, render(web1+web2+fmt.Sprintf("%s:8089 ", n2.ip), "v2", "a=1 b=2 c=3 config=v2 "))
		if _, err := n2.put("/v1/agent/check/fail/web-down-ttl", ""); err != nil {
			t.Fatal(err)
		}
		expectFile(t, tool, out, render(web1+web2, "v2", "a=1 b=2 c=3 config=v2 "))
		n2.deregister(t, "web-2")
		expectFile(t, tool, out, render(web1, "v2", "a=1 b=2 c=3 config=v2 "))

		// A deleted key renders as empty after the delete reaches n1.
		req, _ := http.NewRequest(http.MethodDelete, n2.httpURL("/v1/kv/app/c"), nil)
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		expectFile(t, tool, out, render(web1, "v2", "a=1 b=2 config=v2 "))

		// n2 failing (kill -9) takes its instance out of ?passing: the
		// serfHealth check of its node turns critical on n1.
		n2.register(t, ttlService("web-2", "web", n2.ip, 8081, "passing"))
		expectFile(t, tool, out, render(web1+web2, "v2", "a=1 b=2 config=v2 "))
		n2.kill()
		expectFile(t, tool, out, render(web1, "v2", "a=1 b=2 config=v2 "))
	})
}

func TestToolsFabio(t *testing.T) {
	fabio := toolBinary(t, "fabio")
	m, n1, n2 := twoAgents(t)

	// A real HTTP service on n2's address, registered on n2 with an HTTP
	// check and fabio's route tag.
	host, port := n2.ip, freeTCPPort(t, n2.ip)
	svcAddr := fmt.Sprintf("%s:%d", host, port)
	m.background(t, "demo-service", "-name", "web", "-listen", svcAddr)
	n2.register(t, map[string]any{"ID": "web-1", "Name": "web", "Address": host, "Port": port,
		"Tags":  []string{"urlprefix-/web"},
		"Check": map[string]any{"CheckID": "web-1-http", "HTTP": "http://" + svcAddr + "/health", "Interval": "1s", "Timeout": "1s"}})

	proxyAddr := fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t, "127.0.0.1"))
	uiAddr := fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t, "127.0.0.1"))
	tool := startTool(t, fabio,
		"-registry.consul.addr", n1.ip+":8500",
		"-proxy.addr", proxyAddr,
		"-ui.addr", uiAddr,
		// fabio registers itself, as by default; checked at the end.
		"-registry.consul.register.checkInterval", "1s",
		"-metrics.target", "",
		"-log.level", "DEBUG")
	base := "http://" + proxyAddr

	// fabio routes /web to the service on n2 once its check passes.
	waitTool(t, tool)
	expectHTTP(t, "GET", base+"/web", http.StatusOK, "web (GET /web)")
	expectHTTP(t, "GET", base+"/web/x", http.StatusOK, "web (GET /web/x)")
	expectHTTP(t, "GET", base+"/other", http.StatusNotFound, "")

	// Deregistering the service on n2 removes the route.
	n2.deregister(t, "web-1")
	expectHTTP(t, "GET", base+"/web", http.StatusNotFound, "")

	// Registered again, then its check failing: routed, then not.
	ttl := ttlService("web-1", "web", host, port, "passing", "urlprefix-/web")
	n2.register(t, ttl)
	expectHTTP(t, "GET", base+"/web", http.StatusOK, "web (GET /web)")
	if _, err := n2.put("/v1/agent/check/fail/web-1-ttl", ""); err != nil {
		t.Fatal(err)
	}
	expectHTTP(t, "GET", base+"/web", http.StatusNotFound, "")

	// fabio registers itself (registry.consul.register.enabled, on by
	// default) on n1 with a TTL check and an HTTP check on its UI address,
	// which it always writes in brackets: http://[127.0.0.1]:PORT/health.
	// Consul validates no check URL at registration; peerd accepts the
	// bracketed IPv4 host and runs the check. n2 lists fabio on node n1
	// with every check passing.
	waitFor(t, 30*time.Second, func() error {
		if tool.exited() {
			return fmt.Errorf("fabio exited: %v", tool.err)
		}
		if out := tool.output(); strings.Contains(out, "Cannot register fabio") {
			i := strings.LastIndex(out, "Cannot register fabio")
			line, _, _ := strings.Cut(out[i:], "\n")
			return fmt.Errorf("the agent refused fabio's own registration: %s", line)
		}
		b, err := n2.get("/v1/health/service/fabio")
		if err != nil {
			return err
		}
		var entries []struct {
			Node    struct{ Node string }
			Service struct{ ID string }
			Checks  []struct{ CheckID, Status, Output string }
		}
		if err := json.Unmarshal(b, &entries); err != nil {
			return err
		}
		if len(entries) != 1 {
			return fmt.Errorf("n2 lists %d fabio instances, want 1: %s", len(entries), b)
		}
		e := entries[0]
		if e.Node.Node != "n1" {
			return fmt.Errorf("n2 lists fabio on node %q, want n1: %+v", e.Node.Node, e.Checks)
		}
		for _, c := range e.Checks {
			if c.Status != "passing" {
				return fmt.Errorf("n2 lists fabio with check %s %s (%q), want every check passing", c.CheckID, c.Status, c.Output)
			}
		}
		return nil
	}, func(err error) bool {
		return strings.Contains(err.Error(), "refused") || strings.Contains(err.Error(), "exited")
	})
}

// waitTool fails the test at once if the tool exited while starting.
func waitTool(t *testing.T, tool *toolProc) {
	t.Helper()
	if tool.exited() {
		t.Fatalf("%s exited: %v\n%s", tool.name, tool.err, tail(tool.output(), 40))
	}
}

func TestToolsPrometheusConsulSD(t *testing.T) {
	sd := toolBinary(t, "promsd")
	_, n1, n2 := twoAgents(t)

	n1.register(t, ttlService("web-1", "web", n1.ip, 8080, "passing", "blue"))
	n2.register(t, ttlService("db-1", "db", n2.ip, 5432, "critical"))
	tool := startTool(t, sd, "-server", n1.ip+":8500", "-refresh", "1s")

	// expectTargets waits for a printed state equal to want.
	expectTargets := func(want map[string][]string) {
		t.Helper()
		wantJSON, _ := json.Marshal(want)
		waitFor(t, 30*time.Second, func() error {
			if tool.exited() {
				return fmt.Errorf("promsd exited: %v", tool.err)
			}
			out := tool.output()
			last := ""
			for _, line := range strings.Split(out, "\n") {
				if strings.HasPrefix(line, "{") {
					last = line
				}
			}
			var got map[string][]string
			if err := json.NewDecoder(io.LimitReader(strings.NewReader(last), 1<<20)).Decode(&got); err != nil {
				return fmt.Errorf("no target state printed yet (%v)", err)
			}
			gotJSON, _ := json.Marshal(got)
			if !bytes.Equal(gotJSON, wantJSON) {
				return fmt.Errorf("targets %s, want %s", gotJSON, wantJSON)
			}
			return nil
		}, func(err error) bool { return strings.Contains(err.Error(), "exited") })
	}
	// Prometheus lists every instance, whatever its health, with the
	// health as a label.
	expectTargets(map[string][]string{
		"web": {fmt.Sprintf("%s:8080 node=n1 tags=,blue, health=passing", n1.ip)},
		"db":  {fmt.Sprintf("%s:5432 node=n2 tags=,, health=critical", n2.ip)},
	})

	// A new instance on n2, a check turning passing, a service going away.
	n2.register(t, ttlService("web-2", "web", n2.ip, 8081, "passing"))
	expectTargets(map[string][]string{
		"web": {fmt.Sprintf("%s:8080 node=n1 tags=,blue, health=passing", n1.ip), fmt.Sprintf("%s:8081 node=n2 tags=,, health=passing", n2.ip)},
		"db":  {fmt.Sprintf("%s:5432 node=n2 tags=,, health=critical", n2.ip)},
	})
	if _, err := n2.put("/v1/agent/check/pass/db-1-ttl", ""); err != nil {
		t.Fatal(err)
	}
	expectTargets(map[string][]string{
		"web": {fmt.Sprintf("%s:8080 node=n1 tags=,blue, health=passing", n1.ip), fmt.Sprintf("%s:8081 node=n2 tags=,, health=passing", n2.ip)},
		"db":  {fmt.Sprintf("%s:5432 node=n2 tags=,, health=passing", n2.ip)},
	})
	n2.deregister(t, "db-1")
	expectTargets(map[string][]string{
		"web": {fmt.Sprintf("%s:8080 node=n1 tags=,blue, health=passing", n1.ip), fmt.Sprintf("%s:8081 node=n2 tags=,, health=passing", n2.ip)},
	})
}

func TestToolsTraefik(t *testing.T) {
	traefik := toolBinary(t, "traefik")
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		// Blocking queries: consul/api/watch plans "services" and "checks".
		{"watch", []string{"--providers.consulCatalog.watch=true"}},
		// Polling: a full read every refresh interval.
		{"poll", []string{"--providers.consulCatalog.refreshInterval=1s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, n1, n2 := twoAgents(t)
			host, port := n2.ip, freeTCPPort(t, n2.ip)
			svcAddr := fmt.Sprintf("%s:%d", host, port)
			m.background(t, "demo-service", "-name", "web", "-listen", svcAddr)
			rule := "traefik.http.routers.web.rule=PathPrefix(`/web`)"
			n2.register(t, map[string]any{"ID": "web-1", "Name": "web", "Address": host, "Port": port,
				"Tags":  []string{rule},
				"Check": map[string]any{"CheckID": "web-1-http", "HTTP": "http://" + svcAddr + "/health", "Interval": "1s", "Timeout": "1s"}})

			entry := fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t, "127.0.0.1"))
			args := append([]string{
				"--entryPoints.web.address=" + entry,
				"--providers.consulCatalog=true",
				"--providers.consulCatalog.endpoint.address=" + n1.ip + ":8500",
				// DEBUG logs every proxied request; INFO keeps the
				// failure output readable.
				"--log.level=INFO",
			}, tc.flags...)
			tool := startTool(t, traefik, args...)
			base := "http://" + entry

			waitTool(t, tool)
			expectHTTP(t, "GET", base+"/web", http.StatusOK, "web (GET /web)")
			expectHTTP(t, "GET", base+"/other", http.StatusNotFound, "")

			// A second instance on n1 (a second demo service) is balanced in.
			port1 := freeTCPPort(t, n1.ip)
			addr1 := fmt.Sprintf("%s:%d", n1.ip, port1)
			m.background(t, "demo-service", "-name", "web-on-n1", "-listen", addr1)
			n1.register(t, ttlService("web-2", "web", n1.ip, port1, "passing", rule))
			expectHTTP(t, "GET", base+"/web", http.StatusOK, "web-on-n1 (GET /web)")

			// Its check failing takes it out again; deregistering the
			// first instance leaves no server: 503 (the router remains
			// while web-2 is registered) or 404. In watch mode Traefik
			// reloads only when the answer of /v1/catalog/services or
			// /v1/health/state/any changes (consul/api/watch compares
			// results), so it depends on the agent never exposing the
			// service without its checks (docs/COMPATIBILITY.md).
			if _, err := n1.put("/v1/agent/check/fail/web-2-ttl", ""); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 30*time.Second, func() error {
				// Both answers seen in a row of requests: only web.
				for i := 0; i < 10; i++ {
					body := getBody(base + "/web")
					if !strings.HasPrefix(body, "web (GET /web)") {
						return fmt.Errorf("GET /web answered %q, want web only", body)
					}
				}
				return nil
			})
			n2.deregister(t, "web-1")
			waitFor(t, 30*time.Second, func() error {
				resp, err := httpClient.Get(base + "/web")
				if err != nil {
					return err
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusNotFound {
					// Say what n1 answers Traefik's reads now.
					var ids []string
					b, _ := n1.get("/v1/health/service/web")
					var entries []struct{ Service struct{ ID string } }
					json.Unmarshal(b, &entries)
					for _, e := range entries {
						ids = append(ids, e.Service.ID)
					}
					return fmt.Errorf("GET /web through traefik: %s, want 503 or 404 (n1's /v1/health/service/web lists %v)", resp.Status, ids)
				}
				return nil
			})
		})
	}
}

// getBody answers the body of GET u, or the error as text.
func getBody(u string) string {
	resp, err := httpClient.Get(u)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%s [%d]", b, resp.StatusCode)
}
