package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/identity"
	"github.com/peerd/peerd/peer"
)

// The data plane's acceptance test (docs/DATAPLANE.md): three real peerd
// processes, three real HTTP services (peerd demo-service under peerd
// connect run) chained order -> invoice -> tax through the agents'
// upstream listeners and QUIC streams.

// startWithServices is meshFixture.start with a certificate limited to the
// given service patterns (comma-separated).
func (m *meshFixture) startWithServices(name, services string, o agentOpts) *agentProc {
	m.t.Helper()
	key := filepath.Join(m.dir, name+".key")
	cert := filepath.Join(m.dir, name+".cert")
	m.cli("keygen", "-out", key)
	m.cli("cert", "issue", "-ca-key", m.root, "-subject", key+".pub", "-name", name,
		"-services", services, "-kv", "*", "-ttl", "24h", "-out", cert)
	p := &agentProc{
		m: m, name: name, ip: fmt.Sprintf("%s%d", m.subnet, len(m.agents)+1),
		dataDir: filepath.Join(m.dir, name+"-data"), key: key, cert: cert,
		root: m.root + ".pub", extra: o.extra,
	}
	for _, j := range o.join {
		p.extra = append(p.extra, "-join", m.agent(j).ip)
	}
	m.agents = append(m.agents, p)
	p.launch()
	return p
}

// freeTCPPort returns a port free on ip right now.
func freeTCPPort(t testing.TB, ip string) int {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// bgProc is a background process of the test (a demo service).
type bgProc struct {
	cmd  *exec.Cmd
	out  *bytes.Buffer
	mu   sync.Mutex
	done chan struct{}
}

func (m *meshFixture) background(t testing.TB, args ...string) *bgProc {
	t.Helper()
	p := &bgProc{out: &bytes.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(m.bin, args...)
	w := &lockedWriter{mu: &p.mu, w: p.out}
	p.cmd.Stdout, p.cmd.Stderr = w, w
	p.cmd.Env = append(os.Environ(), "CONSUL_HTTP_ADDR=", "PEERD_HTTP_ADDR=")
	// Its own process group, so that the cleanup stops the command that
	// `connect run` started too.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			p.mu.Lock()
			t.Logf("---- output of %v ----\n%s", args, tail(p.out.String(), 20))
			p.mu.Unlock()
		}
	})
	return p
}

// register registers a service definition (JSON) on the agent.
func (p *agentProc) register(t testing.TB, def map[string]any) {
	t.Helper()
	b, _ := json.Marshal(def)
	if _, err := p.put("/v1/agent/service/register", string(b)); err != nil {
		t.Fatalf("register on %s: %v", p.name, err)
	}
}

