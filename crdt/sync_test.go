package crdt

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func syncAll(t testing.TB, auth Authorizer, reps ...*Replica) {
	t.Helper()
	for range 3 {
		for _, a := range reps {
			for _, b := range reps {
				if a == b || a.Digest() == b.Digest() {
					continue
				}
				for _, d := range b.DeltaSince(a.Heads(), 4096) {
					if _, err := a.Merge(d, auth, t0.Add(time.Hour)); err != nil && !errors.Is(err, ErrUnauthorized) {
						t.Fatalf("sync: %v", err)
					}
				}
			}
		}
	}
	for _, r := range reps[1:] {
		if r.Digest() != reps[0].Digest() {
			t.Fatal("replicas did not converge")
		}
	}
}

func TestGarbageCollectionAndNewMember(t *testing.T) {
	fx := newEdFixture()
	a, b := newEdReplica(t, 1), newEdReplica(t, 2)
	for i := range 50 {
		must[*Delta](t)(a.KVPut(fmt.Sprintf("k%d", i%5), []byte{byte(i)}, 0, t0))
	}
	must[*Delta](t)(a.KVDelete("k0", t0))
	syncAll(t, fx.auth, a, b)
	a.mu.Lock()
	before := len(a.byOrigin[a.Origin()])
	a.mu.Unlock()
	// Nothing is stable while b has not been heard from.
	if n := a.CollectGarbage([]VersionVector{{}}); n != 0 {
		t.Fatalf("collected %d versions that b may lack", n)
	}
	n := a.CollectGarbage([]VersionVector{b.Heads()})
	if n != before-5 { // 4 live keys and the newest (a delete) remain
		t.Fatalf("collected %d of %d versions", n, before)
	}
	if _, ok := a.KVGet("k0"); ok {
		t.Fatal("deleted key came back after GC")
	}
	// A brand-new member catches up from the collected replica: the horizon
	// covers the dropped dots.
	c := newEdReplica(t, 3)
	syncAll(t, fx.auth, a, c)
	if got := len(c.KVList("")); got != 4 {
		t.Fatalf("new member has %d keys", got)
	}
	// A stale copy of a collected version does not resurrect anything.
	old := must[*Delta](t)(newEdReplica(t, 1).KVPut("k0", []byte("stale"), 0, t0))
	if res := mustMerge(t, c, old, fx.auth, t0); res.Duplicates != 1 {
		t.Fatalf("stale version: %+v", res)
	}
}

func TestForgetOrigin(t *testing.T) {
	fx := newEdFixture()
	a, b := newEdReplica(t, 1), newEdReplica(t, 2)
	must[*Delta](t)(a.PutNode(Node{Name: "a"}, t0))
	must[*Delta](t)(a.PutService(Service{ID: "w", Name: "web"}, t0))
	must[*Delta](t)(a.KVPut("cfg", []byte("x"), 0, t0))
	must[*Delta](t)(a.DeleteService("w", t0))
	must[*Delta](t)(a.PutService(Service{ID: "w2", Name: "web"}, t0))
	syncAll(t, fx.auth, a, b)
	idx := b.ScopeIndex(ScopeService("web"))
	b.ForgetOrigin(a.Origin())
	if len(b.Nodes()) != 0 || len(b.Services("web", nil)) != 0 {
		t.Fatal("reaped member's records remain")
	}
	if _, ok := b.KVGet("cfg"); !ok {
		t.Fatal("ForgetOrigin must keep the member's KV writes")
	}
	if b.ScopeIndex(ScopeService("web")) <= idx {
		t.Fatal("service index did not move")
	}
	// Its records arriving again from a replica that has not forgotten it
	// are duplicates.
	for _, d := range a.DeltaSince(VersionVector{}, 0) {
		mustMerge(t, b, d, fx.auth, t0)
	}
	if len(b.Services("web", nil)) != 0 {
		t.Fatal("forgotten records resurrected")
	}
}

func TestApplyAnyOrderAndState(t *testing.T) {
	fx := newEdFixture()
	a := newEdReplica(t, 1)
	var ds []*Delta
	for i := range 30 {
		switch i % 4 {
		case 0:
			ds = append(ds, must[*Delta](t)(a.KVPut(fmt.Sprintf("k%d", i%3), []byte{byte(i)}, 0, t0)))
		case 1:
			ds = append(ds, must[*Delta](t)(a.PutService(Service{ID: fmt.Sprintf("s%d", i%2), Name: "web", Port: i}, t0)))
		case 2:
			ds = append(ds, must[*Delta](t)(a.PutIntention(signIntention(fx.intKey,
				Intention{SourceName: "a", DestinationName: "b", Action: ActionAllow, Version: uint64(i)}), fx.auth, t0)))
		case 3:
			if d := must[*Delta](t)(a.KVDelete(fmt.Sprintf("k%d", i%3), t0)); d != nil {
				ds = append(ds, d)
			}
		}
	}
	want := dump(a)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		origin, s := newEdSigner(1)
		r, _ := NewReplica(origin, s, Options{})
		for _, i := range rng.Perm(len(ds)) {
			if err := r.Apply(ds[i], fx.auth); err != nil {
				t.Fatal(err)
			}
		}
		if got := dump(r); got != want || r.Digest() != a.Digest() {
			t.Fatalf("apply in random order:\n got %s\nwant %s", got, want)
		}
		// The restored replica continues its own counter.
		d := must[*Delta](t)(r.KVPut("new", nil, 0, t0))
		h, _ := decodeHeader(d.Entries[0].Header)
		if h.Counter != uint64(len(ds))+1 {
			t.Fatalf("counter after replay %d", h.Counter)
		}
	}
	st := must[[]byte](t)(a.MarshalState())
	origin, s := newEdSigner(1)
	r, _ := NewReplica(origin, s, Options{})
	if err := r.LoadState(st, fx.auth); err != nil {
		t.Fatal(err)
	}
	if dump(r) != want || r.Index() <= a.Index() {
		t.Fatalf("state: index %d vs %d", r.Index(), a.Index())
	}
	other := newEdReplica(t, 2)
	if err := other.LoadState(st, fx.auth); err == nil {
		t.Fatal("loading another origin's state must fail")
	}
}

