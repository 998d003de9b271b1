package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
)

// runForceLeave is `consul force-leave [-prune] NODE`: the local agent marks
// a failed member left on every agent (its services disappear, as for a
// graceful leave); -prune also erases it from the member list. Like consul
// it prints nothing on success and "Error force leaving: ..." (exit 1) when
// the agent refuses, e.g. for an unknown node.
func runForceLeave(ctx context.Context, c *cli, args []string) error {
	var prune, wan *string
	args = reorderBoolFlag(args, "-prune", &prune)
	args = reorderBoolFlag(args, "-wan", &wan) // one pool: accepted, ignored
	cl, rest, err := clientFlags(c, "force-leave", "force-leave [-prune] [-http-addr ADDR] NODE", args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usageErrorf("force-leave: a single node name must be specified to force leave")
	}
	path := "/v1/agent/force-leave/" + url.PathEscape(rest[0])
	if prune != nil {
		path += "?prune"
	}
	if _, code, err := cl.do(ctx, http.MethodPut, path, nil); err != nil {
		fmt.Fprintf(c.stderr, "Error force leaving: %s\n", consulAPIError(code, err))
		return exitStatus(1)
	}
	return nil
}

// consulAPIError words an agent error as consul's API client does
// ("Unexpected response code: 500 (agent: No node found with name 'x')"),
// which is what consul commands print after their prefix.
func consulAPIError(code int, err error) string {
	if code == 0 {
		return err.Error() // the agent could not be reached
	}
	msg := err.Error()
	if len(msg) > len("agent: ") && msg[:len("agent: ")] == "agent: " {
		msg = msg[len("agent: "):]
	}
	return fmt.Sprintf("Unexpected response code: %d (%s)", code, msg)
}
