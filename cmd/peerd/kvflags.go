package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// The kv commands take consul's flags and print consul's lines, which
// scripts parse: "Success! Data written to: k", "Error! Did not write to
// k: CAS failed" (exit 1), `kv get -detailed`'s table. Flags come before
// the key, as in consul; get and delete also accept their boolean flags
// after it.

func kvPath(key string) string {
	return "/v1/kv/" + strings.TrimPrefix(key, "/")
}

// kvPair is the subset of Consul's KV answer the commands print.
type kvPair struct {
	Key         string
	Value       []byte
	Flags       uint64
	CreateIndex uint64
	ModifyIndex uint64
	LockIndex   uint64
	Session     string
}

// consulFail prints a consul-style error line on stderr and returns the
// exit status 1 consul uses for it.
func consulFail(c *cli, format string, args ...any) error {
	fmt.Fprintf(c.stderr, format+"\n", args...)
	return exitStatus(1)
}

// hoistBoolFlags moves the named boolean flags found anywhere in args to
// the front, so that `kv get KEY -recurse` works as it always did here.
func hoistBoolFlags(args []string, names ...string) []string {
	var flags, rest []string
	for _, a := range args {
		bare := strings.TrimLeft(a, "-")
		name, _, _ := strings.Cut(bare, "=")
		if strings.HasPrefix(a, "-") && len(bare) > 0 && len(a)-len(bare) <= 2 && slices.Contains(names, name) {
			flags = append(flags, a)
			continue
		}
		rest = append(rest, a)
	}
	return append(flags, rest...)
}

func runKVGet(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "kv get", "kv get [-recurse|-keys [-separator S]] [-detailed] [-base64] KEY_OR_PREFIX")
	recurse := fs.Bool("recurse", false, "list every key under the prefix with its value (key:value)")
	keys := fs.Bool("keys", false, "list the keys under the prefix, up to the separator")
	separator := fs.String("separator", "/", "with -keys, list keys up to this separator (\"\" lists every key)")
	detailed := fs.Bool("detailed", false, "print the key's metadata (indexes, flags) with the value")
	b64 := fs.Bool("base64", false, "print values base64-encoded")
	client := addClientFlags(fs, c)
	if err := parseFlags(fs, hoistBoolFlags(args, "recurse", "keys", "detailed", "base64")); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usageErrorf("kv get: too many arguments (expected 1, got %d)", fs.NArg())
	}
	key := strings.TrimPrefix(fs.Arg(0), "/")
	if key == "" && !*recurse && !*keys {
		return consulFail(c, "Error! Missing KEY argument")
	}
	cl, err := client()
	if err != nil {
		return err
	}
	value := func(v []byte) string {
		if *b64 {
			return base64.StdEncoding.EncodeToString(v)
		}
		return string(v)
	}
	switch {
	case *keys:
		q := url.Values{"keys": {""}}
		if *separator != "" {
			q.Set("separator", *separator)
		}
		b, code, err := cl.do(ctx, http.MethodGet, kvPath(key)+"?"+q.Encode(), nil)
		if code == http.StatusNotFound {
			return nil // no keys: nothing printed, as consul
		}
		if err != nil {
			return consulFail(c, "Error querying Consul agent: %s", consulAPIError(code, err))
		}
		var list []string
		if err := json.Unmarshal(b, &list); err != nil {
			return fmt.Errorf("kv get: agent answer: %w", err)
		}
		for _, k := range list {
			fmt.Fprintln(c.stdout, k)
		}
		return nil
	case *recurse:
		b, code, err := cl.do(ctx, http.MethodGet, kvPath(key)+"?recurse", nil)
		if code == http.StatusNotFound {
			return nil
		}
		if err != nil {
			return consulFail(c, "Error querying Consul agent: %s", consulAPIError(code, err))
		}
		var pairs []kvPair
		if err := json.Unmarshal(b, &pairs); err != nil {
			return fmt.Errorf("kv get: agent answer: %w", err)
		}
		for i, p := range pairs {
			if *detailed {
				fmt.Fprintln(c.stdout, detailedKV(p, value(p.Value)))
				if i < len(pairs)-1 {
					fmt.Fprintln(c.stdout)
				}
				continue
			}
			fmt.Fprintf(c.stdout, "%s:%s\n", p.Key, value(p.Value))
		}
		return nil
	}
	b, code, err := cl.do(ctx, http.MethodGet, kvPath(key), nil)
	if code == http.StatusNotFound {
		return consulFail(c, "Error! No key exists at: %s", key)
	}
	if err != nil {
		return consulFail(c, "Error querying Consul agent: %s", consulAPIError(code, err))
	}
	var pairs []kvPair
	if err := json.Unmarshal(b, &pairs); err != nil || len(pairs) == 0 {
		return fmt.Errorf("kv get: agent answer: %v", err)
	}
	if *detailed {
		fmt.Fprintln(c.stdout, detailedKV(pairs[0], value(pairs[0].Value)))
		return nil
	}
	v := value(pairs[0].Value)
	io.WriteString(c.stdout, v)
	if !strings.HasSuffix(v, "\n") {
		fmt.Fprintln(c.stdout)
	}
	return nil
}

// detailedKV is consul's `kv get -detailed` table (without the final
// newline): one "Name  value" row per field, in consul's order and spacing.
func detailedKV(p kvPair, value string) string {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 2, 6, ' ', 0)
	fmt.Fprintf(tw, "CreateIndex\t%d\n", p.CreateIndex)
	fmt.Fprintf(tw, "Flags\t%d\n", p.Flags)
	fmt.Fprintf(tw, "Key\t%s\n", p.Key)
	fmt.Fprintf(tw, "LockIndex\t%d\n", p.LockIndex)
	fmt.Fprintf(tw, "ModifyIndex\t%d\n", p.ModifyIndex)
	session := p.Session
	if session == "" {
		session = "-"
	}
	fmt.Fprintf(tw, "Session\t%s\n", session)
	fmt.Fprintf(tw, "Value\t%s", value)
	tw.Flush()
	return b.String()
}

