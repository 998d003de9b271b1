package crdt

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)

type edFixture struct {
	auth   *edAuth
	intKey ed25519.PrivateKey
}

func newEdFixture() *edFixture {
	priv := ed25519.NewKeyFromSeed(make([]byte, 32))
	return &edFixture{auth: &edAuth{intentionKey: priv.Public().(ed25519.PublicKey), denyService: map[string]bool{}}, intKey: priv}
}

func newEdReplica(t testing.TB, seed byte) *Replica {
	t.Helper()
	origin, s := newEdSigner(seed)
	r, err := NewReplica(origin, s, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustMerge(t testing.TB, r *Replica, d *Delta, auth Authorizer, now time.Time) MergeResult {
	t.Helper()
	res, err := r.Merge(d, auth, now)
	if err != nil {
		t.Fatalf("merge: %v", err)
	}
	return res
}

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func TestServiceReplication(t *testing.T) {
	fx := newEdFixture()
	a, b := newEdReplica(t, 1), newEdReplica(t, 2)
	md := must[*Delta](t)
	d1 := md(a.PutNode(Node{Name: "a", Address: "10.0.0.1", Cert: []byte("chain")}, t0))
	d2 := md(a.PutService(Service{ID: "web1", Name: "web", Tags: []string{"v1", "prod"}, Port: 80}, t0))
	d3 := md(a.PutCheck(Check{ID: "c1", Name: "http", ServiceID: "web1", ServiceName: "web", Status: StatusPassing}, t0))
	for _, d := range []*Delta{d3, d2, d1, d2} {
		mustMerge(t, b, d, fx.auth, t0)
	}
	got := b.Services("web", []string{"prod"})
	if len(got) != 1 || got[0].Node.Name != "a" || len(got[0].Checks) != 1 {
		t.Fatalf("services: %+v", got)
	}
	if len(b.Services("web", []string{"prod", "v2"})) != 0 {
		t.Fatal("tag filter must require every tag")
	}
	if b.Digest() != a.Digest() {
		t.Fatal("digests differ")
	}
	d4 := md(a.DeleteService("web1", t0))
	mustMerge(t, b, d4, fx.auth, t0)
	if len(b.Services("web", nil)) != 0 {
		t.Fatal("deleted service still visible")
	}
	if _, err := a.DeleteService("nope", t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete unknown: %v", err)
	}
}

// A service renamed while a delete is still on its way: the replica holds
// two live versions of one key for a while, and the name index must follow
// the winner whatever order the live versions arrived in.
func TestServiceRenameWithDeleteInFlight(t *testing.T) {
	fx := newEdFixture()
	a, b := newEdReplica(t, 1), newEdReplica(t, 2)
	md := must[*Delta](t)
	d1 := md(a.PutService(Service{ID: "s0", Name: "web"}, t0))
	d2 := md(a.DeleteService("s0", t0.Add(time.Millisecond)))
	d3 := md(a.PutService(Service{ID: "s0", Name: "db"}, t0.Add(2*time.Millisecond)))
	d4 := md(a.PutService(Service{ID: "s0", Name: "web"}, t0.Add(3*time.Millisecond)))
	// b gets db first, then the old web (live beside it: the delete that
	// killed it is late), then the new web, which supersedes db.
	for _, d := range []*Delta{d3, d1, d4} {
		mustMerge(t, b, d, fx.auth, t0)
	}
	check := func(when string) {
		t.Helper()
		if got := b.Services("db", nil); len(got) != 0 {
			t.Fatalf("%s: db lists %+v, a replaced it by web", when, got)
		}
		if got := b.Services("web", nil); len(got) != 1 {
			t.Fatalf("%s: web lists %d instances, want 1", when, len(got))
		}
		if names := b.ServiceNames(); len(names) != 1 {
			t.Fatalf("%s: catalog %v, want only web", when, names)
		}
	}
	check("before the delete")
	mustMerge(t, b, d2, fx.auth, t0)
	check("after the delete")
}

func TestMergeRejectsForgedAndUnauthorized(t *testing.T) {
	fx := newEdFixture()
	a, b := newEdReplica(t, 1), newEdReplica(t, 2)
	d := must[*Delta](t)(a.PutService(Service{ID: "db1", Name: "db"}, t0))
	forged := &Delta{Entries: []Entry{{Header: d.Entries[0].Header, Sig: make([]byte, 64), Body: d.Entries[0].Body}}}
	res, err := b.Merge(forged, fx.auth, t0)
	if !errors.Is(err, ErrBadSignature) || res.Rejected != 1 {
		t.Fatalf("forged: %+v %v", res, err)
	}
	fx.auth.denyService[a.Origin()+"/db"] = true
	res, err = b.Merge(d, fx.auth, t0)
	if !errors.Is(err, ErrUnauthorized) || len(b.Services("db", nil)) != 0 {
		t.Fatalf("unauthorized: %+v %v", res, err)
	}
	if b.Rejected()[RejectSignature] != 1 || b.Rejected()[RejectUnauthorized] != 1 {
		t.Fatalf("rejected counts: %v", b.Rejected())
	}
}

func TestKVConflictSiblingsAndCAS(t *testing.T) {
	fx := newEdFixture()
	a, b := newEdReplica(t, 1), newEdReplica(t, 2)
	md := must[*Delta](t)
	da := md(a.KVPut("cfg/x", []byte("A"), 1, t0))
	db := md(b.KVPut("cfg/x", []byte("B"), 2, t0.Add(time.Millisecond)))
	mustMerge(t, a, db, fx.auth, t0)
	mustMerge(t, b, da, fx.auth, t0)
	pa, _ := a.KVGet("cfg/x")
	pb, _ := b.KVGet("cfg/x")
	if string(pa.Value) != "B" || string(pb.Value) != "B" || len(pa.Conflicts) != 1 || string(pa.Conflicts[0].Value) != "A" {
		t.Fatalf("winner/siblings: %+v %+v", pa, pb)
	}
	ok, _, err := a.KVCAS("cfg/x", []byte("C"), 0, pa.ModifyIndex+100, t0)
	if ok || err != nil {
		t.Fatalf("cas with a wrong index succeeded: %v %v", ok, err)
	}
	ok, dc, err := a.KVCAS("cfg/x", []byte("C"), 0, pa.ModifyIndex, t0)
	if !ok || err != nil {
		t.Fatalf("cas: %v %v", ok, err)
	}
	mustMerge(t, b, dc, fx.auth, t0)
	pb, _ = b.KVGet("cfg/x")
	if string(pb.Value) != "C" || len(pb.Conflicts) != 0 {
		t.Fatalf("superseding write: %+v", pb)
	}
	if _, err := a.KVPut("big", make([]byte, 512<<10+1), 0, t0); !errors.Is(err, ErrValueTooLarge) {
		t.Fatalf("large value: %v", err)
	}
	ok, _, _ = a.KVCAS("new", []byte("v"), 0, 0, t0)
	if !ok {
		t.Fatal("cas=0 on an absent key must succeed")
	}
	ok, _, _ = a.KVCAS("new", []byte("v"), 0, 0, t0)
	if ok {
		t.Fatal("cas=0 on a present key must fail")
	}
}

func TestChecksFilter(t *testing.T) {
	fx := newEdFixture()
	a, b := newEdReplica(t, 1), newEdReplica(t, 2)
	md := must[*Delta](t)
	for _, d := range []*Delta{
		md(a.PutService(Service{ID: "w1", Name: "web"}, t0)),
		md(a.PutCheck(Check{ID: "c1", ServiceID: "w1", ServiceName: "web", Status: StatusWarning}, t0)),
		md(a.PutCheck(Check{ID: "node", Status: StatusPassing}, t0)),
		md(b.PutCheck(Check{ID: "c2", ServiceName: "db", ServiceID: "d1"}, t0)),
	} {
		mustMerge(t, a, d, fx.auth, t0)
		mustMerge(t, b, d, fx.auth, t0)
	}
	tests := []struct {
		f    CheckFilter
		want int
	}{
		{CheckFilter{}, 3},
		{CheckFilter{Status: "any"}, 3},
		{CheckFilter{Status: StatusCritical}, 1}, // empty status means critical
		{CheckFilter{Origin: a.Origin()}, 2},
		{CheckFilter{ServiceName: "web"}, 1},
	}
	for _, tt := range tests {
		if got := b.Checks(tt.f); len(got) != tt.want {
			t.Errorf("%+v: %d checks, want %d", tt.f, len(got), tt.want)
		}
	}
	if e := b.Services("web", nil); len(e) != 1 || len(e[0].Checks) != 2 {
		t.Fatalf("web instance checks: %+v", e)
	}
	if _, err := a.PutCheck(Check{ID: "x", Status: "up"}, t0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad status: %v", err)
	}
	must[*Delta](t)(a.DeleteCheck("node", t0))
	if got := a.Checks(CheckFilter{Origin: a.Origin()}); len(got) != 1 {
		t.Fatalf("after delete: %+v", got)
	}
}

// TestConcurrentUse runs writers, mergers, readers and watchers at once
// (meaningful under -race).
func TestConcurrentUse(t *testing.T) {
	fx := newEdFixture()
	a, b := newEdReplica(t, 1), newEdReplica(t, 2)
	ds := make(chan *Delta, 400)
	done := make(chan struct{})
	go func() {
		defer close(ds)
		for i := range 200 {
			d1, err1 := a.KVPut(fmt.Sprintf("k/%d", i%7), []byte{byte(i)}, 0, t0)
			d2, err2 := a.PutService(Service{ID: "w", Name: "web", Port: i}, t0)
			if err1 != nil || err2 != nil {
				t.Error(err1, err2)
				return
			}
			ds <- d1
			ds <- d2
		}
	}()
	go func() {
		defer close(done)
		for d := range ds {
			if _, err := b.Merge(d, fx.auth, t0); err != nil {
				t.Error(err)
			}
		}
	}()
	for range 200 {
		_ = b.KVList("k/")
		_ = b.Services("web", nil)
		_, _ = b.WatchIndex(ScopeKV + "k/")
		_ = b.Digest()
		_ = b.DeltaSince(VersionVector{}, 0)
		_, _ = b.KVPut("local", nil, 0, t0)
	}
	<-done
	for _, d := range a.DeltaSince(b.Heads(), 0) {
		mustMerge(t, b, d, fx.auth, t0)
	}
	if got, _ := b.KVGet("k/6"); got.Origin != a.Origin() {
		t.Fatalf("k/6 = %+v", got)
	}
}

func TestProxyConfigDecodesToStringMaps(t *testing.T) {
	a := newEdReplica(t, 1)
	d := must[*Delta](t)(a.PutService(Service{ID: "p", Name: "web-proxy", Kind: "connect-proxy",
		Proxy: &Proxy{DestinationServiceName: "web", Config: map[string]any{"protocol": "http", "nested": map[string]any{"a": 1}}}}, t0))
	s, err := DecodeService(d.Entries[0].Body)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Proxy.Config["nested"].(map[string]any); !ok {
		t.Fatalf("nested config decoded as %T", s.Proxy.Config["nested"])
	}
}

// TestEquivocationDetected: two replicas with the same origin and key (a
// cloned node) both write dot 1; merging one into the other keeps the held
// record and reports an equivocation instead of silently skipping it.
func TestEquivocationDetected(t *testing.T) {
	fx := newEdFixture()
	a, b := newEdReplica(t, 1), newEdReplica(t, 1)
	if a.Origin() != b.Origin() {
		t.Fatal("fixture: want one origin")
	}
	da := must[*Delta](t)(a.KVPut("k", []byte("from-a"), 0, t0))
	db := must[*Delta](t)(b.KVPut("k", []byte("from-b"), 0, t0))
	c := newEdReplica(t, 2)
	mustMerge(t, c, da, fx.auth, t0)
	res, err := c.Merge(db, fx.auth, t0)
	if !errors.Is(err, ErrEquivocation) || res.Reasons[RejectEquivocation] != 1 || res.Duplicates != 0 {
		t.Fatalf("merge of the clone's write: %+v, %v; want one equivocation", res, err)
	}
	if p, _ := c.KVGet("k"); string(p.Value) != "from-a" {
		t.Fatalf("held value %q, want the first one kept", p.Value)
	}
	// The same record again is a plain duplicate.
	if res, err := c.Merge(da, fx.auth, t0); err != nil || res.Duplicates != 1 {
		t.Fatalf("re-merge of the held record: %+v, %v", res, err)
	}
	// A different header under a held dot with a bad signature is not an
	// alarm: it is skipped like any duplicate.
	forged := *db
	forged.Entries = []Entry{db.Entries[0]}
	forged.Entries[0].Sig = append([]byte(nil), forged.Entries[0].Sig...)
	forged.Entries[0].Sig[0] ^= 1
	if res, err := c.Merge(&forged, fx.auth, t0); err != nil || res.Duplicates != 1 || res.Reasons[RejectEquivocation] != 0 {
		t.Fatalf("forged duplicate: %+v, %v", res, err)
	}
}
