package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/peerd/peerd/peer"
)

// consulCommands are the consul-CLI-shaped commands over the HTTP API:
// services, catalog, intention, watch, reload and maint.
func consulCommands() []command {
	return []command{
		{name: "services", synopsis: "register or deregister local services: services register|deregister", run: runServices},
		{name: "catalog", synopsis: "list the catalog: catalog services|nodes", run: runCatalog},
		{name: "intention", synopsis: "manage intentions: intention create|delete|list|get|check", run: runIntention},
		{name: "watch", synopsis: "print JSON each time a key, prefix or service changes", run: runWatch},
		{name: "reload", synopsis: "make the local agent re-read its service and check definitions", run: runReload},
		{name: "maint", synopsis: "node or service maintenance mode: maint [-enable|-disable] [-service ID]", run: runMaint},
	}
}

// defaultHTTPToken is the API token from the environment.
func defaultHTTPToken(c *cli) string {
	for _, env := range []string{"PEERD_HTTP_TOKEN", "CONSUL_HTTP_TOKEN"} {
		if v := c.getenv(env); v != "" {
			return v
		}
	}
	return ""
}

func runServices(ctx context.Context, c *cli, args []string) error {
	if len(args) == 0 {
		return usageErrorf("services: want register or deregister")
	}
	switch args[0] {
	case "register":
		return runServicesRegister(ctx, c, args[1:])
	case "deregister":
		return runServicesDeregister(ctx, c, args[1:])
	}
	return usageErrorf("services: unknown subcommand %q (want register or deregister)", args[0])
}

const servicesRegisterSynopsis = `services register [-http-addr ADDR] [-token T] FILE...
   or: services register [-name NAME] [-id ID] [-port N] [-address A] [-tag T]... [-meta k=v]...`

func runServicesRegister(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "services register", servicesRegisterSynopsis)
	client := addClientFlags(fs, c)
	name := fs.String("name", "", "service name")
	id := fs.String("id", "", "service ID (default: the name)")
	port := fs.Int("port", 0, "service port")
	address := fs.String("address", "", "service address (default: the node's)")
	var tags, meta stringList
	fs.Var(&tags, "tag", "tag (repeatable)")
	fs.Var(&meta, "meta", "metadata key=value (repeatable)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cl, err := client()
	if err != nil {
		return err
	}
	var defs []peer.ServiceDefinition
	if *name != "" {
		if fs.NArg() > 0 {
			return usageErrorf("services register: give either -name or files, not both")
		}
		d := peer.ServiceDefinition{Name: *name, ID: *id, Port: *port, Address: *address, Tags: tags}
		for _, kv := range meta {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return usageErrorf("services register: -meta %q is not key=value", kv)
			}
			if d.Meta == nil {
				d.Meta = map[string]string{}
			}
			d.Meta[k] = v
		}
		defs = append(defs, d)
	} else {
		if fs.NArg() == 0 {
			return usageErrorf("services register: a FILE or -name is required")
		}
		for _, path := range fs.Args() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			f, err := peer.ParseServiceFile(path, b, true)
			if err != nil {
				return err
			}
			if len(f.Services) == 0 {
				return fmt.Errorf("%s: no service definition (want a service {} block or a services list)", path)
			}
			defs = append(defs, f.Services...)
		}
	}
	for _, d := range defs {
		body, err := json.Marshal(d)
		if err != nil {
			return err
		}
		if _, _, err := cl.do(ctx, http.MethodPut, "/v1/agent/service/register", body); err != nil {
			return fmt.Errorf("error registering service %q: %w", d.Name, err)
		}
		fmt.Fprintf(c.stdout, "Registered service: %s\n", d.Name)
	}
	return nil
}

func runServicesDeregister(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "services deregister", "services deregister [-http-addr ADDR] [-id ID | ID | FILE]")
	client := addClientFlags(fs, c)
	id := fs.String("id", "", "service ID")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cl, err := client()
	if err != nil {
		return err
	}
	var ids []string
	switch {
	case *id != "":
		ids = []string{*id}
	case fs.NArg() == 1:
		arg := fs.Arg(0)
		if b, err := os.ReadFile(arg); err == nil {
			f, err := peer.ParseServiceFile(arg, b, true)
			if err != nil {
				return err
			}
			for _, s := range f.Services {
				ids = append(ids, s.ID)
			}
		} else {
			ids = []string{arg}
		}
	default:
		return usageErrorf("services deregister: give -id ID, an ID or a FILE")
	}
	for _, x := range ids {
		if _, _, err := cl.do(ctx, http.MethodPut, "/v1/agent/service/deregister/"+url.PathEscape(x), nil); err != nil {
			return fmt.Errorf("error deregistering service %q: %w", x, err)
		}
		fmt.Fprintf(c.stdout, "Deregistered service: %s\n", x)
	}
	return nil
}

func runCatalog(ctx context.Context, c *cli, args []string) error {
	if len(args) == 0 {
		return usageErrorf("catalog: want services or nodes")
	}
	switch args[0] {
	case "services":
		return runCatalogServices(ctx, c, args[1:])
	case "nodes":
		return runCatalogNodes(ctx, c, args[1:])
	case "datacenters":
		cl, _, err := clientFlags(c, "catalog datacenters", "catalog datacenters", args[1:])
		if err != nil {
			return err
		}
		var dcs []string
		if err := cl.getJSON(ctx, "/v1/catalog/datacenters", &dcs); err != nil {
			return err
		}
		for _, d := range dcs {
			fmt.Fprintln(c.stdout, d)
		}
		return nil
	}
	return usageErrorf("catalog: unknown subcommand %q (want services, nodes or datacenters)", args[0])
}

