package resolver

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"

	"github.com/miekg/dns"
)

// randomAnswer builds a message of the shape packFast handles, from a
// seeded generator.
func randomAnswer(r *rand.Rand) *dns.Msg {
	names := []string{"web.service.consul.", "_web._tcp.service.dc1.consul.", "A.B.c.", "x.connect.consul."}
	m := new(dns.Msg)
	m.SetQuestion(names[r.IntN(len(names))], dns.TypeSRV)
	m.Id = uint16(r.Uint32())
	m.Response, m.Authoritative, m.Truncated = true, r.IntN(2) == 0, r.IntN(4) == 0
	m.RecursionDesired, m.RecursionAvailable = r.IntN(2) == 0, r.IntN(2) == 0
	m.Rcode = []int{dns.RcodeSuccess, dns.RcodeSuccess, dns.RcodeNameError}[r.IntN(3)]
	m.Compress = true
	qname := m.Question[0].Name
	n := r.IntN(30)
	srv := r.IntN(2) == 0
	for i := range n {
		ttl := uint32(r.IntN(3) * 30)
		ip4 := net.IPv4(10, byte(i), byte(r.IntN(256)), byte(r.IntN(256))).To4()
		ip6 := net.ParseIP(fmt.Sprintf("fd00::%x", r.IntN(65536)))
		if srv {
			target := fmt.Sprintf("node-%d.node.dc1.consul.", r.IntN(n+1))
			if r.IntN(3) == 0 {
				target = fmt.Sprintf("%08x.addr.dc1.consul.", r.Uint32())
			}
			m.Answer = append(m.Answer, &dns.SRV{Hdr: dns.RR_Header{Name: qname, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: ttl},
				Priority: 1, Weight: uint16(r.IntN(5)), Port: uint16(r.IntN(65536)), Target: target})
			if r.IntN(2) == 0 {
				m.Extra = append(m.Extra, &dns.A{Hdr: dns.RR_Header{Name: target, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: ip4})
			} else {
				m.Extra = append(m.Extra, &dns.AAAA{Hdr: dns.RR_Header{Name: target, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: ip6})
			}
			continue
		}
		if r.IntN(2) == 0 {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: qname, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: ip4})
		} else {
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: dns.RR_Header{Name: qname, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: ip6})
		}
	}
	if r.IntN(2) == 0 {
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(uint16(512 + r.IntN(4000)))
		m.Extra = append(m.Extra, opt)
	}
	return m
}

// TestPackFastMatchesMiekg checks that the fast packer produces exactly the
// bytes of miekg's own compressing packer, and our map-based one, for the
// shapes it accepts.
func TestPackFastMatchesMiekg(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	sc := &scratch{}
	for i := range 3000 {
		m := randomAnswer(r)
		want, err := m.Copy().Pack()
		if err != nil {
			t.Fatalf("%d: miekg pack: %v", i, err)
		}
		mm := m.Copy()
		mm.Compress = false
		buf := make([]byte, mm.Len()+1)
		got, ok := packFast(m, buf, &sc.targets)
		if !ok {
			t.Fatalf("%d: packFast refused a supported shape:\n%v", i, m)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%d: packFast differs from miekg\n got %x\nwant %x\n%v", i, got, want, m)
		}
		mine, err := sc.packInto(m, make([]byte, len(buf)))
		if err != nil || !bytes.Equal(mine, want) {
			t.Fatalf("%d: packInto differs from miekg (%v)", i, err)
		}
	}
}

func TestPackFastRefusesOtherShapes(t *testing.T) {
	sc := &scratch{}
	soa := question("consul.", dns.TypeSOA, 0)
	soa.Answer = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "consul.", Rrtype: dns.TypeSOA, Class: dns.ClassINET}, Ns: "ns.consul.", Mbox: "h.consul."}}
	ns := question("web.service.consul.", dns.TypeA, 0)
	ns.Ns = soa.Answer
	other := question("web.service.consul.", dns.TypeA, 0)
	other.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "other.consul.", Rrtype: dns.TypeA, Class: dns.ClassINET}, A: net.IPv4(1, 2, 3, 4)}}
	orphan := question("web.service.consul.", dns.TypeSRV, 0)
	orphan.Extra = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "x.consul.", Rrtype: dns.TypeA, Class: dns.ClassINET}, A: net.IPv4(1, 2, 3, 4)}}
	for i, m := range []*dns.Msg{soa, ns, other, orphan} {
		m.Compress = true
		if _, ok := packFast(m, make([]byte, 4096), &sc.targets); ok {
			t.Errorf("%d: packFast accepted %v", i, m)
		}
	}
}
