package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The netns fixture runs real peerd processes, each in a network namespace
// of its own, joined by veth pairs to a bridge that lives in yet another
// namespace: the host's network never routes to these addresses, and
// nftables rules inside each node's namespace cut links (partitions) or
// drop a share of packets (loss). The test talks to the agents through
// sockets opened inside their namespaces (inNetns), so it needs root and
// the ip and nft tools; without them the tests skip, saying why.
//
// Names: every namespace of one test run is "pdc<pid>x<seq>-<node>"; the
// bridge namespace is "...-br". A sweep at the start removes namespaces
// left over by earlier runs whose process is gone, and t.Cleanup removes
// everything this run made, also on failure.

const netnsPrefix = "pdc"

var (
	netnsSeq   atomic.Int32
	sweepOnce  sync.Once
	nftChecked sync.Once
	nftErr     error
)

// requireNetns skips the test when namespaces cannot be made here.
func requireNetns(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("netns chaos tests start real processes; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("netns chaos tests need root (ip netns, nftables); skipped")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("netns chaos tests need the ip tool (iproute2); skipped")
	}
	nftChecked.Do(func() {
		if _, err := exec.LookPath("nft"); err == nil {
			return
		}
		out, err := exec.Command("bash", "-c", "apt-get update -qq && apt-get install -y -qq nftables iproute2").CombinedOutput()
		if err != nil {
			nftErr = fmt.Errorf("nft missing and apt-get failed: %v\n%s", err, tail(string(out), 10))
		}
	})
	if nftErr != nil {
		t.Skipf("netns chaos tests need nftables: %v", nftErr)
	}
	probe := fmt.Sprintf("%s%dprobe", netnsPrefix, os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		t.Skipf("cannot create network namespaces here (%v: %s); skipped", err, strings.TrimSpace(string(out)))
	}
	exec.Command("ip", "netns", "del", probe).Run()
	sweepOnce.Do(sweepStaleNetns)
}

// sweepStaleNetns deletes namespaces of earlier runs whose process died.
func sweepStaleNetns() {
	ents, _ := os.ReadDir("/var/run/netns")
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, netnsPrefix) {
			continue
		}
		rest := strings.TrimPrefix(name, netnsPrefix)
		i := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
		if i <= 0 {
			continue
		}
		pid, _ := strconv.Atoi(rest[:i])
		if pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		removeNetns(name)
	}
}

// removeNetns kills what still runs in a namespace and deletes it.
func removeNetns(name string) {
	out, _ := exec.Command("ip", "netns", "pids", name).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	exec.Command("ip", "netns", "del", name).Run()
}

