package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// operatorCommands talk to the local agent over its HTTP API, like the
// consul CLI does.
func operatorCommands() []command {
	return []command{
		{name: "members", synopsis: "list the mesh members the local agent sees", run: runMembers},
		{name: "info", synopsis: "show the local agent's replica, gossip and anti-entropy counters", run: runInfo},
		{name: "join", synopsis: "ask the local agent to join a member: join ADDR...", run: runJoin},
		{name: "leave", synopsis: "make the local agent leave the mesh gracefully and exit", run: runLeave},
		{name: "keyring", synopsis: "rotate the gossip encryption key: keyring -list | -install KEY | -use KEY | -remove KEY", run: runKeyring},
		{name: "force-leave", synopsis: "mark a failed member left everywhere: force-leave [-prune] NODE", run: runForceLeave},
		{name: "event", synopsis: "fire a user event: event -name NAME [-node R] [-service R] [-tag R] [PAYLOAD]", run: runEvent},
		{name: "monitor", synopsis: "stream the local agent's log lines: monitor [-log-level L] [-log-json]", run: runMonitor},
		{name: "kv", synopsis: "read and write the KV store: kv get|put|delete", run: runKV},
		{name: "revocation", synopsis: "spread a signed revocation (from 'peerd revoke') through the mesh: revocation submit FILE", run: runRevocation},
		{name: "rotation", synopsis: "retire the old root everywhere with a statement from 'peerd rotate': rotation submit FILE", run: runRotation},
	}
}

// apiClient is a tiny client for the local agent's HTTP API.
type apiClient struct {
	base  string
	hc    *http.Client
	token string // sent as X-Consul-Token when set
}

// defaultHTTPAddr is the agent address from the environment
// (PEERD_HTTP_ADDR, then CONSUL_HTTP_ADDR), else Consul's default.
func defaultHTTPAddr(c *cli) string {
	for _, env := range []string{"PEERD_HTTP_ADDR", "CONSUL_HTTP_ADDR"} {
		if v := c.getenv(env); v != "" {
			return v
		}
	}
	return "127.0.0.1:8500"
}

func newAPIClient(addr string) (*apiClient, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("bad HTTP address %q", addr)
	}
	return &apiClient{base: strings.TrimRight(u.String(), "/"), hc: &http.Client{Timeout: 30 * time.Second}}, nil
}

// do sends a request and returns the body of a 2xx answer, or an error
// carrying the agent's message.
func (a *apiClient) do(ctx context.Context, method, path string, body []byte) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	if a.token != "" {
		req.Header.Set("X-Consul-Token", a.token)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("cannot reach the agent at %s: %w", a.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		msg := strings.TrimSpace(string(b))
		if msg == "" {
			msg = resp.Status
		}
		return b, resp.StatusCode, fmt.Errorf("agent: %s", msg)
	}
	return b, resp.StatusCode, nil
}

