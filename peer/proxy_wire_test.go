package peer

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/peerd/peerd/crdt"
)

func TestProxyHeaderRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		h       proxyHeader
		wantErr bool
	}{
		{"full", proxyHeader{Source: "web", Destination: "api", InstanceID: "api-1"}, false},
		{"no instance", proxyHeader{Source: "web", Destination: "api"}, false},
		{"no source", proxyHeader{Destination: "api"}, true},
		{"long name", proxyHeader{Source: string(bytes.Repeat([]byte("a"), 300)), Destination: "api"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := encodeProxyHeader(tt.h)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeProxyHeader(b)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && (got.Source != tt.h.Source || got.Destination != tt.h.Destination || got.InstanceID != tt.h.InstanceID) {
				t.Fatalf("got %+v, want %+v", got, tt.h)
			}
		})
	}
	if _, err := decodeProxyHeader([]byte{0xa2, 0x01, 0x02, 0x02, 0x61, 0x61}); err == nil {
		t.Fatal("version 2 accepted")
	}
}

func FuzzProxyHeader(f *testing.F) {
	b, _ := encodeProxyHeader(proxyHeader{Source: "web", Destination: "api", InstanceID: "api-1"})
	f.Add(b)
	f.Add([]byte{})
	f.Add([]byte{0xa0})
	f.Add([]byte{0xa1, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeProxyHeader(b)
		if err != nil {
			return
		}
		if h.Source == "" || h.Destination == "" || h.Version != proxyHeaderVersion {
			t.Fatalf("accepted an invalid header %+v", h)
		}
		again, err := encodeProxyHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if h2, err := decodeProxyHeader(again); err != nil || h2 != h {
			t.Fatalf("re-encoding changed %+v to %+v (%v)", h, h2, err)
		}
	})
}

func FuzzProxyReply(f *testing.F) {
	var buf bytes.Buffer
	writeProxyReply(&buf, proxyReply{Code: replyDenied, Reason: "no"})
	f.Add(buf.Bytes())
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0, 0, 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		readProxyReply(bytes.NewReader(b))
	})
}

func TestUpstreamsOf(t *testing.T) {
	sidecar := func(ups ...crdt.Upstream) *crdt.Connect {
		return &crdt.Connect{SidecarService: &crdt.Service{Kind: "connect-proxy", Proxy: &crdt.Proxy{Upstreams: ups}}}
	}
	tests := []struct {
		name     string
		services []crdt.Service
		want     []string
		problems int
	}{
		{"nested sidecar", []crdt.Service{{ID: "web1", Name: "web", Connect: sidecar(crdt.Upstream{DestinationName: "api", LocalBindPort: 9191})}},
			[]string{"web→api@127.0.0.1:9191"}, 0},
		{"connect-proxy kind", []crdt.Service{{ID: "p", Name: "web-proxy", Kind: "connect-proxy", Proxy: &crdt.Proxy{DestinationServiceName: "web",
			Upstreams: []crdt.Upstream{{DestinationName: "db", LocalBindAddress: "127.0.0.2", LocalBindPort: 5432}}}}},
			[]string{"web→db@127.0.0.2:5432"}, 0},
		{"duplicate bind is one listener", []crdt.Service{
			{ID: "a", Name: "web", Connect: sidecar(crdt.Upstream{DestinationName: "api", LocalBindPort: 9191})},
			{ID: "b", Name: "web-sidecar-proxy", Kind: "connect-proxy", Proxy: &crdt.Proxy{DestinationServiceName: "web",
				Upstreams: []crdt.Upstream{{DestinationName: "api", LocalBindPort: 9191}}}}},
			[]string{"web→api@127.0.0.1:9191"}, 0},
		{"conflicting bind", []crdt.Service{
			{ID: "a", Name: "web", Connect: sidecar(crdt.Upstream{DestinationName: "api", LocalBindPort: 9191})},
			{ID: "b", Name: "job", Connect: sidecar(crdt.Upstream{DestinationName: "db", LocalBindPort: 9191})}},
			[]string{"web→api@127.0.0.1:9191"}, 1},
		{"bad entries", []crdt.Service{{ID: "a", Name: "web", Connect: sidecar(
			crdt.Upstream{DestinationName: "api"},
			crdt.Upstream{DestinationName: "api", LocalBindPort: 1, LocalBindAddress: "localhost"})}},
			nil, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var es []crdt.ServiceEntry
			for _, s := range tt.services {
				es = append(es, crdt.ServiceEntry{Service: s})
			}
			specs, problems := upstreamsOf(es)
			var got []string
			for _, s := range specs {
				got = append(got, s.String())
			}
			if len(got) != len(tt.want) || len(problems) != tt.problems {
				t.Fatalf("got %v problems %v, want %v and %d problems", got, problems, tt.want, tt.problems)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestPickOrder(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	ms := time.Millisecond
	tests := []struct {
		name  string
		cands []instance
		first map[string]bool // allowed first picks
		last  string
	}{
		{"nearest tier first", []instance{{ID: "far", Dist: 40 * ms, DistKnown: true}, {ID: "near", Dist: 2 * ms, DistKnown: true}},
			map[string]bool{"near": true}, "far"},
		{"failing last", []instance{{ID: "bad", Failing: true, DistKnown: true}, {ID: "ok", Dist: 30 * ms, DistKnown: true}},
			map[string]bool{"ok": true}, "bad"},
		{"two choices prefers the less loaded", []instance{{ID: "busy", Open: 50}, {ID: "idle", Open: 0}},
			map[string]bool{"idle": true}, "busy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := 0; i < 20; i++ {
				got := pickOrder(tt.cands, rnd)
				if len(got) != len(tt.cands) || !tt.first[got[0].ID] || got[len(got)-1].ID != tt.last {
					t.Fatalf("order %v", got)
				}
			}
		})
	}
	// Load spreads over equal instances, and over instances whose distance
	// is only partly known.
	count := map[string]int{}
	for i := 0; i < 300; i++ {
		count[pickOrder([]instance{{ID: "a"}, {ID: "b"}, {ID: "c"}}, rnd)[0].ID]++
		count[pickOrder([]instance{{ID: "a", Dist: 2 * ms, DistKnown: true}, {ID: "b"}, {ID: "c"}}, rnd)[0].ID]++
	}
	for id, n := range count {
		if n < 100 {
			t.Fatalf("instance %s picked first %d/600 times: %v", id, n, count)
		}
	}
}

// TestProxyHeaderGolden pins the example of docs/DATAPLANE.md.
func TestProxyHeaderGolden(t *testing.T) {
	b, err := encodeProxyHeader(proxyHeader{Source: "web", Destination: "api", InstanceID: "api-1"})
	if err != nil {
		t.Fatal(err)
	}
	const want = "a40101026377656203636170690465617069 2d31"
	if got := fmt.Sprintf("%x", b); got != strings.ReplaceAll(want, " ", "") {
		t.Fatalf("header = %s (%d bytes), want %s", got, len(b), want)
	}
}
