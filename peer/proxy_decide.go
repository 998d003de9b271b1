package peer

import (
	"sync"

	"github.com/peerd/peerd/crdt"
)

// decisionCache memoizes intention decisions per (source, destination)
// for as long as the replica's intentions scope does not change. A
// decision is four lookups under the replica's lock
// (crdt.Replica.CheckIntention); a proxy asks on every new connection and,
// with L7 permissions, on every request, so the cache keeps that traffic
// off the replica's lock.
type decisionCache struct {
	mu    sync.Mutex
	index uint64                      // intentions scope index the entries hold for; guarded by mu
	m     map[[2]string]crdt.Decision // guarded by mu
}

// maxCachedDecisions bounds the cache; past it decisions are computed
// without being kept until the next intention change empties it.
const maxCachedDecisions = 16384

// defaultAllow reports whether connections no intention matches are
// allowed (default_intention_policy).
func (a *Agent) defaultAllow() bool { return a.cfg.DefaultIntentionPolicy == intentionAllow }

// decide is replica.CheckIntention(src, dst, default) through the cache.
// The scope index is read before deciding, so a decision is never kept
// under an index older than the state it was computed from.
func (dp *dataPlane) decide(src, dst string) crdt.Decision {
	r := dp.a.replica
	idx := r.ScopeIndex(crdt.ScopeIntentions)
	key := [2]string{src, dst}
	c := &dp.decisions
	c.mu.Lock()
	if c.index != idx || c.m == nil {
		c.index, c.m = idx, make(map[[2]string]crdt.Decision)
	}
	d, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return d
	}
	d = r.CheckIntention(src, dst, dp.defaultAllow)
	c.mu.Lock()
	if c.index == idx && len(c.m) < maxCachedDecisions {
		c.m[key] = d
	}
	c.mu.Unlock()
	return d
}

// nodeFacts memoizes the two facts a new inbound connection reads from
// node records — does the caller run the source service, and where does
// the destination instance listen here — for as long as that node's scope
// index is unchanged. Computing them copies every service of the node
// (crdt.Replica.NodeServices); with the cache a new connection reads two
// scope indexes instead.
type nodeFacts struct {
	mu sync.Mutex
	m  map[nodeFactKey]nodeFact // guarded by mu
}

type nodeFactKey struct {
	node string // origin whose records the fact is read from
	kind uint8  // factRuns or factTarget
	a, b string // source name; or destination name and instance ID
}

const (
	factRuns uint8 = iota + 1
	factTarget
)

type nodeFact struct {
	index  uint64 // the node's scope index the fact was computed at
	ok     bool
	target string
}

// maxNodeFacts bounds the cache; past it the cache starts over.
const maxNodeFacts = 16384

// nodeFact returns the fact for key, computing it with compute when the
// node's records changed since it was cached. The index is read before
// computing, so a fact is never kept under an index older than its state.
func (dp *dataPlane) nodeFact(key nodeFactKey, compute func() (string, bool)) (string, bool) {
	idx := dp.a.replica.ScopeIndex(crdt.ScopeNode(key.node))
	c := &dp.facts
	c.mu.Lock()
	f, hit := c.m[key]
	c.mu.Unlock()
	if hit && f.index == idx {
		return f.target, f.ok
	}
	target, ok := compute()
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxNodeFacts {
		c.m = make(map[nodeFactKey]nodeFact)
	}
	c.m[key] = nodeFact{index: idx, ok: ok, target: target}
	c.mu.Unlock()
	return target, ok
}
