package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"text/tabwriter"
	"time"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/identity"
	"github.com/peerd/peerd/peer"
)

// intention commands. Writes are signed here with -sign-key (and
// -sign-cert for a delegated key) and sent as {"Signed": ...}; without a
// key the agent signs only if it runs with -dev.

func runIntention(ctx context.Context, c *cli, args []string) error {
	if len(args) == 0 {
		return usageErrorf("intention: want create, delete, list, get or check")
	}
	switch args[0] {
	case "create":
		return runIntentionWrite(ctx, c, args[1:], false)
	case "delete":
		return runIntentionWrite(ctx, c, args[1:], true)
	case "list":
		return runIntentionList(ctx, c, args[1:])
	case "get":
		return runIntentionGet(ctx, c, args[1:])
	case "check":
		return runIntentionCheck(ctx, c, args[1:])
	}
	return usageErrorf("intention: unknown subcommand %q", args[0])
}

type apiIntentionOut struct {
	ID, SourceName, DestinationName, Action, Description string
	Precedence                                           int
	Meta                                                 map[string]string
	Permissions                                          []crdt.IntentionPermission
	CreatedAt, UpdatedAt                                 time.Time
}

// srcDst reads SRC and DST from -from/-to or two arguments.
func srcDst(from, to string, rest []string) (string, string, error) {
	if from != "" || to != "" {
		if from == "" || to == "" || len(rest) > 0 {
			return "", "", usageErrorf("give -from SRC -to DST, or SRC DST")
		}
		return from, to, nil
	}
	if len(rest) != 2 {
		return "", "", usageErrorf("a source and a destination are required (SRC DST or -from SRC -to DST)")
	}
	return rest[0], rest[1], nil
}

func runIntentionWrite(ctx context.Context, c *cli, args []string, del bool) error {
	name := "intention create"
	syn := "intention create [-allow|-deny|-permissions FILE] [-description T] -from SRC -to DST [-sign-key KEY [-sign-cert CHAIN]]"
	if del {
		name = "intention delete"
		syn = "intention delete -from SRC -to DST [-sign-key KEY [-sign-cert CHAIN]]"
	}
	fs := newFlagSet(c, name, syn)
	client := addClientFlags(fs, c)
	allow := fs.Bool("allow", false, "allow (the default)")
	deny := fs.Bool("deny", false, "deny")
	desc := fs.String("description", "", "description")
	from := fs.String("from", "", "source service")
	to := fs.String("to", "", "destination service")
	replace := fs.Bool("replace", false, "replace an existing intention (create)")
	permsFile := fs.String("permissions", "", "JSON file with L7 permissions, Consul's service-intentions Permissions list "+
		`(e.g. [{"Action":"allow","HTTP":{"PathPrefix":"/api/","Methods":["GET"]}}]); instead of -allow/-deny`)
	signKey := fs.String("sign-key", "", "private key allowed to sign intentions (a root, or a key certified with -sign-intentions)")
	signCert := fs.String("sign-cert", "", "certificate chain of -sign-key when it is not a root")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	src, dst, err := srcDst(*from, *to, fs.Args())
	if err != nil {
		return err
	}
	if *allow && *deny || *permsFile != "" && (*allow || *deny) {
		return usageErrorf("%s: -allow, -deny and -permissions are exclusive", name)
	}
	var perms []crdt.IntentionPermission
	if *permsFile != "" {
		if del {
			return usageErrorf("%s: -permissions is for create", name)
		}
		if perms, err = readPermissions(*permsFile); err != nil {
			return err
		}
	}
	cl, err := client()
	if err != nil {
		return err
	}
	q := "?" + url.Values{"source": {src}, "destination": {dst}}.Encode()
	var held apiIntentionOut
	exists := cl.getJSON(ctx, "/v1/connect/intentions/exact"+q, &held) == nil
	if !del && exists && !*replace {
		return fmt.Errorf("error creating intention: an intention %s => %s already exists (use -replace)", src, dst)
	}
	if del && !exists {
		return fmt.Errorf("error deleting intention: no intention %s => %s", src, dst)
	}
	action := crdt.ActionAllow
	if *deny {
		action = crdt.ActionDeny
	}
	if perms != nil {
		action = "" // the permissions decide, request by request
	}
	in := crdt.Intention{ID: held.ID, SourceName: src, DestinationName: dst, Action: action, Permissions: perms,
		Description: *desc, Version: uint64(time.Now().UnixNano()), Deleted: del}
	if in.ID == "" {
		in.ID = peer.NewIntentionID()
	}
	if del {
		in.Action = ""
	}
	var body []byte
	if *signKey != "" {
		key, err := identity.ReadPrivateKeyFile(*signKey)
		if err != nil {
			return err
		}
		var chain identity.Chain
		if *signCert != "" {
			if chain, err = identity.ReadChainFile(*signCert); err != nil {
				return err
			}
		}
		signed, err := peer.SignIntention(in, key, chain)
		if err != nil {
			return err
		}
		body, _ = json.Marshal(map[string]string{"Signed": base64.StdEncoding.EncodeToString(signed)})
	} else {
		body, _ = json.Marshal(map[string]any{"Action": in.Action, "Description": in.Description, "Permissions": in.Permissions})
	}
	method := http.MethodPut
	if del {
		method = http.MethodDelete
	}
	if _, _, err := cl.do(ctx, method, "/v1/connect/intentions/exact"+q, body); err != nil {
		var verb = "creating"
		if del {
			verb = "deleting"
		}
		return fmt.Errorf("error %s intention: %w", verb, err)
	}
	switch {
	case del:
		fmt.Fprintln(c.stdout, "Intention deleted.")
	case perms != nil:
		fmt.Fprintf(c.stdout, "Created: %s => %s (%d L7 permissions)\n", src, dst, len(perms))
	default:
		fmt.Fprintf(c.stdout, "Created: %s => %s (%s)\n", src, dst, action)
	}
	return nil
}

