package resolver

import (
	"context"

	"github.com/miekg/dns"
)

// recurse answers a name outside the domain: REFUSED without recursors,
// otherwise the first usable answer of the recursors tried in order, or
// SERVFAIL when none gives one.
func (s *Server) recurse(w dns.ResponseWriter, r *dns.Msg, reqOpt *dns.OPT) {
	if !s.cfg.recurseAvail {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeRefused)
		withEDNS(m, reqOpt)
		s.writeMsg(w, m, reqOpt)
		return
	}
	s.stats.recursed.Add(1)
	for _, addr := range s.cfg.recursors {
		resp, err := s.exchange(r, addr)
		if err != nil {
			s.stats.recursorErrors.Add(1)
			s.cfg.Logger.Debug("resolver: recursor failed", "recursor", addr, "err", err)
			continue
		}
		// As Consul: success and NXDOMAIN are answers; anything else
		// (SERVFAIL, REFUSED, ...) means try the next recursor.
		if resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError {
			s.stats.recursorErrors.Add(1)
			continue
		}
		resp.Id = r.Id
		resp.Compress = true
		resp.RecursionAvailable = true
		s.writeMsg(w, resp, reqOpt)
		return
	}
	m := new(dns.Msg)
	m.SetRcode(r, dns.RcodeServerFailure)
	m.RecursionAvailable = true
	withEDNS(m, reqOpt)
	s.writeMsg(w, m, reqOpt)
}

// withEDNS adds an OPT record to a response of ours when the query had one
// (RFC 6891 6.1.1), echoing the client's buffer size.
func withEDNS(m *dns.Msg, reqOpt *dns.OPT) {
	if reqOpt != nil {
		m.SetEdns0(max(reqOpt.UDPSize(), minUDPSize), false)
	}
}

// exchange asks one recursor over UDP, and again over TCP when the UDP
// answer is truncated.
func (s *Server) exchange(r *dns.Msg, addr string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.RecursorTimeout)
	defer cancel()
	q := r.Copy()
	c := dns.Client{Net: "udp", Timeout: s.cfg.RecursorTimeout, UDPSize: dns.DefaultMsgSize}
	resp, _, err := c.ExchangeContext(ctx, q, addr)
	if err == nil && resp.Truncated {
		c.Net = "tcp"
		resp, _, err = c.ExchangeContext(ctx, q, addr)
	}
	return resp, err
}

// writeMsg sends a message that does not come from the scratch path
// (recursor answers, REFUSED), truncating it to the client's UDP size.
func (s *Server) writeMsg(w dns.ResponseWriter, m *dns.Msg, reqOpt *dns.OPT) {
	if !isTCP(w) {
		size := minUDPSize
		if reqOpt != nil {
			size = min(max(int(reqOpt.UDPSize()), minUDPSize), maxUDPSize)
		}
		if m.Len() > size {
			m.Truncate(size)
		}
	}
	if m.Truncated {
		s.stats.truncated.Add(1)
	}
	s.stats.rcode(m.Rcode)
	_ = w.WriteMsg(m)
}
