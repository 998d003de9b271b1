package peer

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/identity"
)

func TestHTTPProbe(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/ok":
			fmt.Fprintf(w, "method=%s probe=%s body=%s", r.Method, r.Header.Get("X-Probe"), b)
		case "/busy":
			w.WriteHeader(http.StatusTooManyRequests)
		case "/big":
			io.WriteString(w, strings.Repeat("x", 10000))
		default:
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	tests := []struct {
		def    CheckDefinition
		status string
		output string
	}{
		{CheckDefinition{HTTP: srv.URL + "/ok", Method: "POST", Body: "hi", Header: map[string][]string{"X-Probe": {"1"}}},
			crdt.StatusPassing, "method=POST probe=1 body=hi"},
		{CheckDefinition{HTTP: srv.URL + "/busy"}, crdt.StatusWarning, "429"},
		{CheckDefinition{HTTP: srv.URL + "/fail"}, crdt.StatusCritical, "500"},
		{CheckDefinition{HTTP: "http://127.0.0.1:1/"}, crdt.StatusCritical, "refused"},
	}
	for _, tt := range tests {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res := httpProbe(tt.def)(ctx)
		cancel()
		if res.status != tt.status || !strings.Contains(res.output, tt.output) {
			t.Errorf("%s: %s %q, want %s containing %q", tt.def.HTTP, res.status, res.output, tt.status, tt.output)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res := httpProbe(CheckDefinition{HTTP: srv.URL + "/big"})(ctx)
	if res.status != crdt.StatusPassing || len(res.output) > maxCheckOutput+200 {
		t.Errorf("big body: %s, %d bytes of output", res.status, len(res.output))
	}
}

func TestHTTPProbeTLSSkipVerify(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if res := httpProbe(CheckDefinition{HTTP: srv.URL})(ctx); res.status != crdt.StatusCritical {
		t.Errorf("self-signed without skip: %s", res.status)
	}
	if res := httpProbe(CheckDefinition{HTTP: srv.URL, TLSSkipVerify: true})(ctx); res.status != crdt.StatusPassing {
		t.Errorf("self-signed with skip: %s %s", res.status, res.output)
	}
}

func TestTCPProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if res := tcpProbe(CheckDefinition{TCP: addr})(ctx); res.status != crdt.StatusPassing {
		t.Errorf("open port: %+v", res)
	}
	ln.Close()
	if res := tcpProbe(CheckDefinition{TCP: addr})(ctx); res.status != crdt.StatusCritical {
		t.Errorf("closed port: %+v", res)
	}
}

func TestScriptProbe(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	tests := []struct {
		script string
		status string
	}{
		{"echo fine", crdt.StatusPassing},
		{"echo meh; exit 1", crdt.StatusWarning},
		{"echo bad; exit 2", crdt.StatusCritical},
	}
	for _, tt := range tests {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res := scriptProbe(CheckDefinition{Args: []string{sh, "-c", tt.script}})(ctx)
		cancel()
		if res.status != tt.status {
			t.Errorf("%q: %+v, want %s", tt.script, res, tt.status)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := scriptProbe(CheckDefinition{Args: []string{sh, "-c", "head -c 10000 /dev/zero | tr '\\0' x"}})(ctx)
	if len(res.output) != maxCheckOutput {
		t.Errorf("output not capped: %d bytes", len(res.output))
	}
}

func TestThresholdStatus(t *testing.T) {
	p, w, c := crdt.StatusPassing, crdt.StatusWarning, crdt.StatusCritical
	tests := []struct {
		name    string
		def     CheckDefinition
		start   string
		results []string
		want    []string
	}{
		{"no thresholds", CheckDefinition{}, c, []string{p, c, w, p}, []string{p, c, w, p}},
		{"success before passing", CheckDefinition{SuccessBeforePassing: 2}, c, []string{p, p, c, p, p}, []string{c, p, c, c, p}},
		{"failures before critical", CheckDefinition{FailuresBeforeCritical: 3, FailuresBeforeWarning: 3}, p,
			[]string{c, c, c, p, c}, []string{p, p, c, p, p}},
		{"warning first", CheckDefinition{FailuresBeforeWarning: 1, FailuresBeforeCritical: 3}, p,
			[]string{c, c, c}, []string{w, w, c}},
	}
	for _, tt := range tests {
		lc := &localCheck{Def: tt.def, status: tt.start}
		for i, r := range tt.results {
			got := thresholdStatus(lc, r)
			lc.status = got
			if got != tt.want[i] {
				t.Errorf("%s: result %d (%s) gave %s, want %s", tt.name, i, r, got, tt.want[i])
			}
		}
	}
}

// regPort returns a port that was free a moment ago on 127.0.0.1.
func regPort(t testing.TB, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// testAgent starts a single in-process agent whose certificate allows the
// given service patterns. dir is its data dir (reused across restarts).
func testAgent(t testing.TB, dir string, root ed25519.PrivateKey, node ed25519.PrivateKey, services []string) *Agent {
	t.Helper()
	a, err := startTestAgent(t, dir, root, node, services, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// startTestAgent starts an agent named t1 on 127.0.0.1 with a node
// certificate from root valid for a day; setup, when not nil, runs between
// New and Start (to set a test clock, say).
func startTestAgent(t testing.TB, dir string, root, node ed25519.PrivateKey, services []string, setup func(*Agent)) (*Agent, error) {
	t.Helper()
	now := time.Now()
	chain, err := identity.Issue(root, nil, node.Public().(ed25519.PublicKey), "t1",
		identity.Constraints{Services: services, KVPrefixes: []string{"*"}}, now.Add(-time.Minute), now.Add(24*time.Hour), 1)
	if err != nil {
		return nil, err
	}
	cb, err := chain.Marshal()
	if err != nil {
		return nil, err
	}
	a, err := New(Config{
		NodeName: "t1", DataDir: dir, BindAddr: netip.MustParseAddr("127.0.0.1"),
		SerfPort: regPort(t, "tcp"), PeerPort: regPort(t, "udp"), HTTPPort: regPort(t, "tcp"), DNSPort: -1,
		TrustRoots: []ed25519.PublicKey{root.Public().(ed25519.PublicKey)}, NodeKey: node, NodeChain: cb,
		FastGossip: true, Logger: discardLogger(),
	})
	if err != nil {
		return nil, err
	}
	if setup != nil {
		setup(a)
	}
	if err := a.Start(context.Background()); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

func newKeys(t testing.TB) (root, node ed25519.PrivateKey) {
	t.Helper()
	var err error
	if root, err = identity.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	if node, err = identity.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	return root, node
}

// eventually polls cond every 20 ms for up to 15 s.
func eventually(t testing.TB, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func replicaCheck(a *Agent, id string) (crdt.Check, bool) {
	for _, c := range a.replica.Checks(crdt.CheckFilter{Origin: a.id}) {
		if c.Check.ID == id {
			return c.Check, true
		}
	}
	return crdt.Check{}, false
}

func TestLocalRegistry(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an agent")
	}
	dir := t.TempDir()
	root, node := newKeys(t)
	a := testAgent(t, dir, root, node, []string{"web*"})
	ctx := context.Background()

	// Outside the certificate's patterns: 403 before anything is written.
	err := a.RegisterService(ctx, ServiceDefinition{Name: "db"}, false)
	if he, ok := err.(*httpError); !ok || he.code != http.StatusForbidden || !strings.Contains(he.msg, "does not allow") {
		t.Fatalf("db registration: %v", err)
	}

	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer hs.Close()
	err = a.RegisterService(ctx, ServiceDefinition{Name: "web", Port: 80, Checks: []CheckDefinition{
		{ID: "ttl", TTL: Duration(time.Hour)},
		{ID: "http", HTTP: hs.URL, Interval: Duration(time.Second)},
	}}, false)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		if c, ok := replicaCheck(a, "http"); !ok || c.Status != crdt.StatusPassing || c.ServiceName != "web" {
			return fmt.Errorf("http check in the replica: %+v", c)
		}
		return nil
	})

	// Output-only changes are rate-limited; status changes are not.
	old := checkOutputInterval
	checkOutputInterval = time.Hour
	defer func() { checkOutputInterval = old }()
	if err := a.UpdateTTLCheck(ctx, "ttl", crdt.StatusPassing, "one"); err != nil {
		t.Fatal(err)
	}
	if err := a.UpdateTTLCheck(ctx, "ttl", crdt.StatusPassing, "two"); err != nil {
		t.Fatal(err)
	}
	if c, _ := replicaCheck(a, "ttl"); c.Output != "one" {
		t.Fatalf("output-only change written at once: %q", c.Output)
	}
	if got := a.localChecks()["ttl"].Output; got != "two" {
		t.Fatalf("local view: %q", got)
	}
	if err := a.UpdateTTLCheck(ctx, "ttl", crdt.StatusWarning, "three"); err != nil {
		t.Fatal(err)
	}
	if c, _ := replicaCheck(a, "ttl"); c.Status != crdt.StatusWarning || c.Output != "three" {
		t.Fatalf("status change not written: %+v", c)
	}
	if err := a.UpdateTTLCheck(ctx, "http", crdt.StatusPassing, ""); err == nil {
		t.Fatal("TTL update of an HTTP check accepted")
	}

	// Restart: the definitions come back and the HTTP runner runs again.
	a.Close()
	hs.Close()
	a = testAgent(t, dir, root, node, []string{"web*"})
	defer a.Close()
	if _, ok := a.localServices()["web"]; !ok {
		t.Fatal("service lost across a restart")
	}
	eventually(t, func() error {
		if c, ok := replicaCheck(a, "http"); !ok || c.Status != crdt.StatusCritical {
			return fmt.Errorf("restarted HTTP runner did not see the server gone: %+v", c)
		}
		return nil
	})
	if c, _ := replicaCheck(a, "ttl"); c.Status != crdt.StatusWarning {
		t.Fatalf("TTL status not kept across a restart: %+v", c)
	}

	// Maintenance.
	if err := a.SetServiceMaintenance(ctx, "web", true, ""); err != nil {
		t.Fatal(err)
	}
	if c, ok := replicaCheck(a, "_service_maintenance:web"); !ok || c.Status != crdt.StatusCritical || c.Type != "maintenance" {
		t.Fatalf("maintenance check: %+v", c)
	}
	if err := a.SetServiceMaintenance(ctx, "web", false, ""); err != nil {
		t.Fatal(err)
	}

	// DeregisterCriticalServiceAfter reaps a service whose check stays critical.
	err = a.RegisterService(ctx, ServiceDefinition{Name: "web-tmp", Checks: []CheckDefinition{
		{TTL: Duration(time.Hour), DeregisterCriticalServiceAfter: Duration(time.Millisecond)},
	}}, false)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		if _, ok := a.localServices()["web-tmp"]; ok {
			return fmt.Errorf("critical service not reaped")
		}
		return nil
	})

	// Reload replaces config services and keeps API ones.
	if err := a.ReloadServices([]ServiceDefinition{{Name: "web-cfg", Port: 1}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.ReloadServices([]ServiceDefinition{{Name: "web-cfg2", Port: 1}}, nil); err != nil {
		t.Fatal(err)
	}
	svcs := a.localServices()
	if _, ok := svcs["web-cfg"]; ok {
		t.Fatal("removed config service still registered")
	}
	if _, ok := svcs["web-cfg2"]; !ok {
		t.Fatal("config service missing")
	}
	if _, ok := svcs["web"]; !ok {
		t.Fatal("API service dropped by a reload")
	}
	if err := a.ReloadServices([]ServiceDefinition{{Name: "db"}}, nil); err == nil {
		t.Fatal("reload with a forbidden service accepted")
	}
	if _, ok := a.localServices()["web-cfg2"]; !ok {
		t.Fatal("failed reload changed the running set")
	}
	if err := a.DeregisterService(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, ok := replicaCheck(a, "http"); ok {
		t.Fatal("check of a deregistered service kept")
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeGRPCHealth answers grpc.health.v1.Health/Check over cleartext HTTP/2
// with the status configured per service name.
func fakeGRPCHealth(t testing.TB, statuses map[string]uint64) string {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != grpcHealthPath || r.ProtoMajor != 2 {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		b, _ := io.ReadAll(r.Body)
		service := ""
		if len(b) > 7 {
			service = string(b[7:])
		}
		st, ok := statuses[service]
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
		if !ok {
			w.Header().Set("Grpc-Status", "5")
			w.Header().Set("Grpc-Message", "unknown service")
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusOK)
		w.Write([]byte{0, 0, 0, 0, 2, 0x08, byte(st)})
		w.Header().Set("Grpc-Status", "0")
	})
	srv := httptest.NewUnstartedServer(h)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestGRPCProbe(t *testing.T) {
	addr := fakeGRPCHealth(t, map[string]uint64{"": 1, "up": 1, "down": 2})
	tests := []struct {
		target string
		status string
		output string
	}{
		{addr, crdt.StatusPassing, "success"},
		{addr + "/up", crdt.StatusPassing, "success"},
		{addr + "/down", crdt.StatusCritical, "NOT_SERVING"},
		{addr + "/nope", crdt.StatusCritical, "code = 5"},
		{"127.0.0.1:1", crdt.StatusCritical, "refused"},
	}
	for _, tt := range tests {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res := grpcProbe(CheckDefinition{GRPC: tt.target})(ctx)
		cancel()
		if res.status != tt.status || !strings.Contains(res.output, tt.output) {
			t.Errorf("%s: %s %q, want %s containing %q", tt.target, res.status, res.output, tt.status, tt.output)
		}
	}
}

func FuzzGRPCHealthStatus(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 2, 0x08, 1})
	f.Add([]byte{0, 0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 0, 9, 0x12, 2, 'a', 'b', 0x08, 2, 0x1d, 1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		grpcHealthStatus(b)
	})
}
