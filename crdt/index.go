package crdt

import (
	"strings"

	"github.com/google/btree"
)

// Scopes for ScopeIndex and Watch. A KV scope is ScopeKV+prefix.
const (
	ScopeNodes       = "nodes"       // any node record
	ScopeServices    = "services"    // the catalog: any service instance
	ScopeChecks      = "checks"      // any check
	ScopeIntentions  = "intentions"  // any intention
	ScopeRevocations = "revocations" // any revocation
	ScopeKV          = "kv:"         // + prefix: any key under the prefix
)

// ScopeService is the scope of one service name: its instances, their
// checks and their nodes' records and node-level checks.
func ScopeService(name string) string { return "service:" + name }

// ScopeNode is the scope of one node (by origin): its record, services and
// checks.
func ScopeNode(origin string) string { return "node:" + origin }

// changedLocked records that the live set of k changed (old was the live
// set before): it bumps the local index, the scopes that read k, and wakes
// their watchers.
func (r *Replica) changedLocked(k recKey, ks *keyState, old []any) {
	r.index++
	idx := r.index
	ks.modifyIndex = idx
	switch k.kind {
	case KindNode:
		r.touchLocked(idx, ScopeNodes, ScopeNode(k.key))
		r.touchServicesOfLocked(idx, k.key)
	case KindService:
		origin, _ := ownerOf(k.kind, k.key)
		r.touchLocked(idx, ScopeServices, ScopeNode(origin))
		// The name the key is indexed under now, not one taken from old:
		// old may hold several live versions in any order, and only the
		// winner's name was indexed.
		oldName, newName := r.svcByOrigin[origin][k.key], serviceName(ks.live)
		if oldName != newName && oldName != "" {
			r.unindexServiceLocked(oldName, origin, k.key)
		}
		if newName != "" {
			set := r.svcByName[newName]
			if set == nil {
				set = map[string]struct{}{}
				r.svcByName[newName] = set
			}
			set[k.key] = struct{}{}
			byKey := r.svcByOrigin[origin]
			if byKey == nil {
				byKey = map[string]string{}
				r.svcByOrigin[origin] = byKey
			}
			byKey[k.key] = newName
		}
		for _, n := range [2]string{oldName, newName} {
			if n != "" {
				r.touchLocked(idx, ScopeService(n))
			}
		}
	case KindCheck:
		origin, _ := ownerOf(k.kind, k.key)
		r.touchLocked(idx, ScopeChecks, ScopeNode(origin))
		for _, v := range old {
			removeFromSet(r.checksBySvc, serviceKey(origin, v.(*Check).ServiceID), k.key)
		}
		if w := winner(ks.live); w != nil {
			addToSet(r.checksBySvc, serviceKey(origin, w.val.(*Check).ServiceID), k.key)
		}
		set := r.checksByOrigin[origin]
		if len(ks.live) > 0 {
			if set == nil {
				set = map[string]struct{}{}
				r.checksByOrigin[origin] = set
			}
			set[k.key] = struct{}{}
		} else if set != nil {
			delete(set, k.key)
			if len(set) == 0 {
				delete(r.checksByOrigin, origin)
			}
		}
		vals := old
		for _, v := range ks.live {
			vals = append(vals, v.val)
		}
		for _, v := range vals {
			r.touchCheckLocked(idx, origin, v.(*Check))
		}
	case KindKV:
		wasLive, isLive := len(old) > 0, len(ks.live) > 0
		switch {
		case !wasLive && isLive:
			ks.createIndex = idx
			delete(r.kvTomb, k.key)
		case wasLive && !isLive:
			ks.createIndex = 0
			r.kvTomb[k.key] = idx
		}
		for i := 0; i <= len(k.key); i++ {
			p := k.key[:i]
			if ch, ok := r.kvWatch[p]; ok {
				close(ch)
				delete(r.kvWatch, p)
			}
			if _, ok := r.kvPrefixIdx[p]; ok {
				r.kvPrefixIdx[p] = idx
			}
		}
	case KindIntention:
		r.touchLocked(idx, ScopeIntentions)
	case KindRevocation:
		r.touchLocked(idx, ScopeRevocations)
	}
}

func serviceName(live []*version) string {
	if w := winner(live); w != nil && w.val != nil {
		return w.val.(*Service).Name
	}
	return ""
}

func (r *Replica) unindexServiceLocked(name, origin, key string) {
	if set := r.svcByName[name]; set != nil {
		delete(set, key)
		if len(set) == 0 {
			delete(r.svcByName, name)
		}
	}
	if byKey := r.svcByOrigin[origin]; byKey != nil {
		delete(byKey, key)
		if len(byKey) == 0 {
			delete(r.svcByOrigin, origin)
		}
	}
}

func (r *Replica) touchCheckLocked(idx uint64, origin string, c *Check) {
	if c.ServiceID == "" { // a node-level check affects every instance
		r.touchServicesOfLocked(idx, origin)
		return
	}
	if c.ServiceName != "" {
		r.touchLocked(idx, ScopeService(c.ServiceName))
	}
	if c.ServiceID != "" {
		if ks := r.keys[recKey{KindService, serviceKey(origin, c.ServiceID)}]; ks != nil {
			if n := serviceName(ks.live); n != "" {
				r.touchLocked(idx, ScopeService(n))
			}
		}
	}
}