// readPermissions reads an intention's L7 permissions: a JSON list in the
// format of Consul's service-intentions config entry (Action, HTTP with
// PathExact/PathPrefix/PathRegex, Methods, Header). Unknown fields are
// errors, so that a typo does not silently widen a permission.
func readPermissions(path string) ([]crdt.IntentionPermission, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("intention: permissions: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var perms []crdt.IntentionPermission
	if err := dec.Decode(&perms); err != nil {
		return nil, fmt.Errorf("intention: permissions in %s: %w", path, err)
	}
	if len(perms) == 0 {
		return nil, fmt.Errorf("intention: permissions in %s: the list is empty", path)
	}
	return perms, nil
}

func runIntentionList(ctx context.Context, c *cli, args []string) error {
	cl, _, err := clientFlags(c, "intention list", "intention list [-http-addr ADDR]", args)
	if err != nil {
		return err
	}
	var list []apiIntentionOut
	if err := cl.getJSON(ctx, "/v1/connect/intentions", &list); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSource\tAction\tDestination\tPrecedence")
	for _, in := range list {
		action := in.Action
		if action == "" {
			action = "(L7 permissions)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", in.ID, in.SourceName, action, in.DestinationName, in.Precedence)
	}
	return tw.Flush()
}

func runIntentionGet(ctx context.Context, c *cli, args []string) error {
	cl, rest, err := clientFlags(c, "intention get", "intention get SRC DST", args)
	if err != nil {
		return err
	}
	if len(rest) != 2 {
		return usageErrorf("intention get: SRC and DST are required")
	}
	q := "?" + url.Values{"source": {rest[0]}, "destination": {rest[1]}}.Encode()
	var in apiIntentionOut
	if err := cl.getJSON(ctx, "/v1/connect/intentions/exact"+q, &in); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 1, ' ', 0)
	fmt.Fprintf(tw, "Source:\t%s\n", in.SourceName)
	fmt.Fprintf(tw, "Destination:\t%s\n", in.DestinationName)
	fmt.Fprintf(tw, "Action:\t%s\n", in.Action)
	fmt.Fprintf(tw, "ID:\t%s\n", in.ID)
	if in.Description != "" {
		fmt.Fprintf(tw, "Description:\t%s\n", in.Description)
	}
	fmt.Fprintf(tw, "Created At:\t%s\n", in.CreatedAt.Format(time.RFC850))
	return tw.Flush()
}

// errDenied makes `intention check` exit 2, as consul's does when denied,
// after it printed "Denied".
var errDenied error = exitStatus(2)

func runIntentionCheck(ctx context.Context, c *cli, args []string) error {
	cl, rest, err := clientFlags(c, "intention check", "intention check SRC DST", args)
	if err != nil {
		return err
	}
	if len(rest) != 2 {
		return usageErrorf("intention check: SRC and DST are required")
	}
	q := "?" + url.Values{"source": {rest[0]}, "destination": {rest[1]}}.Encode()
	var res struct{ Allowed bool }
	if err := cl.getJSON(ctx, "/v1/connect/intentions/check"+q, &res); err != nil {
		return err
	}
	if res.Allowed {
		fmt.Fprintln(c.stdout, "Allowed")
		return nil
	}
	fmt.Fprintln(c.stdout, "Denied")
	return fmt.Errorf("intention check: %w", errDenied)
}
