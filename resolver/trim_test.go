package resolver

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// bigSource has one service "big" with n instances, each on its own node.
func bigSource(n int) *fakeSource {
	insts := make([]Instance, n)
	for i := range insts {
		insts[i] = Instance{
			Node:        fmt.Sprintf("a-rather-long-node-name-%04d", i),
			NodeAddress: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}),
			Port:        uint16(10000 + i),
			NodeHealthy: true,
		}
	}
	return &fakeSource{services: map[string][]Instance{"big": insts}}
}

func TestTrimming(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		n         int
		qtype     uint16
		edns      uint16
		tcp       bool
		wantCount int  // exact answer count, or -1 for "fewer than n, at least 1"
		wantTC    bool // TC bit
		maxLen    int  // packed response size bound
	}{
		{name: "udp no edns A limited to 3", n: 10, qtype: dns.TypeA, wantCount: 3, wantTC: true, maxLen: 512},
		{name: "udp no edns A limit 5", cfg: Config{UDPAnswerLimit: 5}, n: 10, qtype: dns.TypeA, wantCount: 5, wantTC: true, maxLen: 512},
		{name: "udp no edns limit capped at 8", cfg: Config{UDPAnswerLimit: 100}, n: 10, qtype: dns.TypeA, wantCount: 8, wantTC: true, maxLen: 512},
		{name: "udp no edns under the limit", n: 3, qtype: dns.TypeA, wantCount: 3, maxLen: 512},
		{name: "udp no edns SRV with extras", n: 10, qtype: dns.TypeSRV, wantCount: 3, wantTC: true, maxLen: 512},
		{name: "udp edns 1232 A all fit", n: 10, qtype: dns.TypeA, edns: 1232, wantCount: 10, maxLen: 1232},
		{name: "udp edns 1232 SRV 100 trimmed by size", n: 100, qtype: dns.TypeSRV, edns: 1232, wantCount: -1, wantTC: true, maxLen: 1232},
		{name: "udp edns 4096 A 300 trimmed by size", n: 300, qtype: dns.TypeA, edns: 4096, wantCount: -1, wantTC: true, maxLen: 4096},
		{name: "tcp A 300 all", n: 300, qtype: dns.TypeA, tcp: true, wantCount: 300, maxLen: 65535},
		{name: "tcp SRV 100 all", n: 100, qtype: dns.TypeSRV, tcp: true, wantCount: 100, maxLen: 65535},
		{name: "tcp SRV 2000 trimmed at 64k", n: 2000, qtype: dns.TypeSRV, tcp: true, wantCount: -1, wantTC: true, maxLen: 65535},
		{name: "a_record_limit applies to tcp", cfg: Config{ARecordLimit: 4}, n: 10, qtype: dns.TypeA, tcp: true, wantCount: 4, maxLen: 65535},
		{name: "a_record_limit applies to udp edns", cfg: Config{ARecordLimit: 2}, n: 10, qtype: dns.TypeA, edns: 1232, wantCount: 2, maxLen: 1232},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, tt.cfg, bigSource(tt.n))
			rec := &recorder{tcp: tt.tcp}
			s.ServeDNS(rec, question("big.service.consul.", tt.qtype, tt.edns))
			if rec.err != nil || rec.msg == nil {
				t.Fatalf("no valid response: %v", rec.err)
			}
			resp := rec.msg
			if len(rec.raw) > tt.maxLen {
				t.Errorf("response is %d bytes, limit %d", len(rec.raw), tt.maxLen)
			}
			got := len(resp.Answer)
			if tt.wantCount >= 0 && got != tt.wantCount {
				t.Errorf("%d answers, want %d", got, tt.wantCount)
			}
			if tt.wantCount < 0 && (got == 0 || got >= tt.n) {
				t.Errorf("%d answers, want some but fewer than %d", got, tt.n)
			}
			if resp.Truncated != tt.wantTC {
				t.Errorf("TC %v, want %v", resp.Truncated, tt.wantTC)
			}
			if resp.Rcode != dns.RcodeSuccess {
				t.Errorf("rcode %s", dns.RcodeToString[resp.Rcode])
			}
			if tt.qtype == dns.TypeSRV {
				// Every SRV answer keeps its target's address, and no
				// address record is left without its SRV.
				targets := map[string]bool{}
				for _, rr := range resp.Answer {
					targets[rr.(*dns.SRV).Target] = true
				}
				extras := 0
				for _, rr := range resp.Extra {
					if rr.Header().Rrtype == dns.TypeOPT {
						continue
					}
					extras++
					if !targets[rr.Header().Name] {
						t.Errorf("extra %v has no SRV", rr)
					}
				}
				if extras != len(targets) {
					t.Errorf("%d extras for %d targets", extras, len(targets))
				}
			}
			if tt.wantTC && s.Stats().Truncated != 1 {
				t.Errorf("stats truncated %d", s.Stats().Truncated)
			}
		})
	}
}

