package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
)

// monitorStream is one open GET /v1/agent/monitor: its lines arrive on
// lines until the stream ends.
type monitorStream struct {
	cancel context.CancelFunc
	lines  chan string
}

func openMonitor(t testing.TB, p *agentProc, query string) *monitorStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.httpURL("/v1/agent/monitor?"+query), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: httpClient.Transport}).Do(req)
	if err != nil {
		cancel()
		t.Fatalf("monitor %s: %v", query, err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		resp.Body.Close()
		t.Fatalf("monitor %s: %s", query, resp.Status)
	}
	s := &monitorStream{cancel: cancel, lines: make(chan string, 4096)}
	go func() {
		defer resp.Body.Close()
		defer close(s.lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
	}()
	t.Cleanup(cancel)
	return s
}

// linesUntil collects lines from ch up to and including the first that
// contains marker, failing after 30 s.
func linesUntil(t testing.TB, what string, ch <-chan string, marker string) []string {
	t.Helper()
	var got []string
	deadline := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-ch:
			if !ok {
				t.Fatalf("%s: stream ended before %q; got %q", what, marker, got)
			}
			got = append(got, l)
			if strings.Contains(l, marker) {
				return got
			}
		case <-deadline:
			t.Fatalf("%s: no line with %q after 30 s; got %q", what, marker, got)
		}
	}
}

// monitorSubscribers is the agent's count of attached monitor clients.
func monitorSubscribers(p *agentProc) (string, error) {
	b, err := p.get("/v1/agent/peerd/info")
	if err != nil {
		return "", err
	}
	var st map[string]map[string]string
	if err := json.Unmarshal(b, &st); err != nil {
		return "", err
	}
	return st["monitor"]["subscribers"], nil
}

func expectSubscribers(t testing.TB, p *agentProc, want int) {
	t.Helper()
	waitFor(t, 30*time.Second, func() error {
		got, err := monitorSubscribers(p)
		if err != nil {
			return err
		}
		if got != fmt.Sprint(want) {
			return fmt.Errorf("%s has %s monitor subscribers, want %d", p.name, got, want)
		}
		return nil
	})
}

