package resolver

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// fakeSource is a Source over maps; safe for concurrent use.
type fakeSource struct {
	mu       sync.Mutex
	services map[string][]Instance
	nodes    map[string]Node
	connect  map[string]netip.AddrPort
}

func (f *fakeSource) AppendServiceInstances(dst []Instance, name string) []Instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append(dst, f.services[strings.ToLower(name)]...)
}

func (f *fakeSource) Node(name string) (Node, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.nodes[strings.ToLower(name)]
	return n, ok
}

func (f *fakeSource) ConnectUpstream(name string) (netip.AddrPort, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ap, ok := f.connect[name]
	return ap, ok
}

// webInstances returns n passing instances of "web" on nodes node-0..n-1 at
// 10.0.0.(i+1), port 8080+i.
func webInstances(n int) []Instance {
	out := make([]Instance, n)
	for i := range out {
		out[i] = Instance{
			Node:        fmt.Sprintf("node-%d", i),
			NodeAddress: netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}),
			Port:        uint16(8080 + i),
			Tags:        []string{"v1"},
			NodeHealthy: true,
		}
	}
	return out
}

// testSource is the fixture most tests share.
func testSource() *fakeSource {
	web := webInstances(10)
	web[0].Tags = []string{"primary", "v1"}
	web[1].Status = HealthWarning
	web[1].Tags = []string{"Primary"}
	return &fakeSource{
		services: map[string][]Instance{
			"web": web,
			"db": {
				{Node: "node-0", NodeAddress: netip.MustParseAddr("10.0.0.1"), Port: 5432, NodeHealthy: true, Status: HealthCritical},
				{Node: "node-1", NodeAddress: netip.MustParseAddr("10.0.0.2"), Port: 5432, NodeHealthy: false},
				{Node: "node-2", NodeAddress: netip.MustParseAddr("10.0.0.3"), Port: 5432, NodeHealthy: true, Status: HealthWarning},
			},
			"v6": {
				{Node: "node-6", NodeAddress: netip.MustParseAddr("fd00::6"), Port: 80, NodeHealthy: true},
			},
			"own": {
				{Node: "node-0", NodeAddress: netip.MustParseAddr("10.0.0.1"), ServiceAddress: netip.MustParseAddr("192.168.1.7"), Port: 9000, NodeHealthy: true,
					Weights: Weights{Passing: 5, Warning: 1}},
			},
			"dup": {
				{Node: "node-0", NodeAddress: netip.MustParseAddr("10.0.0.1"), Port: 1, NodeHealthy: true},
				{Node: "node-0", NodeAddress: netip.MustParseAddr("10.0.0.1"), Port: 2, NodeHealthy: true},
				{Node: "node-0", NodeAddress: netip.MustParseAddr("10.0.0.1"), Port: 2, NodeHealthy: true},
			},
			"dead": {
				{Node: "node-1", NodeAddress: netip.MustParseAddr("10.0.0.2"), Port: 1, NodeHealthy: false},
			},
		},
		nodes: map[string]Node{
			"node-0": {Name: "node-0", Address: netip.MustParseAddr("10.0.0.1"),
				Meta: map[string]string{"rack": "r1", "rfc1035-note": "hello"}},
			"node-6":     {Name: "node-6", Address: netip.MustParseAddr("fd00::6")},
			"host.local": {Name: "host.local", Address: netip.MustParseAddr("10.9.9.9")},
		},
		connect: map[string]netip.AddrPort{
			"db": netip.MustParseAddrPort("127.0.0.1:21000"),
		},
	}
}

// recorder is a dns.ResponseWriter that keeps what the handler wrote.
type recorder struct {
	tcp bool
	msg *dns.Msg
	raw []byte
	err error
}

func (r *recorder) LocalAddr() net.Addr {
	if r.tcp {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8600}
	}
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8600}
}

func (r *recorder) RemoteAddr() net.Addr {
	if r.tcp {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	}
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}

func (r *recorder) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		r.err = err
		return err
	}
	_, err = r.Write(b)
	return err
}

func (r *recorder) Write(b []byte) (int, error) {
	r.raw = append([]byte(nil), b...)
	m := new(dns.Msg)
	if err := m.Unpack(r.raw); err != nil {
		r.err = err
		return 0, err
	}
	r.msg = m
	return len(b), nil
}

func (r *recorder) Close() error        { return nil }
func (r *recorder) TsigStatus() error   { return nil }
func (r *recorder) TsigTimersOnly(bool) {}
func (r *recorder) Hijack()             {}

// newTestServer builds a Server (not started) over src.
func newTestServer(t testing.TB, cfg Config, src Source) *Server {
	t.Helper()
	s, err := New(cfg, src)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// ask sends one query through ServeDNS and returns the unpacked response.
func ask(t testing.TB, s *Server, q *dns.Msg, tcp bool) *dns.Msg {
	t.Helper()
	rec := &recorder{tcp: tcp}
	s.ServeDNS(rec, q)
	if rec.err != nil {
		t.Fatalf("%s: response: %v", q.Question[0].Name, rec.err)
	}
	if rec.msg == nil {
		t.Fatalf("%s: no response written", q.Question[0].Name)
	}
	if rec.msg.Id != q.Id {
		t.Fatalf("%s: response id %d, want %d", q.Question[0].Name, rec.msg.Id, q.Id)
	}
	return rec.msg
}

// question builds a query, with EDNS0 when edns > 0.
func question(name string, qtype uint16, edns uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	return m
}
