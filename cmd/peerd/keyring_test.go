package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
)

// TestKeyringRotation rotates the gossip key of three agents started with
// -encrypt K1, the way docs/OPERATIONS.md tells operators to: install K2
// (peerd keyring), use K2 (consul/api), remove K1 (consul/api), listing the
// keys with raw HTTP, consul/api, peerd keyring and consul keyring after
// each step, and checking after each step that a KV write on n1 still
// reaches n3. Then n2 restarts with its data dir and -encrypt K1 on its
// command line: its keyring file wins, it gossips with K2 and rejoins. An
// agent with K1 alone cannot join, and an agent without encryption answers
// the keyring endpoint with serf's error.
func TestKeyringRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	k1 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	k2 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32))
	m := newMesh(t)
	enc := []string{"-encrypt", k1}
	n1 := m.start("n1", agentOpts{extra: enc})
	n2 := m.start("n2", agentOpts{join: []string{"n1"}, extra: enc})
	n3 := m.start("n3", agentOpts{join: []string{"n1"}, extra: enc})
	expectAllAlive(t, n1, n2, n3)
	c2 := consulClient(t, n2, "")
	var consulBin string
	if p := filepath.Join(repoRoot(t), "bin", "tools", "consul"); os.Getenv("PEERD_TOOLS") != "0" {
		if _, err := os.Stat(p); err == nil {
			consulBin = p // also check consul keyring when it is built
		}
	}

	step := 0
	connected := func() {
		t.Helper()
		step++
		key, val := fmt.Sprintf("keyring/step%d", step), fmt.Sprintf("v%d", step)
		n1.kvPut(key, val)
		waitFor(t, 30*time.Second, func() error {
			got, err := n3.kvGetRaw(key)
			if err != nil || got != val {
				return fmt.Errorf("step %d: n3 reads %q (%v), want %q", step, got, err, val)
			}
			return nil
		})
	}
	// expectKeys checks the list of keys through every client.
	expectKeys := func(p *agentProc, keys, primary map[string]int) {
		t.Helper()
		b, err := p.get("/v1/operator/keyring")
		if err != nil {
			t.Fatal(err)
		}
		var raw []map[string]any
		if err := json.Unmarshal(b, &raw); err != nil || len(raw) != 1 {
			t.Fatalf("GET /v1/operator/keyring = %s (%v), want one pool", b, err)
		}
		for _, f := range []string{"WAN", "Datacenter", "Segment", "Keys", "PrimaryKeys", "NumNodes"} {
			if _, ok := raw[0][f]; !ok {
				t.Fatalf("GET /v1/operator/keyring = %s: no %s", b, f)
			}
		}
		rs, err := consulClient(t, p, "").Operator().KeyringList(nil)
		if err != nil || len(rs) != 1 {
			t.Fatalf("consul/api KeyringList: %v %v", rs, err)
		}
		r := rs[0]
		if r.WAN || r.Datacenter != "dc1" || r.NumNodes != 3 || !maps.Equal(r.Keys, keys) || !maps.Equal(r.PrimaryKeys, primary) {
			t.Fatalf("KeyringList = %+v, want keys %v primary %v of 3 in dc1 (LAN)", *r, keys, primary)
		}
		want := "==> Gathering installed encryption keys...\n\ndc1 (LAN):\n"
		for _, k := range sortedKeys(keys) {
			want += fmt.Sprintf("  %s [%d/3]\n", k, keys[k])
		}
		if out := m.cli("keyring", "-list", "-http-addr", p.ip+":8500"); out != want {
			t.Fatalf("peerd keyring -list:\n%s\nwant:\n%s", out, want)
		}
		if consulBin != "" {
			c := consulCLI{t: t, bin: consulBin}
			for flag, want := range map[string]map[string]int{"-list": keys, "-list-primary": primary} {
				out := c.ok(p, "keyring", flag)
				if !strings.Contains(out, "dc1 (LAN):\n") || strings.Count(out, "/3]") != len(want) {
					t.Fatalf("consul keyring %s:\n%s\nwant %d keys of dc1 (LAN)", flag, out, len(want))
				}
				for k, n := range want {
					if !strings.Contains(out, fmt.Sprintf("\n  %s [%d/3]", k, n)) {
						t.Fatalf("consul keyring %s:\n%s\nwant %s [%d/3]", flag, out, k, n)
					}
				}
			}
		}
	}

	expectKeys(n3, map[string]int{k1: 3}, map[string]int{k1: 3})
	connected()

	// Install K2 with peerd keyring.
	if out := m.cli("keyring", "-install", k2, "-http-addr", n1.ip+":8500"); out != "==> Installing new gossip encryption key...\n" {
		t.Fatalf("peerd keyring -install printed %q", out)
	}
	expectKeys(n1, map[string]int{k1: 3, k2: 3}, map[string]int{k1: 3})
	connected()

	// Use K2 with consul/api.
	if err := c2.Operator().KeyringUse(k2, nil); err != nil {
		t.Fatalf("KeyringUse: %v", err)
	}
	expectKeys(n2, map[string]int{k1: 3, k2: 3}, map[string]int{k2: 3})
	connected()

	// The primary key cannot be removed: 500 and each member's refusal,
	// through every client.
	err := c2.Operator().KeyringRemove(k2, &consul.WriteOptions{RelayFactor: 1})
	if err == nil || !strings.Contains(err.Error(), "Unexpected response code: 500") ||
		!strings.Contains(err.Error(), "dc1 (LAN) error: 3/3 nodes reported failure") ||
		!strings.Contains(err.Error(), "n3: removing the primary key is not allowed") {
		t.Fatalf("removing the primary key: %v", err)
	}
	out, err := m.cliErr("keyring", "-remove", k2, "-http-addr", n3.ip+":8500")
	if err == nil || !strings.Contains(out, "==> Removing gossip encryption key...\nerror: Unexpected response code: 500 (") {
		t.Fatalf("peerd keyring -remove PRIMARY: %v\n%s", err, out)
	}
	// A relay factor out of range is a 400, as Consul's.
	if b, err := n1.get("/v1/operator/keyring?relay-factor=6"); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("relay-factor=6: %v %s", err, b)
	}

	// Remove K1 with consul/api.
	if err := c2.Operator().KeyringRemove(k1, &consul.WriteOptions{RelayFactor: 2}); err != nil {
		t.Fatalf("KeyringRemove: %v", err)
	}
	expectKeys(n3, map[string]int{k2: 3}, map[string]int{k2: 3})
	connected()

	// n2 restarts with -encrypt K1 on its command line: its keyring file
	// (K2) wins, and it says so.
	n2.stop()
	n2.launch()
	expectAllAlive(t, n1, n2, n3)
	if logs := n2.Logs(); !strings.Contains(logs, "the keyring file does not hold the configured encrypt key") {
		t.Fatalf("n2 did not log that its keyring file wins:\n%s", tail(logs, 40))
	}
	expectKeys(n1, map[string]int{k2: 3}, map[string]int{k2: 3})
	connected()
	n2.kvPut("keyring/from-n2", "back")
	waitFor(t, 30*time.Second, func() error {
		got, err := n3.kvGetRaw("keyring/from-n2")
		if err != nil || got != "back" {
			return fmt.Errorf("n3 reads %q (%v), want n2's write", got, err)
		}
		return nil
	})

	// An agent with K1 alone cannot join: its join is refused and nobody
	// lists it.
	n4 := m.start("n4", agentOpts{extra: enc})
	if b, err := n4.put("/v1/agent/join/"+n1.ip, ""); err == nil {
		t.Fatalf("n4 with the retired key joined n1: %s", b)
	}
	for _, p := range []*agentProc{n1, n2, n3} {
		ms, err := p.members()
		if err != nil {
			t.Fatal(err)
		}
		for _, mem := range ms {
			if mem.Name == "n4" {
				t.Fatalf("%s lists n4, which gossips with the retired key", p.name)
			}
		}
	}
	if ms, err := n4.members(); err != nil || len(ms) != 1 {
		t.Fatalf("n4 sees %v (%v), want itself alone", ms, err)
	}

	// Without gossip encryption the endpoint answers serf's error.
	n5 := m.start("n5", agentOpts{})
	resp, err := http.Get(n5.httpURL("/v1/operator/keyring"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError ||
		!strings.Contains(string(body), "n5: Keyring is empty (encryption not enabled)") {
		t.Fatalf("keyring list without encryption: %s %s", resp.Status, body)
	}
}
