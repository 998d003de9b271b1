package resolver

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// startServer starts a Server on 127.0.0.1 with a free port.
func startServer(t testing.TB, cfg Config, src Source) *Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	s := newTestServer(t, cfg, src)
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return s
}

// exchange sends one query over network ("udp" or "tcp") to s.
func exchange(t testing.TB, s *Server, network string, q *dns.Msg) *dns.Msg {
	t.Helper()
	c := dns.Client{Net: network, Timeout: 5 * time.Second}
	resp, _, err := c.Exchange(q, s.Addr().String())
	if err != nil {
		t.Fatalf("%s exchange %s: %v", network, q.Question[0].Name, err)
	}
	return resp
}

func TestSocketsUDPAndTCP(t *testing.T) {
	s := startServer(t, Config{}, testSource())
	for _, network := range []string{"udp", "tcp"} {
		resp := exchange(t, s, network, question("_web._tcp.service.consul.", dns.TypeSRV, 4096))
		if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 10 || resp.Truncated {
			t.Fatalf("%s: rcode %d, %d answers, TC %v", network, resp.Rcode, len(resp.Answer), resp.Truncated)
		}
		resp = exchange(t, s, network, question("nope.node.consul.", dns.TypeA, 0))
		if resp.Rcode != dns.RcodeNameError || len(resp.Ns) != 1 {
			t.Fatalf("%s: %v", network, resp)
		}
	}
}

func TestTruncationAndTCPFallback(t *testing.T) {
	s := startServer(t, Config{}, bigSource(40))
	// A plain UDP query (no EDNS0) gets 3 answers and TC.
	q := question("big.service.consul.", dns.TypeA, 0)
	resp := exchange(t, s, "udp", q)
	if !resp.Truncated || len(resp.Answer) != 3 {
		t.Fatalf("udp: TC %v, %d answers", resp.Truncated, len(resp.Answer))
	}
	// The client's fallback: the same question over TCP gets everything.
	resp = exchange(t, s, "tcp", q)
	if resp.Truncated || len(resp.Answer) != 40 {
		t.Fatalf("tcp: TC %v, %d answers", resp.Truncated, len(resp.Answer))
	}
	// SRV with EDNS0 512 does not fit: trimmed by size, TC, then TCP.
	q = question("big.service.consul.", dns.TypeSRV, 512)
	resp = exchange(t, s, "udp", q)
	if !resp.Truncated || len(resp.Answer) == 0 || len(resp.Answer) >= 40 {
		t.Fatalf("udp srv: TC %v, %d answers", resp.Truncated, len(resp.Answer))
	}
	resp = exchange(t, s, "tcp", q)
	if resp.Truncated || len(resp.Answer) != 40 || len(resp.Extra) != 41 { // 40 A + OPT
		t.Fatalf("tcp srv: TC %v, %d answers, %d extra", resp.Truncated, len(resp.Answer), len(resp.Extra))
	}
}

func TestMalformedPacketsOverUDP(t *testing.T) {
	s := startServer(t, Config{}, testSource())
	conn, err := net.Dial("udp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	good, _ := question("web.service.consul.", dns.TypeA, 0).Pack()
	junk := [][]byte{
		{0x00},
		make([]byte, 12),
		append(append([]byte{}, good[:12]...), 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01), // compression loop
		good[:len(good)-3], // cut short
		append(append([]byte{}, good[:4]...), 0xff, 0xff, 0, 0, 0, 0, 0, 0), // 65535 questions announced
	}
	for _, b := range junk {
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	// The server is still up and answers a good query.
	resp := exchange(t, s, "udp", question("web.service.consul.", dns.TypeA, 1232))
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 10 {
		t.Fatalf("after junk: %v", resp)
	}
}

func TestLifecycle(t *testing.T) {
	s, err := New(Config{Addr: "127.0.0.1:0"}, testSource())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // Close before Start is fine
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err == nil {
		t.Fatal("Start after Close succeeded")
	}

	s = startServer(t, Config{}, testSource())
	if err := s.Start(context.Background()); err == nil {
		t.Fatal("second Start succeeded")
	}
	addr := s.Addr().String()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	// The port is free again: both listeners were closed.
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("udp port still bound: %v", err)
	}
	pc.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("tcp port still bound: %v", err)
	}
	ln.Close()

	// Binding a port in use fails with a clear error.
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	s2, err := New(Config{Addr: busy.LocalAddr().String()}, testSource())
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(context.Background()); err == nil {
		t.Fatal("Start on a busy port succeeded")
	} else if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("busy port error: %v", err)
	}
	s2.Close()
}

// startServerMiekgUDP starts a Server whose UDP side is miekg's server (the
// path used on wildcard addresses), on 127.0.0.1.
func startServerMiekgUDP(t testing.TB, cfg Config, src Source) *Server {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	s := newTestServer(t, cfg, src)
	s.cfg.miekgUDP = true
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if s.udp == nil || s.udpFast != nil {
		t.Fatalf("not on miekg's UDP server")
	}
	return s
}

func TestBothUDPPaths(t *testing.T) {
	up := upstream(t)
	for _, tc := range []struct {
		name  string
		start func(testing.TB, Config, Source) *Server
	}{{"own loop", startServer}, {"miekg server", startServerMiekgUDP}} {
		t.Run(tc.name, func(t *testing.T) {
			src := testSource()
			src.services["big"] = bigSource(40).services["big"]
			s := tc.start(t, Config{Recursors: []string{up}}, src)
			resp := exchange(t, s, "udp", question("_web._tcp.service.consul.", dns.TypeSRV, 4096))
			if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 10 {
				t.Fatalf("SRV: %v", resp)
			}
			resp = exchange(t, s, "udp", question("big.service.consul.", dns.TypeA, 0))
			if !resp.Truncated || len(resp.Answer) != 3 {
				t.Fatalf("truncation: TC %v, %d answers", resp.Truncated, len(resp.Answer))
			}
			// Forwarded over UDP (asynchronously on the own loop).
			resp = exchange(t, s, "udp", question("example.com.", dns.TypeA, 0))
			if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 || !resp.RecursionAvailable {
				t.Fatalf("recursion: %v", resp)
			}
			// A datagram that does not parse gets FORMERR when its header
			// is a query's.
			conn, err := net.Dial("udp", s.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			bad := []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1}
			if _, err := conn.Write(bad); err != nil {
				t.Fatal(err)
			}
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 512)
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("no FORMERR for a bad query: %v", err)
			}
			m := new(dns.Msg)
			if err := m.Unpack(buf[:n]); err != nil || m.Id != 0x1234 || m.Rcode != dns.RcodeFormatError {
				t.Fatalf("bad query answer %v (%v)", m, err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestIPv6Loopback(t *testing.T) {
	s, err := New(Config{Addr: "[::1]:0"}, testSource())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	defer s.Close()
	for _, network := range []string{"udp", "tcp"} {
		resp := exchange(t, s, network, question("_web._tcp.service.consul.", dns.TypeSRV, 1232))
		if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 10 {
			t.Fatalf("%s over IPv6: %v", network, resp)
		}
	}
	resp := exchange(t, s, "udp", question("consul.", dns.TypeNS, 0))
	if len(resp.Extra) != 1 || resp.Extra[0].Header().Rrtype != dns.TypeAAAA {
		t.Fatalf("NS glue should be the IPv6 listen address: %v", resp)
	}
}
