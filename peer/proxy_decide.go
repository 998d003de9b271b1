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
