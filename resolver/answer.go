package resolver

import (
	"cmp"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// SOA timers, Consul's defaults (dns_config.soa).
const (
	soaRefresh = 3600
	soaRetry   = 600
	soaExpire  = 86400
	soaMinTTL  = 0
)

// answer fills sc.answer, sc.extra (and sc.ns for the apex) for a name
// inside the domain and returns the rcode. A NOERROR with no answer is
// NODATA; the caller adds the SOA for NXDOMAIN and NODATA.
func (s *Server) answer(sc *scratch, q query, question dns.Question) int {
	qtype := question.Qtype
	name := question.Name
	switch q.kind {
	case kindService:
		return s.answerService(sc, q, name, qtype)
	case kindNode:
		return s.answerNode(sc, q, name, qtype)
	case kindAddr:
		if wantsAddr(qtype, q.addr) {
			sc.answer = append(sc.answer, sc.addrRR(name, s.cfg.serviceTTL, q.addr))
		}
		return dns.RcodeSuccess
	case kindConnect:
		return s.answerConnect(sc, q, name, qtype)
	case kindApex:
		s.answerApex(sc, name, qtype)
		return dns.RcodeSuccess
	case kindNS:
		if wantsAddr(qtype, s.cfg.nsAddr) {
			sc.answer = append(sc.answer, sc.addrRR(name, s.cfg.nodeTTL, s.cfg.nsAddr))
		}
		return dns.RcodeSuccess
	}
	return dns.RcodeNameError
}

// wantsAddr reports whether a query of type qtype is answered with an
// address record for a.
func wantsAddr(qtype uint16, a netip.Addr) bool {
	switch qtype {
	case dns.TypeA:
		return a.Is4()
	case dns.TypeAAAA:
		return a.Is6()
	case dns.TypeANY:
		return a.IsValid()
	}
	return false
}

// healthy reports whether an instance may be answered.
func (s *Server) healthy(in *Instance) bool {
	if !in.NodeHealthy || in.Status == HealthCritical {
		return false
	}
	if s.cfg.OnlyPassing && in.Status != HealthPassing {
		return false
	}
	return in.Status <= HealthWarning
}

// hasTag reports whether tags holds tag, case-insensitively.
func hasTag(tags []string, tag string) bool {
	for _, t := range tags {
		if strings.EqualFold(t, tag) {
			return true
		}
	}
	return false
}

// selectInstances asks the Source for a service's instances, keeps the
// healthy ones carrying the tag, and orders them: random, then nearest
// first when configured. The result is in sc.keep (indexes into sc.inst).
func (s *Server) selectInstances(sc *scratch, q query) {
	sc.inst = s.src.AppendServiceInstances(sc.inst[:0], q.name)
	for i := range sc.inst {
		in := &sc.inst[i]
		if !s.healthy(in) || (q.tag != "" && !hasTag(in.Tags, q.tag)) || !in.address().IsValid() {
			continue
		}
		sc.keep = append(sc.keep, i)
	}
	// Random order per answer spreads load across instances (Consul
	// shuffles too); math/rand/v2's global source is per-goroutine and
	// lock-free.
	rand.Shuffle(len(sc.keep), func(i, j int) { sc.keep[i], sc.keep[j] = sc.keep[j], sc.keep[i] })
	if rtt := s.cfg.NodeRTT; rtt != nil && len(sc.keep) > 1 {
		type ranked struct {
			idx   int
			rtt   int64
			known bool
		}
		rs := make([]ranked, len(sc.keep))
		for i, idx := range sc.keep {
			d, ok := rtt(sc.inst[idx].Node)
			rs[i] = ranked{idx: idx, rtt: int64(d), known: ok}
		}
		slices.SortStableFunc(rs, func(a, b ranked) int {
			if a.known != b.known {
				if a.known {
					return -1
				}
				return 1
			}
			return cmp.Compare(a.rtt, b.rtt)
		})
		for i := range rs {
			sc.keep[i] = rs[i].idx
		}
	}
}

// answerService answers NAME.service, TAG.NAME.service and
// _NAME._TAG.service.
func (s *Server) answerService(sc *scratch, q query, name string, qtype uint16) int {
	s.selectInstances(sc, q)
	if len(sc.keep) == 0 {
		// Consul answers NXDOMAIN when a service has no healthy instance.
		return dns.RcodeNameError
	}
	ttl := s.cfg.serviceTTL
	switch qtype {
	case dns.TypeA, dns.TypeAAAA, dns.TypeANY:
		count := 0
		for _, idx := range sc.keep {
			a := sc.inst[idx].address()
			if !wantsAddr(qtype, a) || sc.seenAddr(a) {
				continue
			}
			sc.answer = append(sc.answer, sc.addrRR(name, ttl, a))
			count++
			if count == s.cfg.ARecordLimit {
				break
			}
		}
	case dns.TypeSRV:
		for _, idx := range sc.keep {
			in := &sc.inst[idx]
			a := in.address()
			if sc.seenKey(dedupKey{node: in.Node, addr: a, port: in.Port}) {
				continue
			}
			target, ok := s.srvTarget(in, a)
			if !ok {
				continue
			}
			sc.answer = append(sc.answer, sc.srvRR(name, ttl, in.weight(), in.Port, target))
			// One address record per distinct target. Target keys have no
			// address, instance keys always do, so they never collide.
			if !sc.seenKey(dedupKey{node: target}) {
				sc.addExtra(sc.addrRR(target, ttl, a), len(sc.answer)-1)
			}
		}
	}
	return dns.RcodeSuccess
}

// srvTarget returns the SRV target of an instance reached at a, as Consul
// names it: HEXIP.addr.DC.<domain> for an instance with its own address,
// NODE.node.DC.<domain> otherwise. ok is false when the node name does not
// make a valid domain name.
func (s *Server) srvTarget(in *Instance, a netip.Addr) (string, bool) {
	if in.ServiceAddress.IsValid() && in.ServiceAddress.Unmap() != in.NodeAddress.Unmap() {
		return s.targets.addr(a), true
	}
	return s.targets.node(in.Node)
}

// answerNode answers NODE.node: an address record and TXT records from the
// node's metadata.
func (s *Server) answerNode(sc *scratch, q query, name string, qtype uint16) int {
	node, ok := s.src.Node(q.name)
	if !ok {
		return dns.RcodeNameError
	}
	ttl := s.cfg.nodeTTL
	a := node.Address.Unmap()
	if wantsAddr(qtype, a) {
		sc.answer = append(sc.answer, sc.addrRR(name, ttl, a))
	}
	if (qtype == dns.TypeTXT || qtype == dns.TypeANY) && len(node.Meta) > 0 {
		keys := make([]string, 0, len(node.Meta))
		for k := range node.Meta {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			v := node.Meta[k]
			txt := k + "=" + v
			if strings.HasPrefix(k, "rfc1035-") {
				txt = v
			}
			if len(txt) > 255 {
				txt = txt[:255] // one character-string holds at most 255 bytes
			}
			sc.answer = append(sc.answer, sc.txtRR(name, ttl, txt))
		}
	}
	return dns.RcodeSuccess
}

// answerConnect answers NAME.connect with the local upstream address of the
// data plane.
func (s *Server) answerConnect(sc *scratch, q query, name string, qtype uint16) int {
	ap, ok := s.src.ConnectUpstream(q.name)
	if !ok || !ap.Addr().IsValid() {
		return dns.RcodeNameError
	}
	ttl := s.cfg.serviceTTL
	a := ap.Addr().Unmap()
	switch qtype {
	case dns.TypeSRV:
		target := s.targets.addr(a)
		sc.answer = append(sc.answer, sc.srvRR(name, ttl, 1, ap.Port(), target))
		sc.addExtra(sc.addrRR(target, ttl, a), 0)
	default:
		if wantsAddr(qtype, a) {
			sc.answer = append(sc.answer, sc.addrRR(name, ttl, a))
		}
	}
	return dns.RcodeSuccess
}

// answerApex answers the domain itself: SOA, NS and ANY.
func (s *Server) answerApex(sc *scratch, name string, qtype uint16) {
	switch qtype {
	case dns.TypeSOA:
		sc.answer = append(sc.answer, s.soa(sc))
		sc.ns = append(sc.ns, s.nsRecord(sc, name))
		sc.addExtra(sc.addrRR(s.cfg.nsTarget, s.cfg.nodeTTL, s.cfg.nsAddr), 0)
	case dns.TypeNS:
		sc.answer = append(sc.answer, s.nsRecord(sc, name))
		sc.addExtra(sc.addrRR(s.cfg.nsTarget, s.cfg.nodeTTL, s.cfg.nsAddr), 0)
	case dns.TypeANY:
		sc.answer = append(sc.answer, s.soa(sc), s.nsRecord(sc, name))
		sc.addExtra(sc.addrRR(s.cfg.nsTarget, s.cfg.nodeTTL, s.cfg.nsAddr), 0)
	}
}

// soa returns the domain's SOA record (Consul's shape: ns.<domain>,
// hostmaster.<domain>, serial from the clock).
func (s *Server) soa(sc *scratch) dns.RR {
	sc.soa = dns.SOA{
		Hdr:     dns.RR_Header{Name: s.cfg.Domain, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: soaMinTTL},
		Ns:      s.soaNS,
		Mbox:    s.soaMbox,
		Serial:  uint32(s.cfg.Now().Unix()),
		Refresh: soaRefresh,
		Retry:   soaRetry,
		Expire:  soaExpire,
		Minttl:  soaMinTTL,
	}
	return &sc.soa
}

// nsRecord returns the domain's NS record, pointing at this agent.
func (s *Server) nsRecord(sc *scratch, name string) dns.RR {
	sc.nsRR = dns.NS{
		Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: s.cfg.nodeTTL},
		Ns:  s.cfg.nsTarget,
	}
	return &sc.nsRR
}
