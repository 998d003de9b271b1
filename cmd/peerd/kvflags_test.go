package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
)

// fakeAgent answers one canned reply and records the requests it got.
type fakeAgent struct {
	mu     sync.Mutex
	got    []string // "METHOD /path?canonical-query body"
	status int
	body   string
}

func (f *fakeAgent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.got = append(f.got, r.Method+" "+r.URL.Path+canonicalQuery(r.URL.Query())+" "+string(b))
	status, body := f.status, f.body
	f.mu.Unlock()
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// canonicalQuery is "?k=v&k2=" with sorted keys, "" without parameters.
func canonicalQuery(q url.Values) string {
	if len(q) == 0 {
		return ""
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		for _, v := range q[k] {
			parts = append(parts, k+"="+v)
		}
	}
	return "?" + strings.Join(parts, "&")
}

const detailedHello = `CreateIndex      5
Flags            42
Key              app/k
LockIndex        0
ModifyIndex      7
Session          -
Value            hello
`

const membersJSON = `[
 {"Name":"n2","Addr":"127.0.0.2","Port":8301,"Status":4,"Tags":{"build":"0.1.0","dc":"dc1","role":"node","peerd_trust":"verified"}},
 {"Name":"n1","Addr":"127.0.0.1","Port":8301,"Status":1,"Tags":{"build":"0.1.0","dc":"dc1","role":"node","peerd_trust":"verified"}},
 {"Name":"n3","Addr":"127.0.0.3","Port":8301,"Status":3,"Tags":{"build":"0.1.0","dc":"dc1","role":"node","peerd_trust":"verified"}}
]`

// TestKVAndMembersFlags runs the consul-shaped kv, members and force-leave
// flags against a fake agent: the request each sends, and consul's output
// and exit status.
func TestKVAndMembersFlags(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		status     int
		reply      string
		wantReq    string // "" when no request may be sent
		wantOut    string
		wantErr    string // stderr
		wantCode   int
		outContain bool // wantOut is a substring check
	}{
		{name: "get -keys lists one level by default", args: []string{"kv", "get", "-keys", "app/"},
			reply: `["app/a","app/sub/"]`, wantReq: "GET /v1/kv/app/?keys=&separator=/ ", wantOut: "app/a\napp/sub/\n"},
		{name: "get -keys -separator empty lists all", args: []string{"kv", "get", "-keys", "-separator", "", "app/"},
			reply: `["app/a","app/sub/x"]`, wantReq: "GET /v1/kv/app/?keys= ", wantOut: "app/a\napp/sub/x\n"},
		{name: "get -keys of nothing prints nothing", args: []string{"kv", "get", "-keys", "none/"},
			status: 404, wantReq: "GET /v1/kv/none/?keys=&separator=/ ", wantOut: ""},
		{name: "get -recurse", args: []string{"kv", "get", "-recurse", "app"},
			reply: `[{"Key":"app/a","Value":"MQ=="},{"Key":"app/b","Value":"Mg=="}]`, wantReq: "GET /v1/kv/app?recurse= ", wantOut: "app/a:1\napp/b:2\n"},
		{name: "get KEY -recurse (flag after the key)", args: []string{"kv", "get", "app", "-recurse"},
			reply: `[{"Key":"app/a","Value":"MQ=="}]`, wantReq: "GET /v1/kv/app?recurse= ", wantOut: "app/a:1\n"},
		{name: "get -detailed", args: []string{"kv", "get", "-detailed", "app/k"},
			reply: `[{"Key":"app/k","Value":"aGVsbG8=","Flags":42,"CreateIndex":5,"ModifyIndex":7}]`, wantReq: "GET /v1/kv/app/k ", wantOut: detailedHello},
		{name: "get -recurse -detailed separates pairs by a blank line", args: []string{"kv", "get", "-recurse", "-detailed", "app/"},
			reply:   `[{"Key":"app/k","Value":"aGVsbG8=","Flags":42,"CreateIndex":5,"ModifyIndex":7},{"Key":"app/k","Value":"aGVsbG8=","Flags":42,"CreateIndex":5,"ModifyIndex":7}]`,
			wantReq: "GET /v1/kv/app/?recurse= ", wantOut: detailedHello + "\n" + detailedHello},
		{name: "get -base64", args: []string{"kv", "get", "-base64", "app/k"},
			reply: `[{"Key":"app/k","Value":"aGVsbG8="}]`, wantReq: "GET /v1/kv/app/k ", wantOut: "aGVsbG8=\n"},
		{name: "get of a missing key", args: []string{"kv", "get", "nope"},
			status: 404, wantReq: "GET /v1/kv/nope ", wantErr: "Error! No key exists at: nope\n", wantCode: 1},
		{name: "get without a key", args: []string{"kv", "get"}, wantErr: "Error! Missing KEY argument\n", wantCode: 1},

		{name: "put -flags", args: []string{"kv", "put", "-flags", "42", "app/k", "v"},
			reply: "true", wantReq: "PUT /v1/kv/app/k?flags=42 v", wantOut: "Success! Data written to: app/k\n"},
		{name: "put -cas -modify-index", args: []string{"kv", "put", "-cas", "-modify-index", "7", "app/k", "v"},
			reply: "true", wantReq: "PUT /v1/kv/app/k?cas=7 v", wantOut: "Success! Data written to: app/k\n"},
		{name: "put -cas that fails", args: []string{"kv", "put", "-cas", "-modify-index=7", "app/k", "v"},
			reply: "false", wantReq: "PUT /v1/kv/app/k?cas=7 v", wantErr: "Error! Did not write to app/k: CAS failed\n", wantCode: 1},
		{name: "put -cas index 0 on an existing key", args: []string{"kv", "put", "-cas", "app/k", "v"},
			reply: "false", wantReq: "PUT /v1/kv/app/k?cas=0 v", wantErr: "Error! Did not write to app/k: CAS performed with index=0 and key already exists.\n", wantCode: 1},
		{name: "put -base64", args: []string{"kv", "put", "-base64", "app/k", "aGVsbG8="},
			reply: "true", wantReq: "PUT /v1/kv/app/k hello", wantOut: "Success! Data written to: app/k\n"},
		{name: "put -base64 of bad data", args: []string{"kv", "put", "-base64", "app/k", "!!"},
			wantErr: "Error! Cannot base 64 decode data: ", wantCode: 1, outContain: true},
		{name: "put refused by the agent", args: []string{"kv", "put", "app/k", "v"},
			status: 403, reply: "key outside the certificate", wantReq: "PUT /v1/kv/app/k v",
			wantErr: "Error! Failed writing data: Unexpected response code: 403 (key outside the certificate)\n", wantCode: 1},

		{name: "delete -cas", args: []string{"kv", "delete", "-cas", "-modify-index", "7", "app/k"},
			reply: "true", wantReq: "DELETE /v1/kv/app/k?cas=7 ", wantOut: "Success! Deleted key: app/k\n"},
		{name: "delete -cas that fails", args: []string{"kv", "delete", "-cas", "-modify-index", "7", "app/k"},
			reply: "false", wantReq: "DELETE /v1/kv/app/k?cas=7 ", wantErr: "Error! Did not delete key app/k: CAS failed\n", wantCode: 1},
		{name: "delete -cas without an index", args: []string{"kv", "delete", "-cas", "app/k"},
			wantErr: "Cannot delete a key that does not exist. Provide a -modify-index greater than than 0.\n", wantCode: 1},
		{name: "delete -modify-index without -cas", args: []string{"kv", "delete", "-modify-index", "3", "app/k"},
			wantErr: "Cannot specify -modify-index without -cas!\n", wantCode: 1},
		{name: "delete -recurse", args: []string{"kv", "delete", "-recurse", "app/"},
			reply: "true", wantReq: "DELETE /v1/kv/app/?recurse= ", wantOut: "Success! Deleted keys with prefix: app/\n"},
		{name: "delete", args: []string{"kv", "delete", "app/k"},
			reply: "true", wantReq: "DELETE /v1/kv/app/k ", wantOut: "Success! Deleted key: app/k\n"},

		{name: "members", args: []string{"members"}, reply: membersJSON, wantReq: "GET /v1/agent/members ",
			wantOut: "Node  Address         Status  Type  Build  Protocol  DC   Partition  Segment\n" +
				"n1    127.0.0.1:8301  alive   node  0.1.0  2         dc1  default    <default>\n" +
				"n2    127.0.0.2:8301  failed  node  0.1.0  2         dc1  default    <default>\n" +
				"n3    127.0.0.3:8301  left    node  0.1.0  2         dc1  default    <default>\n"},
		{name: "members -status", args: []string{"members", "-status", "left|failed"}, reply: membersJSON, wantReq: "GET /v1/agent/members ",
			wantOut: "Node  Address         Status  Type  Build  Protocol  DC   Partition  Segment\n" +
				"n2    127.0.0.2:8301  failed  node  0.1.0  2         dc1  default    <default>\n" +
				"n3    127.0.0.3:8301  left    node  0.1.0  2         dc1  default    <default>\n"},
		{name: "members -status matching nothing", args: []string{"members", "-status", "^leaving$"}, reply: membersJSON,
			wantReq: "GET /v1/agent/members ", wantCode: 2},
		{name: "members -status bad regexp", args: []string{"members", "-status", "("},
			wantErr: "Failed to compile status regexp: error parsing regexp: missing closing ): `(`\n", wantCode: 1},
		{name: "members -detailed", args: []string{"members", "-detailed", "-status", "alive"}, reply: membersJSON, wantReq: "GET /v1/agent/members ",
			wantOut: "Node  Address         Status  Tags\n" +
				"n1    127.0.0.1:8301  alive   build=0.1.0,dc=dc1,peerd_trust=verified,role=node\n"},

		{name: "force-leave -prune", args: []string{"force-leave", "-prune", "n3"},
			wantReq: "PUT /v1/agent/force-leave/n3?prune= ", wantOut: ""},
		{name: "force-leave NODE -prune (flag after the node)", args: []string{"force-leave", "n3", "-prune"},
			wantReq: "PUT /v1/agent/force-leave/n3?prune= ", wantOut: ""},
		{name: "force-leave of an unknown node", args: []string{"force-leave", "nobody"},
			status: 500, reply: "agent: No node found with name 'nobody'", wantReq: "PUT /v1/agent/force-leave/nobody ",
			wantErr: "Error force leaving: Unexpected response code: 500 (agent: No node found with name 'nobody')\n", wantCode: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fa := &fakeAgent{status: tc.status, body: tc.reply}
			srv := httptest.NewServer(fa)
			defer srv.Close()
			r := &idRunner{t: t}
			// -http-addr goes right after the (sub)command, before the flags.
			at := 1
			if tc.args[0] == "kv" {
				at = 2
			}
			args := append(append(append([]string{}, tc.args[:at]...), "-http-addr", srv.URL), tc.args[at:]...)
			res := r.run(args...)
			if res.code != tc.wantCode {
				t.Errorf("exit %d, want %d (stderr %q)", res.code, tc.wantCode, res.stderr)
			}
			if res.stdout != tc.wantOut {
				t.Errorf("stdout:\n%s\nwant:\n%s", res.stdout, tc.wantOut)
			}
			if tc.outContain && !strings.HasPrefix(res.stderr, tc.wantErr) || !tc.outContain && res.stderr != tc.wantErr {
				t.Errorf("stderr %q, want %q", res.stderr, tc.wantErr)
			}
			fa.mu.Lock()
			defer fa.mu.Unlock()
			switch {
			case tc.wantReq == "" && len(fa.got) != 0:
				t.Errorf("sent %q, want no request", fa.got)
			case tc.wantReq != "" && (len(fa.got) != 1 || fa.got[0] != tc.wantReq):
				t.Errorf("sent %q, want [%q]", fa.got, tc.wantReq)
			}
		})
	}
}

