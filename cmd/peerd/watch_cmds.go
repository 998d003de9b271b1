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
	"strconv"
	"time"
)

// watch runs Consul blocking queries in a loop and prints the result as
// indented JSON each time it changes, like `consul watch` without a
// handler. It stops when ctx ends (Ctrl-C) or after -count results.

const watchSynopsis = `watch -type key -key KEY | -type keyprefix -prefix P | -type service -service NAME [-tag T] [-passing]
      | -type services | -type nodes | -type checks [-state S] | -type event [-name NAME]  [-count N]`

func runWatch(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "watch", watchSynopsis)
	client := addClientFlags(fs, c)
	typ := fs.String("type", "", "key, keyprefix, service, services, nodes, checks or event")
	key := fs.String("key", "", "key (type key)")
	prefix := fs.String("prefix", "", "prefix (type keyprefix)")
	service := fs.String("service", "", "service name (type service, checks)")
	tag := fs.String("tag", "", "tag filter (type service)")
	passing := fs.Bool("passing", false, "only passing instances (type service)")
	state := fs.String("state", "any", "check state (type checks without -service)")
	name := fs.String("name", "", "event name (type event; empty: every event)")
	count := fs.Int("count", 0, "stop after this many results (0: run until interrupted)")
	wait := fs.Duration("wait", 5*time.Minute, "blocking wait per query")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cl, err := client()
	if err != nil {
		return err
	}
	cl.hc.Timeout = *wait + *wait/16 + 10*time.Second
	q := url.Values{}
	var path string
	switch *typ {
	case "key":
		if *key == "" {
			return usageErrorf("watch: -key is required for type key")
		}
		path = kvPath(*key)
	case "keyprefix":
		path = kvPath(*prefix)
		q.Set("recurse", "")
	case "service":
		if *service == "" {
			return usageErrorf("watch: -service is required for type service")
		}
		path = "/v1/health/service/" + url.PathEscape(*service)
		if *tag != "" {
			q.Set("tag", *tag)
		}
		if *passing {
			q.Set("passing", "1")
		}
	case "services":
		path = "/v1/catalog/services"
	case "nodes":
		path = "/v1/catalog/nodes"
	case "checks":
		if *service != "" {
			path = "/v1/health/checks/" + url.PathEscape(*service)
		} else {
			path = "/v1/health/state/" + url.PathEscape(*state)
		}
	case "event":
		path = "/v1/event/list"
		if *name != "" {
			q.Set("name", *name)
		}
	default:
		return usageErrorf("watch: -type must be key, keyprefix, service, services, nodes, checks or event")
	}
	var index uint64
	var last []byte
	printed := 0
	for ctx.Err() == nil {
		q.Set("index", strconv.FormatUint(index, 10))
		q.Set("wait", wait.String())
		body, idx, status, err := cl.blockingGet(ctx, path+"?"+q.Encode())
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			fmt.Fprintf(c.stderr, "watch: %v; retrying\n", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			continue
		}
		prev := index
		if idx < index && *typ != "event" { // event indexes are not monotonic
			idx = 0 // the agent restarted: start over
		}
		index = idx
		if status == http.StatusNotFound {
			body = []byte("null")
		} else if *typ == "key" {
			// The API answers a one-element list; consul watch prints
			// the object itself.
			var one []json.RawMessage
			if json.Unmarshal(body, &one) == nil && len(one) == 1 {
				body = one[0]
			}
		}
		if bytes.Equal(body, last) {
			continue
		}
		last = body
		if *typ == "event" {
			body = newEvents(body, prev)
		}
		var out bytes.Buffer
		if err := json.Indent(&out, body, "", "  "); err != nil {
			out.Reset()
			out.Write(body)
		}
		out.WriteByte('\n')
		c.stdout.Write(out.Bytes())
		printed++
		if *count > 0 && printed >= *count {
			return nil
		}
	}
	return nil
}