func TestDeltaSinceChunks(t *testing.T) {
	a := newEdReplica(t, 1)
	for i := range 100 {
		must[*Delta](t)(a.KVPut(fmt.Sprintf("k%03d", i), make([]byte, 100), 0, t0))
	}
	ds := a.DeltaSince(VersionVector{a.Origin(): 40}, 2000)
	total := 0
	for _, d := range ds {
		b := must[[]byte](t)(EncodeDelta(d))
		if len(b) > 2000+400 {
			t.Fatalf("chunk of %d bytes", len(b))
		}
		total += len(d.Entries)
		for i := 1; i < len(d.Entries); i++ {
			_, _, d0, _ := DecodeEntryHeader(d.Entries[i-1].Header)
			_, _, d1, _ := DecodeEntryHeader(d.Entries[i].Header)
			if d1.Counter <= d0.Counter {
				t.Fatal("chunk entries out of order")
			}
		}
	}
	if total != 60 {
		t.Fatalf("%d entries missing, want 60", total)
	}
	if ds := a.DeltaSince(a.Heads(), 0); ds != nil {
		t.Fatalf("up-to-date peer got %d deltas", len(ds))
	}
}

func TestUnauthorizedKVKeepsHeadsContiguous(t *testing.T) {
	fx := newEdFixture()
	fx.auth.denyKVPrefix = "secret/"
	a, b, c := newEdReplica(t, 1), newEdReplica(t, 2), newEdReplica(t, 3)
	d1 := must[*Delta](t)(a.KVPut("secret/x", []byte("no"), 0, t0))
	d2 := must[*Delta](t)(a.KVPut("ok", []byte("yes"), 0, t0))
	res, _ := b.Merge(&Delta{Entries: append(d1.Entries, d2.Entries...)}, fx.auth, t0)
	if res.Rejected != 1 || res.Reasons[RejectUnauthorized] != 1 {
		t.Fatalf("%+v", res)
	}
	if _, ok := b.KVGet("secret/x"); ok {
		t.Fatal("unauthorized write merged")
	}
	if b.Heads()[a.Origin()] != 2 {
		t.Fatalf("heads %v: the refused dot must count as seen", b.Heads())
	}
	// c repairs from b (a third peer): the stub verifies, the write stays out.
	syncAll(t, fx.auth, b, c)
	if _, ok := c.KVGet("ok"); !ok {
		t.Fatal("repair via a third peer lost a write")
	}
}

func TestWatchAndScopeIndexes(t *testing.T) {
	fx := newEdFixture()
	a, b := newEdReplica(t, 1), newEdReplica(t, 2)
	if b.Index() < 1 || b.ScopeIndex(ScopeKV+"x") < 1 {
		t.Fatal("indexes must be >= 1")
	}
	webIdx, web := b.WatchIndex(ScopeService("web"))
	_, dbW := b.WatchIndex(ScopeService("db"))
	_, kvW := b.WatchIndex(ScopeKV + "app/")
	_, kvOther := b.WatchIndex(ScopeKV + "other/")
	mustMerge(t, b, must[*Delta](t)(a.PutService(Service{ID: "w", Name: "web"}, t0)), fx.auth, t0)
	mustMerge(t, b, must[*Delta](t)(a.KVPut("app/cfg", []byte("1"), 0, t0)), fx.auth, t0)
	for name, ch := range map[string]<-chan struct{}{"web": web, "kv app/": kvW} {
		select {
		case <-ch:
		default:
			t.Errorf("%s watcher not woken", name)
		}
	}
	for name, ch := range map[string]<-chan struct{}{"db": dbW, "kv other/": kvOther} {
		select {
		case <-ch:
			t.Errorf("%s watcher woken by an unrelated change", name)
		default:
		}
	}
	if b.ScopeIndex(ScopeService("web")) <= webIdx {
		t.Fatal("service index did not move")
	}
	kvIdx := b.ScopeIndex(ScopeKV + "app/")
	// A node-level check wakes the services on that node.
	_, web = b.WatchIndex(ScopeService("web"))
	mustMerge(t, b, must[*Delta](t)(a.PutCheck(Check{ID: "serfHealth", Status: StatusPassing}, t0)), fx.auth, t0)
	select {
	case <-web:
	default:
		t.Error("node-level check did not wake the node's services")
	}
	// A delete moves the prefix index even though the key is gone.
	mustMerge(t, b, must[*Delta](t)(a.KVDelete("app/cfg", t0)), fx.auth, t0)
	if b.ScopeIndex(ScopeKV+"app/") <= kvIdx {
		t.Fatal("kv prefix index did not move on delete")
	}
	if b.ScopeIndex(ScopeKV+"other/") >= b.ScopeIndex(ScopeKV+"app/") {
		t.Fatal("unrelated prefix moved")
	}
}

