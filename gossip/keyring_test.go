package gossip

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func b64(k []byte) string { return base64.StdEncoding.EncodeToString(k) }

// startKeyed starts a loopback member with gossip key key (nil: none) and
// its keyring file in dir.
func startKeyed(tb testing.TB, name string, port int, key []byte, dir string) *Membership {
	tb.Helper()
	if port == 0 {
		port = -1
	}
	m, err := New(Config{
		NodeName:    name,
		BindAddr:    "127.0.0.1",
		BindPort:    port,
		Tags:        map[string]string{"id": name, "peer": "127.0.0.1:1"},
		SecretKey:   key,
		KeyringFile: filepath.Join(dir, KeyringFileName),
		Profile:     ProfileLocal,
		Logger:      testLogger(tb),
	})
	if err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	tb.Cleanup(func() { _ = m.Close() })
	return m
}

func memberAddr(m *Membership) string { return fmt.Sprintf("127.0.0.1:%d", m.LocalMember().Port) }

func waitMembers(tb testing.TB, ms []*Membership, n int) {
	tb.Helper()
	waitFor(tb, 30*time.Second, fmt.Sprintf("%d members everywhere", n), func() bool {
		for _, m := range ms {
			alive := 0
			for _, mem := range m.Members() {
				if mem.Status == StatusAlive {
					alive++
				}
			}
			if alive != n {
				return false
			}
		}
		return true
	})
}

// TestKeyringRotation rotates the gossip key of a 3-member loopback
// cluster (install K2, use K2, remove K1), checks that a member refuses to
// remove its primary key, that a restarted member keeps K2 from its
// keyring file although it is given K1, and that a member with K1 alone
// cannot join any more.
func TestKeyringRotation(t *testing.T) {
	t.Parallel()
	k1, k2 := testKey(1), testKey(2)
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	var ms []*Membership
	for i, d := range dirs {
		ms = append(ms, startKeyed(t, fmt.Sprintf("k%d", i), 0, k1, d))
	}
	for _, m := range ms[1:] {
		if _, err := m.Join([]string{memberAddr(ms[0])}); err != nil {
			t.Fatalf("join: %v", err)
		}
	}
	waitMembers(t, ms, 3)

	list := func(want, wantPrimary map[string]int) {
		t.Helper()
		r, err := ms[2].ListKeys(0)
		if err != nil {
			t.Fatalf("ListKeys: %v (%+v)", err, r)
		}
		if r.NumNodes != 3 || !maps.Equal(r.Keys, want) || !maps.Equal(r.PrimaryKeys, wantPrimary) {
			t.Fatalf("ListKeys = %+v, want keys %v primary %v of 3 nodes", r, want, wantPrimary)
		}
	}
	list(map[string]int{b64(k1): 3}, map[string]int{b64(k1): 3})

	steps := []struct {
		name          string
		op            func(string, uint8) (KeyringResult, error)
		key           []byte
		keys, primary map[string]int
	}{
		{"install K2", ms[0].InstallKey, k2, map[string]int{b64(k1): 3, b64(k2): 3}, map[string]int{b64(k1): 3}},
		{"use K2", ms[1].UseKey, k2, map[string]int{b64(k1): 3, b64(k2): 3}, map[string]int{b64(k2): 3}},
		{"remove K1", ms[0].RemoveKey, k1, map[string]int{b64(k2): 3}, map[string]int{b64(k2): 3}},
	}
	for i, st := range steps {
		if i == 2 {
			// Before K1 goes: the primary key cannot be removed.
			r, err := ms[0].RemoveKey(b64(k2), 1)
			if !errors.Is(err, ErrKeyring) || r.NumErr != 3 || r.Error != "3/3 nodes reported failure" {
				t.Fatalf("removing the primary key: %v %+v, want 3/3 failures", err, r)
			}
			for node, msg := range r.Messages {
				if !strings.Contains(msg, "primary key") {
					t.Errorf("%s answered %q, want the primary key refused", node, msg)
				}
			}
		}
		r, err := st.op(b64(st.key), 0)
		if err != nil || r.NumResp != 3 || r.Error != "" {
			t.Fatalf("%s: %v %+v", st.name, err, r)
		}
		list(st.keys, st.primary)
	}
	for i, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, KeyringFileName))
		if err != nil {
			t.Fatal(err)
		}
		keys, err := parseKeyring(b)
		if err != nil || len(keys) != 1 || !bytes.Equal(keys[0], k2) {
			t.Fatalf("k%d keyring file = %s (%v), want K2 alone", i, b, err)
		}
	}

	// Restart k1 with K1 only as its configured key: its keyring file wins.
	port := int(ms[1].LocalMember().Port)
	if err := ms[1].Leave(5 * time.Second); err != nil {
		t.Fatalf("leave: %v", err)
	}
	_ = ms[1].Close()
	ms[1] = startKeyed(t, "k1", port, k1, dirs[1])
	if got := ms[1].LocalKeys(); len(got) != 1 || got[0] != b64(k2) {
		t.Fatalf("restarted member's keys = %v, want [K2]", got)
	}
	if _, err := ms[1].Join([]string{memberAddr(ms[0])}); err != nil {
		t.Fatalf("restarted member cannot join: %v", err)
	}
	waitMembers(t, ms, 3)

	// A newcomer with K1 alone cannot join.
	stranger := startKeyed(t, "k3", 0, k1, t.TempDir())
	if n, err := stranger.Join([]string{memberAddr(ms[0])}); err == nil || n != 0 {
		t.Fatalf("a member with the retired key joined: n=%d err=%v", n, err)
	}
	if n := ms[0].NumMembers(); n != 3 {
		t.Fatalf("k0 sees %d members after the stranger's attempt, want 3", n)
	}
}

