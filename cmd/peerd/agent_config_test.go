package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAgentConfigFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "10-base.hcl", `
node_name = "web-01"
data_dir  = "/var/lib/peerd"
bind_addr = "10.0.0.5"
retry_join = ["10.0.0.6", "10.0.0.7"]
ports {
  http = 18500
  dns  = 18600
}
trust = ["/etc/peerd/root.pub"]
enable_debug = true
`)
	writeFile(t, dir, "20-override.json", `{"node_name": "web-02", "log_level": "debug", "ports": {"serf_lan": 18301}}`)
	writeFile(t, dir, "ignored.txt", `not = "read"`)

	s := &agentSettings{}
	if err := loadConfigPaths([]string{dir}, s); err != nil {
		t.Fatal(err)
	}
	if s.nodeName != "web-02" || s.dataDir != "/var/lib/peerd" || s.bindAddr != "10.0.0.5" {
		t.Errorf("later files should override earlier ones: %+v", s)
	}
	if s.httpPort != 18500 || s.dnsPort != 18600 || s.serfPort != 18301 {
		t.Errorf("ports: %+v", s)
	}
	if strings.Join(s.retryJoin, ",") != "10.0.0.6,10.0.0.7" || len(s.trust) != 1 || s.logLevel != "debug" {
		t.Errorf("lists and levels: %+v", s)
	}
	if !s.enableDebug {
		t.Errorf("enable_debug = true not read: %+v", s)
	}

	// Flags win over files; repeatable flags add.
	fl, err := parseAgentFlags(&cli{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv},
		[]string{"-node", "from-flag", "-retry-join", "10.0.0.8", "-http-port", "9500"})
	if err != nil {
		t.Fatal(err)
	}
	fl.applyTo(s)
	if s.nodeName != "from-flag" || s.httpPort != 9500 || s.dnsPort != 18600 || len(s.retryJoin) != 3 {
		t.Errorf("flags over files: %+v", s)
	}
}

func TestAgentConfigErrors(t *testing.T) {
	cases := []struct {
		name, file, body string
		want             []string // substrings of the error
	}{
		{"unknown key names file and line", "a.hcl", "node_name = \"x\"\n\nbind_adr = \"1.2.3.4\"\n", []string{"a.hcl:3", `unknown key "bind_adr"`}},
		{"unknown nested key", "b.json", "{\"ports\": {\"http\": 1,\n  \"htp\": 1}}", []string{"b.json:2", `unknown key "htp" in ports`}},
		{"unknown JSON key names its line", "c.json", "{\n \"node_name\": \"x\",\n \"bind_adr\": \"1.2.3.4\"\n}", []string{"c.json:3", `unknown key "bind_adr"`}},
		{"ports must be a block", "c.hcl", `ports = 5`, []string{"c.hcl:1", `"ports" must be a block`}},
		{"syntax error", "d.hcl", "node_name = = \"x\"", []string{"d.hcl"}},
		{"wrong type", "e.hcl", `ports { http = "eighty" }`, []string{"e.hcl"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeFile(t, t.TempDir(), c.file, c.body)
			err := loadConfigPaths([]string{p}, &agentSettings{})
			if err == nil {
				t.Fatal("bad config accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	if err := loadConfigPaths([]string{"/nonexistent/peerd.hcl"}, &agentSettings{}); err == nil {
		t.Error("missing file accepted")
	}
}

func TestAgentSettingsValidation(t *testing.T) {
	cases := []struct {
		name string
		s    agentSettings
		want string
	}{
		{"bad bind address", agentSettings{nodeName: "n", bindAddr: "not-an-ip"}, "bind_addr"},
		{"bad gossip key", agentSettings{nodeName: "n", encrypt: "c2hvcnQ="}, "encrypt"},
		{"no data dir", agentSettings{nodeName: "n"}, "data_dir"},
		{"no trust", agentSettings{nodeName: "n", dataDir: "/tmp/x"}, "trust"},
		{"missing trust file", agentSettings{nodeName: "n", dataDir: "/tmp/x", trust: []string{"/nonexistent.pub"}}, "trust"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := c.s
			_, _, err := buildPeerConfig(&s, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error about %s", err, c.want)
			}
		})
	}
}

// FuzzAgentConfig feeds arbitrary bytes to the config file parser: it must
// return an error or a config, never panic.
func FuzzAgentConfig(f *testing.F) {
	f.Add([]byte(`node_name = "a"` + "\nports { http = 1 }"))
	f.Add([]byte(`{"retry_join": ["x"], "log_json": true}`))
	f.Add([]byte(`ports { ports { http = 1 } }`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		f, err := parseAgentFile("fuzz.hcl", b)
		if err == nil {
			f.applyTo(&agentSettings{})
		}
	})
}