func TestKVKeysSeparator(t *testing.T) {
	a := newEdReplica(t, 1)
	for _, k := range []string{"a/b/c", "a/b/d", "a/e", "a/f/", "b"} {
		must[*Delta](t)(a.KVPut(k, nil, 0, t0))
	}
	tests := []struct {
		prefix, sep string
		want        []string
	}{
		{"a/", "/", []string{"a/b/", "a/e", "a/f/"}},
		{"", "/", []string{"a/", "b"}},
		{"a/", "", []string{"a/b/c", "a/b/d", "a/e", "a/f/"}},
	}
	for _, tt := range tests {
		if got := a.KVKeys(tt.prefix, tt.sep); !slices.Equal(got, tt.want) {
			t.Errorf("keys(%q,%q) = %q, want %q", tt.prefix, tt.sep, got, tt.want)
		}
	}
	if d := must[*Delta](t)(a.KVDeleteTree("a/b/", t0)); d == nil || len(d.Entries) != 2 {
		t.Fatal("delete tree")
	}
	if got := a.KVKeys("", ""); !slices.Equal(got, []string{"a/e", "a/f/", "b"}) {
		t.Fatalf("after delete tree: %q", got)
	}
}

func TestStrippedBodyIsNotTakenOnTrust(t *testing.T) {
	fx := newEdFixture()
	a, b := newEdReplica(t, 1), newEdReplica(t, 2)
	d := must[*Delta](t)(a.KVPut("k", []byte("live"), 0, t0))
	stripped := &Delta{Entries: []Entry{{Header: d.Entries[0].Header, Sig: d.Entries[0].Sig}}}
	res, err := b.Merge(stripped, fx.auth, t0)
	if !errors.Is(err, ErrMalformed) || res.Reasons[RejectUnconfirmed] != 1 {
		t.Fatalf("stripped live version: %+v %v", res, err)
	}
	if b.Heads()[a.Origin()] != 0 {
		t.Fatal("an unconfirmed stub must not count as seen")
	}
	mustMerge(t, b, d, fx.auth, t0)
	if p, ok := b.KVGet("k"); !ok || string(p.Value) != "live" {
		t.Fatal("the whole version was not accepted after the stub")
	}
	// A stub of a version that is really dead is accepted once its killer
	// is known, in either order.
	d2 := must[*Delta](t)(a.KVPut("k", []byte("newer"), 0, t0))
	c := newEdReplica(t, 3)
	mustMerge(t, c, d2, fx.auth, t0)
	if res := mustMerge(t, c, stripped, fx.auth, t0); res.Accepted != 1 {
		t.Fatalf("confirmed stub: %+v", res)
	}
	if c.Digest() != a.Digest() {
		t.Fatal("c did not converge")
	}
}

func TestMergeRejectsTooLargeValue(t *testing.T) {
	fx := newEdFixture()
	a := newEdReplica(t, 1)
	origin, s := newEdSigner(2)
	b, _ := NewReplica(origin, s, Options{MaxValueSize: 10})
	d := must[*Delta](t)(a.KVPut("k", make([]byte, 11), 0, t0))
	res, err := b.Merge(d, fx.auth, t0)
	if !errors.Is(err, ErrValueTooLarge) || res.Reasons[RejectTooLarge] != 1 {
		t.Fatalf("%+v %v", res, err)
	}
	if _, ok := b.KVGet("k"); ok {
		t.Fatal("too-large value merged")
	}
}

func TestForgottenOriginNewMemberConverges(t *testing.T) {
	fx := newEdFixture()
	a, b := newEdReplica(t, 1), newEdReplica(t, 2)
	for i := range 5 {
		must[*Delta](t)(a.PutService(Service{ID: "w", Name: "web", Port: i}, t0))
	}
	syncAll(t, fx.auth, a, b)
	b.ForgetOrigin(a.Origin())
	c := newEdReplica(t, 3)
	for _, d := range b.DeltaSince(c.Heads(), 0) {
		mustMerge(t, c, d, fx.auth, t0)
	}
	if c.Digest() != b.Digest() || len(c.Services("web", nil)) != 0 {
		t.Fatalf("new member after ForgetOrigin: heads %v vs %v", c.Heads(), b.Heads())
	}
}