// inNetns runs fn on an OS thread switched into namespace ns. Sockets fn
// opens stay in ns after the thread switches back.
func inNetns(ns string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", ns, err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: Go discards it when this goroutine ends.
		return fmt.Errorf("setns back: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// dialIn opens a connection from inside namespace ns.
func dialIn(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetns(ns, func() error {
		var err error
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// netMesh is a set of namespaces on one bridge, a root of trust (through
// the embedded loopback meshFixture, used for its CLI and identities) and
// the agents started in them.
type netMesh struct {
	*meshFixture
	t      testing.TB
	id     string // "pdc<pid>x<seq>"
	subnet string // "10.77.K."
	br     string // bridge namespace
	ns     []string
	nodes  []*nsAgent
	mounts []string
	// lanGossip starts agents with memberlist's LAN timings instead of
	// -fast-gossip (set before starting agents).
	lanGossip bool
}

// newNetMesh makes the bridge namespace; nodes come with addNode or start.
func newNetMesh(t testing.TB) *netMesh {
	t.Helper()
	requireNetns(t)
	seq := netnsSeq.Add(1)
	nm := &netMesh{meshFixture: newMesh(t), t: t}
	nm.id = fmt.Sprintf("%s%dx%d", netnsPrefix, os.Getpid(), seq)
	nm.subnet = fmt.Sprintf("10.77.%d.", seq%250)
	nm.br = nm.id + "-br"
	t.Cleanup(nm.destroy)
	nm.ip("netns", "add", nm.br)
	nm.ns = append(nm.ns, nm.br)
	nm.ip("-n", nm.br, "link", "set", "lo", "up")
	nm.ip("-n", nm.br, "link", "add", "br0", "type", "bridge")
	nm.ip("-n", nm.br, "link", "set", "br0", "up")
	return nm
}

func (nm *netMesh) ip(args ...string) {
	nm.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		nm.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// nft runs an nft script inside a namespace.
func (nm *netMesh) nft(ns, script string) {
	nm.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		nm.t.Fatalf("nft in %s: %v\n%s\n%s", ns, err, script, out)
	}
}

// addHost makes a namespace with address subnet+host on the bridge and an
// empty nftables chain "inet chaos input" for fault rules.
func (nm *netMesh) addHost(suffix string, host int) (ns, addr string) {
	nm.t.Helper()
	ns = nm.id + "-" + suffix
	addr = fmt.Sprintf("%s%d", nm.subnet, host)
	veth := fmt.Sprintf("v%d", host)
	nm.ip("netns", "add", ns)
	nm.ns = append(nm.ns, ns)
	nm.ip("-n", ns, "link", "set", "lo", "up")
	nm.ip("-n", nm.br, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
	nm.ip("-n", nm.br, "link", "set", veth, "master", "br0")
	nm.ip("-n", nm.br, "link", "set", veth, "up")
	nm.ip("-n", ns, "addr", "add", addr+"/24", "dev", "eth0")
	nm.ip("-n", ns, "link", "set", "eth0", "up")
	nm.nft(ns, "table inet chaos {\n chain input { type filter hook input priority 0; policy accept; }\n}\n")
	return ns, addr
}

// destroy kills the agents, unmounts tmpfs data dirs and deletes every
// namespace of this mesh.
func (nm *netMesh) destroy() {
	if nm.t.Failed() {
		for _, a := range nm.nodes {
			if pat := os.Getenv("PEERD_CHAOS_LOG_GREP"); pat != "" {
				re := regexp.MustCompile(pat)
				for _, l := range strings.Split(a.Logs(), "\n") {
					if re.MatchString(l) {
						nm.t.Logf("%s| %s", a.name, l)
					}
				}
			}
			if st, err := a.info(); err == nil {
				nm.t.Logf("---- info of %s: replica %v\nanti_entropy %v\nserf %v\ndissemination %v", a.name,
					st["replica"], st["anti_entropy"], st["serf"], st["dissemination"])
			}
		}
	}
	for _, a := range nm.nodes {
		if a.done != nil && a.running() {
			a.signal(syscall.SIGCONT)
			a.kill()
		}
		if nm.t.Failed() {
			nm.t.Logf("---- logs of %s (%s) ----\n%s", a.name, a.ip, tail(a.Logs(), 40))
		}
	}
	for i := len(nm.ns) - 1; i >= 0; i-- {
		removeNetns(nm.ns[i])
	}
	for _, m := range nm.mounts {
		exec.Command("umount", "-l", m).Run()
	}
}

// nsAgent is one peerd agent process in its own namespace.
type nsAgent struct {
	nm      *netMesh
	name    string
	ns      string
	ip      string
	dataDir string
	key     string
	cert    string
	root    string // trusted root public key file
	args    []string
	client  *http.Client

	mu   sync.Mutex
	cmd  *exec.Cmd
	logs *bytes.Buffer
	done chan struct{}
}

type nsOpts struct {
	join  []string // agent names to -join
	cert  string   // certificate file; default: one with every right from the mesh root
	key   string   // node key file (with cert)
	root  string   // trusted root public key file; default the mesh root's
	extra []string
	// tmpfsMiB mounts a tmpfs of that size as the data dir.
	tmpfsMiB int
	noLaunch bool
}

// start adds a namespace for node name and starts an agent in it.
func (nm *netMesh) start(name string, o nsOpts) *nsAgent {
	nm.t.Helper()
	host := len(nm.nodes) + 1
	ns, addr := nm.addHost(name, host)
	key, cert := o.key, o.cert
	if key == "" {
		key, cert = nm.nodeIdentity(name, nm.root)
	}
	root := o.root
	if root == "" {
		root = nm.root + ".pub"
	}
	a := &nsAgent{nm: nm, name: name, ns: ns, ip: addr, key: key, cert: cert, root: root,
		dataDir: filepath.Join(nm.dir, name+"-data")}
	a.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialIn(ctx, ns, network, addr)
		},
	}}
	if o.tmpfsMiB > 0 {
		if err := os.MkdirAll(a.dataDir, 0o700); err != nil {
			nm.t.Fatal(err)
		}
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm", o.tmpfsMiB), "tmpfs", a.dataDir).CombinedOutput(); err != nil {
			nm.t.Fatalf("mount tmpfs: %v %s", err, out)
		}
		nm.mounts = append(nm.mounts, a.dataDir)
	}
	a.args = []string{"agent", "-node", name, "-bind", addr, "-client", addr, "-data-dir", a.dataDir,
		"-trust", root, "-node-key", key, "-log-level", "debug"}
	if !nm.lanGossip {
		a.args = append(a.args, "-fast-gossip")
	}
	if cert != "" {
		a.args = append(a.args, "-node-cert", cert)
	}
	for _, j := range o.join {
		a.args = append(a.args, "-join", nm.node(j).ip)
	}
	a.args = append(a.args, o.extra...)
	nm.nodes = append(nm.nodes, a)
	if !o.noLaunch {
		a.launch()
	}
	return a
}

func (nm *netMesh) node(name string) *nsAgent {
	for _, a := range nm.nodes {
		if a.name == name {
			return a
		}
	}
	nm.t.Fatalf("no agent %q", name)
	return nil
}

// startN starts n agents n1..nN, each joining n1, and waits until every
// agent sees every other alive.
func (nm *netMesh) startN(n int) []*nsAgent {
	nm.t.Helper()
	var all []*nsAgent
	for i := 1; i <= n; i++ {
		o := nsOpts{}
		if i > 1 {
			o.join = []string{"n1"}
		}
		all = append(all, nm.start(fmt.Sprintf("n%d", i), o))
	}
	nm.waitAllAlive(all, 60*time.Second)
	return all
}

// waitAllAlive waits until each agent lists each other one alive.
func (nm *netMesh) waitAllAlive(all []*nsAgent, timeout time.Duration) {
	nm.t.Helper()
	waitFor(nm.t, timeout, func() error {
		for _, p := range all {
			ms, err := p.members()
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			st := map[string]int{}
			for _, m := range ms {
				st[m.Name] = m.Status
			}
			for _, q := range all {
				if st[q.name] != memberAlive {
					return fmt.Errorf("%s sees %s with status %d", p.name, q.name, st[q.name])
				}
			}
		}
		return nil
	})
}

// launch starts (or restarts) the agent process in its namespace.
func (a *nsAgent) launch() {
	a.nm.t.Helper()
	a.launchNoWait()
	a.waitHTTP(30 * time.Second)
}

func (a *nsAgent) launchNoWait() {
	a.nm.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", a.ns, a.nm.bin}, a.args...)...)
	// One log buffer across restarts, so a failure shows the whole story.
	a.mu.Lock()
	logs := a.logs
	if logs == nil {
		logs = &bytes.Buffer{}
	} else {
		fmt.Fprintf(logs, "---- restart at %s ----\n", time.Now().Format("15:04:05.000"))
	}
	a.mu.Unlock()
	w := &lockedWriter{mu: &a.mu, w: logs}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.Env = append(os.Environ(), "CONSUL_HTTP_ADDR=", "PEERD_HTTP_ADDR=")
	if err := cmd.Start(); err != nil {
		a.nm.t.Fatalf("start %s: %v", a.name, err)
	}
	done := make(chan struct{})
	a.mu.Lock()
	a.cmd, a.logs, a.done = cmd, logs, done
	a.mu.Unlock()
	go func() { cmd.Wait(); close(done) }()
}

func (a *nsAgent) waitHTTP(timeout time.Duration) {
	a.nm.t.Helper()
	waitFor(a.nm.t, timeout, func() error {
		select {
		case <-a.doneCh():
			return fmt.Errorf("agent %s exited:\n%s", a.name, tail(a.Logs(), 30))
		default:
		}
		_, err := a.get("/v1/agent/self")
		return err
	}, func(err error) bool { return strings.Contains(err.Error(), "exited") })
}

func (a *nsAgent) doneCh() chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.done
}

func (a *nsAgent) Logs() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.logs == nil {
		return ""
	}
	return a.logs.String()
}

