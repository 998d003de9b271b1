package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"
)

// The Connect commands. In peerd the agent itself is the sidecar: it
// listens on every upstream of its local services and carries the bytes
// over QUIC (docs/DATAPLANE.md). These commands connect apps to it;
// `connect proxy` (connect_proxy.go) runs a service's listeners as their
// own process instead.

func connectCommands() []command {
	return []command{
		{name: "connect", synopsis: "Connect data plane: connect run|proxy|upstreams", run: runConnect},
		{name: "demo-service", run: runDemoService}, // hidden: the demo's tiny HTTP service
	}
}

// connectSynopsis is printed in one line (errors are one line): the
// subcommands are separated by " | ".
const connectSynopsis = `connect run -service ID [-http-addr ADDR] -- CMD [ARGS...] | ` +
	`connect proxy -sidecar-for ID [-http-addr ADDR] [-token TOKEN] | ` +
	`connect upstreams -service ID [-http-addr ADDR]`

func runConnect(ctx context.Context, c *cli, args []string) error {
	if len(args) == 0 {
		return usageErrorf("connect: a subcommand is required: %s", connectSynopsis)
	}
	switch args[0] {
	case "run":
		return runConnectRun(ctx, c, args[1:])
	case "proxy":
		return runConnectProxy(ctx, c, args[1:])
	case "upstreams":
		return runConnectUpstreams(ctx, c, args[1:])
	}
	return usageErrorf("connect: unknown subcommand %q: %s", args[0], connectSynopsis)
}

// upstream is one local upstream listener of a service.
type upstream struct {
	Name string
	Addr netip.AddrPort
}

// serviceUpstreams asks the agent for the upstream listeners of local
// service id. The agent reports them in the "connect" section of
// /v1/agent/peerd/info as upstreams.<ID> = "NAME=ADDR,...". It waits up to
// wait for the agent's listeners to appear right after a registration.
func serviceUpstreams(ctx context.Context, cl *apiClient, id string, wait time.Duration) ([]upstream, error) {
	if _, _, err := cl.do(ctx, "GET", "/v1/agent/service/"+url.PathEscape(id), nil); err != nil {
		return nil, fmt.Errorf("connect: local service %q: %w", id, err)
	}
	deadline := time.Now().Add(wait)
	for {
		var info map[string]map[string]string
		if err := cl.getJSON(ctx, "/v1/agent/peerd/info", &info); err != nil {
			return nil, fmt.Errorf("connect: %w", err)
		}
		if v, ok := info["connect"]["upstreams."+id]; ok {
			return parseUpstreams(v)
		}
		if time.Now().After(deadline) {
			return nil, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func parseUpstreams(v string) ([]upstream, error) {
	var out []upstream
	for _, part := range strings.Split(v, ",") {
		name, addr, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("connect: agent reported a malformed upstream %q", part)
		}
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return nil, fmt.Errorf("connect: agent reported a malformed upstream %q: %w", part, err)
		}
		out = append(out, upstream{Name: name, Addr: ap})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// upstreamEnv is the environment `connect run` gives its command:
// PEERD_UPSTREAM_<NAME>_ADDR, _HOST and _PORT per upstream, NAME upper
// case with every character other than a letter or digit made '_'.
func upstreamEnv(ups []upstream) []string {
	var env []string
	for _, u := range ups {
		n := envName(u.Name)
		env = append(env,
			"PEERD_UPSTREAM_"+n+"_ADDR="+u.Addr.String(),
			"PEERD_UPSTREAM_"+n+"_HOST="+u.Addr.Addr().String(),
			fmt.Sprintf("PEERD_UPSTREAM_%s_PORT=%d", n, u.Addr.Port()))
	}
	return env
}

func envName(s string) string {
	b := []byte(strings.ToUpper(s))
	for i, ch := range b {
		if !(ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

func runConnectRun(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "connect run", "connect run -service ID [-http-addr ADDR] -- CMD [ARGS...]")
	addr := fs.String("http-addr", defaultHTTPAddr(c), "agent HTTP address (env PEERD_HTTP_ADDR or CONSUL_HTTP_ADDR)")
	token := fs.String("token", connectToken(c), "API token")
	id := fs.String("service", "", "local service ID whose upstreams the command gets")
	wait := fs.Duration("wait", 3*time.Second, "how long to wait for the agent's upstream listeners after a registration")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *id == "" {
		return usageErrorf("connect run: -service is required")
	}
	argv := fs.Args()
	if len(argv) == 0 {
		return usageErrorf("connect run: a command is required after --")
	}
	cl, err := newAPIClient(*addr)
	if err != nil {
		return usageErrorf("%v", err)
	}
	cl.token = *token
	ups, err := serviceUpstreams(ctx, cl, *id, *wait)
	if err != nil {
		return err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), upstreamEnv(ups)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, c.stdout, c.stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("connect run: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return commandErr(err)
	case <-ctx.Done():
		// Pass the interrupt on and give the command time to stop.
		cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-done:
			return commandErr(err)
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			return commandErr(<-done)
		}
	}
}

func commandErr(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("connect run: command exited with status %d", ee.ExitCode())
	}
	if err != nil {
		return fmt.Errorf("connect run: %w", err)
	}
	return nil
}

func runConnectUpstreams(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "connect upstreams", "connect upstreams -service ID [-http-addr ADDR]")
	addr := fs.String("http-addr", defaultHTTPAddr(c), "agent HTTP address")
	id := fs.String("service", "", "local service ID")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *id == "" {
		return usageErrorf("connect upstreams: -service is required")
	}
	cl, err := newAPIClient(*addr)
	if err != nil {
		return usageErrorf("%v", err)
	}
	ups, err := serviceUpstreams(ctx, cl, *id, 0)
	if err != nil {
		return err
	}
	for _, e := range upstreamEnv(ups) {
		fmt.Fprintln(c.stdout, e)
	}
	return nil
}

// connectToken is the API token from the environment, as other commands
// read it.
func connectToken(c *cli) string {
	for _, env := range []string{"PEERD_HTTP_TOKEN", "CONSUL_HTTP_TOKEN"} {
		if v := c.getenv(env); v != "" {
			return v
		}
	}
	return ""
}
