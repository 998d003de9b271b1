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
	"sync"
	"syscall"
	"testing"
	"time"
)

// The mesh fixture runs real peerd processes, started the way users start
// them: keys and certificates made with the CLI, agents on their own
// loopback addresses (127.77.X.Y) with default ports.

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// peerdBinary builds cmd/peerd once per test process.
func peerdBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "peerd-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "peerd")
		// PEERD_TEST_BUILD_FLAGS adds build flags, e.g. "-race" (with
		// GORACE=halt_on_error=1 an agent that races exits and the test
		// using it fails).
		args := append([]string{"build"}, strings.Fields(os.Getenv("PEERD_TEST_BUILD_FLAGS"))...)
		out, err := exec.Command("go", append(args, "-o", builtBin, ".")...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// meshFixture is a root of trust plus the agents started under it.
type meshFixture struct {
	t      testing.TB
	bin    string
	dir    string
	subnet string // "127.77.N." — agents get .1, .2, ...
	root   string // root private key file
	agents []*agentProc
}

func newMesh(t testing.TB) *meshFixture {
	t.Helper()
	m := &meshFixture{t: t, bin: peerdBinary(t), dir: t.TempDir()}
	m.subnet = fmt.Sprintf("127.77.%d.", 10+os.Getpid()%200)
	m.root = filepath.Join(m.dir, "root.key")
	m.cli("keygen", "-out", m.root)
	t.Cleanup(m.stopAll)
	return m
}

// cli runs a peerd CLI command and fails the test on a non-zero exit.
func (m *meshFixture) cli(args ...string) string {
	m.t.Helper()
	out, err := m.cliErr(args...)
	if err != nil {
		m.t.Fatalf("peerd %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (m *meshFixture) cliErr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, m.bin, args...)
	cmd.Env = append(os.Environ(), "CONSUL_HTTP_ADDR=", "PEERD_HTTP_ADDR=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// nodeIdentity makes a node key and a certificate signed by rootKey.
func (m *meshFixture) nodeIdentity(name, rootKey string) (key, cert string) {
	m.t.Helper()
	key = filepath.Join(m.dir, name+".key")
	cert = filepath.Join(m.dir, name+".cert")
	m.cli("keygen", "-out", key)
	m.cli("cert", "issue", "-ca-key", rootKey, "-subject", key+".pub", "-name", name,
		"-services", "*", "-kv", "*", "-ttl", "24h", "-out", cert)
	return key, cert
}

// agentProc is one running peerd agent process.
type agentProc struct {
	m       *meshFixture
	name    string
	ip      string
	dataDir string
	key     string
	cert    string
	root    string // the root the agent trusts (public key file)
	extra   []string
	lan     bool

	mu   sync.Mutex
	cmd  *exec.Cmd
	logs *bytes.Buffer
	done chan struct{}
}

type agentOpts struct {
	join  []string // names of agents to join
	root  string   // root private key signing this node's cert; default the mesh root
	extra []string
	// lanGossip uses memberlist's LAN timings instead of -fast-gossip.
	lanGossip bool
}

// start makes the node identity and starts the agent on the next address.
func (m *meshFixture) start(name string, o agentOpts) *agentProc {
	m.t.Helper()
	root := o.root
	if root == "" {
		root = m.root
	}
	key, cert := m.nodeIdentity(name, root)
	p := &agentProc{
		m: m, name: name, ip: fmt.Sprintf("%s%d", m.subnet, len(m.agents)+1),
		dataDir: filepath.Join(m.dir, name+"-data"), key: key, cert: cert,
		root: root + ".pub", extra: o.extra, lan: o.lanGossip,
	}
	for _, j := range o.join {
		p.extra = append(p.extra, "-join", m.agent(j).ip)
	}
	m.agents = append(m.agents, p)
	p.launch()
	return p
}

func (m *meshFixture) agent(name string) *agentProc {
	for _, a := range m.agents {
		if a.name == name {
			return a
		}
	}
	m.t.Fatalf("no agent %q", name)
	return nil
}

// launch starts (or restarts) the process with the same data dir.
func (p *agentProc) launch(extra ...string) {
	p.m.t.Helper()
	args := []string{"agent", "-node", p.name, "-bind", p.ip, "-client", p.ip,
		"-data-dir", p.dataDir, "-trust", p.root, "-node-key", p.key, "-node-cert", p.cert,
		"-log-level", "debug"}
	if !p.lan {
		args = append(args, "-fast-gossip")
	}
	args = append(args, p.extra...)
	args = append(args, extra...)
	cmd := exec.Command(p.m.bin, args...)
	logs := &bytes.Buffer{}
	w := &lockedWriter{mu: &p.mu, w: logs}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.Env = append(os.Environ(), "CONSUL_HTTP_ADDR=", "PEERD_HTTP_ADDR=")
	// PEERD_TEST_AGENT_ENV adds environment to agent processes only (e.g.
	// "GOMAXPROCS=1 GODEBUG=..." when comparing runtime settings in a
	// benchmark).
	cmd.Env = append(cmd.Env, strings.Fields(os.Getenv("PEERD_TEST_AGENT_ENV"))...)
	if err := cmd.Start(); err != nil {
		p.m.t.Fatalf("start %s: %v", p.name, err)
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.logs, p.done = cmd, logs, done
	p.mu.Unlock()
	go func() { cmd.Wait(); close(done) }()
	p.waitHTTP()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (p *agentProc) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

func (p *agentProc) httpURL(path string) string { return "http://" + p.ip + ":8500" + path }

// waitHTTP waits until /v1/agent/self answers or the process exits.
func (p *agentProc) waitHTTP() {
	p.m.t.Helper()
	waitFor(p.m.t, 20*time.Second, func() error {
		select {
		case <-p.done:
			return fmt.Errorf("agent %s exited:\n%s", p.name, p.Logs())
		default:
		}
		_, err := p.get("/v1/agent/self")
		return err
	}, func(err error) bool { return strings.Contains(err.Error(), "exited") })
}

// kill sends SIGKILL and waits for the process to die.
func (p *agentProc) kill() {
	p.signal(syscall.SIGKILL)
	<-p.done
}

// stop asks the agent to leave (SIGINT) and waits up to 15 s, then kills it.
func (p *agentProc) stop() {
	p.signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.kill()
	}
}

func (p *agentProc) signal(sig syscall.Signal) {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		cmd.Process.Signal(sig)
	}
}

func (p *agentProc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stopAll kills every agent still running; on failure it prints their logs.
func (m *meshFixture) stopAll() {
	for _, a := range m.agents {
		if a.done != nil && a.running() {
			a.kill()
		}
		if m.t.Failed() {
			m.t.Logf("---- logs of %s (%s) ----\n%s", a.name, a.ip, tail(a.Logs(), 60))
		}
	}
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

func (p *agentProc) get(path string) ([]byte, error) {
	resp, err := httpClient.Get(p.httpURL(path))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	return b, nil
}

func (p *agentProc) put(path string, body string) ([]byte, error) {
	req, err := http.NewRequest(http.MethodPut, p.httpURL(path), strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("PUT %s: %s: %s", path, resp.Status, b)
	}
	return b, nil
}

// kvGetRaw returns the raw value of key on this agent, or an error (404).
func (p *agentProc) kvGetRaw(key string) (string, error) {
	b, err := p.get("/v1/kv/" + key + "?raw")
	return string(b), err
}

func (p *agentProc) kvPut(key, value string) {
	p.m.t.Helper()
	b, err := p.put("/v1/kv/"+key, value)
	if err != nil || strings.TrimSpace(string(b)) != "true" {
		p.m.t.Fatalf("kv put %s on %s: %v %s", key, p.name, err, b)
	}
}

func (p *agentProc) kvDelete(key string) {
	p.m.t.Helper()
	req, err := http.NewRequest(http.MethodDelete, p.httpURL("/v1/kv/"+key), nil)
	if err != nil {
		p.m.t.Fatal(err)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		p.m.t.Fatalf("kv delete %s on %s: %v", key, p.name, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		p.m.t.Fatalf("kv delete %s on %s: %s", key, p.name, resp.Status)
	}
}

// member is the subset of /v1/agent/members the tests read.
type member struct {
	Name   string
	Addr   string
	Status int
	Tags   map[string]string
}

func (p *agentProc) members() ([]member, error) {
	b, err := p.get("/v1/agent/members")
	if err != nil {
		return nil, err
	}
	var ms []member
	if err := json.Unmarshal(b, &ms); err != nil {
		return nil, err
	}
	return ms, nil
}

// waitFor polls cond every 50 ms until it returns nil or timeout passes;
// fatal, if given, stops early on errors that will not heal.
func waitFor(t testing.TB, timeout time.Duration, cond func() error, fatal ...func(error) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for attempt := 0; ; attempt++ {
		if err = cond(); err == nil {
			return
		}
		for _, f := range fatal {
			if f(err) {
				t.Fatal(err)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v (%d attempts): %v", timeout, attempt+1, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lockedBuffer is a buffer a process writes to while a test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
