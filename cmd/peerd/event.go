package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
)

const eventSynopsis = "event -name NAME [-node REGEXP] [-service REGEXP] [-tag REGEXP] [PAYLOAD]"

// runEvent is `consul event`: it fires a user event through the local
// agent and prints "Event ID: <id>". As consul, every error exits 1.
func runEvent(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "event", eventSynopsis)
	client := addClientFlags(fs, c)
	name := fs.String("name", "", "name of the event")
	node := fs.String("node", "", "regular expression to filter on node names")
	service := fs.String("service", "", "regular expression to filter on service instances")
	tag := fs.String("tag", "", "regular expression to filter on service tags; must be used with -service")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fail := func(format string, a ...any) error {
		fmt.Fprintf(c.stderr, format+"\n", a...)
		return exitStatus(1)
	}
	if *name == "" {
		return fail("Event name must be specified")
	}
	for _, f := range []struct{ what, expr string }{{"node", *node}, {"service", *service}, {"tag", *tag}} {
		if f.expr == "" {
			continue
		}
		if _, err := regexp.Compile(f.expr); err != nil {
			return fail("Failed to compile %s filter regexp: %v", f.what, err)
		}
	}
	if *tag != "" && *service == "" {
		return fail("Cannot provide tag filter without service filter.")
	}
	var payload []byte
	switch fs.NArg() {
	case 0:
	case 1:
		payload = []byte(fs.Arg(0))
	default:
		return fail("Too many command line arguments.")
	}
	cl, err := client()
	if err != nil {
		return err
	}
	q := url.Values{}
	for k, v := range map[string]string{"node": *node, "service": *service, "tag": *tag} {
		if v != "" {
			q.Set(k, v)
		}
	}
	path := "/v1/event/fire/" + url.PathEscape(*name)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	b, code, err := cl.do(ctx, http.MethodPut, path, payload)
	if err != nil {
		return fail("Error firing event: %s", consulAPIError(code, err))
	}
	var ev struct{ ID string }
	if err := json.Unmarshal(b, &ev); err != nil || ev.ID == "" {
		return fail("Error firing event: unexpected answer %q", b)
	}
	fmt.Fprintf(c.stdout, "Event ID: %s\n", ev.ID)
	return nil
}
