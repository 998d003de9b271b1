package peer

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/identity"
)

// proxyMesh is a few in-process agents on their own loopback addresses
// (127.89.P.i, default ports) under one root.
type proxyMesh struct {
	t      testing.TB
	root   ed25519.PrivateKey
	agents []*Agent
}

var proxyMeshSeq atomic.Int32

func newProxyMesh(t testing.TB, services ...[]string) *proxyMesh {
	t.Helper()
	_, root, _ := ed25519.GenerateKey(rand.Reader)
	m := &proxyMesh{t: t, root: root}
	subnet := fmt.Sprintf("127.89.%d.", (os.Getpid()+int(proxyMeshSeq.Add(1))*7)%250)
	for i, svcs := range services {
		_, key, _ := ed25519.GenerateKey(rand.Reader)
		name := fmt.Sprintf("n%d", i+1)
		now := time.Now()
		chain, err := identity.Issue(root, nil, key.Public().(ed25519.PublicKey), name,
			identity.Constraints{Services: svcs}, now.Add(-time.Minute), now.Add(time.Hour), uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		cb, _ := chain.Marshal()
		cfg := Config{
			NodeName: name, DataDir: t.TempDir(), BindAddr: netip.MustParseAddr(fmt.Sprintf("%s%d", subnet, i+1)),
			HTTPPort: -1, DNSPort: -1, TrustRoots: []ed25519.PublicKey{root.Public().(ed25519.PublicKey)},
			NodeKey: key, NodeChain: cb, FastGossip: true, DefaultIntentionPolicy: intentionDeny,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		}
		if os.Getenv("PEERD_TEST_LOG") != "" {
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
		}
		if i > 0 {
			cfg.Join = []string{m.agents[0].SerfAddr().String()}
		}
		a, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		m.agents = append(m.agents, a)
	}
	return m
}

func (m *proxyMesh) putService(a *Agent, s crdt.Service) {
	m.t.Helper()
	if err := a.commit(context.Background(), func(now time.Time) (*crdt.Delta, error) { return a.replica.PutService(s, now) }); err != nil {
		m.t.Fatal(err)
	}
}

func (m *proxyMesh) putIntention(a *Agent, in crdt.Intention) {
	m.t.Helper()
	if in.Version == 0 {
		in.Version = uint64(time.Now().UnixNano())
	}
	signed, err := SignIntention(in, m.root, nil)
	if err != nil {
		m.t.Fatal(err)
	}
	if err := a.commit(context.Background(), func(now time.Time) (*crdt.Delta, error) {
		return a.replica.PutIntention(signed, a.trust, now)
	}); err != nil {
		m.t.Fatal(err)
	}
}

// waitAll waits until every agent's replica satisfies cond.
func (m *proxyMesh) waitAll(what string, cond func(*Agent) bool) {
	m.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok := true
		for _, a := range m.agents {
			if !cond(a) {
				ok = false
				break
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			for _, a := range m.agents {
				m.t.Logf("%s: rejected %v services %v", a.cfg.NodeName, a.replica.Rejected(), a.replica.ServiceNames())
			}
			m.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (m *proxyMesh) waitService(name string, n int) {
	m.t.Helper()
	m.waitAll("service "+name, func(a *Agent) bool { return len(a.replica.Services(name, nil)) >= n })
}

func (m *proxyMesh) waitIntention(src, dst string, version uint64) {
	m.t.Helper()
	m.waitAll("intention "+src+"->"+dst, func(a *Agent) bool {
		in, ok := a.replica.IntentionFor(src, dst)
		return ok && in.Version >= version
	})
}

// httpService runs an in-test HTTP server on 127.0.0.1 answering
// "NAME METHOD PATH".
func httpService(t testing.TB, name string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%s %s %s", name, r.Method, r.URL.Path)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// tcpService runs an in-test TCP server on 127.0.0.1 that hands every
// accepted connection to handle (in its own goroutine, which closes it).
func tcpService(t testing.TB, handle func(net.Conn)) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); handle(c) }()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

func freePort(t testing.TB, ip string) int {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// call does one request through an upstream and returns status and body
// (status 0 when the connection failed).
func call(t testing.TB, client *http.Client, method, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader("x"))
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitCall(t testing.TB, client *http.Client, method, url string, wantCode int, wantBody string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := call(t, client, method, url)
		if code == wantCode && strings.Contains(body, wantBody) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: got %d %q, want %d containing %q", method, url, code, body, wantCode, wantBody)
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// TestProxyInProcess drives the data plane between in-process agents:
// routing, L4 deny and allow, L7 permissions, closing open connections on
// an intention change, and a node whose certificate does not allow the
// source service.
func TestProxyInProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts agents")
	}
	m := newProxyMesh(t, []string{"web", "web-sidecar-proxy"}, []string{"api"}, []string{"rogue", "web-sidecar-proxy"})
	web, api, rogue := m.agents[0], m.agents[1], m.agents[2]
	apiPort := httpService(t, "api")
	upPort := freePort(t, "127.0.0.1")
	m.putService(api, crdt.Service{ID: "api1", Name: "api", Port: apiPort})
	m.putService(web, crdt.Service{ID: "web1", Name: "web", Port: 1, Connect: &crdt.Connect{SidecarService: &crdt.Service{
		ID: "web1-sidecar-proxy", Name: "web-sidecar-proxy", Kind: "connect-proxy",
		Proxy: &crdt.Proxy{Upstreams: []crdt.Upstream{{DestinationName: "api", LocalBindPort: upPort}}}}}})
	m.waitService("api", 1)
	m.waitService("web", 1)
	url := fmt.Sprintf("http://127.0.0.1:%d/v1/x", upPort)
	client := &http.Client{Timeout: 5 * time.Second}

	// Default deny: a clear 403 from the source agent.
	waitCall(t, client, "GET", url, 403, "default intention policy")

	m.putIntention(web, crdt.Intention{ID: "i1", SourceName: "web", DestinationName: "api", Action: crdt.ActionAllow, Version: 1})
	m.waitIntention("web", "api", 1)
	waitCall(t, client, "GET", url, 200, "api GET /v1/x")

	// An open keep-alive connection is closed when a deny arrives.
	keep := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	waitCall(t, keep, "GET", url, 200, "api GET")
	m.putIntention(web, crdt.Intention{ID: "i1", SourceName: "web", DestinationName: "api", Action: crdt.ActionDeny, Version: 2})
	m.waitIntention("web", "api", 2)
	waitCall(t, client, "GET", url, 403, "denied by intention web -> api")
	st := api.connectStats()
	if st["inbound.api.closed_on_change"] == "0" {
		t.Errorf("no open connection closed on the deny: %v", st)
	}

	// L7: only GET /v1/* allowed.
	m.putIntention(web, crdt.Intention{ID: "i1", SourceName: "web", DestinationName: "api", Version: 3,
		Permissions: []crdt.IntentionPermission{{Action: crdt.ActionAllow, HTTP: &crdt.IntentionHTTPPermission{PathPrefix: "/v1/", Methods: []string{"GET"}}}}})
	m.waitIntention("web", "api", 3)
	waitCall(t, keep, "GET", url, 200, "api GET /v1/x")
	code, body := call(t, keep, "POST", url)
	if code != 403 || !strings.Contains(body, "matches no permission") {
		t.Fatalf("POST under L7 intention: %d %q", code, body)
	}
	// Same keep-alive connection keeps working after a per-request deny.
	waitCall(t, keep, "GET", url, 200, "api GET /v1/x")
	if st := api.connectStats(); st["inbound.api.l7_denies"] == "0" {
		t.Errorf("l7 deny not counted: %v", st)
	}

	// A node whose certificate does not allow "web" cannot act as web, even
	// with a registered sidecar for it.
	rogueUp := freePort(t, "127.0.0.1")
	m.putService(rogue, crdt.Service{ID: "web-sidecar-proxy", Name: "web-sidecar-proxy", Kind: "connect-proxy", Port: 2,
		Proxy: &crdt.Proxy{DestinationServiceName: "web", Upstreams: []crdt.Upstream{{DestinationName: "api", LocalBindPort: rogueUp}}}})
	rurl := fmt.Sprintf("http://127.0.0.1:%d/v1/x", rogueUp)
	waitCall(t, client, "GET", rurl, 403, "does not allow service \"web\"")
	if st := rogue.connectStats(); st["upstream.api.denies"] == "0" {
		t.Errorf("deny not counted at the source: %v", st)
	}

	// Revoking the caller's key closes its open connections.
	raw, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", upPort))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	fmt.Fprintf(raw, "GET /v1/x HTTP/1.1\r\nHost: api\r\n\r\n")
	br := bufio.NewReader(raw)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("keep-alive request before the revocation: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	rev, err := identity.NewRevocation(m.root, nil, web.pub, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := rev.Marshal()
	if err := api.SubmitRevocation(context.Background(), rb); err != nil {
		t.Fatal(err)
	}
	raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("connection still open after the caller's key was revoked")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("connection not closed 10 s after the caller's key was revoked")
	}
}

// TestProxyFailover: with two instances of the destination, connections
// keep working after one instance's agent stops, and load spreads while
// both run.
func TestProxyFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts agents")
	}
	m := newProxyMesh(t, []string{"web", "web-sidecar-proxy"}, []string{"api"}, []string{"api"})
	web, a2, a3 := m.agents[0], m.agents[1], m.agents[2]
	upPort := freePort(t, "127.0.0.1")
	m.putService(a2, crdt.Service{ID: "api-a", Name: "api", Port: httpService(t, "api-a")})
	m.putService(a3, crdt.Service{ID: "api-b", Name: "api", Port: httpService(t, "api-b")})
	m.putService(web, crdt.Service{ID: "web1", Name: "web", Port: 1, Connect: &crdt.Connect{SidecarService: &crdt.Service{
		ID: "web1-sidecar-proxy", Name: "web-sidecar-proxy", Kind: "connect-proxy",
		Proxy: &crdt.Proxy{Upstreams: []crdt.Upstream{{DestinationName: "api", LocalBindPort: upPort}}}}}})
	m.putIntention(web, crdt.Intention{ID: "i1", SourceName: "web", DestinationName: "api", Action: crdt.ActionAllow, Version: 1})
	m.waitService("api", 2)
	m.waitService("web", 1)
	m.waitIntention("web", "api", 1)
	url := fmt.Sprintf("http://127.0.0.1:%d/", upPort)
	fresh := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	waitCall(t, fresh, "GET", url, 200, "api-")
	seen := map[string]int{}
	for i := 0; i < 40; i++ {
		code, body := call(t, fresh, "GET", url)
		if code != 200 {
			t.Fatalf("request %d: %d %s", i, code, body)
		}
		seen[strings.Fields(body)[0]]++
	}
	if seen["api-a"] == 0 || seen["api-b"] == 0 {
		t.Errorf("load not spread over both instances: %v", seen)
	}
	a3.Close()
	for i := 0; i < 10; i++ {
		code, body := call(t, fresh, "GET", url)
		if code != 200 || !strings.HasPrefix(body, "api-a") {
			t.Fatalf("request %d after api-b's agent stopped: %d %s", i, code, body)
		}
	}
	// With no instance left, an HTTP client gets a clear 503.
	a2.Close()
	waitCall(t, fresh, "GET", url, 503, "peerd: no ")
}
