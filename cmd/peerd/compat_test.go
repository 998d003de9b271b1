package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/hashicorp/consul/api/watch"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/identity"
	"github.com/peerd/peerd/peer"
)

// The compatibility suite drives real peerd processes through HashiCorp's
// own Go client (github.com/hashicorp/consul/api) and raw HTTP, the way
// existing Consul clients talk to an agent.

const compatToken = "s3cret-token"

func consulClient(t testing.TB, p *agentProc, token string) *consul.Client {
	t.Helper()
	c, err := consul.NewClient(&consul.Config{Address: p.ip + ":8500", Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// healthyServer is a local HTTP endpoint for HTTP checks.
func healthyServer(t testing.TB) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestConsulCompatibility(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	m := newMesh(t)
	// The fixture's helpers (waitHTTP, get, put) send n2's token; n1
	// requires none and ignores it.
	saved := httpClient.Transport
	httpClient.Transport = tokenTransport{token: compatToken}
	t.Cleanup(func() { httpClient.Transport = saved })
	n1 := m.start("n1", agentOpts{})

	// n2 reads a config file with a service definition and an API token.
	cfgDir := filepath.Join(m.dir, "n2-config")
	os.MkdirAll(cfgDir, 0o700)
	writeCfg(t, filepath.Join(cfgDir, "agent.hcl"), fmt.Sprintf(`
http_token = %q
service {
  name = "api"
  port = 9090
  tags = ["v1"]
  check {
    ttl = "30s"
    status = "passing"
  }
}
`, compatToken))
	n2 := m.start("n2", agentOpts{join: []string{"n1"}, extra: []string{"-config-dir", cfgDir}})
	expectMemberStatus(t, n1, "n2", memberAlive)

	c1 := consulClient(t, n1, "")
	c2 := consulClient(t, n2, compatToken)
	hs := healthyServer(t)

	t.Run("register with TTL and HTTP checks", func(t *testing.T) {
		err := c1.Agent().ServiceRegister(&consul.AgentServiceRegistration{
			ID: "web-1", Name: "web", Port: 8080, Tags: []string{"blue", "v2"}, Meta: map[string]string{"version": "2"},
			Checks: consul.AgentServiceChecks{
				{CheckID: "web-ttl", TTL: "30s"},
				{CheckID: "web-http", HTTP: hs.URL, Interval: "1s", Timeout: "1s"},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := c1.Agent().UpdateTTL("web-ttl", "all good", consul.HealthPassing); err != nil {
			t.Fatal(err)
		}
		err = c2.Agent().ServiceRegister(&consul.AgentServiceRegistration{
			ID: "web-2", Name: "web", Port: 8081, Tags: []string{"green"},
			Check: &consul.AgentServiceCheck{TTL: "30s", Status: consul.HealthCritical},
		})
		if err != nil {
			t.Fatal(err)
		}
		svcs, err := c1.Agent().Services()
		if err != nil || svcs["web-1"] == nil || svcs["web-1"].Service != "web" || svcs["web-1"].Port != 8080 {
			t.Fatalf("agent services: %v %+v", err, svcs)
		}
		checks, err := c1.Agent().Checks()
		if err != nil || checks["web-ttl"] == nil || checks["web-ttl"].Status != consul.HealthPassing || checks["web-ttl"].Output != "all good" {
			t.Fatalf("agent checks: %v %+v", err, checks["web-ttl"])
		}
	})

	t.Run("health service passing and tags", func(t *testing.T) {
		waitFor(t, 30*time.Second, func() error {
			all, _, err := c1.Health().Service("web", "", false, nil)
			if err != nil {
				return err
			}
			if len(all) != 2 {
				return fmt.Errorf("want 2 instances of web, got %d", len(all))
			}
			passing, _, err := c1.Health().Service("web", "", true, nil)
			if err != nil {
				return err
			}
			if len(passing) != 1 || passing[0].Service.ID != "web-1" {
				return fmt.Errorf("passing instances: %d", len(passing))
			}
			e := passing[0]
			if e.Node.Node != "n1" || e.Service.Service != "web" || len(e.Checks) != 3 || e.Checks[0].CheckID != "serfHealth" {
				return fmt.Errorf("entry shape: %+v %+v", e.Node, e.Checks)
			}
			tagged, _, err := c1.Health().ServiceMultipleTags("web", []string{"blue", "v2"}, false, nil)
			if err != nil || len(tagged) != 1 {
				return fmt.Errorf("tags blue+v2: %v %d", err, len(tagged))
			}
			none, _, err := c1.Health().ServiceMultipleTags("web", []string{"blue", "green"}, false, nil)
			if err != nil || len(none) != 0 {
				return fmt.Errorf("tags blue+green: %v %d", err, len(none))
			}
			filtered, _, err := c1.Health().Service("web", "", false, &consul.QueryOptions{Filter: `Service.Meta.version == "2"`})
			if err != nil || len(filtered) != 1 {
				return fmt.Errorf("filter: %v %d", err, len(filtered))
			}
			return nil
		})
	})

	t.Run("catalog", func(t *testing.T) {
		waitFor(t, 30*time.Second, func() error {
			svcs, meta, err := c2.Catalog().Services(nil)
			if err != nil {
				return err
			}
			if meta.LastIndex == 0 {
				return fmt.Errorf("no X-Consul-Index")
			}
			if _, ok := svcs["web"]; !ok {
				return fmt.Errorf("catalog services: %v", svcs)
			}
			if _, ok := svcs["api"]; !ok {
				return fmt.Errorf("config-file service missing: %v", svcs)
			}
			insts, _, err := c2.Catalog().Service("web", "", nil)
			if err != nil || len(insts) != 2 {
				return fmt.Errorf("catalog service web: %v %d", err, len(insts))
			}
			sort.Slice(insts, func(i, j int) bool { return insts[i].ServiceID < insts[j].ServiceID })
			if insts[0].Node != "n1" || insts[0].ServiceName != "web" || insts[0].ServicePort != 8080 || insts[0].Datacenter != "dc1" {
				return fmt.Errorf("catalog service shape: %+v", insts[0])
			}
			nodes, _, err := c2.Catalog().Nodes(nil)
			if err != nil || len(nodes) != 2 {
				return fmt.Errorf("catalog nodes: %v %d", err, len(nodes))
			}
			node, _, err := c2.Catalog().Node("n1", nil)
			if err != nil || node == nil || node.Services["web-1"] == nil {
				return fmt.Errorf("catalog node: %v %+v", err, node)
			}
			dcs, err := c2.Catalog().Datacenters()
			if err != nil || len(dcs) != 1 {
				return fmt.Errorf("datacenters: %v %v", err, dcs)
			}
			state, _, err := c2.Health().State("any", nil)
			if err != nil || len(state) < 5 { // 2 serfHealth + web-ttl, web-http, web-2's, api's
				return fmt.Errorf("health state any: %v %d", err, len(state))
			}
			crit, _, err := c2.Health().State(consul.HealthCritical, nil)
			if err != nil || len(crit) != 1 || crit[0].ServiceID != "web-2" {
				return fmt.Errorf("health state critical: %v %+v", err, crit)
			}
			webChecks, _, err := c2.Health().Checks("web", nil)
			if err != nil || len(webChecks) != 3 {
				return fmt.Errorf("health checks web: %v %d", err, len(webChecks))
			}
			nodeChecks, _, err := c2.Health().Node("n1", nil)
			if err != nil || len(nodeChecks) != 3 || nodeChecks[0].CheckID != "serfHealth" {
				return fmt.Errorf("health node n1: %v %+v", err, nodeChecks)
			}
			filtered, err := c1.Agent().ServicesWithFilter(`Tags contains "blue"`)
			if err != nil || len(filtered) != 1 {
				return fmt.Errorf("agent services filter: %v %d", err, len(filtered))
			}
			if _, _, err := c2.Catalog().Services(&consul.QueryOptions{Datacenter: "dc9"}); err == nil || !strings.Contains(err.Error(), "No path to datacenter") {
				return fmt.Errorf("other datacenter: %v", err)
			}
			return nil
		})
	})

	t.Run("kv", func(t *testing.T) {
		kv := c1.KV()
		for _, k := range []string{"app/a", "app/b", "app/sub/c"} {
			if _, err := kv.Put(&consul.KVPair{Key: k, Value: []byte("v-" + k), Flags: 7}, nil); err != nil {
				t.Fatal(err)
			}
		}
		p, _, err := kv.Get("app/a", nil)
		if err != nil || p == nil || string(p.Value) != "v-app/a" || p.Flags != 7 {
			t.Fatalf("get: %v %+v", err, p)
		}
		list, _, err := kv.List("app/", nil)
		if err != nil || len(list) != 3 {
			t.Fatalf("list: %v %d", err, len(list))
		}
		keys, _, err := kv.Keys("app/", "/", nil)
		if err != nil || strings.Join(keys, ",") != "app/a,app/b,app/sub/" {
			t.Fatalf("keys: %v %v", err, keys)
		}
		ok, _, err := kv.CAS(&consul.KVPair{Key: "lock", Value: []byte("1"), ModifyIndex: 0}, nil)
		if err != nil || !ok {
			t.Fatalf("first cas=0: %v %v", err, ok)
		}
		ok, _, err = kv.CAS(&consul.KVPair{Key: "lock", Value: []byte("2"), ModifyIndex: 0}, nil)
		if err != nil || ok {
			t.Fatalf("second cas=0: %v %v", err, ok)
		}
		if _, err := kv.DeleteTree("app/", nil); err != nil {
			t.Fatal(err)
		}
		list, _, err = kv.List("app/", nil)
		if err != nil || len(list) != 0 {
			t.Fatalf("after delete tree: %v %d", err, len(list))
		}
		missing, meta, err := kv.Get("app/a", nil)
		if err != nil || missing != nil || meta.LastIndex == 0 {
			t.Fatalf("get of a deleted key: %v %+v %+v", err, missing, meta)
		}
	})

	t.Run("blocking get woken by a put on another peer", func(t *testing.T) {
		if _, err := c1.KV().Put(&consul.KVPair{Key: "wake/me", Value: []byte("0")}, nil); err != nil {
			t.Fatal(err)
		}
		var idx uint64
		waitFor(t, 30*time.Second, func() error {
			p, meta, err := c2.KV().Get("wake/me", nil)
			if err != nil || p == nil {
				return fmt.Errorf("not replicated yet: %v", err)
			}
			idx = meta.LastIndex
			return nil
		})
		type res struct {
			p   *consul.KVPair
			err error
		}
		done := make(chan res, 1)
		go func() {
			p, _, err := c2.KV().Get("wake/me", &consul.QueryOptions{WaitIndex: idx, WaitTime: time.Minute})
			done <- res{p, err}
		}()
		select {
		case r := <-done:
			t.Fatalf("blocking query returned before any change: %+v %v", r.p, r.err)
		case <-time.After(300 * time.Millisecond):
		}
		if _, err := c1.KV().Put(&consul.KVPair{Key: "wake/me", Value: []byte("1")}, nil); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-done:
			if r.err != nil || r.p == nil || string(r.p.Value) != "1" {
				t.Fatalf("woken with %+v %v", r.p, r.err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("blocking query on n2 not woken by a put on n1")
		}
	})

	t.Run("watch plans", func(t *testing.T) {
		plan, err := watch.Parse(map[string]any{"type": "key", "key": "watched"})
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var seen []string
		plan.Handler = func(_ uint64, raw any) {
			if p, ok := raw.(*consul.KVPair); ok && p != nil {
				mu.Lock()
				seen = append(seen, string(p.Value))
				mu.Unlock()
			}
		}
		errc := make(chan error, 1)
		go func() { errc <- plan.RunWithConfig(n1.ip+":8500", &consul.Config{}) }()
		defer func() { plan.Stop(); <-errc }()
		svcPlan, err := watch.Parse(map[string]any{"type": "service", "service": "web", "passingonly": true, "token": compatToken})
		if err != nil {
			t.Fatal(err)
		}
		var svcCalls int
		svcPlan.Handler = func(_ uint64, raw any) {
			if es, ok := raw.([]*consul.ServiceEntry); ok && len(es) > 0 {
				mu.Lock()
				svcCalls++
				mu.Unlock()
			}
		}
		errc2 := make(chan error, 1)
		go func() { errc2 <- svcPlan.RunWithConfig(n2.ip+":8500", &consul.Config{Token: compatToken}) }()
		defer func() { svcPlan.Stop(); <-errc2 }()
		for i := 1; i <= 2; i++ {
			time.Sleep(200 * time.Millisecond) // let the plan block between writes
			if _, err := c1.KV().Put(&consul.KVPair{Key: "watched", Value: []byte(fmt.Sprint(i))}, nil); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 30*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(seen) == 0 || seen[len(seen)-1] != "2" || svcCalls == 0 {
				return fmt.Errorf("key watch saw %v, service watch called %d times", seen, svcCalls)
			}
			return nil
		})
	})

	t.Run("intentions", func(t *testing.T) {
		// Unsigned writes are refused with an explanation.
		_, err := c1.Connect().IntentionUpsert(&consul.Intention{SourceName: "web", DestinationName: "db", Action: consul.IntentionActionAllow}, nil)
		if err == nil || !strings.Contains(err.Error(), "sign") {
			t.Fatalf("unsigned intention write: %v", err)
		}
		// Signed through the CLI with the root key.
		out := m.cli("intention", "create", "-http-addr", n1.ip+":8500", "-deny", "-from", "web", "-to", "db", "-sign-key", m.root)
		if !strings.Contains(out, "Created: web => db (deny)") {
			t.Fatalf("intention create: %s", out)
		}
		// Signed by hand and sent through raw HTTP as {"Signed": ...}.
		key, err := identity.ReadPrivateKeyFile(m.root)
		if err != nil {
			t.Fatal(err)
		}
		signed, err := peer.SignIntention(crdt.Intention{ID: peer.NewIntentionID(), SourceName: "*", DestinationName: "db",
			Action: crdt.ActionAllow, Version: uint64(time.Now().UnixNano())}, key, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(map[string]string{"Signed": base64.StdEncoding.EncodeToString(signed)})
		if b, err := n1.put("/v1/connect/intentions/exact?source=*&destination=db", string(body)); err != nil {
			t.Fatalf("signed put: %v %s", err, b)
		}
		waitFor(t, 30*time.Second, func() error {
			list, _, err := c2.Connect().Intentions(nil)
			if err != nil || len(list) != 2 {
				return fmt.Errorf("list on n2: %v %d", err, len(list))
			}
			if list[0].SourceName != "web" || list[0].Precedence < list[1].Precedence {
				return fmt.Errorf("order: %+v", list[0])
			}
			in, _, err := c2.Connect().IntentionGetExact("web", "db", nil)
			if err != nil || in == nil || in.Action != consul.IntentionActionDeny {
				return fmt.Errorf("get exact: %v %+v", err, in)
			}
			//lint:ignore SA1019 the legacy ID route is what this checks
			byID, _, err := c2.Connect().IntentionGet(in.ID, nil)
			if err != nil || byID == nil || byID.DestinationName != "db" {
				return fmt.Errorf("get by id: %v %+v", err, byID)
			}
			allowed, _, err := c2.Connect().IntentionCheck(&consul.IntentionCheck{Source: "web", Destination: "db"}, nil)
			if err != nil || allowed {
				return fmt.Errorf("check web->db: %v %v", err, allowed)
			}
			allowed, _, err = c2.Connect().IntentionCheck(&consul.IntentionCheck{Source: "api", Destination: "db"}, nil)
			if err != nil || !allowed {
				return fmt.Errorf("check api->db: %v %v", err, allowed)
			}
			match, _, err := c2.Connect().IntentionMatch(&consul.IntentionMatch{By: consul.IntentionMatchDestination, Names: []string{"db"}}, nil)
			if err != nil || len(match["db"]) != 2 {
				return fmt.Errorf("match: %v %v", err, match)
			}
			return nil
		})
		out = m.cli("intention", "delete", "-http-addr", n1.ip+":8500", "-from", "web", "-to", "db", "-sign-key", m.root)
		if !strings.Contains(out, "Intention deleted.") {
			t.Fatalf("intention delete: %s", out)
		}
		in, _, err := c1.Connect().IntentionGetExact("web", "db", nil)
		if err == nil && in != nil {
			t.Fatalf("deleted intention still readable: %+v", in)
		}
	})

	t.Run("agent self members metrics", func(t *testing.T) {
		self, err := c1.Agent().Self()
		if err != nil || self["Config"]["NodeName"] != "n1" {
			t.Fatalf("self: %v %v", err, self["Config"])
		}
		members, err := c1.Agent().Members(false)
		if err != nil || len(members) != 2 {
			t.Fatalf("members: %v %d", err, len(members))
		}
		metrics, err := c1.Agent().Metrics()
		if err != nil || len(metrics.Gauges) == 0 || metrics.Timestamp == "" {
			t.Fatalf("metrics: %v %+v", err, metrics)
		}
		prom, err := n1.get("/v1/agent/metrics?format=prometheus")
		if err != nil || !strings.Contains(string(prom), "peerd_replica_index ") {
			t.Fatalf("prometheus metrics: %v\n%s", err, prom)
		}
		coords, _, err := c1.Coordinate().Nodes(nil)
		if err != nil || len(coords) == 0 || coords[0].Coord == nil {
			t.Fatalf("coordinates: %v %+v", err, coords)
		}
		if _, _, err := c1.ACL().TokenReadSelf(nil); err == nil || !strings.Contains(err.Error(), "ACL support disabled") {
			t.Fatalf("acl token self: %v", err)
		}
		leader, err := c1.Status().Leader()
		if err != nil || leader == "" {
			t.Fatalf("leader: %v %q", err, leader)
		}
	})

	t.Run("maintenance and deregister", func(t *testing.T) {
		if err := c1.Agent().EnableServiceMaintenance("web-1", "deploying"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, func() error {
			passing, _, err := c2.Health().Service("web", "", true, nil)
			if err != nil || len(passing) != 0 {
				return fmt.Errorf("web-1 in maintenance still passing on n2: %v %d", err, len(passing))
			}
			return nil
		})
		if err := c1.Agent().DisableServiceMaintenance("web-1"); err != nil {
			t.Fatal(err)
		}
		if err := c1.Agent().EnableNodeMaintenance("reboot"); err != nil {
			t.Fatal(err)
		}
		checks, _ := c1.Agent().Checks()
		if c := checks["_node_maintenance"]; c == nil || c.Status != consul.HealthCritical || c.Notes != "reboot" {
			t.Fatalf("node maintenance check: %+v", c)
		}
		if err := c1.Agent().DisableNodeMaintenance(); err != nil {
			t.Fatal(err)
		}
		if err := c2.Agent().ServiceDeregister("web-2"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, func() error {
			all, _, err := c1.Health().Service("web", "", false, nil)
			if err != nil || len(all) != 1 {
				return fmt.Errorf("after deregister: %v %d", err, len(all))
			}
			return nil
		})
	})

	t.Run("sessions and txn are refused clearly", func(t *testing.T) {
		_, _, err := c1.Session().Create(&consul.SessionEntry{}, nil)
		if err == nil || !strings.Contains(err.Error(), "consensus") {
			t.Fatalf("session create: %v", err)
		}
		_, _, _, err = c1.Txn().Txn(consul.TxnOps{}, nil)
		if err == nil || !strings.Contains(err.Error(), "consensus") {
			t.Fatalf("txn: %v", err)
		}
	})

	t.Run("raw http", func(t *testing.T) {
		// python-consul sends lowercase keys.
		body := `{"name": "py", "id": "py-1", "port": 7000, "tags": ["x"], "check": {"ttl": "10s", "status": "passing"}}`
		if b, err := n1.put("/v1/agent/service/register", body); err != nil {
			t.Fatalf("lowercase register: %v %s", err, b)
		}
		b, err := n1.get("/v1/agent/service/py-1")
		if err != nil || !strings.Contains(string(b), `"Service":"py"`) {
			t.Fatalf("registered lowercase service: %v %s", err, b)
		}
		// Malformed bodies are a 400 with a reason.
		resp := rawDo(t, http.MethodPut, n1.httpURL("/v1/agent/service/register"), "{nope", nil)
		if resp.code != http.StatusBadRequest || !strings.Contains(resp.body, "decode") {
			t.Fatalf("malformed body: %d %s", resp.code, resp.body)
		}
		// A token is required by n2: ?token=, X-Consul-Token, Bearer.
		if r := rawDo(t, http.MethodGet, n2.httpURL("/v1/agent/services"), "", nil); r.code != http.StatusForbidden {
			t.Fatalf("no token: %d", r.code)
		}
		if r := rawDo(t, http.MethodGet, n2.httpURL("/v1/agent/services?token="+compatToken), "", nil); r.code != http.StatusOK {
			t.Fatalf("?token=: %d %s", r.code, r.body)
		}
		if r := rawDo(t, http.MethodGet, n2.httpURL("/v1/agent/services"), "", map[string]string{"Authorization": "Bearer " + compatToken}); r.code != http.StatusOK {
			t.Fatalf("bearer: %d %s", r.code, r.body)
		}
		// "//" in KV paths survives.
		n1.kvPut("fabio//route", "x")
		if v, err := n1.kvGetRaw("fabio//route"); err != nil || v != "x" {
			t.Fatalf("// path: %v %q", err, v)
		}
		// A 404 carries X-Consul-Index.
		r := rawDo(t, http.MethodGet, n1.httpURL("/v1/kv/no/such/key"), "", nil)
		if r.code != http.StatusNotFound || r.index == "" || r.index == "0" {
			t.Fatalf("404 index: %d %q", r.code, r.index)
		}
		// wait= in Consul's forms; a bad one is a 400.
		for _, w := range []string{"1s", "1", "500ms"} {
			start := time.Now()
			r := rawDo(t, http.MethodGet, n1.httpURL("/v1/kv/fabio//route?index=999999999&wait="+w), "", nil)
			if r.code != http.StatusOK || time.Since(start) > 20*time.Second {
				t.Fatalf("wait=%s: %d after %v", w, r.code, time.Since(start))
			}
		}
		if r := rawDo(t, http.MethodGet, n1.httpURL("/v1/kv/x?index=1&wait=soon"), "", nil); r.code != http.StatusBadRequest {
			t.Fatalf("bad wait: %d", r.code)
		}
		// Catalog writes explain themselves.
		if r := rawDo(t, http.MethodPut, n1.httpURL("/v1/catalog/register"), "{}", nil); r.code != http.StatusBadRequest || !strings.Contains(r.body, "agent endpoints") {
			t.Fatalf("catalog register: %d %s", r.code, r.body)
		}
	})

	t.Run("reload and CLI", func(t *testing.T) {
		writeCfg(t, filepath.Join(cfgDir, "more.json"), `{"services": [{"Name": "extra", "Port": 1234, "Checks": [{"TCP": "`+
			listenerAddr(t)+`", "Interval": "1s"}]}]}`)
		env := []string{"CONSUL_HTTP_TOKEN=" + compatToken}
		out := m.cliEnv(env, "reload", "-http-addr", n2.ip+":8500")
		if !strings.Contains(out, "reload triggered") {
			t.Fatalf("reload: %s", out)
		}
		waitFor(t, 30*time.Second, func() error {
			es, _, err := c1.Health().Service("extra", "", true, nil)
			if err != nil || len(es) != 1 {
				return fmt.Errorf("reloaded service with a passing TCP check: %v %d", err, len(es))
			}
			return nil
		})
		// A bad file is refused with file and line; the running set stays.
		writeCfg(t, filepath.Join(cfgDir, "zbad.hcl"), "service {\n  name = \"bad\"\n  check {\n    interval = \"nope\"\n  }\n}\n")
		out, err := m.cliErrEnv(env, "reload", "-http-addr", n2.ip+":8500")
		if err == nil || !strings.Contains(out, "zbad.hcl") || !strings.Contains(out, "line 4") {
			t.Fatalf("bad reload: %v %s", err, out)
		}
		os.Remove(filepath.Join(cfgDir, "zbad.hcl"))
		out = m.cli("services", "register", "-http-addr", n1.ip+":8500", "-name", "cli-svc", "-port", "4444", "-tag", "t1")
		if !strings.Contains(out, "Registered service: cli-svc") {
			t.Fatalf("services register: %s", out)
		}
		waitFor(t, 30*time.Second, func() error {
			out, err := m.cliErr("catalog", "services", "-http-addr", n1.ip+":8500")
			if err != nil || !strings.Contains(out, "cli-svc\n") || !strings.Contains(out, "extra\n") {
				return fmt.Errorf("catalog services: %v %s", err, out)
			}
			return nil
		})
		out = m.cli("services", "deregister", "-http-addr", n1.ip+":8500", "cli-svc")
		if !strings.Contains(out, "Deregistered service: cli-svc") {
			t.Fatalf("services deregister: %s", out)
		}
		m.cli("kv", "put", "-http-addr", n1.ip+":8500", "exp/one", "1")
		// @FILE reads the file, \@ is a literal @ (consul kv put).
		vf := filepath.Join(t.TempDir(), "value.txt")
		os.WriteFile(vf, []byte("from a file"), 0o600)
		m.cli("kv", "put", "-http-addr", n1.ip+":8500", "file/v", "@"+vf)
		m.cli("kv", "put", "-http-addr", n1.ip+":8500", "file/at", `\@home`)
		if v, err := n1.kvGetRaw("file/v"); err != nil || v != "from a file" {
			t.Fatalf("kv put @FILE: %v %q", err, v)
		}
		if v, err := n1.kvGetRaw("file/at"); err != nil || v != "@home" {
			t.Fatalf(`kv put \@: %v %q`, err, v)
		}
		exp := m.cli("kv", "export", "-http-addr", n1.ip+":8500", "exp/")
		if !strings.Contains(exp, `"key": "exp/one"`) {
			t.Fatalf("kv export: %s", exp)
		}
		out = m.cli("kv", "import", "-http-addr", n1.ip+":8500", "-prefix", "copy/", exp)
		if v, err := n1.kvGetRaw("copy/exp/one"); err != nil || v != "1" {
			t.Fatalf("kv import: %v %q %s", err, v, out)
		}
		out = m.cli("watch", "-http-addr", n1.ip+":8500", "-type", "key", "-key", "exp/one", "-count", "1")
		if !strings.HasPrefix(out, "{") || !strings.Contains(out, `"Key": "exp/one"`) {
			t.Fatalf("watch -type key prints the object, as consul: %s", out)
		}
	})

	t.Run("blocking health query woken by a node failure", func(t *testing.T) {
		es, meta, err := c1.Health().Service("api", "", true, nil)
		if err != nil || len(es) != 1 {
			t.Fatalf("api before the failure: %v %d", err, len(es))
		}
		type res struct {
			es   []*consul.ServiceEntry
			meta *consul.QueryMeta
			err  error
		}
		done := make(chan res, 1)
		go func() {
			es, m, err := c1.Health().Service("api", "", true, &consul.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Minute})
			done <- res{es, m, err}
		}()
		n2.kill()
		select {
		case r := <-done:
			if r.err != nil || len(r.es) != 0 || r.meta.LastIndex <= meta.LastIndex {
				t.Fatalf("woken with %d passing entries, index %d -> %v (%v)", len(r.es), meta.LastIndex, r.meta, r.err)
			}
		case <-time.After(45 * time.Second):
			t.Fatal("blocking health query not woken by n2 failing")
		}
		all, _, err := c1.Health().Service("api", "", false, nil)
		if err != nil || len(all) != 1 || all[0].Checks[0].CheckID != "serfHealth" || all[0].Checks[0].Status != consul.HealthCritical {
			t.Fatalf("failed node's service should be listed with serfHealth critical: %v %+v", err, all)
		}
	})
}

func writeCfg(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// listenerAddr is a TCP listener on 127.0.0.1 for TCP checks.
func listenerAddr(t testing.TB) string {
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
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// rawClient sends exactly what the test sets (no token).
var rawClient = &http.Client{Timeout: 30 * time.Second}

// tokenTransport adds an X-Consul-Token header to requests without one.
type tokenTransport struct{ token string }

func (tt tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("X-Consul-Token") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("X-Consul-Token", tt.token)
	}
	return http.DefaultTransport.RoundTrip(r)
}

type rawResp struct {
	code  int
	body  string
	index string
}

func rawDo(t testing.TB, method, url, body string, hdr map[string]string) rawResp {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := rawClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return rawResp{code: resp.StatusCode, body: string(bytes.TrimSpace(b)), index: resp.Header.Get("X-Consul-Index")}
}

func (m *meshFixture) cliEnv(env []string, args ...string) string {
	m.t.Helper()
	out, err := m.cliErrEnv(env, args...)
	if err != nil {
		m.t.Fatalf("peerd %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (m *meshFixture) cliErrEnv(env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, m.bin, args...)
	cmd.Env = append(append(os.Environ(), "CONSUL_HTTP_ADDR=", "PEERD_HTTP_ADDR="), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
