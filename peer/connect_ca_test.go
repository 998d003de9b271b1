package peer

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/identity"
)

func mustChain(t testing.TB, root ed25519.PrivateKey, pub ed25519.PublicKey, services []string, nb, na time.Time) []byte {
	t.Helper()
	c, err := identity.Issue(root, nil, pub, "n", identity.Constraints{Services: services}, nb, na, 1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestNodeCACert: a node's CA certificate is deterministic for a key and a
// chain, bound to the chain's validity, and verifyNodeCA accepts it and
// only it.
func TestNodeCACert(t *testing.T) {
	_, root, _ := ed25519.GenerateKey(rand.Reader)
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	nb := time.Date(2026, 11, 1, 0, 0, 0, 500, time.UTC)
	na := nb.Add(30 * 24 * time.Hour)
	chain := mustChain(t, root, pub, []string{"web"}, nb, na)
	der, err := nodeCACert(key, chain)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := nodeCACert(key, chain)
	if !bytes.Equal(der, again) {
		t.Fatal("two CA certificates for the same key and chain differ")
	}
	renewed, _ := nodeCACert(key, mustChain(t, root, pub, []string{"web"}, nb, na.Add(time.Hour)))
	if bytes.Equal(der, renewed) {
		t.Fatal("a renewed chain gives the same CA certificate")
	}
	c, err := verifyNodeCA(der, pub)
	if err != nil {
		t.Fatal(err)
	}
	if !c.NotBefore.Equal(nb.Truncate(time.Second)) || !c.NotAfter.Equal(na.Truncate(time.Second)) {
		t.Errorf("validity %v–%v, want the chain's %v–%v", c.NotBefore, c.NotAfter, nb, na)
	}
	if !c.IsCA || c.MaxPathLen != 0 || !c.MaxPathLenZero || c.Subject.CommonName != identity.NodeID(pub) {
		t.Errorf("CA fields: IsCA %v MaxPathLen %d/%v CN %q", c.IsCA, c.MaxPathLen, c.MaxPathLenZero, c.Subject.CommonName)
	}
	rc, _ := x509.ParseCertificate(renewed)
	if !bytes.Equal(rc.SubjectKeyId, c.SubjectKeyId) || rc.Subject.String() != c.Subject.String() {
		t.Error("a renewed CA certificate changed its subject or key ID: older leaves would not chain to it")
	}
	rootDER, _ := nodeCACert(key, nil)
	if rc, _ := x509.ParseCertificate(rootDER); rc == nil || !rc.NotAfter.Equal(rootNodeNotAfter) {
		t.Errorf("root-key node CA: %v", rc)
	}

	// A CA certificate with the node's key signed by another key, a leaf
	// (not a CA), and garbage.
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"},
		NotBefore: nb, NotAfter: na, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	otherCA, _ := x509.CreateCertificate(nil, tmpl, tmpl, otherPub, otherKey)
	parent, _ := x509.ParseCertificate(otherCA)
	foreignSigned, err := x509.CreateCertificate(nil, tmpl, parent, pub, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := *tmpl
	leafTmpl.IsCA = false
	notCA, _ := x509.CreateCertificate(nil, &leafTmpl, &leafTmpl, pub, key)
	tampered := bytes.Clone(der)
	tampered[len(tampered)-1] ^= 1
	for _, tc := range []struct {
		name string
		der  []byte
		want string
	}{
		{"another node's CA", otherCA, "not the node's identity key"},
		{"signed by another key", foreignSigned, "not self-signed"},
		{"not a CA", notCA, "not a CA"},
		{"bad signature", tampered, "not self-signed"},
		{"garbage", []byte{0x30, 0x03, 0x02, 0x01}, "connect ca:"},
		{"too large", make([]byte, maxConnectCASize+1), "limit"},
	} {
		if _, err := verifyNodeCA(tc.der, pub); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestTrustDomainOf: Consul's shape, the same across rotations of the
// first root, different for another root.
func TestTrustDomainOf(t *testing.T) {
	key := func() ed25519.PublicKey { p, _, _ := ed25519.GenerateKey(rand.Reader); return p }
	r0, r1, r2, other := key(), key(), key(), key()
	rots := []rotationLink{{old: r1, new: r2}, {old: r0, new: r1}}
	td := trustDomainOf(r0, nil)
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.consul$`).MatchString(td) {
		t.Fatalf("trust domain %q is not <uuid>.consul", td)
	}
	for _, tc := range []struct {
		name  string
		first ed25519.PublicKey
		rots  []rotationLink
		same  bool
	}{
		{"old root, rotations known", r0, rots, true},
		{"middle root", r1, rots, true},
		{"newest root", r2, rots, true},
		{"newest root, one rotation known", r2, rots[:1], false},
		{"another root", other, rots, false},
		{"a cycle ends", r0, []rotationLink{{old: r1, new: r0}, {old: r0, new: r1}}, false},
	} {
		if got := trustDomainOf(tc.first, tc.rots); (got == td) != tc.same {
			t.Errorf("%s: %s, want same as %s: %v", tc.name, got, td, tc.same)
		}
	}
}

// caGet serves one request through the API handler.
func caGet(t testing.TB, h http.Handler, method, path string, body string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader(body)))
	return w
}

func decodeAs[T any](t testing.TB, w *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body.String())
	}
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("%v: %s", err, w.Body.String())
	}
	return v
}

func rootsPool(t testing.TB, roots apiCARoots) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	for _, r := range roots.Roots {
		if !pool.AppendCertsFromPEM([]byte(r.RootCert)) {
			t.Fatalf("root %s: bad PEM", r.ID)
		}
	}
	return pool
}

// TestConnectCAEndpoints drives one agent's Connect CA endpoints: its own
// root, a leaf that verifies under it with the right SPIFFE URI and key, a
// refusal for a service its certificate does not allow, caching and
// renewal (a blocking query woken by it), authorize with the minted URI
// and the read-only configuration.
func TestConnectCAEndpoints(t *testing.T) {
	root, node := newKeys(t)
	a := testAgent(t, t.TempDir(), root, node, []string{"web*"})
	defer a.Close()
	h := newAPI(a)

	roots := decodeAs[apiCARoots](t, caGet(t, h, "GET", "/v1/agent/connect/ca/roots", ""))
	if len(roots.Roots) != 1 || !roots.Roots[0].Active || roots.ActiveRootID != roots.Roots[0].ID {
		t.Fatalf("roots = %+v, want this node's CA, active", roots)
	}
	if want := trustDomainOf(root.Public().(ed25519.PublicKey), nil); roots.TrustDomain != want {
		t.Fatalf("trust domain %q, want %q", roots.TrustDomain, want)
	}
	if n, ok := a.replica.Node(a.id); !ok || !bytes.Equal(n.ConnectCA, a.ownConnectCADER()) {
		t.Fatal("the node record does not carry this node's CA certificate")
	}
	if other := decodeAs[apiCARoots](t, caGet(t, h, "GET", "/v1/connect/ca/roots", "")); other.ActiveRootID != roots.ActiveRootID {
		t.Fatal("/v1/connect/ca/roots differs from the agent's")
	}
	if w := caGet(t, h, "GET", "/v1/connect/ca/roots?pem=true", ""); !strings.HasPrefix(w.Body.String(), "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("?pem: %s", w.Body.String())
	}

	w := caGet(t, h, "GET", "/v1/agent/connect/ca/leaf/web", "")
	leaf := decodeAs[apiIssuedCert](t, w)
	wantURI := "spiffe://" + roots.TrustDomain + "/ns/default/dc/dc1/svc/web"
	if leaf.ServiceURI != wantURI || leaf.Service != "web" {
		t.Fatalf("leaf for %q at %q, want web at %q", leaf.Service, leaf.ServiceURI, wantURI)
	}
	if w.Header().Get("X-Consul-Index") != strconv.FormatUint(leaf.ModifyIndex, 10) {
		t.Errorf("X-Consul-Index %s, ModifyIndex %d", w.Header().Get("X-Consul-Index"), leaf.ModifyIndex)
	}
	pair, err := tls.X509KeyPair([]byte(leaf.CertPEM), []byte(leaf.PrivateKeyPEM))
	if err != nil {
		t.Fatalf("the leaf's certificate and key do not match: %v", err)
	}
	if _, ok := pair.PrivateKey.(*ecdsa.PrivateKey); !ok {
		t.Fatalf("leaf key is %T, want ECDSA", pair.PrivateKey)
	}
	lc, _ := x509.ParseCertificate(pair.Certificate[0])
	if _, err := lc.Verify(x509.VerifyOptions{Roots: rootsPool(t, roots), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("the leaf does not verify with the roots: %v", err)
	}
	if len(lc.URIs) != 1 || lc.URIs[0].String() != wantURI {
		t.Fatalf("leaf URIs %v", lc.URIs)
	}
	// testAgent's certificate ends within the hour, before leafTTL: the
	// leaf ends with the CA.
	if ca := a.ownConnectCA(); !leaf.ValidBefore.Equal(ca.NotAfter) {
		t.Errorf("leaf valid until %v, want the CA's end %v", leaf.ValidBefore, ca.NotAfter)
	}

	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/v1/agent/connect/ca/leaf/db", http.StatusForbidden, "does not allow service \"db\""},
		{"/v1/agent/connect/ca/leaf/we%2Fb", http.StatusBadRequest, "cannot be in a certificate URI"},
		{"/v1/agent/connect/ca/leaf/", http.StatusBadRequest, "service name"},
		{"/v1/agent/connect/ca/nope", http.StatusNotFound, "not a Connect CA endpoint"},
		{"/v1/connect/ca/leaf/web", http.StatusNotFound, "not a Connect CA endpoint"},
	} {
		if w := caGet(t, h, "GET", tc.path, ""); w.Code != tc.code || !strings.Contains(w.Body.String(), tc.want) {
			t.Errorf("%s: %d %s, want %d %q", tc.path, w.Code, w.Body.String(), tc.code, tc.want)
		}
	}

	// Cached: the same leaf again.
	if again := decodeAs[apiIssuedCert](t, caGet(t, h, "GET", "/v1/agent/connect/ca/leaf/web", "")); again.SerialNumber != leaf.SerialNumber {
		t.Fatal("a second request issued a new leaf")
	}
	// A blocking query on the current index returns when it is renewed.
	done := make(chan apiIssuedCert, 1)
	go func() {
		w := caGet(t, h, "GET", "/v1/agent/connect/ca/leaf/web?wait=30s&index="+strconv.FormatUint(leaf.ModifyIndex, 10), "")
		var v apiIssuedCert
		json.Unmarshal(w.Body.Bytes(), &v)
		done <- v
	}()
	a.ca.mu.Lock()
	due := a.ca.leaves["web"].renewAt
	a.ca.mu.Unlock()
	// A request at the renewal time renews it and wakes the waiter.
	if _, err := a.leafFor("web", due); err != nil {
		t.Fatal(err)
	}
	select {
	case renewed := <-done:
		if renewed.SerialNumber == leaf.SerialNumber || renewed.ModifyIndex <= leaf.ModifyIndex {
			t.Fatalf("renewed leaf %s index %d, was %s index %d", renewed.SerialNumber, renewed.ModifyIndex, leaf.SerialNumber, leaf.ModifyIndex)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the blocking leaf query did not return after the renewal")
	}

	// Authorize understands the URIs minted here.
	a.cfg.DefaultIntentionPolicy = intentionDeny
	w = caGet(t, h, "POST", "/v1/agent/connect/authorize", `{"Target":"db","ClientCertURI":"`+leaf.ServiceURI+`"}`)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"Authorized":false`) {
		t.Errorf("authorize (deny by default) = %d %s", w.Code, w.Body.String())
	}
	signed, err := SignIntention(crdt.Intention{SourceName: "web", DestinationName: "db", Action: "allow", Version: 1}, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.commit(context.Background(), func(now time.Time) (*crdt.Delta, error) {
		return a.replica.PutIntention(signed, a.trust, now)
	}); err != nil {
		t.Fatal(err)
	}
	w = caGet(t, h, "POST", "/v1/agent/connect/authorize", `{"Target":"db","ClientCertURI":"`+leaf.ServiceURI+`"}`)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"Authorized":true`) {
		t.Errorf("authorize (web → db allowed) = %d %s", w.Code, w.Body.String())
	}

	cfg := decodeAs[map[string]any](t, caGet(t, h, "GET", "/v1/connect/ca/configuration", ""))
	if cfg["Provider"] != "peerd" {
		t.Errorf("configuration = %v", cfg)
	}
	// Through the routes, as `consul connect ca set-config` sends it.
	if w = caGet(t, h, "PUT", "/v1/connect/ca/configuration", `{}`); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "cannot be configured") {
		t.Errorf("PUT configuration = %d %s", w.Code, w.Body.String())
	}
	if w = caGet(t, h, "PUT", "/v1/connect/ca/roots", `{}`); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("PUT roots = %d %s", w.Code, w.Body.String())
	}
}

// TestConnectRootsOtherNodes: another node's published CA is listed while
// its chain verifies; a CA certificate that is not its own is left out and
// counted; a revocation removes it at once and wakes a blocking query.
func TestConnectRootsOtherNodes(t *testing.T) {
	root, node := newKeys(t)
	a := testAgent(t, t.TempDir(), root, node, []string{"*"})
	defer a.Close()
	h := newAPI(a)
	now := time.Now()

	var publishUntil time.Time // zero: an hour
	publish := func(name string, ca func(key ed25519.PrivateKey, chain []byte) []byte) ed25519.PublicKey {
		pub, key, _ := ed25519.GenerateKey(rand.Reader)
		until := now.Add(time.Hour)
		if !publishUntil.IsZero() {
			until = publishUntil
		}
		chain := mustChain(t, root, pub, []string{"db"}, now.Add(-time.Minute), until)
		x, err := crdt.NewReplica(identity.NodeID(pub), nodeSigner{key}, crdt.Options{})
		if err != nil {
			t.Fatal(err)
		}
		d, err := x.PutNode(crdt.Node{Name: name, Cert: chain, ConnectCA: ca(key, chain)}, now)
		if err != nil {
			t.Fatal(err)
		}
		a.trust.learnFromDelta(d)
		if _, err := a.replica.Merge(d, a.trust, now); err != nil {
			t.Fatal(err)
		}
		return pub
	}
	mint := func(key ed25519.PrivateKey, chain []byte) []byte {
		der, err := nodeCACert(key, chain)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	good := publish("x", mint)
	publish("forger", func(_ ed25519.PrivateKey, _ []byte) []byte {
		return a.ownConnectCADER() // someone else's CA: not its key
	})
	// A node whose chain ends in a moment: its record stays until the
	// next expiry sweep (a minute), its CA must go at once.
	publishUntil = now.Add(2 * time.Second)
	publish("brief", mint)
	publishUntil = time.Time{}
	if n := len(decodeAs[apiCARoots](t, caGet(t, h, "GET", "/v1/agent/connect/ca/roots", "")).Roots); n != 3 {
		t.Fatalf("%d roots, want 3 while brief's chain is valid", n)
	}
	eventually(t, func() error {
		n := len(decodeAs[apiCARoots](t, caGet(t, h, "GET", "/v1/agent/connect/ca/roots", "")).Roots)
		if n != 2 {
			return fmt.Errorf("%d roots, want 2 once brief's chain expired", n)
		}
		return nil
	})

	w := caGet(t, h, "GET", "/v1/agent/connect/ca/roots", "")
	roots := decodeAs[apiCARoots](t, w)
	names := []string{}
	for _, r := range roots.Roots {
		names = append(names, r.Name)
	}
	if len(roots.Roots) != 2 || roots.Roots[1].Name != "peerd node CA x" || roots.Roots[1].Active {
		t.Fatalf("roots %v, want this node's and x's", names)
	}
	if n := a.ca.invalid.Load(); n != 1 {
		t.Errorf("invalid CA certificates counted: %d, want 1", n)
	}
	caGet(t, h, "GET", "/v1/agent/connect/ca/roots", "")
	if n := a.ca.invalid.Load(); n != 1 {
		t.Errorf("the same invalid certificate counted again: %d", n)
	}

	done := make(chan apiCARoots, 1)
	go func() {
		w := caGet(t, h, "GET", "/v1/agent/connect/ca/roots?wait=30s&index="+w.Header().Get("X-Consul-Index"), "")
		var v apiCARoots
		json.Unmarshal(w.Body.Bytes(), &v)
		done <- v
	}()
	rev, err := identity.NewRevocation(root, nil, good, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	signed, err := rev.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SubmitRevocation(context.Background(), signed); err != nil {
		t.Fatal(err)
	}
	select {
	case after := <-done:
		if len(after.Roots) != 1 || !after.Roots[0].Active {
			t.Fatalf("after the revocation: %d roots, want this node's only", len(after.Roots))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the blocking roots query did not return after the revocation")
	}
}

// FuzzVerifyNodeCA: a published CA certificate is untrusted input.
func FuzzVerifyNodeCA(f *testing.F) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	der, err := nodeCACert(key, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(der)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	f.Add([]byte{0x30, 0x82, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := verifyNodeCA(b, pub)
		if err == nil && (!c.IsCA || !bytes.Equal(c.PublicKey.(ed25519.PublicKey), pub)) {
			t.Fatalf("accepted a certificate that is not the node's CA")
		}
	})
}

// TestIssueLeaf: Consul's 72 h validity and a renewal between 60 % and
// 90 % of it, under a CA that outlives it.
func TestIssueLeaf(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	der, err := nodeCACert(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	for range 20 {
		l, err := issueLeaf(key, ca, "td.consul", "dc1", "web", now)
		if err != nil {
			t.Fatal(err)
		}
		life := l.api.ValidBefore.Sub(l.api.ValidAfter)
		if life != leafTTL+leafBackdate {
			t.Fatalf("leaf valid for %v, want %v", life, leafTTL+leafBackdate)
		}
		at := l.renewAt.Sub(l.api.ValidAfter)
		if at < time.Duration(float64(life)*leafRenewMin) || at > time.Duration(float64(life)*leafRenewMax) {
			t.Fatalf("renewal after %v of %v", at, life)
		}
	}
}

// TestLeafCacheBounded: at most maxLeaves service names are kept.
func TestLeafCacheBounded(t *testing.T) {
	root, node := newKeys(t)
	a := testAgent(t, t.TempDir(), root, node, []string{"*"})
	defer a.Close()
	now := time.Now()
	for i := range maxLeaves + 5 {
		if _, err := a.leafFor("svc-"+strconv.Itoa(i), now); err != nil {
			t.Fatal(err)
		}
	}
	a.ca.mu.Lock()
	n := len(a.ca.leaves)
	a.ca.mu.Unlock()
	if n != maxLeaves {
		t.Fatalf("%d leaves kept, want %d", n, maxLeaves)
	}
}

// TestLeafChainsToRenewedCA: a leaf signed under the CA certificate of
// one chain verifies with the CA certificate of the renewed chain (same
// key, later end), which is all the roots list after the renewal.
func TestLeafChainsToRenewedCA(t *testing.T) {
	_, root, _ := ed25519.GenerateKey(rand.Reader)
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()
	old, _ := nodeCACert(key, mustChain(t, root, pub, []string{"web"}, now.Add(-time.Hour), now.Add(24*time.Hour)))
	renewed, _ := nodeCACert(key, mustChain(t, root, pub, []string{"web"}, now.Add(-time.Minute), now.Add(48*time.Hour)))
	oldCA, _ := x509.ParseCertificate(old)
	newCA, _ := x509.ParseCertificate(renewed)
	l, err := issueLeaf(key, oldCA, "td.consul", "dc1", "web", now)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(l.api.CertPEM))
	lc, _ := x509.ParseCertificate(block.Bytes)
	pool := x509.NewCertPool()
	pool.AddCert(newCA)
	if _, err := lc.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("a leaf from before the renewal does not verify with the renewed CA: %v", err)
	}
}
