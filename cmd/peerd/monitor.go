package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// runMonitor is `consul monitor [-log-level L] [-log-json]`: it prints the
// local agent's log lines as they are written until interrupted (exit 0).
// As consul: "Error starting monitor: ..." (exit 1) when the agent refuses,
// and "Remote side ended the monitor! ..." (exit 1) when the agent goes
// away.
func runMonitor(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "monitor", "monitor [-log-level trace|debug|info|warn|error] [-log-json] [-http-addr ADDR]")
	level := fs.String("log-level", "INFO", "lowest level of the lines to print")
	logJSON := fs.Bool("log-json", false, "print JSON lines")
	client := addClientFlags(fs, c)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageErrorf("monitor: unexpected arguments %q", fs.Args())
	}
	cl, err := client()
	if err != nil {
		return err
	}
	q := url.Values{"loglevel": {*level}}
	if *logJSON {
		q.Set("logjson", "true")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cl.base+"/v1/agent/monitor?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	if cl.token != "" {
		req.Header.Set("X-Consul-Token", cl.token)
	}
	// No client timeout: the stream lasts until one side stops.
	resp, err := (&http.Client{Transport: cl.hc.Transport}).Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		fmt.Fprintf(c.stderr, "Error starting monitor: %v\n", err)
		return exitStatus(1)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		fmt.Fprintf(c.stderr, "Error starting monitor: Unexpected response code: %d (%s)\n", resp.StatusCode, strings.TrimSpace(string(b)))
		return exitStatus(1)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		fmt.Fprintln(c.stdout, sc.Text())
	}
	if ctx.Err() != nil {
		return nil // interrupted
	}
	fmt.Fprintln(c.stderr, "Remote side ended the monitor! This usually means that the\nremote side has exited or crashed.")
	return exitStatus(1)
}
