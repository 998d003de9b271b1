package crdt

import (
	"cmp"
	"slices"
	"strings"
)

// winner is the live version reads show: the greatest (HLC, origin,
// counter). The others are conflict siblings (KV only, in practice).
func winner(live []*version) *version {
	var w *version
	for _, v := range live {
		if w == nil || versionLess(w, v) {
			w = v
		}
	}
	return w
}

func versionLess(a, b *version) bool {
	if a.h.HLC != b.h.HLC {
		return a.h.HLC < b.h.HLC
	}
	return compareDots(a.h.dot(), b.h.dot()) < 0
}

func (r *Replica) liveLocked(k Kind, key string) *version {
	if ks := r.keys[recKey{k, key}]; ks != nil {
		return winner(ks.live)
	}
	return nil
}

// Node returns the node record of origin.
func (r *Replica) Node(origin string) (Node, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v := r.liveLocked(KindNode, origin); v != nil {
		return cloneNode(*v.val.(*Node)), true
	}
	return Node{}, false
}

// LastNodeRecord returns the newest node record of origin this replica
// holds with its body, live or dead: for a revoked or cut-off origin,
// whose node record is dead (kept with its body through garbage
// collection), the certificate chain it published, which the Authorizer
// needs to judge the origin's KV records from before its revocation or
// cut.
func (r *Replica) LastNodeRecord(origin string) (Node, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.lastNodeLocked(origin)
	if c == 0 {
		return Node{}, false
	}
	n, err := DecodeNode(r.byOrigin[origin][c].e.Body)
	return n, err == nil
}

// NewestNodeRecord is LastNodeRecord with the record's counter, by which
// the node's records are ordered (a newer node record has a higher one).
func (r *Replica) NewestNodeRecord(origin string) (Node, uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.lastNodeLocked(origin)
	if c == 0 {
		return Node{}, 0, false
	}
	n, err := DecodeNode(r.byOrigin[origin][c].e.Body)
	return n, c, err == nil
}

// lastNodeLocked returns the counter of origin's newest node record held
// with its body (0: none).
func (r *Replica) lastNodeLocked(origin string) uint64 {
	var top uint64
	for c, v := range r.byOrigin[origin] {
		if v.h.Kind == KindNode && v.e.Body != nil && c > top {
			top = c
		}
	}
	return top
}

// Nodes returns every node record, sorted by name then origin.
func (r *Replica) Nodes() []NodeEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []NodeEntry
	for k, ks := range r.keys {
		if k.kind != KindNode {
			continue
		}
		if v := winner(ks.live); v != nil {
			out = append(out, NodeEntry{Origin: k.key, Node: cloneNode(*v.val.(*Node))})
		}
	}
	slices.SortFunc(out, func(a, b NodeEntry) int {
		return cmp.Or(strings.Compare(a.Node.Name, b.Node.Name), strings.Compare(a.Origin, b.Origin))
	})
	return out
}

// ServiceNames returns the catalog: every service name with the union of
// its instances' tags (sorted, deduplicated).
func (r *Replica) ServiceNames() map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string][]string, len(r.svcByName))
	for name, set := range r.svcByName {
		tags := []string{}
		for key := range set {
			if v := r.liveLocked(KindService, key); v != nil {
				tags = append(tags, v.val.(*Service).Tags...)
			}
		}
		slices.Sort(tags)
		out[name] = slices.Compact(tags)
	}
	return out
}

// Services returns the instances of name that carry every tag in tags,
// each with its node and applicable checks, sorted by node name, origin
// and ID.
func (r *Replica) Services(name string, tags []string) []ServiceEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []ServiceEntry
	for key := range r.svcByName[name] {
		v := r.liveLocked(KindService, key)
		if v == nil {
			continue
		}
		s := v.val.(*Service)
		if !hasAllTags(s.Tags, tags) {
			continue
		}
		out = append(out, r.serviceEntryLocked(v.h.Origin, s))
	}
	slices.SortFunc(out, func(a, b ServiceEntry) int {
		return cmp.Or(strings.Compare(a.Node.Name, b.Node.Name), strings.Compare(a.Origin, b.Origin),
			strings.Compare(a.Service.ID, b.Service.ID))
	})
	return out
}

// NodeServices returns the instances published by origin, sorted by ID.
func (r *Replica) NodeServices(origin string) []ServiceEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []ServiceEntry
	for key := range r.svcByOrigin[origin] {
		if v := r.liveLocked(KindService, key); v != nil {
			out = append(out, r.serviceEntryLocked(origin, v.val.(*Service)))
		}
	}
	slices.SortFunc(out, func(a, b ServiceEntry) int { return strings.Compare(a.Service.ID, b.Service.ID) })
	return out
}

