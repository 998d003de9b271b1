package resolver

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// answerSummary renders the data of answer records without names and TTLs,
// sorted, so that random order does not matter.
func answerSummary(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		switch v := rr.(type) {
		case *dns.A:
			out = append(out, "A "+v.A.String())
		case *dns.AAAA:
			out = append(out, "AAAA "+v.AAAA.String())
		case *dns.SRV:
			out = append(out, "SRV "+strings.Join([]string{itoa(v.Priority), itoa(v.Weight), itoa(v.Port), v.Target}, " "))
		case *dns.TXT:
			out = append(out, "TXT "+strings.Join(v.Txt, ","))
		case *dns.SOA:
			out = append(out, "SOA "+v.Ns+" "+v.Mbox)
		case *dns.NS:
			out = append(out, "NS "+v.Ns)
		}
	}
	slices.Sort(out)
	return out
}

func itoa(v uint16) string {
	return strings.TrimSpace(strings.Repeat(" ", 0) + uitoa(uint64(v)))
}

func uitoa(v uint64) string {
	if v == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for v > 0 {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return string(b[i:])
}

func webAs(indexes ...int) []string {
	var out []string
	for _, i := range indexes {
		out = append(out, "A 10.0.0."+uitoa(uint64(i+1)))
	}
	slices.Sort(out)
	return out
}

func TestServeDNSForms(t *testing.T) {
	all := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	tests := []struct {
		name    string
		cfg     Config
		qname   string
		qtype   uint16
		rcode   int
		answers []string // sorted answer summary; nil means none
		extra   []string // sorted additional summary (OPT excluded)
		soa     bool     // SOA expected in authority
	}{
		{name: "service A", qname: "web.service.consul.", qtype: dns.TypeA, answers: webAs(all...)},
		{name: "service A mixed case", qname: "WeB.SeRvIcE.CoNsUl.", qtype: dns.TypeA, answers: webAs(all...)},
		{name: "service A with dc", qname: "web.service.dc1.consul.", qtype: dns.TypeA, answers: webAs(all...)},
		{name: "service A other dc", qname: "web.service.dc2.consul.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		{name: "service ANY", qname: "web.service.consul.", qtype: dns.TypeANY, answers: webAs(all...)},
		{name: "service tag", qname: "primary.web.service.consul.", qtype: dns.TypeA, answers: webAs(0, 1)},
		{name: "service tag only passing", cfg: Config{OnlyPassing: true}, qname: "primary.web.service.consul.", qtype: dns.TypeA, answers: webAs(0)},
		{name: "service unknown tag", qname: "nope.web.service.consul.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		{name: "service unknown", qname: "nope.service.consul.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		{name: "service critical and failed node dropped, warning kept", qname: "db.service.consul.", qtype: dns.TypeA, answers: []string{"A 10.0.0.3"}},
		{name: "service only passing drops warning", cfg: Config{OnlyPassing: true}, qname: "db.service.consul.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		{name: "service on failed node", qname: "dead.service.consul.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		{name: "service AAAA of v4 service is NODATA", qname: "web.service.consul.", qtype: dns.TypeAAAA, soa: true},
		{name: "service TXT is NODATA", qname: "web.service.consul.", qtype: dns.TypeTXT, soa: true},
		{name: "service AAAA", qname: "v6.service.consul.", qtype: dns.TypeAAAA, answers: []string{"AAAA fd00::6"}},
		{name: "service A of v6 service is NODATA", qname: "v6.service.consul.", qtype: dns.TypeA, soa: true},
		{name: "service A dedup", qname: "dup.service.consul.", qtype: dns.TypeA, answers: []string{"A 10.0.0.1"}},
		{name: "service SRV dedup by node/addr/port", qname: "dup.service.consul.", qtype: dns.TypeSRV,
			answers: []string{"SRV 1 1 1 node-0.node.dc1.consul.", "SRV 1 1 2 node-0.node.dc1.consul."},
			extra:   []string{"A 10.0.0.1"}},
		{name: "service SRV own address", qname: "own.service.consul.", qtype: dns.TypeSRV,
			answers: []string{"SRV 1 5 9000 c0a80107.addr.dc1.consul."},
			extra:   []string{"A 192.168.1.7"}},
		{name: "service A own address", qname: "own.service.consul.", qtype: dns.TypeA, answers: []string{"A 192.168.1.7"}},
		{name: "rfc2782 SRV tcp", qname: "_db._tcp.service.consul.", qtype: dns.TypeSRV,
			answers: []string{"SRV 1 1 5432 node-2.node.dc1.consul."}, extra: []string{"A 10.0.0.3"}},
		{name: "rfc2782 SRV tag", qname: "_web._primary.service.consul.", qtype: dns.TypeSRV,
			answers: []string{"SRV 1 1 8080 node-0.node.dc1.consul.", "SRV 1 1 8081 node-1.node.dc1.consul."},
			extra:   []string{"A 10.0.0.1", "A 10.0.0.2"}},
		{name: "rfc2782 SRV with dc", qname: "_web._primary.service.dc1.consul.", qtype: dns.TypeSRV,
			answers: []string{"SRV 1 1 8080 node-0.node.dc1.consul.", "SRV 1 1 8081 node-1.node.dc1.consul."},
			extra:   []string{"A 10.0.0.1", "A 10.0.0.2"}},
		{name: "too many labels before service", qname: "a.b.web.service.consul.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		{name: "node A", qname: "node-0.node.consul.", qtype: dns.TypeA, answers: []string{"A 10.0.0.1"}},
		{name: "node A with dc", qname: "node-0.node.dc1.consul.", qtype: dns.TypeA, answers: []string{"A 10.0.0.1"}},
		{name: "node with dots", qname: "host.local.node.consul.", qtype: dns.TypeA, answers: []string{"A 10.9.9.9"}},
		{name: "node AAAA", qname: "node-6.node.consul.", qtype: dns.TypeAAAA, answers: []string{"AAAA fd00::6"}},
		{name: "node AAAA of v4 node is NODATA", qname: "node-0.node.consul.", qtype: dns.TypeAAAA, soa: true},
		{name: "node TXT", qname: "node-0.node.consul.", qtype: dns.TypeTXT, answers: []string{"TXT hello", "TXT rack=r1"}},
		{name: "node TXT without meta is NODATA", qname: "node-6.node.consul.", qtype: dns.TypeTXT, soa: true},
		{name: "node ANY", qname: "node-0.node.consul.", qtype: dns.TypeANY, answers: []string{"A 10.0.0.1", "TXT hello", "TXT rack=r1"}},
		{name: "node unknown", qname: "nope.node.consul.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		{name: "addr v4", qname: "7f000001.addr.consul.", qtype: dns.TypeA, answers: []string{"A 127.0.0.1"}},
		{name: "addr v4 with dc", qname: "7f000001.addr.dc1.consul.", qtype: dns.TypeA, answers: []string{"A 127.0.0.1"}},
		{name: "addr v6", qname: "fd000000000000000000000000000006.addr.consul.", qtype: dns.TypeAAAA, answers: []string{"AAAA fd00::6"}},
		{name: "addr v4 asked AAAA is NODATA", qname: "7f000001.addr.consul.", qtype: dns.TypeAAAA, soa: true},
		{name: "addr bad hex", qname: "zz000001.addr.consul.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		{name: "addr bad length", qname: "7f0001.addr.consul.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		{name: "connect A", qname: "db.connect.consul.", qtype: dns.TypeA, answers: []string{"A 127.0.0.1"}},
		{name: "connect SRV", qname: "db.connect.consul.", qtype: dns.TypeSRV,
			answers: []string{"SRV 1 1 21000 7f000001.addr.dc1.consul."}, extra: []string{"A 127.0.0.1"}},
		{name: "connect unknown", qname: "web.connect.consul.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		{name: "apex SOA", qname: "consul.", qtype: dns.TypeSOA, answers: []string{"SOA ns.consul. hostmaster.consul."}, extra: []string{"A 127.0.0.1"}},
		{name: "apex NS", qname: "consul.", qtype: dns.TypeNS, answers: []string{"NS ns.consul."}, extra: []string{"A 127.0.0.1"}},
		{name: "apex NS with node name", cfg: Config{NodeName: "agent-1", NSAddress: mustAddr("10.1.1.1")}, qname: "consul.", qtype: dns.TypeNS,
			answers: []string{"NS agent-1.node.dc1.consul."}, extra: []string{"A 10.1.1.1"}},
		{name: "apex A is NODATA", qname: "consul.", qtype: dns.TypeA, soa: true},
		{name: "ns target A", qname: "ns.consul.", qtype: dns.TypeA, answers: []string{"A 127.0.0.1"}},
		{name: "unknown form", qname: "foo.bar.consul.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		{name: "custom domain", cfg: Config{Domain: "mesh.internal", Datacenter: "eu1"}, qname: "_web._primary.service.eu1.mesh.internal.", qtype: dns.TypeSRV,
			answers: []string{"SRV 1 1 8080 node-0.node.eu1.mesh.internal.", "SRV 1 1 8081 node-1.node.eu1.mesh.internal."},
			extra:   []string{"A 10.0.0.1", "A 10.0.0.2"}},
		{name: "outside domain without recursors", qname: "example.com.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
		{name: "consul as a label elsewhere", qname: "web.service.consul.example.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, tt.cfg, testSource())
			// EDNS0 with a large buffer, so that no answer is trimmed here;
			// trimming has its own tests.
			resp := ask(t, s, question(tt.qname, tt.qtype, 4096), false)
			if resp.Rcode != tt.rcode {
				t.Fatalf("rcode %s, want %s\n%v", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode], resp)
			}
			if got := answerSummary(resp.Answer); !slices.Equal(got, tt.answers) {
				t.Errorf("answers\n got %q\nwant %q", got, tt.answers)
			}
			if got := answerSummary(resp.Extra); !slices.Equal(got, tt.extra) {
				t.Errorf("extra\n got %q\nwant %q", got, tt.extra)
			}
			gotSOA := len(resp.Ns) == 1 && resp.Ns[0].Header().Rrtype == dns.TypeSOA
			if gotSOA != tt.soa {
				t.Errorf("SOA in authority: %v, want %v (%v)", gotSOA, tt.soa, resp.Ns)
			}
			if resp.Truncated {
				t.Errorf("TC set")
			}
			if tt.rcode != dns.RcodeRefused && !resp.Authoritative {
				t.Errorf("AA not set")
			}
			if resp.RecursionAvailable {
				t.Errorf("RA set without recursors")
			}
			if resp.IsEdns0() == nil {
				t.Errorf("EDNS0 not echoed")
			}
			for _, rr := range resp.Answer {
				if rr.Header().Ttl != 0 {
					t.Errorf("TTL %d, want 0 by default: %v", rr.Header().Ttl, rr)
				}
			}
		})
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestServeDNSErrors(t *testing.T) {
	s := newTestServer(t, Config{}, testSource())
	tests := []struct {
		name  string
		msg   func() *dns.Msg
		rcode int
		write bool
	}{
		{name: "no question", msg: func() *dns.Msg { m := new(dns.Msg); m.Id = 7; return m }, rcode: dns.RcodeFormatError, write: true},
		{name: "two questions", msg: func() *dns.Msg {
			m := question("web.service.consul.", dns.TypeA, 0)
			m.Question = append(m.Question, m.Question[0])
			return m
		}, rcode: dns.RcodeFormatError, write: true},
		{name: "notify opcode", msg: func() *dns.Msg {
			m := question("web.service.consul.", dns.TypeA, 0)
			m.Opcode = dns.OpcodeNotify
			return m
		}, rcode: dns.RcodeNotImplemented, write: true},
		{name: "edns version 1", msg: func() *dns.Msg {
			m := question("web.service.consul.", dns.TypeA, 1232)
			m.IsEdns0().SetVersion(1)
			return m
		}, rcode: dns.RcodeBadVers, write: true},
		{name: "chaos class", msg: func() *dns.Msg {
			m := question("web.service.consul.", dns.TypeA, 0)
			m.Question[0].Qclass = dns.ClassCHAOS
			return m
		}, rcode: dns.RcodeNotImplemented, write: true},
		{name: "a response is not answered", msg: func() *dns.Msg {
			m := question("web.service.consul.", dns.TypeA, 0)
			m.Response = true
			return m
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			s.ServeDNS(rec, tt.msg())
			if !tt.write {
				if rec.raw != nil {
					t.Fatalf("wrote a response to a response")
				}
				return
			}
			if rec.err != nil || rec.msg == nil {
				t.Fatalf("no valid response: %v", rec.err)
			}
			if rec.msg.Rcode != tt.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[rec.msg.Rcode], dns.RcodeToString[tt.rcode])
			}
		})
	}
	st := s.Stats()
	if st.Queries != 6 || st.ByRcode["FORMERR"] != 2 || st.ByRcode["NOTIMP"] != 2 || st.ByRcode["BADVERS"] != 1 {
		t.Errorf("stats %+v", st)
	}
}
