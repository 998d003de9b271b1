package peer

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/identity"
)

// benchAgent is an agent that is built but not started: its replica holds
// a "web" and an "api" instance of its own and n intentions.
func benchAgent(b *testing.B, n int) (*Agent, *dataPlane) {
	b.Helper()
	_, root, _ := ed25519.GenerateKey(rand.Reader)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()
	chain, err := identity.Issue(root, nil, key.Public().(ed25519.PublicKey), "n1",
		identity.Constraints{Services: []string{"*"}}, now.Add(-time.Minute), now.Add(time.Hour), 1)
	if err != nil {
		b.Fatal(err)
	}
	cb, _ := chain.Marshal()
	a, err := New(Config{NodeName: "n1", DataDir: b.TempDir(), TrustRoots: []ed25519.PublicKey{root.Public().(ed25519.PublicKey)},
		NodeKey: key, NodeChain: cb, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range []crdt.Service{{ID: "web1", Name: "web", Port: 1}, {ID: "api1", Name: "api", Port: 2}} {
		if _, err := a.replica.PutService(s, now); err != nil {
			b.Fatal(err)
		}
	}
	put := func(in crdt.Intention) {
		signed, err := SignIntention(in, root, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := a.replica.PutIntention(signed, a.trust, now); err != nil {
			b.Fatal(err)
		}
	}
	put(crdt.Intention{ID: "all", SourceName: "*", DestinationName: "*", Action: crdt.ActionDeny, Version: 1})
	put(crdt.Intention{ID: "web-api", SourceName: "web", DestinationName: "api", Action: crdt.ActionAllow, Version: 1})
	for i := 0; i < n; i++ {
		put(crdt.Intention{ID: fmt.Sprint(i), SourceName: fmt.Sprintf("svc-%d", i), DestinationName: fmt.Sprintf("svc-%d", i+1),
			Action: crdt.ActionAllow, Version: 1})
	}
	a.ctx, a.cancel = b.Context(), func() {}
	return a, newDataPlane(a)
}

// BenchmarkIntentionCheck is the intention lookup a new connection pays:
// CheckIntention over a replica with 1,000 intentions.
func BenchmarkIntentionCheck(b *testing.B) {
	a, _ := benchAgent(b, 1000)
	b.ReportAllocs()
	for b.Loop() {
		if !a.replica.CheckIntention("web", "api", false).Allowed {
			b.Fatal("denied")
		}
	}
}

// BenchmarkIntentionDecide is the same through the data plane's decision
// cache (what a new connection pays while intentions do not change).
func BenchmarkIntentionDecide(b *testing.B) {
	_, dp := benchAgent(b, 1000)
	b.ReportAllocs()
	for b.Loop() {
		if !dp.decide("web", "api").Allowed {
			b.Fatal("denied")
		}
	}
}

// BenchmarkAuthorize is the whole destination-side decision for a new
// connection: certificate (cached verdict), source registration, local
// instance, intention.
func BenchmarkAuthorize(b *testing.B) {
	a, dp := benchAgent(b, 1000)
	h := proxyHeader{Version: proxyHeaderVersion, Source: "web", Destination: "api", InstanceID: "api1"}
	b.ReportAllocs()
	for b.Loop() {
		if auth := dp.authorize(a.id, h); auth.code != replyOK {
			b.Fatal(auth.reason)
		}
	}
}

// BenchmarkL7Check is the per-request cost of an HTTP permission check.
func BenchmarkL7Check(b *testing.B) {
	in := &crdt.Intention{ID: "x", SourceName: "web", DestinationName: "api", Permissions: []crdt.IntentionPermission{
		{Action: crdt.ActionDeny, HTTP: &crdt.IntentionHTTPPermission{PathPrefix: "/admin/"}},
		{Action: crdt.ActionAllow, HTTP: &crdt.IntentionHTTPPermission{PathPrefix: "/v1/", Methods: []string{"GET", "HEAD"}}}}}
	dec := crdt.Decision{Allowed: true, Intention: in}
	req, _ := http.NewRequest("GET", "http://api/v1/items/42", nil)
	hdr := proxyHeader{Source: "web", Destination: "api"}
	b.ReportAllocs()
	for b.Loop() {
		if ok, why := l7Allowed(hdr, dec, req); !ok {
			b.Fatal(why)
		}
	}
}

// BenchmarkProxyHeader encodes and decodes one stream header.
func BenchmarkProxyHeader(b *testing.B) {
	h := proxyHeader{Source: "web", Destination: "api", InstanceID: "api-1"}
	b.ReportAllocs()
	for b.Loop() {
		m, _ := encodeProxyHeader(h)
		if _, err := decodeProxyHeader(m); err != nil {
			b.Fatal(err)
		}
	}
}
