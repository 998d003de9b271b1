package crdt

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	propHistories = flag.Int("crdt.histories", 10000, "randomized histories in TestPropertyConvergence")
	propSeed      = flag.Uint64("crdt.seed", 0, "seed for TestPropertyConvergence (0: derived from the time)")
)

// TestPropertyConvergence runs randomized histories across 5 replicas with
// random delivery order, duplication and loss, repaired by digest sync,
// and checks convergence, against a dumb reference merge, that no write is
// lost unless superseded, that no deleted version comes back, and that an
// intention version never goes backwards on any replica.
func TestPropertyConvergence(t *testing.T) {
	seed := *propSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	n := *propHistories
	if testing.Short() {
		n = min(n, 1000)
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := range n {
		hs := rng.Uint64()
		if err := runHistory(hs); err != nil {
			t.Fatalf("history %d failed (rerun with -crdt.seed=%d, history seed %d): %v", i, seed, hs, err)
		}
	}
	t.Logf("%d histories, seed %d", n, seed)
}

type simMsg struct {
	to int
	d  *Delta
}

type sim struct {
	rng   *rand.Rand
	now   time.Time
	reps  []*Replica
	all   []Entry // every entry ever written, for the reference model
	net   []simMsg
	maxIV []map[string]uint64 // per replica: highest intention version seen per key
}

var propKeys = []string{"a", "a/b", "b"}

func runHistory(seed uint64) error {
	s := &sim{rng: rand.New(rand.NewPCG(seed, 1)), now: t0}
	const nrep = 5
	for i := range nrep {
		o := fmt.Sprintf("r%d", i)
		r, err := NewReplica(o, hashSigner{o}, Options{MaxValueSize: 64})
		if err != nil {
			return err
		}
		s.reps = append(s.reps, r)
		s.maxIV = append(s.maxIV, map[string]uint64{})
	}
	steps := 8 + s.rng.IntN(16)
	for range steps {
		if err := s.step(); err != nil {
			return err
		}
	}
	if err := s.repair(); err != nil {
		return err
	}
	if err := s.check(); err != nil {
		return err
	}
	// Phase 2: everything is stable now, so GC drops dead versions; a new
	// member may join (it catches up through the GC horizon); more writes
	// follow, then a second repair.
	heads := make([]VersionVector, len(s.reps))
	for j, o := range s.reps {
		heads[j] = o.Heads()
	}
	for _, r := range s.reps {
		r.CollectGarbage(heads)
	}
	if s.rng.IntN(2) == 0 {
		r, err := NewReplica("r9", hashSigner{"r9"}, Options{MaxValueSize: 64})
		if err != nil {
			return err
		}
		s.reps = append(s.reps, r)
		s.maxIV = append(s.maxIV, map[string]uint64{})
	}
	for range 4 + s.rng.IntN(8) {
		if err := s.step(); err != nil {
			return err
		}
	}
	if err := s.repair(); err != nil {
		return err
	}
	return s.check()
}

func (s *sim) step() error {
	s.now = s.now.Add(time.Duration(s.rng.IntN(3)) * time.Millisecond)
	i := s.rng.IntN(len(s.reps))
	r := s.reps[i]
	var d *Delta
	var err error
	switch op := s.rng.IntN(20); {
	case op < 4:
		d, err = r.KVPut(propKeys[s.rng.IntN(len(propKeys))], []byte{byte(s.rng.IntN(256))}, uint64(s.rng.IntN(2)), s.now)
	case op < 6:
		d, err = r.KVDelete(propKeys[s.rng.IntN(len(propKeys))], s.now)
	case op < 7:
		d, err = r.KVDeleteTree("a", s.now)
	case op < 8:
		key := propKeys[s.rng.IntN(len(propKeys))]
		var idx uint64
		if p, ok := r.KVGet(key); ok {
			idx = p.ModifyIndex
		}
		_, d, err = r.KVCAS(key, []byte("cas"), 0, idx, s.now)
	case op < 10:
		d, err = r.PutService(Service{ID: fmt.Sprintf("s%d", s.rng.IntN(2)), Name: []string{"web", "db"}[s.rng.IntN(2)], Port: s.rng.IntN(3)}, s.now)
	case op < 11:
		d, err = r.DeleteService(fmt.Sprintf("s%d", s.rng.IntN(2)), s.now)
		if err != nil && strings.Contains(err.Error(), "not found") {
			err = nil
		}
	case op < 12:
		in := Intention{SourceName: "web", DestinationName: []string{"db", "*"}[s.rng.IntN(2)],
			Action: []string{ActionAllow, ActionDeny}[s.rng.IntN(2)], Version: uint64(1 + s.rng.IntN(4)), Deleted: s.rng.IntN(4) == 0}
		b, _ := marshal(&in)
		d, err = r.PutIntention(b, hashAuth{}, s.now)
		if err != nil && strings.Contains(err.Error(), "rollback") {
			err = nil
		}
	case op < 13:
		d, err = r.AddRevocation([]byte{'k', byte(s.rng.IntN(3))}, hashAuth{}, s.now)
	case op < 14:
		heads := make([]VersionVector, len(s.reps))
		for j, o := range s.reps {
			heads[j] = o.Heads()
		}
		r.CollectGarbage(heads)
	case op < 15:
		// Restart from a snapshot.
		b, err := r.MarshalState()
		if err != nil {
			return err
		}
		nr, _ := NewReplica(r.Origin(), hashSigner{r.Origin()}, Options{MaxValueSize: 64})
		if err := nr.LoadState(b, hashAuth{}); err != nil {
			return fmt.Errorf("load state: %w", err)
		}
		if nr.Digest() != r.Digest() || dump(nr) != dump(r) {
			return fmt.Errorf("state roundtrip changed replica %d", i)
		}
		s.reps[i] = nr
	default:
		for range 1 + s.rng.IntN(4) {
			if err := s.deliver(); err != nil {
				return err
			}
		}
	}
	if err != nil {
		return err
	}
	if d != nil {
		// Round-trip the wire encoding.
		b, err := EncodeDelta(d)
		if err != nil {
			return err
		}
		if d, err = DecodeDelta(b); err != nil {
			return err
		}
		s.all = append(s.all, d.Entries...)
		for j := range s.reps {
			if j != i {
				s.net = append(s.net, simMsg{to: j, d: d})
			}
		}
	}
	return s.invariants(i)
}

func (s *sim) deliver() error {
	if len(s.net) == 0 {
		return nil
	}
	k := s.rng.IntN(len(s.net))
	m := s.net[k]
	switch p := s.rng.IntN(10); {
	case p < 2: // lost
		s.net = slices.Delete(s.net, k, k+1)
		return nil
	case p < 4: // duplicated: stays in flight
	default:
		s.net = slices.Delete(s.net, k, k+1)
	}
	d := m.d
	if s.rng.IntN(8) == 0 {
		// A rogue relay strips the bodies, claiming the versions are dead.
		d = &Delta{}
		for _, e := range m.d.Entries {
			e.Body = nil
			d.Entries = append(d.Entries, e)
		}
	}
	if _, err := s.reps[m.to].Merge(d, hashAuth{}, s.now); err != nil && !tolerated(err) {
		return fmt.Errorf("merge into %d: %w", m.to, err)
	}
	return s.invariants(m.to)
}

// tolerated are the rejections the histories provoke on purpose.
func tolerated(err error) bool {
	return strings.Contains(err.Error(), "rollback") || strings.Contains(err.Error(), "not known to be dead")
}

// invariants checks one replica after a change: intention versions never
// go backwards, and no version removed by a delete it holds is live.
func (s *sim) invariants(i int) error {
	r := s.reps[i]
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range []string{"", "a", "a/", "b"} {
		got, want := r.scopeIndexLocked(ScopeKV+p), max(r.kvScanIndexLocked(p), 1)
		if got != want {
			return fmt.Errorf("replica %d: kv prefix %q index %d, scan says %d", i, p, got, want)
		}
	}
	// The KV order holds exactly the KV keys of the key map.
	kv := 0
	for k := range r.keys {
		if k.kind == KindKV {
			kv++
			if !r.kvOrder.Has(k.key) {
				return fmt.Errorf("replica %d: kv key %q missing from the key order", i, k.key)
			}
		}
	}
	if r.kvOrder.Len() != kv {
		return fmt.Errorf("replica %d: key order holds %d kv keys, the key map %d", i, r.kvOrder.Len(), kv)
	}
	for _, kind := range []Kind{KindIntention, KindRevocation} {
		n := 0
		for k := range r.keys {
			if k.kind == kind {
				n++
				if _, ok := r.rareKeys[kind][k.key]; !ok {
					return fmt.Errorf("replica %d: %v key %q missing from its index", i, kind, k.key)
				}
			}
		}
		if len(r.rareKeys[kind]) != n {
			return fmt.Errorf("replica %d: %v index holds %d keys, the key map %d", i, kind, len(r.rareKeys[kind]), n)
		}
	}
	for _, in := range r.intentionsLocked(true) {
		k := IntentionKey(in.SourceName, in.DestinationName)
		if in.Version < s.maxIV[i][k] {
			return fmt.Errorf("replica %d: intention %q went back from version %d to %d", i, k, s.maxIV[i][k], in.Version)
		}
		s.maxIV[i][k] = in.Version
	}
	for _, e := range s.all {
		h, _ := decodeHeader(e.Header)
		if h.Op != OpDelete || !r.cc.has(h.dot()) {
			continue
		}
		for _, c := range h.Context {
			if v := r.lookup(c); v != nil && v.live {
				return fmt.Errorf("replica %d: %s %q version %s resurrected after delete %s", i, h.Kind, h.Key, c, h.dot())
			}
		}
	}
	return nil
}

// repair runs digest-driven anti-entropy until every digest agrees.
func (s *sim) repair() error {
	for round := range 6 {
		if s.converged() {
			return nil
		}
		for i, a := range s.reps {
			for j, b := range s.reps {
				if i == j || a.Digest() == b.Digest() {
					continue
				}
				for _, d := range b.DeltaSince(a.Heads(), 200+round*100) {
					if round < 2 && s.rng.IntN(6) == 0 {
						continue // a lost chunk
					}
					wire, err := EncodeDelta(d)
					if err != nil {
						return err
					}
					d, err = DecodeDelta(wire)
					if err != nil {
						return err
					}
					if _, err := a.Merge(d, hashAuth{}, s.now); err != nil && !tolerated(err) {
						return fmt.Errorf("repair %d<-%d: %w", i, j, err)
					}
				}
				if err := s.invariants(i); err != nil {
					return err
				}
			}
		}
	}
	if !s.converged() {
		return fmt.Errorf("digests still differ after repair")
	}
	return nil
}

func (s *sim) converged() bool {
	d := s.reps[0].Digest()
	for _, r := range s.reps[1:] {
		if r.Digest() != d {
			return false
		}
	}
	return true
}

func (s *sim) check() error {
	// No acknowledged KV write is lost unless a later write or delete that
	// had seen it superseded it.
	superseded := map[Dot]bool{}
	for _, e := range s.all {
		h, _ := decodeHeader(e.Header)
		for _, c := range h.Context {
			superseded[c] = true
		}
	}
	for _, e := range s.all {
		h, _ := decodeHeader(e.Header)
		if h.Kind != KindKV || h.Op != OpPut || superseded[h.dot()] {
			continue
		}
		for i, r := range s.reps {
			p, ok := r.KVGet(h.Key)
			found := ok && p.Origin == h.Origin && p.HLC == h.HLC
			for _, c := range p.Conflicts {
				found = found || (c.Origin == h.Origin && c.HLC == h.HLC)
			}
			if !found {
				return fmt.Errorf("replica %d lost write %s to %q", i, h.dot(), h.Key)
			}
		}
	}
	want := referenceDump(s.all)
	for i, r := range s.reps {
		if got := dump(r); got != want {
			return fmt.Errorf("replica %d differs from the reference model:\n got: %s\nwant: %s", i, got, want)
		}
	}
	return nil
}

// dump renders a replica's read-visible state canonically.
func dump(r *Replica) string {
	var b strings.Builder
	for _, p := range r.KVList("") {
		fmt.Fprintf(&b, "kv %s=%x/%d@%s", p.Key, p.Value, p.Flags, p.Origin)
		for _, c := range p.Conflicts {
			fmt.Fprintf(&b, " |%x/%d@%s", c.Value, c.Flags, c.Origin)
		}
		b.WriteString(";")
	}
	names := r.ServiceNames()
	for _, n := range slices.Sorted(mapsKeys(names)) {
		for _, e := range r.Services(n, nil) {
			fmt.Fprintf(&b, "svc %s/%s=%s:%d;", e.Origin, e.Service.ID, e.Service.Name, e.Service.Port)
		}
	}
	r.mu.Lock()
	ins := r.intentionsLocked(true)
	r.mu.Unlock()
	slices.SortFunc(ins, func(a, b Intention) int {
		return strings.Compare(IntentionKey(a.SourceName, a.DestinationName), IntentionKey(b.SourceName, b.DestinationName))
	})
	for _, in := range ins {
		fmt.Fprintf(&b, "int %s>%s=%s/v%d/%v;", in.SourceName, in.DestinationName, in.Action, in.Version, in.Deleted)
	}
	for _, rv := range r.Revocations() {
		fmt.Fprintf(&b, "rev %x;", rv)
	}
	return b.String()
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// referenceDump is the dumb reference merge: from the full history of
// every entry ever written, a version is live if it is a put that no entry
// of the same record names in its context (ordered kinds: the greatest
// wins); reads show the greatest (HLC, origin) and the rest as siblings.
func referenceDump(all []Entry) string {
	type ver struct {
		h   header
		val any
	}
	byKey := map[recKey][]ver{}
	killed := map[recKey]map[Dot]bool{}
	for _, e := range all {
		h, err := decodeHeader(e.Header)
		if err != nil {
			panic(err)
		}
		k := recKey{h.Kind, h.Key}
		if killed[k] == nil {
			killed[k] = map[Dot]bool{}
		}
		for _, c := range h.Context {
			killed[k][c] = true
		}
		if h.Op == OpPut {
			v, err := decodeBody(h.Kind, e.Body)
			if err != nil {
				panic(err)
			}
			if h.Kind == KindIntention {
				in, _ := hashAuth{}.VerifyIntention(v.([]byte))
				v = &intentionVal{in: in, hash: sha256.Sum256(v.([]byte))}
			}
			byKey[k] = append(byKey[k], ver{h, v})
		}
	}
	live := map[recKey][]ver{}
	for k, vs := range byKey {
		if k.kind.ordered() {
			best := vs[0]
			for _, v := range vs[1:] {
				bv := &version{h: best.h, val: best.val}
				if !orderedLess(&version{h: v.h}, v.val, bv) {
					best = v
				}
			}
			live[k] = []ver{best}
			continue
		}
		for _, v := range vs {
			if !killed[k][v.h.dot()] {
				live[k] = append(live[k], v)
			}
		}
	}
	less := func(a, b ver) int {
		return cmp.Or(cmp.Compare(a.h.HLC, b.h.HLC), compareDots(a.h.dot(), b.h.dot()))
	}
	var b strings.Builder
	keysOf := func(kind Kind) []string {
		var out []string
		for k, vs := range live {
			if k.kind == kind && len(vs) > 0 {
				out = append(out, k.key)
			}
		}
		slices.Sort(out)
		return out
	}
	for _, key := range keysOf(KindKV) {
		vs := live[recKey{KindKV, key}]
		slices.SortFunc(vs, func(a, b ver) int { return less(b, a) })
		w := vs[0].val.(*kvBody)
		fmt.Fprintf(&b, "kv %s=%x/%d@%s", key, w.Value, w.Flags, vs[0].h.Origin)
		for _, v := range vs[1:] {
			sb := v.val.(*kvBody)
			fmt.Fprintf(&b, " |%x/%d@%s", sb.Value, sb.Flags, v.h.Origin)
		}
		b.WriteString(";")
	}
	var svcs []string
	for _, key := range keysOf(KindService) {
		vs := live[recKey{KindService, key}]
		slices.SortFunc(vs, func(a, b ver) int { return less(b, a) })
		sv := vs[0].val.(*Service)
		svcs = append(svcs, fmt.Sprintf("%s\x00%s\x00svc %s=%s:%d;", sv.Name, key, key, sv.Name, sv.Port))
	}
	slices.Sort(svcs)
	for _, s := range svcs {
		b.WriteString(s[strings.LastIndexByte(s, 0)+1:])
	}
	for _, key := range keysOf(KindIntention) {
		in := live[recKey{KindIntention, key}][0].val.(*intentionVal).in
		fmt.Fprintf(&b, "int %s>%s=%s/v%d/%v;", in.SourceName, in.DestinationName, in.Action, in.Version, in.Deleted)
	}
	var revs [][]byte
	for _, key := range keysOf(KindRevocation) {
		revs = append(revs, live[recKey{KindRevocation, key}][0].val.([]byte))
	}
	slices.SortFunc(revs, func(a, b []byte) int {
		return strings.Compare(revocationKey(a), revocationKey(b))
	})
	for _, rv := range revs {
		fmt.Fprintf(&b, "rev %x;", rv)
	}
	_ = bytes.Compare
	return b.String()
}