// newEvents drops from an event list the events up to the one whose
// index (Consul's, from its ID) was the previous answer's, as consul
// watch does: each answer then shows only the events not shown before.
func newEvents(body []byte, prev uint64) []byte {
	var evs []json.RawMessage
	if prev == 0 || json.Unmarshal(body, &evs) != nil {
		return body
	}
	for i, raw := range evs {
		var ev struct{ ID string }
		if json.Unmarshal(raw, &ev) == nil && eventIDIndex(ev.ID) == prev {
			out, err := json.Marshal(evs[i+1:])
			if err != nil {
				return body
			}
			return out
		}
	}
	return body
}

// eventIDIndex is Consul's index of an event ID: the UUID's two 64-bit
// halves XORed (0 for a malformed ID).
func eventIDIndex(id string) uint64 {
	if len(id) != 36 {
		return 0
	}
	lo, err1 := strconv.ParseUint(id[0:8]+id[9:13]+id[14:18], 16, 64)
	hi, err2 := strconv.ParseUint(id[19:23]+id[24:36], 16, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return lo ^ hi
}

// blockingGet is a GET that returns the body and X-Consul-Index, treating
// 404 as an answer (an absent key).
func (a *apiClient) blockingGet(ctx context.Context, path string) ([]byte, uint64, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path, nil)
	if err != nil {
		return nil, 0, 0, err
	}
	if a.token != "" {
		req.Header.Set("X-Consul-Token", a.token)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, 0, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, 0, 0, err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound {
		return nil, 0, resp.StatusCode, fmt.Errorf("agent: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	idx, _ := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
	return bytes.TrimSpace(b), idx, resp.StatusCode, nil
}

// kvEntry is consul kv export's format.
type kvEntry struct {
	Key   string `json:"key"`
	Flags uint64 `json:"flags"`
	Value string `json:"value"` // base64
}

func runKVExport(ctx context.Context, c *cli, args []string) error {
	cl, rest, err := clientFlags(c, "kv export", "kv export [PREFIX]", args)
	if err != nil {
		return err
	}
	prefix := ""
	if len(rest) > 1 {
		return usageErrorf("kv export: at most one prefix")
	}
	if len(rest) == 1 {
		prefix = rest[0]
	}
	var pairs []struct {
		Key   string
		Flags uint64
		Value []byte
	}
	b, code, err := cl.do(ctx, http.MethodGet, kvPath(prefix)+"?recurse", nil)
	if err != nil && code != http.StatusNotFound {
		return err
	}
	if code == http.StatusOK {
		if err := json.Unmarshal(b, &pairs); err != nil {
			return err
		}
	}
	out := make([]kvEntry, 0, len(pairs))
	for _, p := range pairs {
		out = append(out, kvEntry{Key: p.Key, Flags: p.Flags, Value: encodeB64(p.Value)})
	}
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "\t")
	return enc.Encode(out)
}

func runKVImport(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "kv import", "kv import [-prefix P] [@FILE | - | JSON]")
	client := addClientFlags(fs, c)
	prefix := fs.String("prefix", "", "prefix added to every imported key")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cl, err := client()
	if err != nil {
		return err
	}
	var data []byte
	switch {
	case fs.NArg() == 0 || fs.Arg(0) == "-":
		data, err = io.ReadAll(os.Stdin)
	case fs.Arg(0)[0] == '@':
		data, err = os.ReadFile(fs.Arg(0)[1:])
	default:
		data = []byte(fs.Arg(0))
	}
	if err != nil {
		return err
	}
	var entries []kvEntry
	if err := json.Unmarshal(data, &entries); err != nil {
		return fmt.Errorf("kv import: not a kv export (JSON list of {key, flags, value}): %w", err)
	}
	for _, e := range entries {
		v, err := decodeB64(e.Value)
		if err != nil {
			return fmt.Errorf("kv import: %s: value is not base64: %w", e.Key, err)
		}
		key := *prefix + e.Key
		p := kvPath(key)
		if e.Flags != 0 {
			p += "?flags=" + strconv.FormatUint(e.Flags, 10)
		}
		if _, _, err := cl.do(ctx, http.MethodPut, p, v); err != nil {
			return fmt.Errorf("kv import: %s: %w", key, err)
		}
		fmt.Fprintf(c.stdout, "Imported: %s\n", key)
	}
	return nil
}

func encodeB64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func decodeB64(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	return base64.StdEncoding.DecodeString(s)
}