func (a *apiClient) getJSON(ctx context.Context, path string, v any) error {
	b, _, err := a.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// clientFlags parses the common -http-addr flag of operator commands.
func clientFlags(c *cli, name, synopsis string, args []string) (*apiClient, []string, error) {
	fs := newFlagSet(c, name, synopsis)
	client := addClientFlags(fs, c)
	if err := parseFlags(fs, args); err != nil {
		return nil, nil, err
	}
	cl, err := client()
	if err != nil {
		return nil, nil, err
	}
	return cl, fs.Args(), nil
}

// addClientFlags registers -http-addr and -token on fs; the returned
// function builds the client once fs has been parsed.
func addClientFlags(fs *flag.FlagSet, c *cli) func() (*apiClient, error) {
	addr := fs.String("http-addr", defaultHTTPAddr(c), "agent HTTP address (env PEERD_HTTP_ADDR or CONSUL_HTTP_ADDR)")
	token := fs.String("token", defaultHTTPToken(c), "API token (env PEERD_HTTP_TOKEN or CONSUL_HTTP_TOKEN)")
	return func() (*apiClient, error) {
		cl, err := newAPIClient(*addr)
		if err != nil {
			return nil, usageErrorf("%v", err)
		}
		cl.token = *token
		return cl, nil
	}
}

var memberStatusNames = map[int]string{0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}

// runMembers is `consul members [-status REGEX] [-detailed]`. The status
// shown (and matched by -status) is serf's, or "untrusted" for a member
// whose certificate did not verify. As consul, it exits 2 without output
// when -status matches no member.
func runMembers(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "members", "members [-status REGEX] [-detailed] [-http-addr ADDR]")
	statusFilter := fs.String("status", ".*", "list only members whose status matches this regular expression")
	detailed := fs.Bool("detailed", false, "list every tag of each member")
	client := addClientFlags(fs, c)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageErrorf("members: unexpected arguments %q", fs.Args())
	}
	statusRe, err := regexp.Compile(*statusFilter)
	if err != nil {
		return consulFail(c, "Failed to compile status regexp: %v", err)
	}
	cl, err := client()
	if err != nil {
		return err
	}
	var ms []struct {
		Name   string
		Addr   string
		Port   int
		Status int
		Tags   map[string]string
	}
	if err := cl.getJSON(ctx, "/v1/agent/members", &ms); err != nil {
		return err
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	if *detailed {
		fmt.Fprintln(tw, "Node\tAddress\tStatus\tTags")
	} else {
		fmt.Fprintln(tw, "Node\tAddress\tStatus\tType\tBuild\tProtocol\tDC\tPartition\tSegment")
	}
	shown := 0
	for _, m := range ms {
		status := memberStatusNames[m.Status]
		if m.Tags["peerd_trust"] == "unverified" {
			status = "untrusted"
		}
		if !statusRe.MatchString(status) {
			continue
		}
		shown++
		addr := net.JoinHostPort(m.Addr, strconv.Itoa(m.Port))
		if *detailed {
			keys := make([]string, 0, len(m.Tags))
			for k := range m.Tags {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			pairs := make([]string, 0, len(keys))
			for _, k := range keys {
				pairs = append(pairs, k+"="+m.Tags[k])
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Name, addr, status, strings.Join(pairs, ","))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\tnode\t%s\t2\t%s\tdefault\t<default>\n", m.Name, addr, status, m.Tags["build"], m.Tags["dc"])
	}
	if shown == 0 {
		return exitStatus(2) // consul prints nothing then
	}
	return tw.Flush()
}

func runInfo(ctx context.Context, c *cli, args []string) error {
	cl, _, err := clientFlags(c, "info", "info [-http-addr ADDR]", args)
	if err != nil {
		return err
	}
	var st map[string]map[string]string
	if err := cl.getJSON(ctx, "/v1/agent/peerd/info", &st); err != nil {
		return err
	}
	sections := make([]string, 0, len(st))
	for s := range st {
		sections = append(sections, s)
	}
	sort.Strings(sections)
	for _, s := range sections {
		fmt.Fprintf(c.stdout, "%s:\n", s)
		keys := make([]string, 0, len(st[s]))
		for k := range st[s] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(c.stdout, "\t%s = %s\n", k, st[s][k])
		}
	}
	return nil
}

func runJoin(ctx context.Context, c *cli, args []string) error {
	cl, rest, err := clientFlags(c, "join", "join [-http-addr ADDR] ADDR...", args)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		return usageErrorf("join: at least one address is required")
	}
	joined := 0
	var lastErr error
	for _, addr := range rest {
		if _, _, err := cl.do(ctx, http.MethodPut, "/v1/agent/join/"+url.PathEscape(addr), nil); err != nil {
			lastErr = err
			continue
		}
		joined++
	}
	if joined == 0 {
		return lastErr
	}
	fmt.Fprintf(c.stdout, "Successfully joined cluster by contacting %d nodes.\n", joined)
	return nil
}