func hasAllTags(have, want []string) bool {
	for _, t := range want {
		if !slices.Contains(have, t) {
			return false
		}
	}
	return true
}

func (r *Replica) serviceEntryLocked(origin string, s *Service) ServiceEntry {
	e := ServiceEntry{Origin: origin, Service: cloneService(*s)}
	if v := r.liveLocked(KindNode, origin); v != nil {
		e.Node = cloneNode(*v.val.(*Node))
	}
	for _, sk := range [2]string{serviceKey(origin, ""), serviceKey(origin, s.ID)} {
		for key := range r.checksBySvc[sk] {
			if v := r.liveLocked(KindCheck, key); v != nil {
				e.Checks = append(e.Checks, CheckEntry{Origin: origin, Check: cloneCheck(*v.val.(*Check))})
			}
		}
	}
	slices.SortFunc(e.Checks, func(a, b CheckEntry) int { return strings.Compare(a.Check.ID, b.Check.ID) })
	return e
}

// CheckFilter selects checks; empty fields match everything.
type CheckFilter struct {
	Origin      string // the node's origin
	ServiceName string
	ServiceID   string
	Status      string // passing|warning|critical; "" or "any" for all
}

// Checks returns the checks matching f, sorted by origin and ID.
func (r *Replica) Checks(f CheckFilter) []CheckEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.checksLocked(f.Origin, func(o string, c *Check) bool {
		return (f.Origin == "" || f.Origin == o) &&
			(f.ServiceName == "" || f.ServiceName == c.ServiceName) &&
			(f.ServiceID == "" || f.ServiceID == c.ServiceID) &&
			(f.Status == "" || f.Status == "any" || f.Status == c.Status)
	})
}

func (r *Replica) checksLocked(origin string, keep func(origin string, c *Check) bool) []CheckEntry {
	var out []CheckEntry
	visit := func(v *version) {
		if v == nil {
			return
		}
		if c := v.val.(*Check); keep(v.h.Origin, c) {
			out = append(out, CheckEntry{Origin: v.h.Origin, Check: cloneCheck(*c)})
		}
	}
	if origin != "" {
		for key := range r.checksByOrigin[origin] {
			visit(r.liveLocked(KindCheck, key))
		}
	} else {
		for _, set := range r.checksByOrigin {
			for key := range set {
				visit(r.liveLocked(KindCheck, key))
			}
		}
	}
	slices.SortFunc(out, func(a, b CheckEntry) int {
		return cmp.Or(strings.Compare(a.Origin, b.Origin), strings.Compare(a.Check.ID, b.Check.ID))
	})
	return out
}

// KVGet returns key with its metadata and conflict siblings.
func (r *Replica) KVGet(key string) (KVPair, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ks := r.keys[recKey{KindKV, key}]
	if ks == nil || len(ks.live) == 0 {
		return KVPair{}, false
	}
	return kvPair(key, ks), true
}

func kvPair(key string, ks *keyState) KVPair {
	w := winner(ks.live)
	b := w.val.(*kvBody)
	p := KVPair{Key: key, CreateIndex: ks.createIndex, ModifyIndex: ks.modifyIndex,
		Flags: b.Flags, Value: slices.Clone(b.Value), Origin: w.h.Origin, HLC: w.h.HLC}
	for _, v := range ks.live {
		if v == w {
			continue
		}
		sb := v.val.(*kvBody)
		p.Conflicts = append(p.Conflicts, KVSibling{Value: slices.Clone(sb.Value), Flags: sb.Flags, Origin: v.h.Origin, HLC: v.h.HLC})
	}
	slices.SortFunc(p.Conflicts, func(a, b KVSibling) int {
		return cmp.Or(cmp.Compare(b.HLC, a.HLC), strings.Compare(b.Origin, a.Origin))
	})
	return p
}

// KVList returns every key under prefix, sorted by key.
func (r *Replica) KVList(prefix string) []KVPair {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []KVPair
	r.kvRangeLocked(prefix, func(key string, ks *keyState) bool {
		if len(ks.live) > 0 {
			out = append(out, kvPair(key, ks))
		}
		return true
	})
	return out
}

