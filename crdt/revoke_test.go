package crdt

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// revAt is when the tests' revocations are issued: X writes before it
// (t0) and after it (late).
var (
	revAt = t0.Add(5 * time.Second)
	late  = t0.Add(10 * time.Second)
	later = t0.Add(20 * time.Second) // when the receivers merge
)

// revAuth is one replica's trust book in these tests: edAuth plus the
// origins it holds a revocation of. A revocation record's blob is
// "revoke:" followed by the revoked origin, issued at revAt; merging or
// writing it applies it at once, as peer's trustBook does.
type revAuth struct {
	edAuth
	revoked map[string]bool
	// renewable: the cut is the origin's chain's (expired, retired
	// root, delegated revocation), not its key's.
	renewable bool
}

func newRevAuth() *revAuth { return &revAuth{revoked: map[string]bool{}} }

func (a *revAuth) VerifyOrigin(origin string, msg, sig []byte) error {
	if err := a.edAuth.VerifyOrigin(origin, msg, sig); err != nil {
		return err
	}
	if a.revoked[origin] {
		return fmt.Errorf("test: %s: %w", origin, &OriginRevokedError{At: revAt, Renewable: a.renewable})
	}
	return nil
}

func (a *revAuth) VerifyRevocation(signed []byte) error {
	origin, ok := strings.CutPrefix(string(signed), "revoke:")
	if !ok {
		return errors.New("test: not a revocation")
	}
	a.revoked[origin] = true
	return nil
}

// revFixture: X writes on one side of a partition, after merging Y's
// writes: before the revocation its node, a service, a KV key of its own
// and an overwrite of Y's key "k"; after it (unaware) another KV key and
// a delete of Y's key "d". S issues the revocation of X on the other side.
type revFixture struct {
	x, y, s      *Replica
	fromY, fromX *Delta
	revocation   *Delta
}

func newRevFixture(t *testing.T) *revFixture {
	t.Helper()
	f := &revFixture{x: newEdReplica(t, 1), y: newEdReplica(t, 2), s: newEdReplica(t, 5)}
	auth := newRevAuth()
	f.fromY = joinDeltas(
		must[*Delta](t)(f.y.KVPut("k", []byte("y"), 0, t0)),
		must[*Delta](t)(f.y.KVPut("d", []byte("y"), 0, t0)),
	)
	mustMerge(t, f.x, f.fromY, auth, later)
	f.fromX = joinDeltas(
		must[*Delta](t)(f.x.PutNode(Node{Name: "x"}, t0)),
		must[*Delta](t)(f.x.PutService(Service{ID: "web1", Name: "web"}, t0)),
		must[*Delta](t)(f.x.KVPut("cfg/x", []byte("x"), 0, t0)),
		must[*Delta](t)(f.x.KVPut("k", []byte("x"), 0, t0)),
		must[*Delta](t)(f.x.KVPut("late", []byte("x"), 0, late)),
		must[*Delta](t)(f.x.KVDelete("d", late)),
	)
	f.revocation = must[*Delta](t)(f.s.AddRevocation([]byte("revoke:"+f.x.Origin()), newRevAuth(), t0))
	return f
}

func joinDeltas(ds ...*Delta) *Delta {
	out := &Delta{}
	for _, d := range ds {
		if d != nil {
			out.Entries = append(out.Entries, d.Entries...)
		}
	}
	return out
}

// repair runs anti-entropy between a and b until neither misses anything.
func repair(t *testing.T, a, b *Replica, authA, authB Authorizer) {
	t.Helper()
	for range 4 {
		for _, d := range a.DeltaSince(b.Heads(), 0) {
			mustMergeTolerant(t, b, d, authB)
		}
		for _, d := range b.DeltaSince(a.Heads(), 0) {
			mustMergeTolerant(t, a, d, authA)
		}
	}
}

func mustMergeTolerant(t *testing.T, r *Replica, d *Delta, auth Authorizer) {
	t.Helper()
	if _, err := r.Merge(d, auth, later); err != nil && !errors.Is(err, ErrOriginRevoked) && !errors.Is(err, ErrBadSignature) {
		t.Fatalf("merge: %v", err)
	}
}

