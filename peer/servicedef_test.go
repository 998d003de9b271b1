package peer

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestParseServiceFile(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		scripts bool
		check   func(t *testing.T, f ServiceFile)
		wantErr string // substring; empty means success
	}{
		{
			name: "hcl service block with checks and sidecar upstreams",
			file: `node_name = "ignored-here"
service {
  name = "web"
  id = "web-1"
  port = 8080
  tags = ["a", "b"]
  meta { version = "2" }
  check {
    http = "http://127.0.0.1:8080/health"
    interval = "10s"
    timeout = 2000000000
    header { X-Probe = ["1"] }
  }
  check {
    ttl = "30s"
  }
  connect {
    sidecar_service {
      proxy {
        upstreams = [{ destination_name = "db", local_bind_port = 9191 }]
      }
    }
  }
}
`,
			check: func(t *testing.T, f ServiceFile) {
				if len(f.Services) != 1 {
					t.Fatalf("services: %d", len(f.Services))
				}
				s := f.Services[0]
				if s.ID != "web-1" || s.Port != 8080 || s.Meta["version"] != "2" || len(s.Tags) != 2 {
					t.Fatalf("service: %+v", s)
				}
				if len(s.Checks) != 2 || s.Checks[0].ID != "service:web-1:1" || s.Checks[1].ID != "service:web-1:2" {
					t.Fatalf("checks: %+v", s.Checks)
				}
				if time.Duration(s.Checks[0].Timeout) != 2*time.Second || s.Checks[0].Header["X-Probe"][0] != "1" {
					t.Fatalf("http check: %+v", s.Checks[0])
				}
				sc := s.Connect.SidecarService
				if sc == nil || sc.Name != "web-sidecar-proxy" || sc.Kind != "connect-proxy" || sc.Proxy.DestinationServiceName != "web" ||
					len(sc.Proxy.Upstreams) != 1 || sc.Proxy.Upstreams[0].LocalBindPort != 9191 || sc.Proxy.Upstreams[0].DestinationName != "db" {
					t.Fatalf("sidecar: %+v %+v", sc, sc.Proxy)
				}
			},
		},
		{
			name: "json services list in CamelCase",
			file: `{"services": [
  {"Name": "a", "Port": 1, "Check": {"TCP": "127.0.0.1:1", "Interval": "5s", "DeregisterCriticalServiceAfter": "1m"}},
  {"Name": "b", "Port": 2, "EnableTagOverride": true, "Weights": {"Passing": 3, "Warning": 1}}
]}`,
			check: func(t *testing.T, f ServiceFile) {
				if len(f.Services) != 2 || f.Services[0].Checks[0].ID != "service:a" ||
					time.Duration(f.Services[0].Checks[0].DeregisterCriticalServiceAfter) != time.Minute {
					t.Fatalf("%+v", f.Services)
				}
				if !f.Services[1].EnableTagOverride || f.Services[1].Weights.Passing != 3 {
					t.Fatalf("%+v", f.Services[1])
				}
			},
		},
		{
			name: "snake_case keys and standalone checks",
			file: `check {
  id = "disk"
  name = "Disk"
  args = ["/bin/true"]
  interval = "30s"
  success_before_passing = 2
  failures_before_critical = 3
}
checks = [{ name = "mem", ttl = "1m" }]
`,
			scripts: true,
			check: func(t *testing.T, f ServiceFile) {
				if len(f.Checks) != 2 || f.Checks[0].ID != "disk" || f.Checks[0].SuccessBeforePassing != 2 ||
					f.Checks[0].FailuresBeforeWarning != 3 || f.Checks[1].ID != "mem" {
					t.Fatalf("%+v", f.Checks)
				}
			},
		},
		{
			name: "interval below one second is raised",
			file: `service { name = "x" check { tcp = "127.0.0.1:1" interval = "10ms" } }`,
			check: func(t *testing.T, f ServiceFile) {
				if time.Duration(f.Services[0].Checks[0].Interval) != time.Second {
					t.Fatalf("%v", f.Services[0].Checks[0].Interval)
				}
			},
		},
		{
			name: "bracketed IPv4 in an HTTP check URL is accepted (fabio registers its check so)",
			file: `service { name = "x" check { http = "http://[127.0.0.1]:9998/health" interval = "1s" } }`,
			check: func(t *testing.T, f ServiceFile) {
				if got := f.Services[0].Checks[0].HTTP; got != "http://127.0.0.1:9998/health" {
					t.Fatalf("HTTP = %q", got)
				}
			},
		},
		{name: "unknown key", file: "service {\n  name = \"x\"\n  prot = 1\n}\n", wantErr: `t.hcl: line 3`},
		{name: "bad duration", file: "service {\n  name = \"x\"\n  check {\n    ttl = \"soon\"\n  }\n}\n", wantErr: "line 4"},
		{name: "missing name", file: "\n\nservice {\n  port = 1\n}\n", wantErr: "t.hcl:3: service \"\": missing service name"},
		{name: "script checks disabled", file: "service {\n name = \"x\"\n check {\n args = [\"/bin/true\"]\n interval = \"1s\"\n }\n}", wantErr: "enable_script_checks"},
		{name: "check without type", file: "service {\n name = \"x\"\n check { interval = \"1s\" }\n}", wantErr: "needs one of"},
		{name: "two types", file: `service { name = "x" check { ttl = "1s" tcp = "a:1" } }`, wantErr: "only one of"},
		{name: "bad http url", file: `service { name = "x" check { http = "ftp://x" interval = "1s" } }`, wantErr: "not an http(s) URL"},
		{name: "bad status", file: `service { name = "x" check { ttl = "1s" status = "meh" } }`, wantErr: "invalid initial status"},
		{name: "syntax error", file: "service {\n name = \n", wantErr: "t.hcl"},
		{name: "grpc bad address", file: `service { name = "x" check { grpc = "nohost/svc" interval = "1s" } }`, wantErr: "gRPC check address"},
		{name: "port out of range", file: `service { name = "x" port = 70000 }`, wantErr: "out of range"},
		{name: "upstream without name", file: sidecarWith(`{ local_bind_port = 9191 }`), wantErr: "destination_name is required"},
		{name: "upstream without port", file: sidecarWith(`{ destination_name = "db" }`), wantErr: "local_bind_port 0"},
		{name: "upstream bad bind address", file: sidecarWith(`{ destination_name = "db", local_bind_port = 1, local_bind_address = "localhost" }`), wantErr: "not an IP address"},
		{name: "upstream prepared query", file: sidecarWith(`{ destination_name = "q", destination_type = "prepared_query", local_bind_port = 1 }`), wantErr: "no prepared queries"},
		{name: "connect-proxy upstream checked too", file: `service { name = "p" kind = "connect-proxy" proxy { destination_service_name = "web" upstreams = [{ destination_name = "db" }] } }`, wantErr: "local_bind_port 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseServiceFile("t.hcl", []byte(tt.file), tt.scripts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, f)
		})
	}
}

