package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/peerd/peerd/identity"
)

// identityCommands returns the key, certificate and revocation subcommands.
func identityCommands() []command {
	return []command{
		{name: "keygen", synopsis: "generate an Ed25519 key pair (FILE and FILE.pub)", run: runKeygen},
		{name: "nodeid", synopsis: "print the node ID of a key file", run: runNodeID},
		{name: "cert", synopsis: "issue, inspect and verify delegation certificates", run: runCert},
		{name: "revoke", synopsis: "sign a revocation of a key", run: runRevoke},
		{name: "rotate", synopsis: "sign a root rotation statement with the old and the new root key", run: runRotate},
	}
}

// certCommands are the sub-subcommands of "peerd cert".
func certCommands() []command {
	return []command{
		{name: "issue", synopsis: "sign a certificate for a subject key", run: runCertIssue},
		{name: "inspect", synopsis: "show a certificate chain file", run: runCertInspect},
		{name: "verify", synopsis: "verify a certificate chain file against trusted roots", run: runCertVerify},
	}
}

func runKeygen(_ context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "keygen", "keygen -out FILE")
	out := fs.String("out", "", "private key file to write (mode 0600); the public key goes to FILE.pub")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" && fs.NArg() == 1 {
		*out = fs.Arg(0)
	} else if fs.NArg() != 0 {
		return usageErrorf("keygen: unexpected arguments %q", fs.Args())
	}
	if *out == "" {
		return usageErrorf("keygen: -out FILE is required")
	}
	priv, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	if err := identity.WriteKeyFiles(*out, priv); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s\n", identity.NodeID(priv.Public().(ed25519.PublicKey)))
	fmt.Fprintf(c.stderr, "wrote %s (private, mode 0600) and %s.pub\n", *out, *out)
	return nil
}

func runNodeID(_ context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "nodeid", "nodeid KEYFILE")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErrorf("nodeid: want exactly one key file")
	}
	pub, err := identity.ReadPublicKeyFile(fs.Arg(0))
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, identity.NodeID(pub))
	return nil
}

func runCert(ctx context.Context, c *cli, args []string) error {
	subs := certCommands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		w := c.stderr
		if len(args) > 0 {
			w = c.stdout
		}
		fmt.Fprintf(w, "Usage: peerd cert <command> [flags]\n\nCommands:\n")
		for _, s := range subs {
			fmt.Fprintf(w, "  %-8s %s\n", s.name, s.synopsis)
		}
		if len(args) == 0 {
			return usageErrorf("cert: no command given (issue, inspect, verify)")
		}
		return nil
	}
	for _, s := range subs {
		if s.name == args[0] {
			return s.run(ctx, c, args[1:])
		}
	}
	return usageErrorf("cert: unknown command %q (want issue, inspect or verify)", args[0])
}

func runCertIssue(_ context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "cert issue", "cert issue -ca-key KEY [-ca-cert CHAIN] -subject KEY.pub|NODEID -name NAME [-services LIST] [-kv LIST] [-intentions] [-delegate N] [-ttl DUR] -out FILE")
	caKey := fs.String("ca-key", "", "issuer's private key file (the root key, or a delegated key with -ca-cert)")
	caCert := fs.String("ca-cert", "", "issuer's certificate chain file; omit when -ca-key is the root")
	subject := fs.String("subject", "", "subject's public key file (or any key file) or node ID")
	name := fs.String("name", "", "subject name, e.g. web-01")
	services := fs.String("services", "", `comma-separated service patterns: "web", "web-*", "*"`)
	kv := fs.String("kv", "", `comma-separated KV prefixes, "*" for all keys`)
	intentions := fs.Bool("intentions", false, "the subject may sign intentions")
	delegate := fs.Int("delegate", 0, "levels of certificates the subject may issue below itself (0 = none)")
	ttl := fs.Duration("ttl", 720*time.Hour, "validity period")
	notBefore := fs.String("not-before", "", "start of validity, RFC 3339 (default: now)")
	serial := fs.Uint64("serial", 0, "serial number (default: random)")
	out := fs.String("out", "", "chain file to write")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageErrorf("cert issue: unexpected arguments %q", fs.Args())
	}
	if err := requireFlags("cert issue", "-ca-key", *caKey, "-subject", *subject, "-name", *name, "-out", *out); err != nil {
		return err
	}
	if *ttl <= 0 {
		return usageErrorf("cert issue: -ttl must be positive")
	}
	nb := time.Now().UTC()
	if *notBefore != "" {
		t, err := time.Parse(time.RFC3339, *notBefore)
		if err != nil {
			return usageErrorf("cert issue: -not-before: %v", err)
		}
		nb = t
	}
	issuer, err := identity.ReadPrivateKeyFile(*caKey)
	if err != nil {
		return err
	}
	var parent identity.Chain
	if *caCert != "" {
		if parent, err = identity.ReadChainFile(*caCert); err != nil {
			return err
		}
	}
	subj, err := readSubject(*subject)
	if err != nil {
		return err
	}
	na := nb.Add(*ttl)
	if leaf := parent.Leaf(); leaf != nil {
		// A child cannot outlive its parent: shorten rather than fail.
		if nb.Before(leaf.NotBefore) {
			nb = leaf.NotBefore
		}
		if na.After(leaf.NotAfter) {
			na = leaf.NotAfter
			fmt.Fprintf(c.stderr, "note: validity shortened to end with the issuer's certificate at %s\n", fmtTime(na))
		}
	}
	if *serial == 0 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		*serial = binary.BigEndian.Uint64(b[:]) >> 1
	}
	cons := identity.Constraints{
		Services:       splitList(*services),
		KVPrefixes:     splitList(*kv),
		SignIntentions: *intentions,
		DelegateDepth:  *delegate,
	}
	chain, err := identity.Issue(issuer, parent, subj, *name, cons, nb, na, *serial)
	if err != nil {
		return err
	}
	if err := identity.WriteChainFile(*out, chain); err != nil {
		return err
	}
	leaf := chain.Leaf()
	fmt.Fprintf(c.stdout, "issued %q for %s, valid %s to %s, %d link(s), written to %s\n",
		leaf.Name, identity.NodeID(leaf.Subject), fmtTime(leaf.NotBefore), fmtTime(leaf.NotAfter), len(chain), *out)
	return nil
}