func runKVPut(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "kv put", "kv put [-flags N] [-cas -modify-index N] [-base64] KEY [VALUE|@FILE|-]")
	flags := fs.Uint64("flags", 0, "unsigned integer stored with the key (not read by peerd)")
	cas := fs.Bool("cas", false, "check-and-set: write only if the key's ModifyIndex is -modify-index (0: only if absent), against this agent's replica")
	modifyIndex := fs.Uint64("modify-index", 0, "the ModifyIndex -cas compares with")
	b64 := fs.Bool("base64", false, "the value is base64-encoded")
	client := addClientFlags(fs, c)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) < 1 || len(rest) > 2 {
		return usageErrorf("kv put: want KEY and VALUE (@FILE reads a file, - reads stdin, \\@ starts a literal @)")
	}
	key := rest[0]
	var value []byte
	var err error
	if len(rest) == 2 {
		// As consul kv put: @FILE is the file's contents, - is stdin, and
		// a leading \@ stands for a literal @.
		switch v := rest[1]; {
		case v == "-":
			if value, err = io.ReadAll(os.Stdin); err != nil {
				return consulFail(c, "Error! Failed to read stdin: %s", err)
			}
		case strings.HasPrefix(v, "@"):
			if value, err = os.ReadFile(v[1:]); err != nil {
				return consulFail(c, "Error! Failed to read file: %s", err)
			}
		case strings.HasPrefix(v, `\@`):
			value = []byte(v[1:])
		default:
			value = []byte(v)
		}
	}
	if *b64 {
		if value, err = base64.StdEncoding.DecodeString(string(value)); err != nil {
			return consulFail(c, "Error! Cannot base 64 decode data: %s", err)
		}
	}
	cl, err := client()
	if err != nil {
		return err
	}
	q := url.Values{}
	if *flags != 0 {
		q.Set("flags", strconv.FormatUint(*flags, 10))
	}
	if *cas {
		q.Set("cas", strconv.FormatUint(*modifyIndex, 10))
	}
	path := kvPath(key)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	b, code, err := cl.do(ctx, http.MethodPut, path, value)
	ok := err == nil && strings.TrimSpace(string(b)) == "true"
	switch {
	case *cas && err != nil:
		return consulFail(c, "Error! Did not write to %s: %s", key, consulAPIError(code, err))
	case *cas && !ok && *modifyIndex == 0:
		return consulFail(c, "Error! Did not write to %s: CAS performed with index=0 and key already exists.", key)
	case *cas && !ok:
		return consulFail(c, "Error! Did not write to %s: CAS failed", key)
	case err != nil:
		return consulFail(c, "Error! Failed writing data: %s", consulAPIError(code, err))
	case !ok:
		return consulFail(c, "Error! Failed writing data: the agent answered %q", strings.TrimSpace(string(b)))
	}
	fmt.Fprintf(c.stdout, "Success! Data written to: %s\n", key)
	return nil
}

func runKVDelete(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "kv delete", "kv delete [-recurse | -cas -modify-index N] KEY_OR_PREFIX")
	recurse := fs.Bool("recurse", false, "delete every key under the prefix")
	cas := fs.Bool("cas", false, "check-and-set: delete only if the key's ModifyIndex is -modify-index, against this agent's replica")
	modifyIndex := fs.Uint64("modify-index", 0, "the ModifyIndex -cas compares with")
	client := addClientFlags(fs, c)
	if err := parseFlags(fs, hoistBoolFlags(args, "recurse", "cas")); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usageErrorf("kv delete: too many arguments (expected 1, got %d)", fs.NArg())
	}
	key := strings.TrimPrefix(fs.Arg(0), "/")
	switch {
	case key == "" && !*recurse:
		return consulFail(c, "Error! Missing KEY argument")
	case *cas && *modifyIndex == 0:
		return consulFail(c, "Cannot delete a key that does not exist. Provide a -modify-index greater than than 0.")
	case *modifyIndex != 0 && !*cas:
		return consulFail(c, "Cannot specify -modify-index without -cas!")
	case *recurse && *cas:
		return consulFail(c, "Cannot specify both -cas and -recurse!")
	}
	cl, err := client()
	if err != nil {
		return err
	}
	switch {
	case *recurse:
		if _, code, err := cl.do(ctx, http.MethodDelete, kvPath(key)+"?recurse", nil); err != nil {
			return consulFail(c, "Error! Did not delete prefix %s: %s", key, consulAPIError(code, err))
		}
		fmt.Fprintf(c.stdout, "Success! Deleted keys with prefix: %s\n", key)
	case *cas:
		b, code, err := cl.do(ctx, http.MethodDelete, kvPath(key)+"?cas="+strconv.FormatUint(*modifyIndex, 10), nil)
		if err != nil {
			return consulFail(c, "Error! Did not delete key %s: %s", key, consulAPIError(code, err))
		}
		if strings.TrimSpace(string(b)) != "true" {
			return consulFail(c, "Error! Did not delete key %s: CAS failed", key)
		}
		fmt.Fprintf(c.stdout, "Success! Deleted key: %s\n", key)
	default:
		if _, code, err := cl.do(ctx, http.MethodDelete, kvPath(key), nil); err != nil {
			return consulFail(c, "Error deleting key %s: %s", key, consulAPIError(code, err))
		}
		fmt.Fprintf(c.stdout, "Success! Deleted key: %s\n", key)
	}
	return nil
}
