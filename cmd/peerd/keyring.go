package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// runKeyring is `consul keyring -list | -list-primary | -install KEY | -use
// KEY | -remove KEY [-relay-factor N]`: it changes the gossip keyring of
// every member through the local agent (/v1/operator/keyring), with
// consul's output lines. It exits 1 when a member failed or did not answer.
func runKeyring(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "keyring", "keyring -list | -list-primary | -install KEY | -use KEY | -remove KEY [-relay-factor N] [-http-addr ADDR]")
	list := fs.Bool("list", false, "list all keys currently in use within the cluster")
	listPrimary := fs.Bool("list-primary", false, "list all primary keys currently in use within the cluster")
	install := fs.String("install", "", "install a new encryption key on every member")
	use := fs.String("use", "", "make an installed key the primary one (the one that encrypts)")
	remove := fs.String("remove", "", "remove a key (not the primary one) from every member")
	relay := fs.Int("relay-factor", 0, "relay each member's answer through this many other members (0-5)")
	local := fs.Bool("local-only", false, "accepted for list queries; peerd has a single pool")
	client := addClientFlags(fs, c)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageErrorf("keyring: unexpected arguments %q", fs.Args())
	}
	n := 0
	for _, set := range []bool{*list, *listPrimary, *install != "", *use != "", *remove != ""} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		fs.Usage()
		return exitStatus(1)
	case n > 1:
		return consulFail(c, "Only a single action is allowed")
	case *relay < 0 || *relay > 5:
		return consulFail(c, "Error parsing relay factor: Relay factor must be in range: [0, 5]")
	case *local && !*list:
		return consulFail(c, "Error validating local-only: local-only can only be set for list requests")
	}
	cl, err := client()
	if err != nil {
		return err
	}
	q := ""
	if *relay != 0 {
		q = "?relay-factor=" + strconv.Itoa(*relay)
	}
	if *list || *listPrimary {
		fmt.Fprintf(c.stdout, "==> Gathering installed %sencryption keys...\n", map[bool]string{true: "primary "}[*listPrimary])
		b, code, err := cl.do(ctx, http.MethodGet, "/v1/operator/keyring"+q, nil)
		if err != nil {
			return consulFail(c, "error: %s", consulAPIError(code, err))
		}
		var rs []struct {
			WAN         bool
			Datacenter  string
			Segment     string
			Messages    map[string]string
			Keys        map[string]int
			PrimaryKeys map[string]int
			NumNodes    int
		}
		if err := json.Unmarshal(b, &rs); err != nil {
			return consulFail(c, "error: %v", err)
		}
		for _, r := range rs {
			keys := r.Keys
			if *listPrimary {
				keys = r.PrimaryKeys
			}
			fmt.Fprintln(c.stdout, formatKeyring(r.Datacenter, r.WAN, r.Segment, r.Messages, keys, r.NumNodes))
		}
		return nil
	}
	method, key, what := http.MethodPost, *install, "Installing new gossip encryption key..."
	switch {
	case *use != "":
		method, key, what = http.MethodPut, *use, "Changing primary gossip encryption key..."
	case *remove != "":
		method, key, what = http.MethodDelete, *remove, "Removing gossip encryption key..."
	}
	fmt.Fprintf(c.stdout, "==> %s\n", what)
	body, err := json.Marshal(struct{ Key string }{key})
	if err != nil {
		return err
	}
	if _, code, err := cl.do(ctx, method, "/v1/operator/keyring"+q, body); err != nil {
		return consulFail(c, "error: %s", consulAPIError(code, err))
	}
	return nil
}

// formatKeyring prints one pool as consul does:
//
//	dc1 (LAN):
//	  KEY [3/3]
//
// preceded by an empty line, members' messages first. Lines are sorted
// here (consul prints them in map order).
func formatKeyring(dc string, wan bool, segment string, messages map[string]string, keys map[string]int, total int) string {
	var b strings.Builder
	b.WriteString("\n")
	pool := dc + " (LAN)"
	if wan {
		pool = "WAN"
	}
	if segment != "" {
		pool += " [" + segment + "]"
	}
	b.WriteString(pool + ":\n")
	for _, from := range sortedKeys(messages) {
		fmt.Fprintf(&b, "  ===> %s: %s\n", from, messages[from])
	}
	for _, k := range sortedKeys(keys) {
		fmt.Fprintf(&b, "  %s [%d/%d]\n", k, keys[k], total)
	}
	return strings.TrimRight(b.String(), "\n")
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