// requireFlags takes (flag name, value) pairs and reports the first empty one.
func requireFlags(cmd string, pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] == "" {
			return usageErrorf("%s: %s is required", cmd, pairs[i])
		}
	}
	return nil
}

// readSubject accepts a key file (public or private) or a node ID.
func readSubject(arg string) (ed25519.PublicKey, error) {
	pub, err := identity.ReadPublicKeyFile(arg)
	if err == nil {
		return pub, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		if id, perr := identity.ParseNodeID(arg); perr == nil {
			return id, nil
		}
		return nil, fmt.Errorf("subject %q is neither a key file nor a node ID", arg)
	}
	return nil, err
}

// splitList splits a comma-separated flag value, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// certJSON is the -json form of one link of a chain.
type certJSON struct {
	Index          int      `json:"index"`
	Name           string   `json:"name"`
	Serial         uint64   `json:"serial"`
	Issuer         string   `json:"issuer"`
	Subject        string   `json:"subject"`
	NotBefore      string   `json:"not_before"`
	NotAfter       string   `json:"not_after"`
	Services       []string `json:"services"`
	KVPrefixes     []string `json:"kv_prefixes"`
	SignIntentions bool     `json:"sign_intentions"`
	DelegateDepth  int      `json:"delegate_depth"`
	Signature      string   `json:"signature"`
}

func runCertInspect(_ context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "cert inspect", "cert inspect [-json] FILE")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErrorf("cert inspect: want exactly one chain file")
	}
	chain, err := identity.ReadChainFile(fs.Arg(0))
	if err != nil {
		return err
	}
	links := make([]certJSON, len(chain))
	for i, cert := range chain {
		links[i] = certJSON{
			Index: i, Name: cert.Name, Serial: cert.Serial,
			Issuer: identity.NodeID(cert.Issuer), Subject: identity.NodeID(cert.Subject),
			NotBefore: fmtTime(cert.NotBefore), NotAfter: fmtTime(cert.NotAfter),
			Services: nonNil(cert.Constraints.Services), KVPrefixes: nonNil(cert.Constraints.KVPrefixes),
			SignIntentions: cert.Constraints.SignIntentions, DelegateDepth: cert.Constraints.DelegateDepth,
			Signature: hex.EncodeToString(cert.Signature),
		}
	}
	h := chain.Hash()
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Hash  string     `json:"hash"`
			Links []certJSON `json:"links"`
		}{hex.EncodeToString(h[:]), links})
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	for i, l := range links {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "link %d\t%s\n", l.Index, l.Name)
		fmt.Fprintf(w, "  serial\t%d\n", l.Serial)
		fmt.Fprintf(w, "  issuer\t%s\n", l.Issuer)
		fmt.Fprintf(w, "  subject\t%s\n", l.Subject)
		fmt.Fprintf(w, "  valid\t%s to %s\n", l.NotBefore, l.NotAfter)
		fmt.Fprintf(w, "  services\t%s\n", listOrNone(l.Services))
		fmt.Fprintf(w, "  kv prefixes\t%s\n", listOrNone(l.KVPrefixes))
		fmt.Fprintf(w, "  intentions\t%s\n", yesNo(l.SignIntentions))
		fmt.Fprintf(w, "  delegate depth\t%d\n", l.DelegateDepth)
	}
	fmt.Fprintf(w, "\nchain hash\t%x\n", h)
	return w.Flush()
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func runCertVerify(_ context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "cert verify", "cert verify -trust ROOT.pub [-trust ...] [-revocations FILE ...] [-at TIME] FILE")
	var trust, revs stringList
	fs.Var(&trust, "trust", "trusted root public key file or node ID (repeatable)")
	fs.Var(&revs, "revocations", "revocation file to apply first (repeatable)")
	at := fs.String("at", "", "verify as of this time, RFC 3339 (default: now)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErrorf("cert verify: want exactly one chain file")
	}
	if len(trust) == 0 {
		return usageErrorf("cert verify: at least one -trust root is required")
	}
	now := time.Now()
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return usageErrorf("cert verify: -at: %v", err)
		}
		now = t
	}
	roots := make([]ed25519.PublicKey, 0, len(trust))
	for _, t := range trust {
		pub, err := readSubject(t)
		if err != nil {
			return fmt.Errorf("-trust %s: %w", t, err)
		}
		roots = append(roots, pub)
	}
	v := identity.NewVerifier(roots...)
	for _, p := range revs {
		r, err := readRevocation(p)
		if err != nil {
			return err
		}
		if err := v.AddRevocation(r, now); err != nil {
			return fmt.Errorf("revocation %s: %w", p, err)
		}
	}
	file := fs.Arg(0)
	chain, err := identity.ReadChainFile(file)
	if err != nil {
		return fmt.Errorf("%s is not valid: %w", file, err)
	}
	caps, err := v.Verify(chain.Leaf().Subject, chain, now)
	if err != nil {
		return fmt.Errorf("%s is not valid: %w", file, err)
	}
	fmt.Fprintf(c.stdout, "valid: %q %s, %d link(s), services [%s], kv [%s], intentions %s, delegate %d, until %s\n",
		caps.Name, identity.NodeID(caps.Key), len(chain), strings.Join(caps.Services, " "), strings.Join(caps.KVPrefixes, " "),
		yesNo(caps.SignIntentions), caps.DelegateDepth, fmtTime(caps.NotAfter))
	return nil
}