func (a *nsAgent) signal(sig syscall.Signal) {
	a.mu.Lock()
	cmd := a.cmd
	a.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		cmd.Process.Signal(sig)
	}
}

func (a *nsAgent) running() bool {
	select {
	case <-a.doneCh():
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits for the process to die.
func (a *nsAgent) kill() {
	a.signal(syscall.SIGKILL)
	<-a.doneCh()
}

// stop asks the agent to leave (SIGINT), waiting up to 15 s, then kills it.
func (a *nsAgent) stop() {
	a.signal(syscall.SIGINT)
	select {
	case <-a.doneCh():
	case <-time.After(15 * time.Second):
		a.kill()
	}
}

func (a *nsAgent) pause()  { a.signal(syscall.SIGSTOP) }
func (a *nsAgent) resume() { a.signal(syscall.SIGCONT) }

func (a *nsAgent) url(path string) string { return "http://" + a.ip + ":8500" + path }

func (a *nsAgent) do(method, path, body string) ([]byte, int, error) {
	req, err := http.NewRequest(method, a.url(path), strings.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		return b, resp.StatusCode, fmt.Errorf("%s %s on %s: %s: %s", method, path, a.name, resp.Status, strings.TrimSpace(string(b)))
	}
	return b, resp.StatusCode, nil
}

func (a *nsAgent) get(path string) ([]byte, error) {
	b, _, err := a.do(http.MethodGet, path, "")
	return b, err
}

// kvPut writes a key and reports whether the agent acknowledged it.
func (a *nsAgent) kvPut(key, value string) error {
	b, _, err := a.do(http.MethodPut, "/v1/kv/"+key, value)
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(b)) != "true" {
		return fmt.Errorf("kv put %s on %s: %s", key, a.name, b)
	}
	return nil
}

func (a *nsAgent) kvGetRaw(key string) (string, error) {
	b, err := a.get("/v1/kv/" + key + "?raw")
	return string(b), err
}

// kvKeys lists the keys under prefix (empty when none).
func (a *nsAgent) kvKeys(prefix string) (map[string]bool, error) {
	b, code, err := a.do(http.MethodGet, "/v1/kv/"+prefix+"?keys", "")
	if code == http.StatusNotFound {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, err
	}
	var keys []string
	if err := json.Unmarshal(b, &keys); err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(keys))
	for _, k := range keys {
		out[k] = true
	}
	return out, nil
}

