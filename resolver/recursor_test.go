package resolver

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// upstream is a miekg/dns server on 127.0.0.1 standing in for a recursor:
// example.com. A → 192.0.2.1, big.example. → 60 TXT records, fail.example.
// → SERVFAIL, everything else NXDOMAIN.
func upstream(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		switch r.Question[0].Name {
		case "example.com.":
			rr, _ := dns.NewRR("example.com. 60 IN A 192.0.2.1")
			m.Answer = append(m.Answer, rr)
		case "big.example.":
			for i := range 60 {
				rr, _ := dns.NewRR(fmt.Sprintf("big.example. 60 IN TXT \"record number %02d with some padding text\"", i))
				m.Answer = append(m.Answer, rr)
			}
			if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
				m.Truncate(512)
			}
		case "fail.example.":
			m.Rcode = dns.RcodeServerFailure
		default:
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: ln, Handler: h}
	up := make(chan struct{}, 2)
	udp.NotifyStartedFunc = func() { up <- struct{}{} }
	tcp.NotifyStartedFunc = func() { up <- struct{}{} }
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	<-up
	<-up
	t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
	return pc.LocalAddr().String()
}

// silentUDP returns the address of a UDP socket that never answers.
func silentUDP(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

func TestRecursors(t *testing.T) {
	up := upstream(t)
	tests := []struct {
		name      string
		recursors []string
		qname     string
		edns      uint16
		tcp       bool
		rcode     int
		answers   int
		tc        bool
		errs      uint64
	}{
		{name: "answer", recursors: []string{up}, qname: "example.com.", rcode: dns.RcodeSuccess, answers: 1},
		{name: "nxdomain passes through", recursors: []string{up}, qname: "nope.example.", rcode: dns.RcodeNameError},
		{name: "servfail tries next then fails", recursors: []string{up, up}, qname: "fail.example.", rcode: dns.RcodeServerFailure, errs: 2},
		{name: "silent recursor times out, next answers", recursors: []string{silentUDP(t), up}, qname: "example.com.", rcode: dns.RcodeSuccess, answers: 1, errs: 1},
		{name: "upstream TC retried over TCP, then truncated for a UDP client", recursors: []string{up}, qname: "big.example.", rcode: dns.RcodeSuccess, answers: -1, tc: true},
		{name: "upstream TC retried over TCP, all for a TCP client", recursors: []string{up}, qname: "big.example.", tcp: true, rcode: dns.RcodeSuccess, answers: 60},
		{name: "large EDNS client gets all", recursors: []string{up}, qname: "big.example.", edns: 8192, rcode: dns.RcodeSuccess, answers: 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, Config{Recursors: tt.recursors, RecursorTimeout: 300 * time.Millisecond}, testSource())
			q := question(tt.qname, dns.TypeA, tt.edns)
			if tt.qname == "big.example." {
				q.Question[0].Qtype = dns.TypeTXT
			}
			resp := ask(t, s, q, tt.tcp)
			if resp.Rcode != tt.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
			}
			if tt.answers >= 0 && len(resp.Answer) != tt.answers {
				t.Errorf("%d answers, want %d", len(resp.Answer), tt.answers)
			}
			if resp.Truncated != tt.tc {
				t.Errorf("TC %v, want %v", resp.Truncated, tt.tc)
			}
			if !resp.RecursionAvailable {
				t.Errorf("RA not set")
			}
			st := s.Stats()
			if st.Recursed != 1 || st.RecursorErrors != tt.errs {
				t.Errorf("stats %+v", st)
			}
		})
	}
	// Names inside the domain are never forwarded.
	s := newTestServer(t, Config{Recursors: []string{up}}, testSource())
	resp := ask(t, s, question("nope.service.consul.", dns.TypeA, 0), false)
	if resp.Rcode != dns.RcodeNameError || s.Stats().Recursed != 0 || !resp.RecursionAvailable {
		t.Fatalf("in-domain name: %v, stats %+v", resp, s.Stats())
	}
}
