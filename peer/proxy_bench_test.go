package peer

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
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

// BenchmarkProxyRoundTrip1KB is one 1 KiB ping-pong through the proxy pair
// of two in-process agents, on a kept-alive connection, against a TCP echo
// service; the Direct variant talks to the echo service itself.
func BenchmarkProxyRoundTrip1KB(b *testing.B) {
	m := newProxyMesh(b, []string{"web"}, []string{"echo"})
	port := tcpService(b, func(c net.Conn) { io.Copy(c, c) })
	up := freePort(b, "127.0.0.1")
	m.putService(m.agents[1], crdt.Service{ID: "echo", Name: "echo", Port: port})
	m.putService(m.agents[0], crdt.Service{ID: "web", Name: "web", Port: 1, Kind: "", Connect: nil})
	m.putService(m.agents[0], crdt.Service{ID: "web-proxy", Name: "web", Kind: "connect-proxy", Port: 2,
		Proxy: &crdt.Proxy{DestinationServiceName: "web", Upstreams: []crdt.Upstream{{DestinationName: "echo", LocalBindPort: up}}}})
	m.putIntention(m.agents[0], crdt.Intention{ID: "i", SourceName: "web", DestinationName: "echo", Action: crdt.ActionAllow, Version: 1})
	m.waitService("echo", 1)
	m.waitService("web", 1)
	m.waitIntention("web", "echo", 1)
	msg := make([]byte, 1024)
	buf := make([]byte, 1024)
	// ready dials addr until one exchange succeeds and returns that
	// connection.
	ready := func(b *testing.B, addr string) net.Conn {
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.SetDeadline(time.Now().Add(2 * time.Second))
				if _, err = c.Write(msg); err == nil {
					_, err = io.ReadFull(c, buf)
				}
				if err == nil {
					c.SetDeadline(time.Time{})
					return c
				}
				c.Close()
			}
			if time.Now().After(deadline) {
				b.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond) // the listener binds on the agent's next reconcile
		}
	}
	run := func(b *testing.B, addr string) {
		c := ready(b, addr)
		defer c.Close()
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			start := time.Now()
			c.Write(msg)
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
	// A new connection per exchange: TCP connect, 1 KiB each way, close.
	fresh := func(b *testing.B, addr string) {
		ready(b, addr).Close() // warms the path
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			start := time.Now()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			c.Write(msg)
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Fatal(err)
			}
			c.Close()
			lat = append(lat, time.Since(start))
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
	b.Run("Direct", func(b *testing.B) { run(b, fmt.Sprintf("127.0.0.1:%d", port)) })
	b.Run("Proxied", func(b *testing.B) { run(b, fmt.Sprintf("127.0.0.1:%d", up)) })
	b.Run("NewConnDirect", func(b *testing.B) { fresh(b, fmt.Sprintf("127.0.0.1:%d", port)) })
	b.Run("NewConnProxied", func(b *testing.B) { fresh(b, fmt.Sprintf("127.0.0.1:%d", up)) })
}