func (a *nsAgent) members() ([]member, error) {
	b, err := a.get("/v1/agent/members")
	if err != nil {
		return nil, err
	}
	var ms []member
	err = json.Unmarshal(b, &ms)
	return ms, err
}

// info returns /v1/agent/peerd/info.
func (a *nsAgent) info() (map[string]map[string]string, error) {
	b, err := a.get("/v1/agent/peerd/info")
	if err != nil {
		return nil, err
	}
	var st map[string]map[string]string
	err = json.Unmarshal(b, &st)
	return st, err
}

func (a *nsAgent) stat(section, key string) string {
	st, err := a.info()
	if err != nil {
		return ""
	}
	return st[section][key]
}

func (a *nsAgent) statInt(section, key string) int {
	n, _ := strconv.Atoi(a.stat(section, key))
	return n
}

// registerService registers a local service through the agent API.
func (a *nsAgent) registerService(id, name string, port int) error {
	body := fmt.Sprintf(`{"ID":%q,"Name":%q,"Port":%d}`, id, name, port)
	_, _, err := a.do(http.MethodPut, "/v1/agent/service/register", body)
	return err
}

// serviceIDs lists the IDs of service name's instances in the catalog.
func (a *nsAgent) serviceIDs(name string) (map[string]bool, error) {
	b, err := a.get("/v1/catalog/service/" + name)
	if err != nil {
		return nil, err
	}
	var es []struct{ ServiceID string }
	if err := json.Unmarshal(b, &es); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, e := range es {
		out[e.ServiceID] = true
	}
	return out, nil
}

// getURL GETs any URL from inside the agent's namespace; a non-200 answer
// is an error.
func (a *nsAgent) getURL(u string) (string, error) {
	resp, err := a.client.Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}

// background runs a peerd subcommand (e.g. demo-service) in a's namespace
// until the mesh is destroyed (deleting the namespace kills it).
func (nm *netMesh) background(a *nsAgent, args ...string) {
	nm.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", a.ns, nm.bin}, args...)...)
	out := &bytes.Buffer{}
	var mu sync.Mutex
	cmd.Stdout, cmd.Stderr = &lockedWriter{mu: &mu, w: out}, &lockedWriter{mu: &mu, w: out}
	if err := cmd.Start(); err != nil {
		nm.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	nm.t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if nm.t.Failed() {
			mu.Lock()
			nm.t.Logf("---- output of %v in %s ----\n%s", args, a.ns, tail(out.String(), 10))
			mu.Unlock()
		}
	})
}