func sidecarWith(upstream string) string {
	return `service {
  name = "web"
  connect { sidecar_service { proxy { upstreams = [` + upstream + `] } } }
}`
}

// TestUpstreamDatacenter: an upstream in the local datacenter (or none
// named) is accepted; another one is refused, at registration and reload.
func TestUpstreamDatacenter(t *testing.T) {
	for _, tt := range []struct{ dc, wantErr string }{
		{"", ""},
		{"dc1", ""},
		{"dc2", `datacenter "dc2": this mesh is datacenter "dc1"`},
	} {
		f, err := ParseServiceFile("t.hcl", []byte(sidecarWith(`{ destination_name = "db", local_bind_port = 9191, datacenter = "`+tt.dc+`" }`)), false)
		if err != nil {
			t.Fatal(err)
		}
		err = f.Services[0].checkDatacenter("dc1")
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("datacenter %q: %v, want %q", tt.dc, err, tt.wantErr)
		}
	}
	if testing.Short() {
		return
	}
	root, node := newKeys(t)
	a := testAgent(t, t.TempDir(), root, node, []string{"*"})
	defer a.Close()
	def := ServiceDefinition{Name: "web", Port: 1, Connect: &ConnectDefinition{SidecarService: &ServiceDefinition{
		Proxy: &ProxyDefinition{Upstreams: []UpstreamDefinition{{DestinationName: "db", LocalBindPort: 9191, Datacenter: "dc2"}}}}}}
	if err := a.RegisterService(context.Background(), def, false); err == nil || !strings.Contains(err.Error(), "dc2") {
		t.Fatalf("register with an upstream in dc2: %v", err)
	}
	if err := a.ReloadServices([]ServiceDefinition{def}, nil); err == nil || !strings.Contains(err.Error(), "dc2") {
		t.Fatalf("reload with an upstream in dc2: %v", err)
	}
	if n := len(a.localServices()); n != 0 {
		t.Fatalf("%d services registered after refusals", n)
	}
}

