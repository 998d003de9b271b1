package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAgentFileServiceKeys(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.hcl")
	content := `node_name = "n1"
enable_script_checks = true
acl {
  enabled = true
  tokens {
    agent = "tok"
  }
}
service {
  name = "web"
  port = 80
  check {
    args = ["/bin/true"]
    interval = "10s"
  }
}
checks = [{ name = "disk", ttl = "1m" }]
`
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	var s agentSettings
	if err := loadConfigPaths([]string{dir}, &s); err != nil {
		t.Fatal(err)
	}
	if s.nodeName != "n1" || !s.enableScriptChecks || s.httpToken != "tok" || len(s.configFiles) != 1 {
		t.Fatalf("settings: %+v", s)
	}
	svcs, checks, err := loadServiceDefs(s.configFiles, s.enableScriptChecks)
	if err != nil {
		t.Fatal(err)
	}
	if len(svcs) != 1 || svcs[0].Name != "web" || len(svcs[0].Checks) != 1 || len(checks) != 1 {
		t.Fatalf("definitions: %+v %+v", svcs, checks)
	}
	// Without enable_script_checks the same service is refused, with the line.
	if _, _, err := loadServiceDefs(s.configFiles, false); err == nil || !strings.Contains(err.Error(), "agent.hcl:9") {
		t.Fatalf("script check without enable_script_checks: %v", err)
	}
	// Other unknown keys are still refused.
	bad := filepath.Join(dir, "bad.hcl")
	os.WriteFile(bad, []byte("servce { name = \"x\" }\n"), 0o600)
	if err := loadConfigPaths([]string{bad}, &agentSettings{}); err == nil || !strings.Contains(err.Error(), "unknown key") {
		t.Fatalf("typo accepted: %v", err)
	}
	// http_token alone works too.
	tok := filepath.Join(dir, "tok.json")
	os.WriteFile(tok, []byte(`{"http_token": "t2"}`), 0o600)
	var s2 agentSettings
	if err := loadConfigPaths([]string{tok}, &s2); err != nil || s2.httpToken != "t2" {
		t.Fatalf("http_token: %v %q", err, s2.httpToken)
	}
}