func TestOrderIsRandomised(t *testing.T) {
	s := newTestServer(t, Config{}, bigSource(10))
	firsts := map[string]bool{}
	// With 10 instances, 200 answers all starting with the same address has
	// probability 10^-199: a bounded loop, not a flaky one.
	for range 200 {
		resp := ask(t, s, question("big.service.consul.", dns.TypeA, 1232), false)
		firsts[resp.Answer[0].(*dns.A).A.String()] = true
	}
	if len(firsts) < 2 {
		t.Fatalf("first answer never changed: %v", firsts)
	}
}

func TestNearestFirst(t *testing.T) {
	rtt := func(node string) (time.Duration, bool) {
		var i int
		if _, err := fmt.Sscanf(node, "a-rather-long-node-name-%04d", &i); err != nil || i == 0 {
			return 0, false // node 0 has no estimate: last
		}
		return time.Duration(100-i) * time.Millisecond, true // higher index is nearer
	}
	s := newTestServer(t, Config{NodeRTT: rtt}, bigSource(10))
	for range 20 {
		resp := ask(t, s, question("big.service.consul.", dns.TypeSRV, 4096), false)
		var ports []uint16
		for _, rr := range resp.Answer {
			ports = append(ports, rr.(*dns.SRV).Port)
		}
		want := []uint16{10009, 10008, 10007, 10006, 10005, 10004, 10003, 10002, 10001, 10000}
		if fmt.Sprint(ports) != fmt.Sprint(want) {
			t.Fatalf("order %v, want %v", ports, want)
		}
	}
}

func TestTTLs(t *testing.T) {
	s := newTestServer(t, Config{ServiceTTL: 30 * time.Second, NodeTTL: 10 * time.Second}, testSource())
	resp := ask(t, s, question("web.service.consul.", dns.TypeSRV, 4096), false)
	for _, rr := range append(resp.Answer, resp.Extra...) {
		if rr.Header().Rrtype != dns.TypeOPT && rr.Header().Ttl != 30 {
			t.Errorf("service TTL %d: %v", rr.Header().Ttl, rr)
		}
	}
	resp = ask(t, s, question("node-0.node.consul.", dns.TypeANY, 4096), false)
	for _, rr := range resp.Answer {
		if rr.Header().Ttl != 10 {
			t.Errorf("node TTL %d: %v", rr.Header().Ttl, rr)
		}
	}
}

func TestSOASerialFromClock(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := newTestServer(t, Config{Now: func() time.Time { return now }}, testSource())
	resp := ask(t, s, question("nope.service.consul.", dns.TypeA, 0), false)
	soa, ok := resp.Ns[0].(*dns.SOA)
	if !ok || soa.Serial != 1_700_000_000 || soa.Refresh != 3600 || soa.Retry != 600 || soa.Expire != 86400 || soa.Minttl != 0 {
		t.Fatalf("SOA %v", resp.Ns)
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []Config{
		{Addr: "nope"},
		{Domain: "."},
		{Domain: "bad..domain"},
		{Datacenter: "a.b"},
		{NodeTTL: -time.Second},
		{ARecordLimit: -1},
		{RecursorTimeout: -1},
		{Recursors: []string{"[::1"}},
	}
	for _, c := range bad {
		if _, err := New(c, testSource()); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
	if _, err := New(Config{}, nil); err == nil {
		t.Errorf("nil source accepted")
	}
	s, err := New(Config{Domain: "Mesh.Internal", Recursors: []string{"127.0.0.1", "[::1]:5353"}}, testSource())
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.Domain != "mesh.internal." || s.cfg.recursors[0] != "127.0.0.1:53" || s.cfg.recursors[1] != "[::1]:5353" || s.cfg.udpLimit != 3 {
		t.Errorf("defaults: %+v", s.cfg)
	}
}
