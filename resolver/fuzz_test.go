package resolver

import (
	"testing"

	"github.com/miekg/dns"
)

// FuzzServeDNS feeds raw bytes through the same path as the network: unpack
// into a dns.Msg (as miekg/dns's server does), then the handler, over UDP and
// TCP. The handler must not panic, and whatever it writes must be a valid
// message within the transport's size limit.
func FuzzServeDNS(f *testing.F) {
	seeds := []*dns.Msg{
		question("web.service.consul.", dns.TypeA, 0),
		question("_web._tcp.service.consul.", dns.TypeSRV, 1232),
		question("primary.web.service.dc1.consul.", dns.TypeANY, 4096),
		question("node-0.node.consul.", dns.TypeTXT, 0),
		question("7f000001.addr.consul.", dns.TypeA, 0),
		question("db.connect.consul.", dns.TypeSRV, 0),
		question("consul.", dns.TypeSOA, 0),
		question("example.com.", dns.TypeA, 0),
	}
	for _, m := range seeds {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1})
	s, err := New(Config{}, testSource())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req := new(dns.Msg)
		if err := req.Unpack(b); err != nil {
			return // the server drops what does not unpack
		}
		for _, tcp := range []bool{false, true} {
			rec := &recorder{tcp: tcp}
			s.ServeDNS(rec, req)
			if rec.raw == nil {
				continue
			}
			if rec.err != nil {
				t.Fatalf("handler wrote an invalid message: %v", rec.err)
			}
			limit := maxTCPSize
			if !tcp {
				limit = minUDPSize
				if opt := req.IsEdns0(); opt != nil {
					limit = min(max(int(opt.UDPSize()), minUDPSize), maxUDPSize)
				}
			}
			if len(rec.raw) > limit && !rec.msg.Truncated {
				t.Fatalf("%d-byte response over a %d-byte limit without TC", len(rec.raw), limit)
			}
			if rec.msg.Id != req.Id {
				t.Fatalf("response id %d for query %d", rec.msg.Id, req.Id)
			}
		}
	})
}