// putIntention sends a signed intention document to the agent; it
// returns the HTTP status and body.
func (p *agentProc) putIntention(t testing.TB, in crdt.Intention, key string) (int, string) {
	t.Helper()
	priv, err := identity.ReadPrivateKeyFile(key)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := peer.SignIntention(in, priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p.putIntentionRaw(t, in.SourceName, in.DestinationName, map[string]string{"Signed": base64.StdEncoding.EncodeToString(signed)})
}

func (p *agentProc) putIntentionRaw(t testing.TB, src, dst string, body any) (int, string) {
	t.Helper()
	b, _ := json.Marshal(body)
	q := url.Values{"source": {src}, "destination": {dst}}.Encode()
	req, _ := http.NewRequest(http.MethodPut, p.httpURL("/v1/connect/intentions/exact?"+q), bytes.NewReader(b))
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// connectStat reads one counter of the agent's "connect" info section.
func (p *agentProc) connectStat(key string) string {
	b, err := p.get("/v1/agent/peerd/info")
	if err != nil {
		return ""
	}
	var info map[string]map[string]string
	json.Unmarshal(b, &info)
	return info["connect"][key]
}

// expectHTTP polls method url until the answer has status code and a body
// containing want.
func expectHTTP(t testing.TB, method, u string, code int, want string) string {
	t.Helper()
	var body string
	waitFor(t, 20*time.Second, func() error {
		req, _ := http.NewRequest(method, u, nil)
		resp, err := httpClient.Do(req)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		if resp.StatusCode != code || !strings.Contains(body, want) {
			return fmt.Errorf("%s %s: %d %q, want %d containing %q", method, u, resp.StatusCode, body, code, want)
		}
		return nil
	})
	return body
}

func TestDataPlaneEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	m := newMesh(t)
	n1 := m.start("n1", agentOpts{})
	n2 := m.start("n2", agentOpts{join: []string{"n1"}})
	n3 := m.startWithServices("n3", "tax,tax-sidecar-proxy", agentOpts{join: []string{"n1"}})
	for _, p := range []*agentProc{n1, n2, n3} {
		for _, q := range []*agentProc{n1, n2, n3} {
			expectMemberStatus(t, p, q.name, memberAlive)
		}
	}

	// Services and their upstreams, each on its agent's address.
	type svc struct {
		agent    *agentProc
		name, up string
		port     int
		upPort   int
	}
	svcs := []*svc{{agent: n1, name: "order", up: "invoice"}, {agent: n2, name: "invoice", up: "tax"}, {agent: n3, name: "tax"}}
	for _, s := range svcs {
		s.port = freeTCPPort(t, s.agent.ip)
		def := map[string]any{"Name": s.name, "ID": s.name, "Address": s.agent.ip, "Port": s.port}
		if s.up != "" {
			s.upPort = freeTCPPort(t, s.agent.ip)
			def["Connect"] = map[string]any{"SidecarService": map[string]any{"Proxy": map[string]any{
				"Upstreams": []map[string]any{{"DestinationName": s.up, "LocalBindAddress": s.agent.ip, "LocalBindPort": s.upPort}}}}}
		}
		s.agent.register(t, def)
	}
	for _, s := range svcs {
		args := []string{"connect", "run", "-http-addr", s.agent.ip + ":8500", "-service", s.name, "--",
			m.bin, "demo-service", "-name", s.name, "-listen", fmt.Sprintf("%s:%d", s.agent.ip, s.port)}
		if s.up != "" {
			args = append(args, "-upstream", s.up)
		}
		m.background(t, args...)
	}
	// order's upstream is served by a standalone proxy process
	// (`connect proxy -sidecar-for order`): everything order sends below
	// goes app -> proxy process -> tunnel -> n1 -> QUIC.
	sc := m.background(t, "connect", "proxy", "-http-addr", n1.ip+":8500", "-sidecar-for", "order")
	waitFor(t, 10*time.Second, func() error {
		sc.mu.Lock()
		out := sc.out.String()
		sc.mu.Unlock()
		if want := fmt.Sprintf("%s:%d -> invoice", n1.ip, svcs[0].upPort); !strings.Contains(out, want) {
			return fmt.Errorf("connect proxy printed %q, want %q", out, want)
		}
		if st := n1.connectStat("proxy.order"); !strings.HasPrefix(st, "held by ") {
			return fmt.Errorf("n1 proxy.order = %q, want held by the proxy process", st)
		}
		return nil
	})
	// A second proxy for the same service is refused with the reason.
	second := m.background(t, "connect", "proxy", "-http-addr", n1.ip+":8500", "-sidecar-for", "order")
	<-second.done
	if second.cmd.ProcessState.ExitCode() == 0 || !strings.Contains(second.output(), "already held by the proxy process") {
		t.Errorf("second connect proxy for order: exit %d, output %q", second.cmd.ProcessState.ExitCode(), second.output())
	}
	typo := m.background(t, "connect", "proxy", "-http-addr", n1.ip+":8500", "-sidecar-for", "ordr")
	<-typo.done
	if typo.cmd.ProcessState.ExitCode() == 0 || !strings.Contains(typo.output(), `unknown service ID "ordr"`) {
		t.Errorf("connect proxy for an unknown service: exit %d, output %q", typo.cmd.ProcessState.ExitCode(), typo.output())
	}

	// DNS: NAME.connect.consul is the local upstream listener.
	waitFor(t, 10*time.Second, func() error {
		q := new(dns.Msg)
		q.SetQuestion("tax.connect.consul.", dns.TypeSRV)
		r, err := dns.Exchange(q, n2.ip+":8600")
		if err != nil {
			return err
		}
		for _, rr := range r.Answer {
			if srv, ok := rr.(*dns.SRV); ok && int(srv.Port) == svcs[1].upPort {
				return nil
			}
		}
		return fmt.Errorf("tax.connect.consul SRV on n2: %v, want port %d", r.Answer, svcs[1].upPort)
	})
	order := fmt.Sprintf("http://%s:%d/", n1.ip, svcs[0].port)
	invoice := fmt.Sprintf("http://%s:%d", n2.ip, svcs[1].port)

	// Non-dev agents deny by default: nothing passes yet.
	expectHTTP(t, "GET", order, http.StatusBadGateway, "denied by the default intention policy")

	// Allow everything with a root-signed wildcard intention.
	version := uint64(time.Now().UnixNano())
	allowAll := crdt.Intention{ID: peer.NewIntentionID(), SourceName: "*", DestinationName: "*", Action: crdt.ActionAllow, Version: version}
	if code, body := n1.putIntention(t, allowAll, m.root); code != http.StatusOK {
		t.Fatalf("allow-all intention: %d %s", code, body)
	}
	expectHTTP(t, "GET", order, http.StatusOK, "order -> invoice -> tax")

	// A signed deny invoice -> tax: order fails with invoice's clear error.
	version++
	deny := crdt.Intention{ID: peer.NewIntentionID(), SourceName: "invoice", DestinationName: "tax", Action: crdt.ActionDeny, Version: version}
	if code, body := n3.putIntention(t, deny, m.root); code != http.StatusOK {
		t.Fatalf("deny intention: %d %s", code, body)
	}
	body := expectHTTP(t, "GET", order, http.StatusBadGateway, "invoice: tax answered 403 Forbidden: peerd: invoice -> tax denied by intention invoice -> tax")
	t.Logf("denied: %s", strings.TrimSpace(body))
	if d := n2.connectStat("upstream.tax.denies"); d == "" || d == "0" {
		t.Errorf("deny not counted at invoice's agent: upstream.tax.denies = %q", d)
	}
	if d := n3.connectStat("inbound.tax.denies"); d == "" || d == "0" {
		t.Errorf("deny not counted at tax's agent: inbound.tax.denies = %q", d)
	}

	// Deleting the deny restores the chain.
	version++
	del := deny
	del.Action, del.Deleted, del.Version = "", true, version
	if code, body := n2.putIntention(t, del, m.root); code != http.StatusOK {
		t.Fatalf("delete intention: %d %s", code, body)
	}
	expectHTTP(t, "GET", order, http.StatusOK, "order -> invoice -> tax")

	// L7: invoice may only GET /tax/*, created with the CLI from a
	// permissions file in Consul's service-intentions format.
	perms := filepath.Join(m.dir, "tax-perms.json")
	os.WriteFile(perms, []byte(`[{"Action": "allow", "HTTP": {"PathPrefix": "/tax/", "Methods": ["GET"]}}]`), 0o600)
	if out := m.cli("intention", "create", "-http-addr", n1.ip+":8500", "-replace", "-from", "invoice", "-to", "tax",
		"-permissions", perms, "-sign-key", m.root); !strings.Contains(out, "Created: invoice => tax (1 L7 permissions)") {
		t.Fatalf("intention create -permissions: %s", out)
	}
	misspelt := filepath.Join(m.dir, "typo-perms.json")
	os.WriteFile(misspelt, []byte(`[{"Action": "allow", "HTTP": {"PathPrefx": "/"}}]`), 0o600)
	if out, err := m.cliErr("intention", "create", "-http-addr", n1.ip+":8500", "-replace", "-from", "invoice", "-to", "tax",
		"-permissions", misspelt, "-sign-key", m.root); err == nil || !strings.Contains(out, `unknown field "PathPrefx"`) {
		t.Fatalf("a misspelt permission field: %v %s", err, out)
	}
	expectHTTP(t, "POST", invoice+"/tax/x", http.StatusForbidden, "POST /tax/x from invoice to tax matches no permission")
	expectHTTP(t, "GET", invoice+"/tax/y", http.StatusOK, "tax (GET /tax/y)")
	if d := n3.connectStat("inbound.tax.l7_denies"); d == "" || d == "0" {
		t.Errorf("L7 deny not counted: inbound.tax.l7_denies = %q", d)
	}

	// Unsigned and wrongly signed intentions are refused.
	if code, body := n1.putIntentionRaw(t, "order", "tax", map[string]string{"Action": "allow"}); code != http.StatusForbidden {
		t.Errorf("unsigned intention: %d %s", code, body)
	}
	version++
	bad := crdt.Intention{ID: peer.NewIntentionID(), SourceName: "order", DestinationName: "tax", Action: crdt.ActionAllow, Version: version}
	if code, body := n1.putIntention(t, bad, n1.key); code != http.StatusForbidden {
		t.Errorf("intention signed by a node key: %d %s", code, body)
	}
	priv, _ := identity.ReadPrivateKeyFile(m.root)
	signed, _ := peer.SignIntention(bad, priv, nil)
	signed[len(signed)-3] ^= 0xff
	if code, body := n1.putIntentionRaw(t, "order", "tax", map[string]string{"Signed": base64.StdEncoding.EncodeToString(signed)}); code/100 == 2 {
		t.Errorf("tampered intention accepted: %d %s", code, body)
	}

	// n3's certificate allows tax only: a proxy it registers for "order"
	// cannot open streams as order.
	roguePort := freeTCPPort(t, n3.ip)
	n3.register(t, map[string]any{"Kind": "connect-proxy", "ID": "evil", "Name": "tax-sidecar-proxy", "Port": 1,
		"Proxy": map[string]any{"DestinationServiceName": "order",
			"Upstreams": []map[string]any{{"DestinationName": "invoice", "LocalBindAddress": n3.ip, "LocalBindPort": roguePort}}}})
	expectHTTP(t, "GET", fmt.Sprintf("http://%s:%d/", n3.ip, roguePort), http.StatusForbidden, `does not allow service "order"`)
	if d := n2.connectStat("inbound.invoice.denies"); d == "" || d == "0" {
		t.Errorf("rogue stream not counted at invoice's agent: inbound.invoice.denies = %q", d)
	}
	// The legitimate chain is unaffected.
	expectHTTP(t, "GET", invoice+"/tax/z", http.StatusOK, "tax (GET /tax/z)")

	// The proxy process carried order's connections, counted at n1 as
	// any upstream connection; when it stops, n1 listens again.
	if c := n1.connectStat("upstream.invoice.connections"); c == "" || c == "0" {
		t.Errorf("n1 upstream.invoice.connections = %q through the proxy process", c)
	}
	sc.cmd.Process.Signal(os.Interrupt)
	<-sc.done
	if code := sc.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("connect proxy exited %d on interrupt: %s", code, sc.output())
	}
	waitFor(t, 20*time.Second, func() error {
		want := "order -> invoice (listening)"
		if st := n1.connectStat(fmt.Sprintf("listener.%s:%d", n1.ip, svcs[0].upPort)); st != want {
			return fmt.Errorf("n1 listener after the proxy stopped: %q, want %q", st, want)
		}
		return nil
	})
	expectHTTP(t, "GET", order+"tax/w", http.StatusOK, "tax (GET /tax/w)")
}

// output is what the process printed so far.
func (p *bgProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}