func runLeave(ctx context.Context, c *cli, args []string) error {
	cl, _, err := clientFlags(c, "leave", "leave [-http-addr ADDR]", args)
	if err != nil {
		return err
	}
	if _, _, err := cl.do(ctx, http.MethodPut, "/v1/agent/leave", nil); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, "Graceful leave complete")
	return nil
}

func runKV(ctx context.Context, c *cli, args []string) error {
	if len(args) == 0 {
		return usageErrorf("kv: want get, put or delete")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "get":
		return runKVGet(ctx, c, args)
	case "put":
		return runKVPut(ctx, c, args)
	case "delete":
		return runKVDelete(ctx, c, args)
	case "export":
		return runKVExport(ctx, c, args)
	case "import":
		return runKVImport(ctx, c, args)
	}
	return usageErrorf("kv: unknown subcommand %q (want get, put, delete, export or import)", sub)
}

// reorderBoolFlag removes a boolean flag from anywhere in args (the flag
// package stops at the first positional argument) and records its presence.
func reorderBoolFlag(args []string, name string, seen **string) []string {
	out := make([]string, 0, len(args))
	for _, a := range args {
		if a == name || a == "-"+name {
			v := "true"
			*seen = &v
			continue
		}
		out = append(out, a)
	}
	return out
}

// submitStatement is `peerd CMD submit FILE` for a signed trust statement
// (a revocation or a rotation): it PUTs the file to the local agent's path
// and returns the agent's answer and the file name.
func submitStatement(ctx context.Context, c *cli, cmd, path string, args []string) (answer []byte, file string, err error) {
	if len(args) == 0 || args[0] != "submit" {
		return nil, "", usageErrorf("%s: want '%s submit FILE'", cmd, cmd)
	}
	cl, rest, err := clientFlags(c, cmd+" submit", cmd+" submit [-http-addr ADDR] FILE", args[1:])
	if err != nil {
		return nil, "", err
	}
	if len(rest) != 1 {
		return nil, "", usageErrorf("%s submit: exactly one %s file is required", cmd, cmd)
	}
	body, err := os.ReadFile(rest[0])
	if err != nil {
		return nil, "", err
	}
	answer, _, err = cl.do(ctx, http.MethodPut, path, body)
	return answer, rest[0], err
}

func runRevocation(ctx context.Context, c *cli, args []string) error {
	_, file, err := submitStatement(ctx, c, "revocation", "/v1/agent/peerd/revoke", args)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Revocation %s accepted; it spreads to every peer.\n", file)
	return nil
}

// runRotation is `peerd rotation submit FILE`: the local agent checks the
// statement, refuses it if its own certificate would stop verifying, and
// spreads it; the nodes whose certificates only the old root vouched for are
// cut off everywhere (listed).
func runRotation(ctx context.Context, c *cli, args []string) error {
	resp, file, err := submitStatement(ctx, c, "rotation", "/v1/agent/peerd/rotate", args)
	if err != nil {
		return err
	}
	var out struct {
		CutOff              []string
		WithdrawnIntentions int
	}
	if err := json.Unmarshal(resp, &out); err != nil {
		return fmt.Errorf("rotation submit: agent answer: %w", err)
	}
	fmt.Fprintf(c.stdout, "Rotation %s accepted; it spreads to every peer, which retires the old root.\n", file)
	if len(out.CutOff) > 0 {
		fmt.Fprintf(c.stdout, "Nodes whose certificates the old root issued are cut off: %s\n", strings.Join(out.CutOff, ", "))
	}
	if out.WithdrawnIntentions > 0 {
		fmt.Fprintf(c.stdout, "Intentions signed under the old root no longer apply: %d (sign them again: peerd intention create -replace ... -sign-key NEWKEY)\n",
			out.WithdrawnIntentions)
	}
	return nil
}