func TestDecodeLooseJSON(t *testing.T) {
	tests := []struct {
		name string
		body string
		want func(ServiceDefinition) bool
	}{
		{"python-consul lowercase", `{"name":"py","id":"py-1","port":7000,"tags":["x"],"check":{"ttl":"10s","status":"passing"}}`,
			func(s ServiceDefinition) bool {
				return s.Name == "py" && s.ID == "py-1" && s.Port == 7000 && len(s.Check) == 1 && time.Duration(s.Check[0].TTL) == 10*time.Second
			}},
		{"consul api CamelCase with ScriptArgs", `{"Name":"a","Checks":[{"ScriptArgs":["x"],"Interval":"1s"}]}`,
			func(s ServiceDefinition) bool { return len(s.Checks) == 1 && s.Checks[0].Args[0] == "x" }},
		{"port as string, tag as single string", `{"Name":"a","Port":"80","Tags":"one"}`,
			func(s ServiceDefinition) bool { return s.Port == 80 && len(s.Tags) == 1 && s.Tags[0] == "one" }},
		{"unknown keys ignored", `{"Name":"a","Namespace":"x","Whatever":{"deep":[1,2]}}`,
			func(s ServiceDefinition) bool { return s.Name == "a" }},
		{"meta keys kept as given", `{"Name":"a","Meta":{"Some_Key":"v"}}`,
			func(s ServiceDefinition) bool { return s.Meta["Some_Key"] == "v" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s ServiceDefinition
			if err := decodeLooseJSON([]byte(tt.body), &s); err != nil {
				t.Fatal(err)
			}
			if !tt.want(s) {
				t.Fatalf("decoded %+v", s)
			}
		})
	}
	for _, bad := range []string{``, `{`, `{"Port": 1.5}`, `{"Port": "x"}`, `{"Check": {"TTL": "x"}}`, `{"a":1} {"b":2}`} {
		var s ServiceDefinition
		if err := decodeLooseJSON([]byte(bad), &s); err == nil {
			t.Errorf("%q decoded without error", bad)
		}
	}
}

func FuzzServiceFile(f *testing.F) {
	f.Add([]byte(`service { name = "web" port = 80 check { ttl = "10s" } }`))
	f.Add([]byte(`{"services":[{"Name":"a","Checks":[{"HTTP":"http://x","Interval":"1s"}]}]}`))
	f.Add([]byte("check {\n id = \"c\"\n name = \"c\"\n tcp = \"a:1\"\n interval = 5\n}"))
	f.Add([]byte(`service { name = "x" connect { sidecar_service { proxy { upstreams = [{destination_name = "db"}] } } } }`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseServiceFile("fuzz.hcl", b, true)
	})
}

func FuzzAPIBody(f *testing.F) {
	f.Add([]byte(`{"name":"py","port":1,"check":{"ttl":"10s"}}`))
	f.Add([]byte(`{"Name":"a","Checks":[{"ScriptArgs":["x"],"Interval":1000000000}],"Meta":{"k":"v"}}`))
	f.Add([]byte(`{"Signed":"AAAA","Action":"allow","Permissions":[{"Action":"deny","HTTP":{"PathPrefix":"/"}}]}`))
	f.Add([]byte(`{"Status":"passing","Output":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s ServiceDefinition
		if decodeLooseJSON(b, &s) == nil {
			s.validate(true)
		}
		var c CheckDefinition
		if decodeLooseJSON(b, &c) == nil {
			validateNodeCheck(&c, false)
		}
		var in intentionBody
		decodeLooseJSON(b, &in)
	})
}
