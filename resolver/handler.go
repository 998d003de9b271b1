package resolver

import (
	"errors"
	"net"
	"strings"

	"github.com/miekg/dns"
)

// Size limits, as in Consul.
const (
	// minUDPSize is the RFC 1035 limit for a UDP answer without EDNS0.
	minUDPSize = 512
	// maxUDPSize caps an EDNS0 buffer size: above it a datagram does not
	// fit in an IP packet.
	maxUDPSize = 65535 - 68
	// maxTCPSize is the largest DNS message over TCP.
	maxTCPSize = 65535
)

// ServeDNS answers one query; it implements dns.Handler, so it can be served
// by any miekg/dns server or called directly with a response recorder.
// It never panics on a malformed message.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	s.serveDNS(w, r, nil)
}

// asyncFunc runs f(w) on another goroutine, or returns false when it
// cannot; the UDP path passes one so that forwarding does not hold a reader.
type asyncFunc func(f func(w dns.ResponseWriter), w dns.ResponseWriter) bool

// serveDNS is ServeDNS with an optional asyncFunc for the slow path.
func (s *Server) serveDNS(w dns.ResponseWriter, r *dns.Msg, async asyncFunc) {
	s.stats.queries.Add(1)
	if r == nil || r.Response {
		return // not a query: stay silent rather than answer an answer
	}
	sc := getScratch()
	defer putScratch(sc)
	m := &sc.msg
	m.MsgHdr = dns.MsgHdr{
		Id:                 r.Id,
		Response:           true,
		Opcode:             r.Opcode,
		RecursionDesired:   r.RecursionDesired,
		CheckingDisabled:   r.CheckingDisabled,
		Authoritative:      true,
		RecursionAvailable: s.cfg.recurseAvail,
	}
	m.Compress = true
	if len(r.Question) > 0 {
		sc.q[0] = r.Question[0]
		m.Question = sc.q[:]
	}

	reqOpt := r.IsEdns0()
	switch {
	case r.Opcode != dns.OpcodeQuery:
		s.fail(sc, w, r, reqOpt, dns.RcodeNotImplemented)
		return
	case len(r.Question) != 1:
		s.fail(sc, w, r, reqOpt, dns.RcodeFormatError)
		return
	case reqOpt != nil && reqOpt.Version() != 0:
		s.fail(sc, w, r, reqOpt, dns.RcodeBadVers)
		return
	}

	question := r.Question[0]
	lname := strings.ToLower(question.Name)
	q, inDomain := s.cfg.parseName(lname)
	if !inDomain {
		if async == nil || !s.cfg.recurseAvail {
			s.recurse(w, r, reqOpt)
		} else if !async(func(w dns.ResponseWriter) { s.recurse(w, r, reqOpt) }, w) {
			s.fail(sc, w, r, reqOpt, dns.RcodeServerFailure) // overloaded
		}
		return
	}
	if question.Qclass != dns.ClassINET && question.Qclass != dns.ClassANY {
		s.fail(sc, w, r, reqOpt, dns.RcodeNotImplemented)
		return
	}
	rcode := s.answer(sc, q, question)
	m.Rcode = rcode
	if rcode == dns.RcodeNameError || (rcode == dns.RcodeSuccess && len(sc.answer) == 0) {
		// NXDOMAIN and NODATA carry the SOA in the authority section, so
		// resolvers can cache the negative answer (RFC 2308).
		sc.ns = append(sc.ns[:0], s.soa(sc))
		sc.extra, sc.extraAt = sc.extra[:0], sc.extraAt[:0]
	}
	s.write(sc, w, reqOpt)
}

// fail writes an error response with no records.
func (s *Server) fail(sc *scratch, w dns.ResponseWriter, r *dns.Msg, reqOpt *dns.OPT, rcode int) {
	sc.msg.Rcode = rcode
	sc.msg.Authoritative = false
	s.write(sc, w, reqOpt)
}

// isTCP reports whether the client asked over TCP.
func isTCP(w dns.ResponseWriter) bool {
	if _, ok := w.(*udpWriter); ok {
		return false
	}
	_, ok := w.RemoteAddr().(*net.TCPAddr)
	return ok
}

// write trims the response to what the transport allows, setting the TC bit
// when records were dropped, packs it into the scratch buffer and sends it.
func (s *Server) write(sc *scratch, w dns.ResponseWriter, reqOpt *dns.OPT) {
	m := &sc.msg
	maxSize := maxTCPSize
	tcp := isTCP(w)
	if !tcp {
		maxSize = minUDPSize
		if reqOpt != nil {
			maxSize = max(int(reqOpt.UDPSize()), minUDPSize)
			maxSize = min(maxSize, maxUDPSize)
		}
	}
	if reqOpt != nil {
		// Echo EDNS0 with the client's buffer size, as Consul does.
		sc.opt.Hdr = dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}
		sc.opt.SetUDPSize(max(reqOpt.UDPSize(), minUDPSize))
	}

	// n is how many answers are sent; extras follow the answers kept.
	n := len(sc.answer)
	truncated := false
	// Without EDNS0, a UDP answer holds at most UDPAnswerLimit records
	// (Consul's udp_answer_limit).
	if !tcp && reqOpt == nil && n > s.cfg.udpLimit {
		n = s.cfg.udpLimit
		truncated = true
	}
	b, err := s.pack(sc, reqOpt, n)
	if (err == nil && len(b) > maxSize) || errors.Is(err, errTooBig) {
		// Too big: binary-search the largest answer prefix that fits.
		// Authority records only matter with no answer; drop them first.
		sc.ns = sc.ns[:0]
		lo, hi := 0, n // lo fits (0 answers always does), hi does not
		for hi-lo > 1 {
			mid := (lo + hi) / 2
			bb, perr := s.pack(sc, reqOpt, mid)
			if perr == nil && len(bb) <= maxSize {
				lo = mid
			} else {
				hi = mid
			}
		}
		n = lo
		truncated = true
	}
	if truncated {
		m.Truncated = true
		s.stats.truncated.Add(1)
		b, err = s.pack(sc, reqOpt, n)
	}
	if err != nil {
		// Records built from Source data that do not pack (should not
		// happen: names are validated). Answer SERVFAIL rather than nothing.
		s.cfg.Logger.Debug("resolver: pack response", "err", err)
		sc.answer, sc.extra, sc.extraAt, sc.ns = sc.answer[:0], sc.extra[:0], sc.extraAt[:0], sc.ns[:0]
		m.Rcode = dns.RcodeServerFailure
		m.Truncated = false
		if b, err = s.pack(sc, reqOpt, 0); err != nil {
			return
		}
	}
	s.stats.rcode(m.Rcode)
	_, _ = w.Write(b) // a client gone away is not our error to report
}

// pack packs the response with the first n answers and the additional
// records those answers need, into the scratch buffer.
func (s *Server) pack(sc *scratch, reqOpt *dns.OPT, n int) ([]byte, error) {
	m := &sc.msg
	m.Answer = sc.answer[:n]
	m.Ns = sc.ns
	sc.out = sc.out[:0]
	if n < len(sc.answer) {
		for i, rr := range sc.extra {
			if sc.extraAt[i] < n {
				sc.out = append(sc.out, rr)
			}
		}
	} else {
		sc.out = append(sc.out, sc.extra...)
	}
	if reqOpt != nil {
		sc.out = append(sc.out, &sc.opt)
	}
	m.Extra = sc.out
	return sc.packMsg(m)
}
