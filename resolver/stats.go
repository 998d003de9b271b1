package resolver

import (
	"sync/atomic"

	"github.com/miekg/dns"
)

// Stats are the server's counters since New.
type Stats struct {
	// Queries counts every query handed to the handler.
	Queries uint64
	// ByRcode counts responses by rcode name ("NOERROR", "NXDOMAIN",
	// "REFUSED", ...).
	ByRcode map[string]uint64
	// Truncated counts responses sent with the TC bit.
	Truncated uint64
	// Recursed counts queries forwarded to a recursor.
	Recursed uint64
	// RecursorErrors counts failed exchanges with a recursor (each recursor
	// tried counts once).
	RecursorErrors uint64
}

// maxCountedRcode bounds the rcode counter array; larger rcodes are counted
// at this index.
const maxCountedRcode = 24

// counters are the live, lock-free counters behind Stats.
type counters struct {
	queries        atomic.Uint64
	rcodes         [maxCountedRcode + 1]atomic.Uint64
	truncated      atomic.Uint64
	recursed       atomic.Uint64
	recursorErrors atomic.Uint64
}

func (c *counters) rcode(rc int) {
	if rc < 0 || rc > maxCountedRcode {
		rc = maxCountedRcode
	}
	c.rcodes[rc].Add(1)
}

func (c *counters) snapshot() Stats {
	st := Stats{
		Queries:        c.queries.Load(),
		ByRcode:        make(map[string]uint64),
		Truncated:      c.truncated.Load(),
		Recursed:       c.recursed.Load(),
		RecursorErrors: c.recursorErrors.Load(),
	}
	for rc := range c.rcodes {
		if n := c.rcodes[rc].Load(); n > 0 {
			name, ok := dns.RcodeToString[rc]
			if rc == dns.RcodeBadVers {
				name = "BADVERS" // shares 16 with BADSIG, which only TSIG uses
			}
			if !ok || rc == maxCountedRcode {
				name = "OTHER"
			}
			st.ByRcode[name] += n
		}
	}
	return st
}