// KVKeys lists the keys under prefix with Consul's separator semantics:
// with a separator, keys are cut after the first separator following the
// prefix and deduplicated ("a/b/c" under "a/" with "/" lists "a/b/").
func (r *Replica) KVKeys(prefix, separator string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []string{}
	r.kvRangeLocked(prefix, func(key string, ks *keyState) bool {
		if len(ks.live) == 0 {
			return true
		}
		if separator != "" {
			if i := strings.Index(key[len(prefix):], separator); i >= 0 {
				key = key[:len(prefix)+i+len(separator)]
			}
		}
		if n := len(out); n == 0 || out[n-1] != key {
			out = append(out, key)
		}
		return true
	})
	// Keys come in order, so cut keys do too; sorting again is cheap on
	// sorted input and keeps the answer right whatever the separator.
	slices.Sort(out)
	return slices.Compact(out)
}

func sortedStrings(s []string) []string {
	slices.Sort(s)
	return s
}

// Intentions returns every live intention (deletions excluded), highest
// precedence first.
func (r *Replica) Intentions() []Intention {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.intentionsLocked(false)
}

func (r *Replica) intentionsLocked(withDeleted bool) []Intention {
	var out []Intention
	for key := range r.rareKeys[KindIntention] {
		if v := r.liveLocked(KindIntention, key); v != nil && !v.val.(*intentionVal).withdrawn {
			if in := v.val.(*intentionVal).in; withDeleted || !in.Deleted {
				out = append(out, in)
			}
		}
	}
	sortIntentions(out)
	return out
}

// IntentionFor returns the live intention source -> destination (exact
// names, as stored), including a deletion marker (Deleted set).
func (r *Replica) IntentionFor(source, destination string) (Intention, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v := r.liveLocked(KindIntention, IntentionKey(source, destination)); v != nil && !v.val.(*intentionVal).withdrawn {
		return v.val.(*intentionVal).in, true
	}
	return Intention{}, false
}

// MatchIntentions returns the intentions that apply to name as a
// destination (bySource false) or as a source (bySource true), wildcards
// included, highest precedence first — Consul's /v1/connect/intentions/match.
func (r *Replica) MatchIntentions(name string, bySource bool) []Intention {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Intention
	for _, in := range r.intentionsLocked(false) {
		n := in.DestinationName
		if bySource {
			n = in.SourceName
		}
		if n == name || n == Wildcard {
			out = append(out, in)
		}
	}
	return out
}

// CheckIntention decides whether src may connect to dst: the matching
// intention of highest precedence decides (deny wins ties); with none, the
// defaultAllow decides.
//
// Matching is by exact name or the wildcard, so at most four intentions can
// apply: (src, dst), (*, dst), (src, *) and (*, *); they are looked up
// directly, whatever the number of intentions.
func (r *Replica) CheckIntention(src, dst string, defaultAllow bool) Decision {
	r.mu.Lock()
	defer r.mu.Unlock()
	var buf [4]Intention
	cands := buf[:0]
	for _, s := range [2]string{src, Wildcard} {
		for _, d := range [2]string{dst, Wildcard} {
			if v := r.liveLocked(KindIntention, IntentionKey(s, d)); v != nil && !v.val.(*intentionVal).withdrawn {
				cands = append(cands, v.val.(*intentionVal).in)
			}
			if d == dst && dst == Wildcard {
				break // the same key twice
			}
		}
		if s == src && src == Wildcard {
			break
		}
	}
	return evaluateIntentions(cands, src, dst, defaultAllow)
}

// Revocations returns every signed revocation blob, sorted by hash.
func (r *Replica) Revocations() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	var keys []string
	for key := range r.rareKeys[KindRevocation] {
		if r.liveLocked(KindRevocation, key) != nil {
			keys = append(keys, key)
		}
	}
	out := make([][]byte, 0, len(keys))
	for _, k := range sortedStrings(keys) {
		out = append(out, slices.Clone(r.liveLocked(KindRevocation, k).val.([]byte)))
	}
	return out
}

// Rejected returns how many incoming records were refused, by reason.
func (r *Replica) Rejected() map[string]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]uint64, len(r.rejected))
	for k, n := range r.rejected {
		out[k] = n
	}
	return out
}

func cloneNode(n Node) Node {
	n.Meta = cloneMap(n.Meta)
	n.Cert = slices.Clone(n.Cert)
	return n
}

func cloneService(s Service) Service {
	s.Tags = slices.Clone(s.Tags)
	s.Meta = cloneMap(s.Meta)
	if s.Proxy != nil {
		p := *s.Proxy
		p.Upstreams = slices.Clone(p.Upstreams)
		s.Proxy = &p
	}
	if s.Connect != nil {
		c := *s.Connect
		if c.SidecarService != nil {
			sc := cloneService(*c.SidecarService)
			c.SidecarService = &sc
		}
		s.Connect = &c
	}
	return s
}

func cloneCheck(c Check) Check {
	c.ServiceTags = slices.Clone(c.ServiceTags)
	return c
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