// partition drops every packet between group a and group b (both ways).
func (nm *netMesh) partition(a, b []*nsAgent) {
	nm.t.Helper()
	nm.partitionOneWay(a, b)
	nm.partitionOneWay(b, a)
}

// partitionOneWay drops packets from group from arriving at group to.
func (nm *netMesh) partitionOneWay(from, to []*nsAgent) {
	nm.t.Helper()
	var ips []string
	for _, p := range from {
		ips = append(ips, p.ip)
	}
	for _, p := range to {
		nm.nft(p.ns, fmt.Sprintf("add rule inet chaos input iifname \"eth0\" ip saddr { %s } drop\n", strings.Join(ips, ", ")))
	}
}

// loss drops pct % of the packets every agent receives from the bridge.
func (nm *netMesh) loss(pct int) {
	nm.t.Helper()
	for _, p := range nm.nodes {
		nm.nft(p.ns, fmt.Sprintf("add rule inet chaos input iifname \"eth0\" numgen random mod 100 < %d drop\n", pct))
	}
}

// heal removes every fault rule.
func (nm *netMesh) heal() {
	nm.t.Helper()
	for _, p := range nm.nodes {
		nm.nft(p.ns, "flush chain inet chaos input\n")
	}
}

// digests returns each agent's replica digest.
func digests(all []*nsAgent) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range all {
		d := p.stat("replica", "digest")
		if d == "" {
			return nil, fmt.Errorf("%s: no digest", p.name)
		}
		out[p.name] = d
	}
	return out, nil
}

// digestsEqual is a waitFor condition: every agent has the same digest.
func digestsEqual(all []*nsAgent) error {
	ds, err := digests(all)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, d := range ds {
		seen[d] = true
	}
	if len(seen) != 1 {
		return fmt.Errorf("digests differ: %v", ds)
	}
	return nil
}

// hasKeys is a waitFor condition: every agent holds every key in want.
func hasKeys(all []*nsAgent, prefix string, want map[string]bool) error {
	for _, p := range all {
		got, err := p.kvKeys(prefix)
		if err != nil {
			return err
		}
		var missing []string
		for k := range want {
			if !got[k] {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			sort.Strings(missing)
			if len(missing) > 5 {
				missing = append(missing[:5], "...")
			}
			return fmt.Errorf("%s misses %d of %d keys: %v", p.name, len(missing), len(want), missing)
		}
	}
	return nil
}

// chaosLong reports whether the long versions run (make chaos).
func chaosLong() bool { return os.Getenv("PEERD_CHAOS_LONG") == "1" }

// pick returns short or long.
func pick(short, long time.Duration) time.Duration {
	if chaosLong() {
		return long
	}
	return short
}

// ackedSet is a concurrency-safe set of acknowledged keys.
type ackedSet struct {
	mu   sync.Mutex
	keys map[string]bool
	fail int
}

func (s *ackedSet) add(k string) {
	s.mu.Lock()
	if s.keys == nil {
		s.keys = map[string]bool{}
	}
	s.keys[k] = true
	s.mu.Unlock()
}

func (s *ackedSet) failed() {
	s.mu.Lock()
	s.fail++
	s.mu.Unlock()
}

func (s *ackedSet) snapshot() (map[string]bool, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]bool, len(s.keys))
	for k := range s.keys {
		out[k] = true
	}
	return out, s.fail
}

// writer writes prefix/<agent>-<i> to a until stop closes, one at a time,
// recording acknowledged keys; errors (agent unreachable) are counted.
func writer(a *nsAgent, prefix string, acked *ackedSet, stop <-chan struct{}, wg *sync.WaitGroup, onAck func(key string, at time.Time)) {
	defer wg.Done()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		key := fmt.Sprintf("%s/%s-%06d", prefix, a.name, i)
		if err := a.kvPut(key, "v"); err != nil {
			acked.failed()
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		acked.add(key)
		if onAck != nil {
			onAck(key, time.Now())
		}
		select {
		case <-stop:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// figure logs a measured figure in a greppable form: "FIGURE scenario: k=v ...".
func figure(t testing.TB, scenario string, kv ...any) {
	t.Helper()
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, " %v=%v", kv[i], kv[i+1])
	}
	t.Logf("FIGURE %s:%s", scenario, b.String())
}

// durPercentile returns the p-th percentile (0..100) of ds.
func durPercentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}