// TestKVFlagsAgainstAgent runs the consul-shaped kv and members flags
// against a real agent.
func TestKVFlagsAgainstAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	m := newMesh(t)
	n1 := m.start("n1", agentOpts{})
	addr := n1.ip + ":8500"
	kv := func(args ...string) (string, int) {
		t.Helper()
		out, err := m.cliErr(append([]string{"kv", args[0], "-http-addr", addr}, args[1:]...)...)
		return out, exitCodeOf(err)
	}
	expect := func(out string, code int, want string, wantCode int) {
		t.Helper()
		if code != wantCode || !strings.Contains(out, want) {
			t.Fatalf("exit %d, output %q; want exit %d and %q", code, out, wantCode, want)
		}
	}
	modifyIndex := func(key string) string {
		t.Helper()
		out, code := kv("get", "-detailed", key)
		if code != 0 {
			t.Fatalf("kv get -detailed %s: exit %d: %s", key, code, out)
		}
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "ModifyIndex" {
				return f[1]
			}
		}
		t.Fatalf("kv get -detailed %s: no ModifyIndex in %q", key, out)
		return ""
	}

	out, code := kv("put", "-flags", "42", "cfg/a", "one")
	expect(out, code, "Success! Data written to: cfg/a", 0)
	out, code = kv("get", "-detailed", "cfg/a")
	expect(out, code, "Flags            42\nKey              cfg/a\n", 0)
	idx := modifyIndex("cfg/a")

	out, code = kv("put", "-cas", "-modify-index", idx+"0", "cfg/a", "two")
	expect(out, code, "Error! Did not write to cfg/a: CAS failed", 1)
	out, code = kv("put", "-cas", "-modify-index", idx, "cfg/a", "two")
	expect(out, code, "Success! Data written to: cfg/a", 0)
	out, code = kv("get", "cfg/a")
	expect(out, code, "two", 0)
	out, code = kv("put", "-cas", "cfg/new", "x")
	expect(out, code, "Success! Data written to: cfg/new", 0)
	out, code = kv("put", "-cas", "cfg/new", "y")
	expect(out, code, "Error! Did not write to cfg/new: CAS performed with index=0 and key already exists.", 1)

	out, code = kv("put", "-base64", "cfg/b", "aGVsbG8=")
	expect(out, code, "Success!", 0)
	if v, err := n1.kvGetRaw("cfg/b"); err != nil || v != "hello" {
		t.Fatalf("kv put -base64: %q %v", v, err)
	}
	kv("put", "cfg/sub/x", "1")
	out, code = kv("get", "-keys", "cfg/")
	expect(out, code, "cfg/a\ncfg/b\ncfg/new\ncfg/sub/\n", 0)
	out, code = kv("get", "-keys", "-separator", "", "cfg/")
	expect(out, code, "cfg/a\ncfg/b\ncfg/new\ncfg/sub/x\n", 0)
	out, code = kv("get", "-recurse", "cfg/sub")
	expect(out, code, "cfg/sub/x:1\n", 0)

	idx = modifyIndex("cfg/a")
	out, code = kv("delete", "-cas", "-modify-index", idx+"0", "cfg/a")
	expect(out, code, "Error! Did not delete key cfg/a: CAS failed", 1)
	out, code = kv("delete", "-cas", "-modify-index", idx, "cfg/a")
	expect(out, code, "Success! Deleted key: cfg/a", 0)
	out, code = kv("get", "cfg/a")
	expect(out, code, "Error! No key exists at: cfg/a", 1)
	out, code = kv("delete", "-recurse", "cfg/")
	expect(out, code, "Success! Deleted keys with prefix: cfg/", 0)

	out, err := m.cliErr("members", "-http-addr", addr, "-status", "alive")
	expect(out, exitCodeOf(err), "n1 ", 0)
	out, err = m.cliErr("members", "-http-addr", addr, "-status", "left")
	expect(out, exitCodeOf(err), "", 2)
	out, err = m.cliErr("members", "-http-addr", addr, "-detailed")
	expect(out, exitCodeOf(err), "peerd_trust=verified", 0)
}
