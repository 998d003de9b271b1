package peer

import "testing"

func TestFilterExpressions(t *testing.T) {
	entry := apiServiceEntry{
		Node:    apiNode{Node: "n1", Meta: map[string]string{"rack": "r1"}},
		Service: apiAgentService{ID: "web-1", Service: "web", Tags: []string{"blue", "v2"}, Meta: map[string]string{"version": "2"}, Port: 80},
		Checks: []apiHealthCheck{
			{CheckID: "serfHealth", Status: "passing"},
			{CheckID: "web", Status: "passing", ServiceTags: []string{}},
		},
	}
	tests := []struct {
		expr string
		want bool
	}{
		{`Service.Tags contains "blue"`, true},
		{`Service.Tags contains "red"`, false},
		{`Service.Tags not contains "red"`, true},
		{`"v2" in Service.Tags`, true},
		{`"v3" not in Service.Tags`, true},
		{`Service.Meta.version == "2"`, true},
		{`Service.Meta["version"] == "2"`, true},
		{`Service.Meta.version != "2"`, false},
		{`Checks.Status == "passing"`, true},
		{`Checks.Status == passing`, true},
		{`Checks.Status != "passing"`, false},
		{`Node.Meta.rack == "r1" and Service.Port == 80`, true},
		{`Node.Meta.rack == "r2" or Service.Service == "web"`, true},
		{`not (Service.Service == "web")`, false},
		{`Service.Meta is not empty`, true},
		{`Service.Address is empty`, true},
		{`Service.ID matches "^web-[0-9]+$"`, true},
		{`Service.ID not matches "^db"`, true},
		{`service.tags contains "blue"`, true},
	}
	for _, tt := range tests {
		f, err := parseFilter(tt.expr)
		if err != nil {
			t.Errorf("%s: %v", tt.expr, err)
			continue
		}
		got, err := f.match(entry)
		if err != nil || got != tt.want {
			t.Errorf("%s = %v (%v), want %v", tt.expr, got, err, tt.want)
		}
	}
	for _, bad := range []string{``, `Service.Tags`, `Service.Tags contains`, `(a == "b"`, `a ~ b`, `"x" == a`, `a matches "("`, `a is full`} {
		if _, err := parseFilter(bad); err == nil && bad != "" {
			t.Errorf("%q parsed", bad)
		}
	}
}

func FuzzFilter(f *testing.F) {
	f.Add(`Service.Tags contains "x" and not (Checks.Status == "passing" or "a" in Service.Meta)`)
	f.Add(`Service.Meta["k"] matches "^v" or Node.Meta is empty`)
	f.Add(`((((a == b))))`)
	entry := apiServiceEntry{Service: apiAgentService{Tags: []string{"x"}}, Checks: []apiHealthCheck{{Status: "passing"}}}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := parseFilter(s)
		if err != nil {
			return
		}
		e.match(entry)
	})
}
