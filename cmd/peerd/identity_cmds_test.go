package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerd/peerd/identity"
)

// idResult is what one peerd invocation produced.
type idResult struct {
	stdout, stderr string
	code           int
}

// idRunner runs peerd subcommands, in-process or as a real binary, inside dir.
type idRunner struct {
	t   testing.TB
	dir string
	bin string // path of a built peerd binary; "" runs dispatch in-process
}

// path returns name inside the runner's directory.
func (r *idRunner) path(name string) string { return filepath.Join(r.dir, name) }

func (r *idRunner) run(args ...string) idResult {
	r.t.Helper()
	if r.bin != "" {
		cmd := exec.Command(r.bin, args...)
		cmd.Dir = r.dir
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			r.t.Fatalf("run %v: %v", args, err)
		}
		return idResult{out.String(), errb.String(), code}
	}
	var out, errb bytes.Buffer
	c := &cli{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	err := dispatch(context.Background(), c, args)
	code := exitCode(&errb, err)
	return idResult{out.String(), errb.String(), code}
}

// ok runs args and fails the test unless peerd exits 0.
func (r *idRunner) ok(args ...string) idResult {
	r.t.Helper()
	res := r.run(args...)
	if res.code != 0 {
		r.t.Fatalf("peerd %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), res.code, res.stdout, res.stderr)
	}
	return res
}

// fails runs args and checks that peerd exits non-zero with one clear
// "peerd: ..." line containing want, and no panic.
func (r *idRunner) fails(want string, args ...string) idResult {
	r.t.Helper()
	res := r.run(args...)
	if res.code == 0 {
		r.t.Fatalf("peerd %s succeeded, want an error containing %q\nstdout: %s", strings.Join(args, " "), want, res.stdout)
	}
	checkOneLineError(r.t, res.stderr, want)
	return res
}

func checkOneLineError(t testing.TB, stderr, want string) {
	t.Helper()
	if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") {
		t.Fatalf("peerd panicked:\n%s", stderr)
	}
	var last string
	for _, l := range strings.Split(strings.TrimRight(stderr, "\n"), "\n") {
		if strings.HasPrefix(l, "peerd: ") {
			if last != "" {
				t.Fatalf("more than one error line:\n%s", stderr)
			}
			last = l
		}
	}
	if last == "" || !strings.Contains(last, want) {
		t.Fatalf("stderr %q, want one line \"peerd: ...%s...\"", stderr, want)
	}
}

// idPKI is the files of a small hierarchy made through the CLI:
// root -> ops (delegate 1, web-*, config/, intentions) -> node (web-1*, config/web/).
type idPKI struct {
	r                          *idRunner
	rootKey, opsKey, nodeKey   string
	opsCert, nodeCert, rootPub string
	opsID, nodeID              string
	opsNotAfter                time.Time
}

func newIDPKI(r *idRunner) *idPKI {
	r.t.Helper()
	p := &idPKI{r: r, rootKey: r.path("root.key"), opsKey: r.path("ops.key"), nodeKey: r.path("node.key"),
		opsCert: r.path("ops.cert"), nodeCert: r.path("node.cert")}
	p.rootPub = p.rootKey + ".pub"
	rootID := strings.TrimSpace(r.ok("keygen", "-out", p.rootKey).stdout)
	p.opsID = strings.TrimSpace(r.ok("keygen", "-out", p.opsKey).stdout)
	p.nodeID = strings.TrimSpace(r.ok("keygen", "-out", p.nodeKey).stdout)
	for _, id := range []string{rootID, p.opsID, p.nodeID} {
		if !strings.HasPrefix(id, "12D3KooW") {
			r.t.Fatalf("keygen printed %q, want a node ID", id)
		}
	}
	r.ok("cert", "issue", "-ca-key", p.rootKey, "-subject", p.opsKey+".pub", "-name", "ops",
		"-services", "web-*,api", "-kv", "config/", "-intentions", "-delegate", "1", "-ttl", "720h", "-out", p.opsCert)
	r.ok("cert", "issue", "-ca-key", p.opsKey, "-ca-cert", p.opsCert, "-subject", p.nodeID, "-name", "web-01",
		"-services", "web-1*", "-kv", "config/web/", "-ttl", "24h", "-out", p.nodeCert)
	c, err := identity.ReadChainFile(p.opsCert)
	if err != nil {
		r.t.Fatal(err)
	}
	p.opsNotAfter = c.Leaf().NotAfter
	return p
}