// TestKeyringDisabled: without gossip encryption every member answers the
// keyring operations with serf's error, and no keyring file is written.
func TestKeyringDisabled(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	m := startKeyed(t, "plain", 0, nil, dir)
	if m.EncryptionEnabled() || m.LocalKeys() != nil {
		t.Fatal("encryption enabled without a key")
	}
	r, err := m.ListKeys(0)
	if !errors.Is(err, ErrKeyring) || r.NumErr != 1 || r.Messages["plain"] != "Keyring is empty (encryption not enabled)" {
		t.Fatalf("ListKeys = %v %+v, want the not-enabled error", err, r)
	}
	r, err = m.InstallKey(b64(testKey(3)), 0)
	if err == nil || r.Messages["plain"] != "No keyring to modify (encryption not enabled)" {
		t.Fatalf("InstallKey = %v %+v, want the not-enabled error", err, r)
	}
	if _, err := os.Stat(filepath.Join(dir, KeyringFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("keyring file written without encryption: %v", err)
	}
}

// TestKeyringFileEnables: a keyring file alone enables encryption, its
// first key primary.
func TestKeyringFileEnables(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := writeKeyringFile(filepath.Join(dir, KeyringFileName), [][]byte{testKey(5), testKey(4)}); err != nil {
		t.Fatal(err)
	}
	m := startKeyed(t, "filed", 0, nil, dir)
	if got := m.LocalKeys(); len(got) != 2 || got[0] != b64(testKey(5)) || got[1] != b64(testKey(4)) {
		t.Fatalf("keys = %v, want [K5 K4]", got)
	}
}

func TestParseKeyring(t *testing.T) {
	k16 := b64(bytes.Repeat([]byte{7}, 16))
	k32 := b64(testKey(1))
	tests := []struct {
		name, in string
		n        int
		err      string
	}{
		{"one", `["` + k32 + `"]`, 1, ""},
		{"two sizes", `["` + k32 + `","` + k16 + `"]`, 2, ""},
		{"empty", `[]`, 0, "no keys"},
		{"not json", `nope`, 0, "not a JSON array"},
		{"object", `{"a":1}`, 0, "not a JSON array"},
		{"bad base64", `["!!"]`, 0, "not base64"},
		{"bad size", `["` + b64([]byte("short")) + `"]`, 0, "key 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := parseKeyring([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || len(keys) != tt.n {
				t.Fatalf("got %d keys, %v; want %d", len(keys), err, tt.n)
			}
		})
	}
}

func FuzzParseKeyring(f *testing.F) {
	f.Add([]byte(`["` + b64(testKey(1)) + `"]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`["AAAA", 3]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := parseKeyring(b)
		if err != nil {
			return
		}
		if len(keys) == 0 {
			t.Fatal("no keys without an error")
		}
		for _, k := range keys {
			if n := len(k); n != 16 && n != 24 && n != 32 {
				t.Fatalf("key of %d bytes accepted", n)
			}
		}
	})
}
