package crdt

import (
	"slices"
	"strings"
)

// Dot names one record version: the Counter-th write of Origin. Every
// write, delete, intention and revocation entry has exactly one dot.
type Dot struct {
	_       struct{} `cbor:",toarray"`
	Origin  string
	Counter uint64
}

// VersionVector maps an origin to the highest counter up to which this
// replica holds every dot of that origin (a contiguous prefix).
type VersionVector map[string]uint64

// Clone returns an independent copy.
func (v VersionVector) Clone() VersionVector {
	c := make(VersionVector, len(v))
	for k, n := range v {
		c[k] = n
	}
	return c
}

// Covers reports whether d is inside the contiguous prefix of v.
func (v VersionVector) Covers(d Dot) bool { return d.Counter <= v[d.Origin] }

// causalContext is the set of dots a replica has seen: a version vector
// plus a "dot cloud" of dots received out of order above the vector.
type causalContext struct {
	vv    VersionVector
	cloud map[Dot]struct{}
}

func newCausalContext() causalContext {
	return causalContext{vv: VersionVector{}, cloud: map[Dot]struct{}{}}
}

func (c *causalContext) has(d Dot) bool {
	if d.Counter <= c.vv[d.Origin] {
		return true
	}
	_, ok := c.cloud[d]
	return ok
}

// add inserts d and compacts the cloud into the vector.
func (c *causalContext) add(d Dot) {
	if c.has(d) {
		return
	}
	if d.Counter == c.vv[d.Origin]+1 {
		c.vv[d.Origin] = d.Counter
		c.compact(d.Origin)
		return
	}
	c.cloud[d] = struct{}{}
}

// raise moves the contiguous head of origin up to n (a GC horizon).
func (c *causalContext) raise(origin string, n uint64) {
	if n <= c.vv[origin] {
		return
	}
	for d := range c.cloud {
		if d.Origin == origin && d.Counter <= n {
			delete(c.cloud, d)
		}
	}
	c.vv[origin] = n
	c.compact(origin)
}

func (c *causalContext) compact(origin string) {
	for {
		next := Dot{Origin: origin, Counter: c.vv[origin] + 1}
		if _, ok := c.cloud[next]; !ok {
			return
		}
		delete(c.cloud, next)
		c.vv[origin] = next.Counter
	}
}

// max returns the highest counter of origin in the context.
func (c *causalContext) max(origin string) uint64 {
	m := c.vv[origin]
	for d := range c.cloud {
		if d.Origin == origin && d.Counter > m {
			m = d.Counter
		}
	}
	return m
}

// sortedCloud returns the cloud in (origin, counter) order.
func (c *causalContext) sortedCloud() []Dot {
	out := make([]Dot, 0, len(c.cloud))
	for d := range c.cloud {
		out = append(out, d)
	}
	sortDots(out)
	return out
}

func sortDots(ds []Dot) {
	slices.SortFunc(ds, compareDots)
}

func compareDots(a, b Dot) int {
	if c := strings.Compare(a.Origin, b.Origin); c != 0 {
		return c
	}
	switch {
	case a.Counter < b.Counter:
		return -1
	case a.Counter > b.Counter:
		return 1
	}
	return 0
}