func readRevocation(path string) (*identity.Revocation, error) {
	b, err := readSmallFile(path, identity.MaxRevocationSize)
	if err != nil {
		return nil, err
	}
	r, err := identity.UnmarshalRevocation(b)
	if err != nil {
		return nil, fmt.Errorf("revocation %s: %w", path, err)
	}
	return r, nil
}

// readSmallFile reads path, refusing files larger than max bytes.
func readSmallFile(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, max)
	}
	return b, nil
}

func runRevoke(_ context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "revoke", "revoke -ca-key KEY [-ca-cert CHAIN] -subject KEYFILE|NODEID -out FILE")
	caKey := fs.String("ca-key", "", "revoking key: the root, or an ancestor of the subject with -ca-cert")
	caCert := fs.String("ca-cert", "", "the revoking key's chain file; omit for the root")
	subject := fs.String("subject", "", "key file or node ID of the key to revoke")
	out := fs.String("out", "", "revocation file to write (CBOR)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageErrorf("revoke: unexpected arguments %q", fs.Args())
	}
	if err := requireFlags("revoke", "-ca-key", *caKey, "-subject", *subject, "-out", *out); err != nil {
		return err
	}
	issuer, err := identity.ReadPrivateKeyFile(*caKey)
	if err != nil {
		return err
	}
	var chain identity.Chain
	if *caCert != "" {
		if chain, err = identity.ReadChainFile(*caCert); err != nil {
			return err
		}
	}
	subj, err := readSubject(*subject)
	if err != nil {
		return err
	}
	r, err := identity.NewRevocation(issuer, chain, subj, time.Now())
	if err != nil {
		return err
	}
	b, err := r.Marshal()
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "revocation of %s by %s written to %s\n", identity.NodeID(subj), identity.NodeID(r.Issuer), *out)
	return nil
}

func runRotate(_ context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "rotate", "rotate -old-key OLD.key -new-key NEW.key -out FILE")
	oldKey := fs.String("old-key", "", "current root private key file")
	newKey := fs.String("new-key", "", "new root private key file")
	out := fs.String("out", "", "rotation statement file to write (CBOR)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *oldKey == "" || *newKey == "" || *out == "" || fs.NArg() != 0 {
		return usageErrorf("rotate: -old-key, -new-key and -out are required")
	}
	oldPriv, err := identity.ReadPrivateKeyFile(*oldKey)
	if err != nil {
		return err
	}
	newPriv, err := identity.ReadPrivateKeyFile(*newKey)
	if err != nil {
		return err
	}
	r, err := identity.NewRotation(oldPriv, newPriv, time.Now())
	if err != nil {
		return err
	}
	b, err := r.Marshal()
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "rotation %s -> %s written to %s\n", identity.NodeID(r.OldRoot), identity.NodeID(r.NewRoot), *out)
	return nil
}