func runCatalogServices(ctx context.Context, c *cli, args []string) error {
	var tagsFlag *string
	args = reorderBoolFlag(args, "-tags", &tagsFlag)
	fs := newFlagSet(c, "catalog services", "catalog services [-tags] [-node NAME]")
	client := addClientFlags(fs, c)
	node := fs.String("node", "", "list the services of this node only")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cl, err := client()
	if err != nil {
		return err
	}
	svcs := map[string][]string{}
	if *node != "" {
		var n struct {
			Services map[string]struct {
				Service string
				Tags    []string
			}
		}
		if err := cl.getJSON(ctx, "/v1/catalog/node/"+url.PathEscape(*node), &n); err != nil {
			return err
		}
		for _, s := range n.Services {
			svcs[s.Service] = append(svcs[s.Service], s.Tags...)
		}
	} else if err := cl.getJSON(ctx, "/v1/catalog/services", &svcs); err != nil {
		return err
	}
	names := make([]string, 0, len(svcs))
	for n := range svcs {
		names = append(names, n)
	}
	sort.Strings(names)
	if tagsFlag == nil {
		for _, n := range names {
			fmt.Fprintln(c.stdout, n)
		}
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	for _, n := range names {
		t := append([]string(nil), svcs[n]...)
		sort.Strings(t)
		fmt.Fprintf(tw, "%s\t%s\n", n, strings.Join(t, ","))
	}
	return tw.Flush()
}

func runCatalogNodes(ctx context.Context, c *cli, args []string) error {
	cl, _, err := clientFlags(c, "catalog nodes", "catalog nodes [-http-addr ADDR]", args)
	if err != nil {
		return err
	}
	var nodes []struct {
		ID, Node, Address, Datacenter string
	}
	if err := cl.getJSON(ctx, "/v1/catalog/nodes", &nodes); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "Node\tID\tAddress\tDC")
	for _, n := range nodes {
		// consul prints the first 8 characters of a UUID; every peerd
		// node ID starts with the same 8 ("12D3KooW", the Ed25519 key's
		// multihash prefix), so print the 8 after them.
		id := strings.TrimPrefix(n.ID, "12D3KooW")
		if len(id) > 8 {
			id = id[:8]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Node, id, n.Address, n.Datacenter)
	}
	return tw.Flush()
}

func runReload(ctx context.Context, c *cli, args []string) error {
	cl, _, err := clientFlags(c, "reload", "reload [-http-addr ADDR]", args)
	if err != nil {
		return err
	}
	if _, _, err := cl.do(ctx, http.MethodPut, "/v1/agent/reload", nil); err != nil {
		return fmt.Errorf("error reloading: %w", err)
	}
	fmt.Fprintln(c.stdout, "Configuration reload triggered")
	return nil
}

func runMaint(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "maint", "maint [-enable|-disable] [-reason TEXT] [-service ID]")
	client := addClientFlags(fs, c)
	enable := fs.Bool("enable", false, "enable maintenance mode")
	disable := fs.Bool("disable", false, "disable maintenance mode")
	reason := fs.String("reason", "", "reason shown in the maintenance check's notes")
	service := fs.String("service", "", "service ID (default: the whole node)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cl, err := client()
	if err != nil {
		return err
	}
	if *enable && *disable {
		return usageErrorf("maint: -enable and -disable are exclusive")
	}
	if !*enable && !*disable {
		var checks map[string]struct {
			CheckID, Name, Notes, ServiceID string
		}
		if err := cl.getJSON(ctx, "/v1/agent/checks", &checks); err != nil {
			return err
		}
		ids := make([]string, 0, len(checks))
		for id := range checks {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			ch := checks[id]
			switch {
			case id == "_node_maintenance":
				fmt.Fprintf(c.stdout, "Node:\n  Name:   %s\n  Reason: %s\n", "local", ch.Notes)
			case strings.HasPrefix(id, "_service_maintenance:"):
				fmt.Fprintf(c.stdout, "Service:\n  ID:     %s\n  Reason: %s\n", ch.ServiceID, ch.Notes)
			}
		}
		return nil
	}
	q := url.Values{"enable": {fmt.Sprint(*enable)}}
	if *reason != "" {
		q.Set("reason", *reason)
	}
	path := "/v1/agent/maintenance?" + q.Encode()
	if *service != "" {
		path = "/v1/agent/service/maintenance/" + url.PathEscape(*service) + "?" + q.Encode()
	}
	if _, _, err := cl.do(ctx, http.MethodPut, path, nil); err != nil {
		return err
	}
	state := "enabled"
	if *disable {
		state = "disabled"
	}
	if *service != "" {
		fmt.Fprintf(c.stdout, "Service maintenance is now %s for %q\n", state, *service)
	} else {
		fmt.Fprintf(c.stdout, "Node maintenance is now %s\n", state)
	}
	return nil
}