func TestIdentityCLIRoundTrip(t *testing.T) {
	r := &idRunner{t: t, dir: t.TempDir()}
	p := newIDPKI(r)

	if st, _ := os.Stat(p.rootKey); st.Mode().Perm() != 0o600 {
		t.Fatalf("root key mode %#o", st.Mode().Perm())
	}
	if got := strings.TrimSpace(r.ok("nodeid", p.nodeKey+".pub").stdout); got != p.nodeID {
		t.Fatalf("nodeid = %q, want %q", got, p.nodeID)
	}

	table := r.ok("cert", "inspect", p.nodeCert).stdout
	for _, want := range []string{"link 0", "ops", "link 1", "web-01", p.nodeID, "web-1*", "config/web/", "chain hash"} {
		if !strings.Contains(table, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, table)
		}
	}
	var js struct {
		Hash  string
		Links []certJSON
	}
	if err := json.Unmarshal([]byte(r.ok("cert", "inspect", "-json", p.nodeCert).stdout), &js); err != nil {
		t.Fatal(err)
	}
	if len(js.Links) != 2 || js.Links[1].Subject != p.nodeID || !js.Links[0].SignIntentions || js.Links[0].DelegateDepth != 1 || len(js.Hash) != 64 {
		t.Fatalf("inspect -json: %+v", js)
	}

	out := r.ok("cert", "verify", "-trust", p.rootPub, p.nodeCert).stdout
	if !strings.HasPrefix(out, `valid: "web-01" `+p.nodeID) || !strings.Contains(out, "2 link(s)") {
		t.Fatalf("verify output %q", out)
	}
	// The trust anchor may be given as a node ID too.
	rootID := strings.TrimSpace(r.ok("nodeid", p.rootPub).stdout)
	r.ok("cert", "verify", "-trust", rootID, p.nodeCert)

	// Issuing beyond the issuer's rights is refused at issue time.
	r.fails("constraints widened", "cert", "issue", "-ca-key", p.opsKey, "-ca-cert", p.opsCert, "-subject", p.nodeID,
		"-name", "x", "-services", "db", "-out", r.path("x.cert"))
	r.fails("may not delegate", "cert", "issue", "-ca-key", p.nodeKey, "-ca-cert", p.nodeCert, "-subject", p.opsID,
		"-name", "x", "-out", r.path("x.cert"))
	// A longer -ttl than the parent's is shortened, with a note.
	res := r.ok("cert", "issue", "-ca-key", p.opsKey, "-ca-cert", p.opsCert, "-subject", p.nodeID, "-name", "long",
		"-ttl", "87600h", "-out", r.path("long.cert"))
	if !strings.Contains(res.stderr, "shortened") {
		t.Errorf("no note about the shortened validity: %q", res.stderr)
	}
	r.ok("cert", "verify", "-trust", p.rootPub, r.path("long.cert"))

	// Expired, then not yet valid.
	r.fails("expired", "cert", "verify", "-trust", p.rootPub, "-at", time.Now().Add(48*time.Hour).UTC().Format(time.RFC3339), p.nodeCert)
	r.fails("not yet valid", "cert", "verify", "-trust", p.rootPub, "-at", time.Now().Add(-48*time.Hour).UTC().Format(time.RFC3339), p.nodeCert)
	// Wrong trust anchor.
	r.fails("untrusted root", "cert", "verify", "-trust", p.opsKey+".pub", p.nodeCert)

	// Revocations: of the node by its parent; of the parent by the root.
	r.ok("revoke", "-ca-key", p.opsKey, "-ca-cert", p.opsCert, "-subject", p.nodeKey+".pub", "-out", r.path("node.rev"))
	r.fails(`chain link 1 ("web-01"): revoked`, "cert", "verify", "-trust", p.rootPub, "-revocations", r.path("node.rev"), p.nodeCert)
	r.ok("revoke", "-ca-key", p.rootKey, "-subject", p.opsID, "-out", r.path("ops.rev"))
	r.fails(`chain link 0 ("ops"): revoked`, "cert", "verify", "-trust", p.rootPub, "-revocations", r.path("ops.rev"), p.nodeCert)
	r.ok("cert", "verify", "-trust", p.rootPub, "-revocations", r.path("node.rev"), p.opsCert)
	// A revocation signed by someone without authority is refused.
	r.ok("revoke", "-ca-key", p.nodeKey, "-subject", p.opsID, "-out", r.path("bogus.rev"))
	r.fails("not a trusted root", "cert", "verify", "-trust", p.rootPub, "-revocations", r.path("bogus.rev"), p.nodeCert)

	// Rotation statements are written; applying them is the agent's job.
	r.ok("keygen", "-out", r.path("root2.key"))
	r.ok("rotate", "-old-key", p.rootKey, "-new-key", r.path("root2.key"), "-out", r.path("rotation.cbor"))
	b, err := os.ReadFile(r.path("rotation.cbor"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := identity.UnmarshalRotation(b); err != nil {
		t.Fatal(err)
	}
}

// writeWidened writes a chain whose leaf was signed by ops with more rights
// than ops holds, bypassing Issue's checks.
func writeWidened(t testing.TB, p *idPKI, out string) {
	t.Helper()
	ops, err := identity.ReadPrivateKeyFile(p.opsKey)
	if err != nil {
		t.Fatal(err)
	}
	opsChain, err := identity.ReadChainFile(p.opsCert)
	if err != nil {
		t.Fatal(err)
	}
	node, err := identity.ParseNodeID(p.nodeID)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	cert := &identity.Certificate{Subject: node, Name: "greedy", Serial: 7,
		Constraints: identity.Constraints{Services: []string{"*"}, KVPrefixes: []string{"config/web/"}},
		NotBefore:   now, NotAfter: now.Add(time.Hour)}
	if err := cert.Sign(ops); err != nil {
		t.Fatal(err)
	}
	if err := identity.WriteChainFile(out, append(opsChain, cert)); err != nil {
		t.Fatal(err)
	}
}

func TestIdentityCLIWidenedRejected(t *testing.T) {
	r := &idRunner{t: t, dir: t.TempDir()}
	p := newIDPKI(r)
	writeWidened(t, p, r.path("greedy.cert"))
	r.ok("cert", "inspect", r.path("greedy.cert"))
	r.fails(`chain link 1 ("greedy"): constraints widened: service pattern "*" is not covered`,
		"cert", "verify", "-trust", p.rootPub, r.path("greedy.cert"))
}

func TestIdentityCLIBadInput(t *testing.T) {
	r := &idRunner{t: t, dir: t.TempDir()}
	p := newIDPKI(r)
	garbage := r.path("garbage.cert")
	os.WriteFile(garbage, []byte("\x00\x01 this is not a certificate \xff"), 0o644)
	openKey := r.path("open.key")
	data, _ := os.ReadFile(p.rootKey)
	os.WriteFile(openKey, data, 0o644)
	os.Chmod(openKey, 0o644)
	empty := r.path("empty.cert")
	os.WriteFile(empty, nil, 0o644)

	cases := []struct {
		name string
		want string
		args []string
	}{
		{"missing chain file", "no such file", []string{"cert", "verify", "-trust", p.rootPub, r.path("nope.cert")}},
		{"missing trust file", "neither a key file nor a node ID", []string{"cert", "verify", "-trust", r.path("nope.pub"), p.nodeCert}},
		{"garbage chain", "malformed", []string{"cert", "verify", "-trust", p.rootPub, garbage}},
		{"garbage inspect", "malformed", []string{"cert", "inspect", garbage}},
		{"empty chain", "empty", []string{"cert", "inspect", empty}},
		{"key given as chain", "block type", []string{"cert", "verify", "-trust", p.rootPub, p.rootPub}},
		{"public key as CA key", "public key file", []string{"cert", "issue", "-ca-key", p.rootPub, "-subject", p.nodeID, "-name", "n", "-out", r.path("o.cert")}},
		{"chain as CA key", "unsupported key type", []string{"cert", "issue", "-ca-key", p.nodeCert, "-subject", p.nodeID, "-name", "n", "-out", r.path("o.cert")}},
		{"world-readable CA key", "chmod 600", []string{"cert", "issue", "-ca-key", openKey, "-subject", p.nodeID, "-name", "n", "-out", r.path("o.cert")}},
		{"garbage as trust", "not a peerd key file", []string{"cert", "verify", "-trust", garbage, p.nodeCert}},
		{"bad subject", "neither a key file nor a node ID", []string{"cert", "issue", "-ca-key", p.rootKey, "-subject", "12D3KooWnotreally", "-name", "n", "-out", r.path("o.cert")}},
		{"bad name", "space", []string{"cert", "issue", "-ca-key", p.rootKey, "-subject", p.nodeID, "-name", "a b", "-out", r.path("o.cert")}},
		{"bad pattern", "only at the end", []string{"cert", "issue", "-ca-key", p.rootKey, "-subject", p.nodeID, "-name", "n", "-services", "w*b", "-out", r.path("o.cert")}},
		{"missing flag", "-name is required", []string{"cert", "issue", "-ca-key", p.rootKey, "-subject", p.nodeID, "-out", r.path("o.cert")}},
		{"bad ttl", "-ttl", []string{"cert", "issue", "-ca-key", p.rootKey, "-subject", p.nodeID, "-name", "n", "-ttl", "soon", "-out", r.path("o.cert")}},
		{"no trust", "-trust", []string{"cert", "verify", p.nodeCert}},
		{"bad -at", "-at", []string{"cert", "verify", "-trust", p.rootPub, "-at", "yesterday", p.nodeCert}},
		{"garbage revocation", "revocation", []string{"cert", "verify", "-trust", p.rootPub, "-revocations", garbage, p.nodeCert}},
		{"keygen over existing", "refusing to overwrite", []string{"keygen", "-out", p.rootKey}},
		{"keygen without -out", "-out FILE is required", []string{"keygen"}},
		{"unknown cert command", "unknown command", []string{"cert", "sign"}},
		{"revoke without subject", "-subject is required", []string{"revoke", "-ca-key", p.rootKey, "-out", r.path("x.rev")}},
		{"revoke self", "cannot revoke itself", []string{"revoke", "-ca-key", p.rootKey, "-subject", p.rootPub, "-out", r.path("x.rev")}},
		{"rotate to itself", "same key", []string{"rotate", "-old-key", p.rootKey, "-new-key", p.rootKey, "-out", r.path("x.rot")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			(&idRunner{t: t, dir: r.dir}).fails(c.want, c.args...)
		})
	}
}

// TestCertVerifyEveryByteFlip flips every byte of a certificate file in turn;
// verify must fail each time with one clear line.
func TestCertVerifyEveryByteFlip(t *testing.T) {
	r := &idRunner{t: t, dir: t.TempDir()}
	p := newIDPKI(r)
	orig, err := os.ReadFile(p.nodeCert)
	if err != nil {
		t.Fatal(err)
	}
	mut := r.path("flipped.cert")
	for i := range orig {
		b := bytes.Clone(orig)
		b[i] ^= 0x01
		if err := os.WriteFile(mut, b, 0o644); err != nil {
			t.Fatal(err)
		}
		res := r.run("cert", "verify", "-trust", p.rootPub, mut)
		if res.code == 0 {
			t.Fatalf("byte %d flipped: verify succeeded", i)
		}
		checkOneLineError(t, res.stderr, "is not valid")
	}
}

// TestIdentityBinary runs the round trip with the real binary: keygen, issue,
// inspect, verify; byte flips; a widened, an expired and a revoked-ancestor chain.
func TestIdentityBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	r := &idRunner{t: t, dir: t.TempDir(), bin: peerdBinary(t)}
	p := newIDPKI(r)
	r.ok("cert", "inspect", p.nodeCert)
	r.ok("cert", "inspect", "-json", p.nodeCert)
	if out := r.ok("cert", "verify", "-trust", p.rootPub, p.nodeCert).stdout; !strings.HasPrefix(out, "valid: ") {
		t.Fatalf("verify: %q", out)
	}
	// Exit status 1 and one line for every rejected file.
	orig, _ := os.ReadFile(p.nodeCert)
	for i := 0; i < len(orig); i += 23 {
		b := bytes.Clone(orig)
		b[i] ^= 0xff
		os.WriteFile(r.path("flipped.cert"), b, 0o644)
		if res := r.fails("is not valid", "cert", "verify", "-trust", p.rootPub, r.path("flipped.cert")); res.code != 1 {
			t.Fatalf("byte %d: exit %d, want 1", i, res.code)
		}
	}
	writeWidened(t, p, r.path("greedy.cert"))
	r.fails("constraints widened", "cert", "verify", "-trust", p.rootPub, r.path("greedy.cert"))
	r.fails("expired", "cert", "verify", "-trust", p.rootPub, "-at", p.opsNotAfter.Add(time.Second).Format(time.RFC3339), p.nodeCert)
	r.ok("revoke", "-ca-key", p.rootKey, "-subject", p.opsKey+".pub", "-out", r.path("ops.rev"))
	r.fails(`chain link 0 ("ops"): revoked`, "cert", "verify", "-trust", p.rootPub, "-revocations", r.path("ops.rev"), p.nodeCert)
	if res := r.run("cert", "verify"); res.code != 2 {
		t.Fatalf("usage error: exit %d, want 2", res.code)
	}
}