// revokeOrigins is what the peer does when its trust book learned a
// revocation: sweep the replica, and hand on the re-issued deletes.
func revokeOrigins(t *testing.T, r *Replica, auth Authorizer) *Delta {
	t.Helper()
	d, err := r.RevokeOrigins(auth, later)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// readable is what reads see: the KV keys of the fixture, X's node and
// the web instances.
func readable(r *Replica, x string) string {
	var b strings.Builder
	for _, k := range []string{"k", "d", "cfg/x", "late"} {
		p, ok := r.KVGet(k)
		fmt.Fprintf(&b, "%s=%v:%q/%d ", k, ok, p.Value, len(p.Conflicts))
	}
	_, ok := r.Node(x)
	fmt.Fprintf(&b, "node(x)=%v web=%d", ok, len(r.Services("web", nil)))
	return b.String()
}

// TestRevocationOrderConverges: replica A merges X's records and then
// the revocation of X; replica B merges the revocation first and X's
// records after it. Before the fix B dropped X's records entirely (no
// dot), so the digests never agreed and anti-entropy re-offered them in
// every session. Both must end with equal digests and equal reads: X's
// node and service gone, its KV writes from before the revocation kept,
// those from after it gone, and what those superseded where they were
// merged first (Y's "d") superseded everywhere.
func TestRevocationOrderConverges(t *testing.T) {
	f := newRevFixture(t)
	a, b := newEdReplica(t, 3), newEdReplica(t, 4)
	authA, authB := newRevAuth(), newRevAuth()

	// A: records first (X's writes supersede Y's), then the revocation.
	mustMerge(t, a, f.fromY, authA, later)
	mustMerge(t, a, f.fromX, authA, later)
	if p, _ := a.KVGet("k"); string(p.Value) != "x" {
		t.Fatalf("A before the revocation: k=%q, want X's write", p.Value)
	}
	mustMerge(t, a, f.revocation, authA, later)
	reissued := revokeOrigins(t, a, authA)

	// B: the revocation first, then X's records: dead stubs, no kills.
	mustMerge(t, b, f.fromY, authB, later)
	mustMerge(t, b, f.revocation, authB, later)
	reissuedB := revokeOrigins(t, b, authB)
	resB, errB := b.Merge(f.fromX, authB, later)
	dAtB, dKeptAtB := b.KVGet("d")
	replay := mustMergeRes(t, b, f.fromX, authB)

	// The re-issued deletes travel like any write; then a full repair.
	if reissued != nil {
		mustMerge(t, b, reissued, authB, later)
	}
	repair(t, a, b, authA, authB)
	if a.Digest() != b.Digest() {
		t.Fatalf("digests differ after repair:\nA heads %v\nB heads %v", a.Heads(), b.Heads())
	}
	ra, rb := readable(a, f.x.Origin()), readable(b, f.x.Origin())
	if ra != rb {
		t.Fatalf("reads differ:\nA %s\nB %s", ra, rb)
	}
	if want := `k=true:"x"/0 d=false:""/0 cfg/x=true:"x"/0 late=false:""/0 node(x)=false web=0`; ra != want {
		t.Fatalf("reads %s, want %s", ra, want)
	}
	if reissued == nil || len(reissued.Entries) != 1 {
		t.Fatalf("A re-issued %v, want one delete of d naming Y's superseded version", reissued)
	}
	if reissuedB != nil {
		t.Fatalf("B re-issued %d entries holding no record of X", len(reissuedB.Entries))
	}
	if !errors.Is(errB, ErrOriginRevoked) || resB.Reasons[RejectRevokedOrigin] != 4 || resB.Accepted != len(f.fromX.Entries) {
		t.Fatalf("B merging X's records after the revocation: %+v, %v; want 4 kept as revoked stubs, the 2 KV writes from before accepted", resB, errB)
	}
	if !dKeptAtB || string(dAtB.Value) != "y" {
		t.Fatalf("B: a revoked origin's delete was applied (d=%q, %v)", dAtB.Value, dKeptAtB)
	}
	if replay.Duplicates != len(f.fromX.Entries) {
		t.Fatalf("replay of X's records at B: %+v, want all duplicates", replay)
	}
	// X's dead node record keeps its body (its certificate judges X's
	// records from before the revocation), also through garbage collection.
	for name, r := range map[string]*Replica{"A": a, "B": b} {
		r.CollectGarbage([]VersionVector{a.Heads(), b.Heads()})
		if n, ok := r.LastNodeRecord(f.x.Origin()); !ok || n.Name != "x" {
			t.Fatalf("%s: LastNodeRecord(X) = %+v, %v; want X's node record", name, n, ok)
		}
	}
	// Nothing left to offer each other.
	if d := a.DeltaSince(b.Heads(), 0); d != nil {
		t.Fatalf("A still offers B %d chunks", len(d))
	}
}

func mustMergeRes(t *testing.T, r *Replica, d *Delta, auth Authorizer) MergeResult {
	t.Helper()
	res, err := r.Merge(d, auth, later)
	if err != nil && !errors.Is(err, ErrOriginRevoked) && !errors.Is(err, ErrBadSignature) {
		t.Fatal(err)
	}
	return res
}

// TestRevokedOriginForgeryBurnsNoDot: only a record that verifies under
// the revoked origin's key is kept as a stub; a forged one is dropped
// without its dot, so nobody without the key can claim the origin's dots.
func TestRevokedOriginForgeryBurnsNoDot(t *testing.T) {
	f := newRevFixture(t)
	b := newEdReplica(t, 4)
	auth := newRevAuth()
	mustMerge(t, b, f.revocation, auth, later)
	forged := &Delta{Entries: []Entry{f.fromX.Entries[0]}}
	forged.Entries[0].Sig = bytes.Clone(forged.Entries[0].Sig)
	forged.Entries[0].Sig[0] ^= 1
	res, err := b.Merge(forged, auth, later)
	if !errors.Is(err, ErrBadSignature) || res.Reasons[RejectSignature] != 1 || res.Accepted != 0 {
		t.Fatalf("forged record of a revoked origin: %+v, %v; want dropped as a bad signature", res, err)
	}
	if h := b.Heads(); h[f.x.Origin()] != 0 {
		t.Fatalf("a forged record burnt dot %d of the revoked origin", h[f.x.Origin()])
	}
}

// TestRevokedStubsSurviveRestart: B's stubs of the revoked origin keep
// their context unapplied across a snapshot and reload (the void list),
// and a fresh trust book that re-applies the stored revocation re-sweeps
// to the same state.
func TestRevokedStubsSurviveRestart(t *testing.T) {
	f := newRevFixture(t)
	b := newEdReplica(t, 4)
	auth := newRevAuth()
	mustMerge(t, b, f.fromY, auth, later)
	mustMerge(t, b, f.revocation, auth, later)
	mustMergeRes(t, b, f.fromX, auth)
	before, want := b.Digest(), readable(b, f.x.Origin())
	state := must[[]byte](t)(b.MarshalState())

	b2 := newEdReplica(t, 4)
	fresh := newRevAuth()
	if err := b2.LoadState(state, fresh); err != nil {
		t.Fatal(err)
	}
	for _, blob := range b2.Revocations() {
		if err := fresh.VerifyRevocation(blob); err != nil {
			t.Fatal(err)
		}
	}
	if d := revokeOrigins(t, b2, fresh); d != nil {
		t.Fatalf("reload re-issued %d entries", len(d.Entries))
	}
	if b2.Digest() != before || readable(b2, f.x.Origin()) != want {
		t.Fatalf("after reload: %s, want %s", readable(b2, f.x.Origin()), want)
	}
}

// TestRevocationAnyOrder delivers the fixture's records one by one, in
// random orders, to several replicas that sweep (RevokeOrigins) after
// every merge and pass their re-issued deletes on; all must end with the
// same digest and the same reads.
func TestRevocationAnyOrder(t *testing.T) {
	for _, tc := range []struct {
		name      string
		renewable bool
		seeds     int
	}{
		{"revoked key", false, 200},
		// A cut of the origin's chain (expiry, retired root, delegated
		// revocation): not remembered, swept again at every call.
		{"cut chain", true, 100},
	} {
		t.Run(tc.name, func(t *testing.T) { revocationAnyOrder(t, tc.renewable, tc.seeds) })
	}
}

func revocationAnyOrder(t *testing.T, renewable bool, seeds int) {
	f := newRevFixture(t)
	var all []*Delta
	for _, d := range []*Delta{f.fromY, f.fromX, f.revocation} {
		for _, e := range d.Entries {
			all = append(all, &Delta{Entries: []Entry{e}})
		}
	}
	for seed := range seeds {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		reps := make([]*Replica, 3)
		auths := make([]*revAuth, 3)
		var pool []*Delta // re-issued deletes, for everyone
		for i := range reps {
			reps[i], auths[i] = newEdReplica(t, byte(10+i)), newRevAuth()
			auths[i].renewable = renewable
			order := rng.Perm(len(all))
			for _, j := range order {
				mustMergeTolerant(t, reps[i], all[j], auths[i])
				if d := revokeOrigins(t, reps[i], auths[i]); d != nil {
					pool = append(pool, d)
				}
			}
		}
		for i := range reps {
			for _, d := range pool {
				mustMergeTolerant(t, reps[i], d, auths[i])
			}
		}
		for i := 1; i < len(reps); i++ {
			repair(t, reps[0], reps[i], auths[0], auths[i])
		}
		want := readable(reps[0], f.x.Origin())
		for i := 1; i < len(reps); i++ {
			repair(t, reps[0], reps[i], auths[0], auths[i])
			if reps[i].Digest() != reps[0].Digest() {
				t.Fatalf("seed %d: replica %d digest differs", seed, i)
			}
			if got := readable(reps[i], f.x.Origin()); got != want {
				t.Fatalf("seed %d: replica %d reads %s, replica 0 %s", seed, i, got, want)
			}
		}
		// X's late delete of "d" stands if some replica merged it before
		// the revocation (and then re-issued it), and nowhere otherwise.
		d := `d=true:"y"/0`
		if len(pool) > 0 {
			d = `d=false:""/0`
		}
		if exp := `k=true:"x"/0 ` + d + ` cfg/x=true:"x"/0 late=false:""/0 node(x)=false web=0`; want != exp {
			t.Fatalf("seed %d: reads %s, want %s", seed, want, exp)
		}
	}
}

// TestRevokedNodeRecordBodyRestored: a relay that strips the body of a
// revoked origin's node record does not make its certificate unknown for
// good: the next full copy restores it.
func TestRevokedNodeRecordBodyRestored(t *testing.T) {
	f := newRevFixture(t)
	b := newEdReplica(t, 4)
	auth := newRevAuth()
	mustMerge(t, b, f.revocation, auth, later)
	node := f.fromX.Entries[0]
	stripped := node
	stripped.Body = nil
	mustMergeRes(t, b, &Delta{Entries: []Entry{stripped}}, auth)
	if _, ok := b.LastNodeRecord(f.x.Origin()); ok {
		t.Fatal("a stripped node record has a body")
	}
	if res := mustMergeRes(t, b, &Delta{Entries: []Entry{node}}, auth); res.Duplicates != 1 {
		t.Fatalf("full copy: %+v, want a duplicate", res)
	}
	if n, ok := b.LastNodeRecord(f.x.Origin()); !ok || n.Name != "x" {
		t.Fatalf("LastNodeRecord after a full copy: %+v, %v", n, ok)
	}
	// A body that does not match the signed hash is not taken.
	c := newEdReplica(t, 6)
	mustMerge(t, c, f.revocation, auth, later)
	mustMergeRes(t, c, &Delta{Entries: []Entry{stripped}}, auth)
	bad := node
	bad.Body = []byte{0xa0}
	mustMergeRes(t, c, &Delta{Entries: []Entry{bad}}, auth)
	if _, ok := c.LastNodeRecord(f.x.Origin()); ok {
		t.Fatal("a body not matching the signed hash was kept")
	}
}

// TestRevokedOriginEquivocation: two different records signed by a revoked
// origin for one dot are still reported as an equivocation.
func TestRevokedOriginEquivocation(t *testing.T) {
	f := newRevFixture(t)
	clone := newEdReplica(t, 1) // X's key in a second process
	other := must[*Delta](t)(clone.KVPut("elsewhere", []byte("x2"), 0, late))
	b := newEdReplica(t, 4)
	auth := newRevAuth()
	mustMerge(t, b, f.revocation, auth, later)
	mustMergeRes(t, b, &Delta{Entries: f.fromX.Entries[:1]}, auth) // X's dot 1
	res, err := b.Merge(other, auth, later)                        // the clone's dot 1
	if !errors.Is(err, ErrEquivocation) || res.Reasons[RejectEquivocation] != 1 {
		t.Fatalf("clone of a revoked origin: %+v, %v; want an equivocation", res, err)
	}
}

// TestCutChainRenewed: an origin cut off by its chain (Renewable) is not
// remembered as revoked: once it presents a new chain (the Authorizer no
// longer says OriginRevokedError) its new records count, on a replica
// that swept it as on one that never held its old records.
func TestCutChainRenewed(t *testing.T) {
	f := newRevFixture(t)
	a, b := newEdReplica(t, 3), newEdReplica(t, 4)
	authA, authB := newRevAuth(), newRevAuth()
	authA.renewable, authB.renewable = true, true
	mustMerge(t, a, f.fromY, authA, later)
	mustMerge(t, a, f.fromX, authA, later)
	mustMerge(t, a, f.revocation, authA, later)
	reissued := revokeOrigins(t, a, authA)
	mustMerge(t, b, f.fromY, authB, later)
	mustMerge(t, b, f.revocation, authB, later)
	mustMergeRes(t, b, f.fromX, authB)
	if reissued != nil {
		mustMerge(t, b, reissued, authB, later)
	}
	repair(t, a, b, authA, authB)
	if ra, rb := readable(a, f.x.Origin()), readable(b, f.x.Origin()); ra != rb || a.Digest() != b.Digest() {
		t.Fatalf("before the renewal, reads differ:\nA %s\nB %s", ra, rb)
	}
	// X comes back with a new chain.
	delete(authA.revoked, f.x.Origin())
	delete(authB.revoked, f.x.Origin())
	renewed := joinDeltas(
		must[*Delta](t)(f.x.PutNode(Node{Name: "x2"}, later)),
		must[*Delta](t)(f.x.KVPut("cfg/x", []byte("x2"), 0, later)),
	)
	for name, r := range map[string]*Replica{"A": a, "B": b} {
		auth := map[string]*revAuth{"A": authA, "B": authB}[name]
		if res := mustMerge(t, r, renewed, auth, later); res.Rejected != 0 {
			t.Fatalf("%s: renewed origin's records refused: %+v", name, res)
		}
		if p, _ := r.KVGet("cfg/x"); string(p.Value) != "x2" {
			t.Errorf("%s: cfg/x=%q after the renewal, want x2", name, p.Value)
		}
		if n, ok := r.Node(f.x.Origin()); !ok || n.Name != "x2" {
			t.Errorf("%s: node of the renewed origin: %+v, %v", name, n, ok)
		}
	}
}

// TestCutNodeRecordSurvivesGC: an origin cut off by its chain (Renewable:
// not remembered as revoked) whose node record a sweep killed keeps that
// record's body through garbage collection, so its certificate still
// judges its earlier KV records arriving later (LastNodeRecord). Before,
// only origins revoked for good kept it.
func TestCutNodeRecordSurvivesGC(t *testing.T) {
	f := newRevFixture(t)
	a := newEdReplica(t, 3)
	auth := newRevAuth()
	auth.renewable = true
	mustMerge(t, a, f.fromY, auth, later)
	mustMerge(t, a, f.fromX, auth, later)
	mustMerge(t, a, f.revocation, auth, later)
	revokeOrigins(t, a, auth)
	if _, ok := a.Node(f.x.Origin()); ok {
		t.Fatal("the cut origin's node record is still live")
	}
	a.CollectGarbage([]VersionVector{a.Heads()})
	if n, ok := a.LastNodeRecord(f.x.Origin()); !ok || n.Name != "x" {
		t.Fatalf("LastNodeRecord after GC = %+v, %v; want X's node record", n, ok)
	}
}