// TestMonitor: monitor clients of a real agent (raw HTTP in text and JSON,
// HashiCorp's client, the peerd CLI) get the agent's log lines as they
// are written, at the level each asked for (debug lines too, while the
// agent itself logs at info); the API token applies; a client that goes
// away is detached.
func TestMonitor(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	const token = "monitor-token"
	saved := httpClient.Transport
	httpClient.Transport = tokenTransport{token: token}
	t.Cleanup(func() { httpClient.Transport = saved })
	m := newMesh(t)
	cfg := filepath.Join(m.dir, "n1.hcl")
	writeCfg(t, cfg, fmt.Sprintf("http_token = %q\n", token))
	n1 := m.start("n1", agentOpts{extra: []string{"-config-file", cfg}})
	n1.launchLevel("info")

	if r := rawDo(t, "GET", n1.httpURL("/v1/agent/monitor"), "", nil); r.code != http.StatusForbidden {
		t.Fatalf("monitor without the token: %d %s, want 403", r.code, r.body)
	}
	if r := rawDo(t, "GET", n1.httpURL("/v1/agent/monitor?loglevel=loud"), "", map[string]string{"X-Consul-Token": token}); r.code != http.StatusBadRequest || r.body != "Unknown log level: loud" {
		t.Fatalf("monitor with a bad level: %d %q", r.code, r.body)
	}

	debug := openMonitor(t, n1, "loglevel=debug")
	info := openMonitor(t, n1, "") // Consul's default: info
	js := openMonitor(t, n1, "loglevel=INFO&logjson")
	stop := make(chan struct{})
	apiCtx, apiCancel := context.WithCancel(context.Background())
	defer apiCancel()
	apiLines, err := consulClient(t, n1, token).Agent().Monitor("debug", stop, (&consul.QueryOptions{}).WithContext(apiCtx))
	if err != nil {
		t.Fatalf("consul/api Monitor: %v", err)
	}
	expectSubscribers(t, n1, 4)

	// A debug line (memberlist's failed join), then an info line.
	if _, err := n1.put("/v1/agent/join/127.0.0.1:1", ""); err == nil {
		t.Fatal("join of a closed port succeeded")
	}
	const marker = "monitor-marker-1"
	if _, err := n1.put("/v1/agent/force-leave/"+marker, ""); err == nil {
		t.Fatal("force-leave of an unknown node succeeded")
	}
	hasDebugJoin := func(lines []string) bool {
		for _, l := range lines {
			if strings.Contains(l, "DEBUG") && strings.Contains(l, "failed to join 127.0.0.1:1") {
				return true
			}
		}
		return false
	}
	if got := linesUntil(t, "debug monitor", debug.lines, marker); !hasDebugJoin(got) {
		t.Errorf("debug monitor: no debug line for the failed join before the marker: %q", got)
	}
	if got := linesUntil(t, "consul/api Monitor", apiLines, marker); !hasDebugJoin(got) {
		t.Errorf("consul/api Monitor(debug): no debug line for the failed join: %q", got)
	}
	go func() {
		for range apiLines { // its reader blocks when its buffer is full
		}
	}()
	for _, l := range linesUntil(t, "info monitor", info.lines, marker) {
		if strings.Contains(l, "level=DEBUG") {
			t.Errorf("info monitor got a debug line: %q", l)
		}
	}
	for _, l := range linesUntil(t, "JSON monitor", js.lines, marker) {
		var rec struct{ Level, Msg string }
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("JSON monitor: not JSON: %q", l)
		}
		if rec.Level == "DEBUG" {
			t.Errorf("JSON info monitor got a debug line: %q", l)
		}
	}
	if strings.Contains(n1.Logs(), "failed to join 127.0.0.1:1") {
		t.Errorf("the agent's own output (level info) got the debug line")
	}

	// Clients that go away are detached.
	debug.cancel()
	info.cancel()
	js.cancel()
	// consul/api's reader drains the body after stop (to reuse the
	// connection), which never ends for a stream: its context ends it.
	close(stop)
	apiCancel()
	expectSubscribers(t, n1, 0)

	// The CLI, as `consul monitor`, in text and JSON.
	for i, flags := range [][]string{{"-log-level", "debug"}, {"-log-json"}} {
		cm := startCLIMonitor(t, m, append([]string{"-http-addr", n1.ip + ":8500", "-token", token}, flags...)...)
		expectSubscribers(t, n1, 1)
		marker := fmt.Sprintf("monitor-cli-marker-%d", i)
		n1.put("/v1/agent/force-leave/"+marker, "")
		got := linesUntil(t, "peerd monitor "+strings.Join(flags, " "), cm.lines, marker)
		if last := got[len(got)-1]; i == 1 && !json.Valid([]byte(last)) {
			t.Errorf("peerd monitor -log-json printed %q", last)
		}
		cm.cmd.Process.Kill()
		cm.cmd.Wait()
		expectSubscribers(t, n1, 0)
	}

	outb, err := m.cliErr("monitor", "-http-addr", n1.ip+":8500", "-token", token, "-log-level", "loud")
	if code := exitCodeOf(err); code != 1 || !strings.Contains(outb, "Error starting monitor: Unexpected response code: 400 (Unknown log level: loud)") {
		t.Fatalf("peerd monitor -log-level loud: exit %d\n%s", code, outb)
	}

	// The agent goes away: the CLI says so and exits 1, as consul.
	cm := startCLIMonitor(t, m, "-http-addr", n1.ip+":8500", "-token", token)
	expectSubscribers(t, n1, 1)
	n1.kill()
	err = cm.cmd.Wait()
	if code := exitCodeOf(err); code != 1 || !strings.Contains(cm.stderr.String(), "Remote side ended the monitor!") {
		t.Fatalf("peerd monitor after the agent died: exit %d, stderr %q", code, cm.stderr.String())
	}
}

// cliMonitor is a running `peerd monitor` process.
type cliMonitor struct {
	cmd    *exec.Cmd
	lines  chan string // its stdout, line by line
	stderr *lockedBuffer
}

func startCLIMonitor(t testing.TB, m *meshFixture, args ...string) *cliMonitor {
	t.Helper()
	cmd := exec.Command(m.bin, append([]string{"monitor"}, args...)...)
	cmd.Env = append(os.Environ(), "CONSUL_HTTP_ADDR=", "PEERD_HTTP_ADDR=")
	cm := &cliMonitor{cmd: cmd, lines: make(chan string, 1024), stderr: &lockedBuffer{}}
	cmd.Stderr = cm.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	go func() {
		defer close(cm.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			cm.lines <- sc.Text()
		}
	}()
	return cm
}

// launchLevel restarts the agent with -log-level level (the fixture starts
// agents at debug).
func (p *agentProc) launchLevel(level string) {
	p.m.t.Helper()
	p.kill()
	p.launch("-log-level", level)
}