// touchServicesOfLocked touches the service scopes of every instance on
// origin (its node record or a node-level check changed).
func (r *Replica) touchServicesOfLocked(idx uint64, origin string) {
	for _, name := range r.svcByOrigin[origin] {
		r.touchLocked(idx, ScopeService(name))
	}
}

func (r *Replica) touchLocked(idx uint64, scopes ...string) {
	for _, s := range scopes {
		r.scopes[s] = idx
		if ch, ok := r.watch[s]; ok {
			close(ch)
			delete(r.watch, s)
		}
	}
}

// Index returns the local change index: >= 1, incremented on every change
// of read-visible state (local or merged).
func (r *Replica) Index() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.index
}

// maxTrackedPrefixes bounds the KV prefixes whose index is kept current.
const maxTrackedPrefixes = 1 << 16

// ScopeIndex returns the index of the last change in scope (>= 1), for a
// Consul blocking query's X-Consul-Index.
func (r *Replica) ScopeIndex(scope string) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.scopeIndexLocked(scope)
}

func (r *Replica) scopeIndexLocked(scope string) uint64 {
	var idx uint64
	if prefix, ok := strings.CutPrefix(scope, ScopeKV); ok {
		// Prefixes once asked for are kept current by changedLocked, so
		// blocking queries that re-arm after every change cost O(1).
		if i, ok := r.kvPrefixIdx[prefix]; ok {
			return max(i, r.kvFloor, 1)
		}
		idx = r.kvScanIndexLocked(prefix)
		if len(r.kvPrefixIdx) < maxTrackedPrefixes {
			r.kvPrefixIdx[prefix] = idx
		}
	} else {
		idx = r.scopes[scope]
	}
	return max(idx, 1)
}

// Watch returns a channel closed at the next change in scope. All watchers
// of a scope share one channel, so 10,000 watchers cost 10,000 receives,
// not 10,000 channels.
func (r *Replica) Watch(scope string) <-chan struct{} {
	_, ch := r.WatchIndex(scope)
	return ch
}

// WatchIndex returns the scope's current index and a channel closed at its
// next change, atomically: a blocking query returns at once if the index
// is past the client's, else waits on the channel.
func (r *Replica) WatchIndex(scope string) (uint64, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, key := r.watch, scope
	if prefix, ok := strings.CutPrefix(scope, ScopeKV); ok {
		m, key = r.kvWatch, prefix
	}
	ch, ok := m[key]
	if !ok {
		ch = make(chan struct{})
		m[key] = ch
	}
	return r.scopeIndexLocked(scope), ch
}

func addToSet[K comparable](m map[K]map[string]struct{}, k K, v string) {
	set := m[k]
	if set == nil {
		set = map[string]struct{}{}
		m[k] = set
	}
	set[v] = struct{}{}
}

func removeFromSet[K comparable](m map[K]map[string]struct{}, k K, v string) {
	if set := m[k]; set != nil {
		delete(set, v)
		if len(set) == 0 {
			delete(m, k)
		}
	}
}

// kvScanIndexLocked computes a KV prefix's index from the keys.
func (r *Replica) kvScanIndexLocked(prefix string) uint64 {
	var idx uint64
	idx = r.kvFloor
	r.kvRangeLocked(prefix, func(_ string, ks *keyState) bool {
		idx = max(idx, ks.modifyIndex)
		return true
	})
	for k, i := range r.kvTomb {
		if i > idx && strings.HasPrefix(k, prefix) {
			idx = i
		}
	}
	return idx
}

// newKVOrder returns an empty ordered set of KV keys.
func newKVOrder() *btree.BTreeG[string] {
	return btree.NewG(32, func(a, b string) bool { return a < b })
}

// indexKeyLocked records a key new to r.keys in the per-kind indexes.
func (r *Replica) indexKeyLocked(k recKey) {
	switch k.kind {
	case KindKV:
		r.kvOrder.ReplaceOrInsert(k.key)
	case KindIntention, KindRevocation:
		addToSet(r.rareKeys, k.kind, k.key)
	}
}

// forgetKeyLocked drops a key's state and its place in the per-kind
// indexes.
func (r *Replica) forgetKeyLocked(k recKey) {
	delete(r.keys, k)
	switch k.kind {
	case KindKV:
		r.kvOrder.Delete(k.key)
	case KindIntention, KindRevocation:
		removeFromSet(r.rareKeys, k.kind, k.key)
	}
}

// kvRangeLocked calls f for every KV key under prefix, in key order, until
// f returns false. It visits only the keys under the prefix.
func (r *Replica) kvRangeLocked(prefix string, f func(key string, ks *keyState) bool) {
	r.kvOrder.AscendGreaterOrEqual(prefix, func(key string) bool {
		if !strings.HasPrefix(key, prefix) {
			return false
		}
		return f(key, r.keys[recKey{KindKV, key}])
	})
}
