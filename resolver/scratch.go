package resolver

import (
	"net"
	"net/netip"
	"sync"

	"github.com/miekg/dns"
)

// scratch is the per-query working memory: the instance buffer handed to
// Source, backing arrays for the records of the answer and the pack buffer.
// It is pooled so that a steady stream of queries allocates almost nothing;
// records point into its arrays, which is safe because a response is packed
// to bytes and written before the scratch goes back to the pool.
type scratch struct {
	inst    []Instance
	keep    []int // indexes into inst kept after filtering
	a       []dns.A
	aaaa    []dns.AAAA
	srv     []dns.SRV
	txt     []dns.TXT
	ips     []byte // arena for net.IP values of A/AAAA records
	answer  []dns.RR
	extra   []dns.RR
	extraAt []int // extraAt[i]: index of the first answer that needs extra[i]
	ns      []dns.RR
	out     []dns.RR   // the additional section as packed (extra + OPT)
	dedup   []dedupKey // answers already made (de-duplication)
	seen    map[dedupKey]struct{}
	q       [1]dns.Question
	msg     dns.Msg
	opt     dns.OPT
	soa     dns.SOA
	nsRR    dns.NS
	buf     []byte
	comp    map[string]int // name compression offsets, reused per pack
	targets []targetOffset // SRV target offsets, for packFast
}

// dedupKey identifies an answer for de-duplication in large answers.
type dedupKey struct {
	node string
	addr netip.Addr
	port uint16
}

// Bounds above which a scratch is not kept for reuse, so that one huge
// answer does not pin its memory in the pool forever.
const (
	maxPooledInstances = 4096
	maxPooledBuf       = 64 << 10
)

var scratchPool = sync.Pool{New: func() any {
	return &scratch{buf: make([]byte, 0, 2048)}
}}

func getScratch() *scratch { return scratchPool.Get().(*scratch) }

func putScratch(sc *scratch) {
	if cap(sc.inst) > maxPooledInstances || cap(sc.buf) > maxPooledBuf {
		return
	}
	// The arrays are truncated, not cleared: clearing pointer-holding
	// memory costs write barriers on every query, and what they still
	// reference (names, tags) is small and bounded by the pool, which the
	// GC empties anyway.
	sc.inst = sc.inst[:0]
	sc.keep = sc.keep[:0]
	sc.a = sc.a[:0]
	sc.aaaa = sc.aaaa[:0]
	sc.srv = sc.srv[:0]
	sc.txt = sc.txt[:0]
	sc.ips = sc.ips[:0]
	sc.answer = sc.answer[:0]
	sc.extra = sc.extra[:0]
	sc.extraAt = sc.extraAt[:0]
	sc.ns = sc.ns[:0]
	sc.out = sc.out[:0]
	sc.resetDedup()
	sc.msg = dns.Msg{}
	sc.opt = dns.OPT{}
	sc.q[0] = dns.Question{}
	scratchPool.Put(sc)
}

// addrRR returns an A or AAAA record for a, backed by the scratch arrays.
func (sc *scratch) addrRR(name string, ttl uint32, a netip.Addr) dns.RR {
	if a.Is4() {
		b := a.As4()
		off := len(sc.ips)
		sc.ips = append(sc.ips, b[:]...)
		sc.a = append(sc.a, dns.A{
			Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl},
			A:   net.IP(sc.ips[off : off+4 : off+4]),
		})
		return &sc.a[len(sc.a)-1]
	}
	b := a.As16()
	off := len(sc.ips)
	sc.ips = append(sc.ips, b[:]...)
	sc.aaaa = append(sc.aaaa, dns.AAAA{
		Hdr:  dns.RR_Header{Name: name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl},
		AAAA: net.IP(sc.ips[off : off+16 : off+16]),
	})
	return &sc.aaaa[len(sc.aaaa)-1]
}

// srvRR returns an SRV record backed by the scratch arrays.
func (sc *scratch) srvRR(name string, ttl uint32, weight, port uint16, target string) dns.RR {
	sc.srv = append(sc.srv, dns.SRV{
		Hdr:      dns.RR_Header{Name: name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: ttl},
		Priority: 1,
		Weight:   weight,
		Port:     port,
		Target:   target,
	})
	return &sc.srv[len(sc.srv)-1]
}

// txtRR returns a TXT record with one string, backed by the scratch arrays.
func (sc *scratch) txtRR(name string, ttl uint32, s string) dns.RR {
	sc.txt = append(sc.txt, dns.TXT{
		Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: ttl},
		Txt: []string{s},
	})
	return &sc.txt[len(sc.txt)-1]
}

// seenAddr reports whether a was already answered and records it.
func (sc *scratch) seenAddr(a netip.Addr) bool {
	return sc.seenKey(dedupKey{addr: a})
}

// seenKey reports whether k was already seen and records it. Small answers
// scan a slice; past dedupLinear keys it switches to a map.
func (sc *scratch) seenKey(k dedupKey) bool {
	const dedupLinear = 32
	if len(sc.seen) == 0 {
		if len(sc.dedup) < dedupLinear {
			for _, x := range sc.dedup {
				if x == k {
					return true
				}
			}
			sc.dedup = append(sc.dedup, k)
			return false
		}
		if sc.seen == nil {
			sc.seen = make(map[dedupKey]struct{}, 2*dedupLinear)
		}
		for _, x := range sc.dedup {
			sc.seen[x] = struct{}{}
		}
	}
	if _, ok := sc.seen[k]; ok {
		return true
	}
	sc.seen[k] = struct{}{}
	return false
}

// resetDedup forgets the keys recorded by seenKey.
func (sc *scratch) resetDedup() {
	sc.dedup = sc.dedup[:0]
	if len(sc.seen) > 0 {
		clear(sc.seen)
	}
}

// addExtra adds an additional record needed by answer number at (and by
// later ones): trimming the answers to at or fewer drops it.
func (sc *scratch) addExtra(rr dns.RR, at int) {
	sc.extra = append(sc.extra, rr)
	sc.extraAt = append(sc.extraAt, at)
}
