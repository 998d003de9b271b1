package crdt

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

func TestIntentionRollbackAndDeletion(t *testing.T) {
	fx := newEdFixture()
	a, b := newEdReplica(t, 1), newEdReplica(t, 2)
	v1 := signIntention(fx.intKey, Intention{SourceName: "web", DestinationName: "db", Action: ActionAllow, Version: 1})
	v2 := signIntention(fx.intKey, Intention{SourceName: "web", DestinationName: "db", Action: ActionDeny, Version: 2})
	del3 := signIntention(fx.intKey, Intention{SourceName: "web", DestinationName: "db", Version: 3, Deleted: true})
	d1 := must[*Delta](t)(a.PutIntention(v1, fx.auth, t0))
	d2 := must[*Delta](t)(a.PutIntention(v2, fx.auth, t0))
	if _, err := a.PutIntention(v1, fx.auth, t0); !errors.Is(err, ErrRollback) {
		t.Fatalf("local rollback: %v", err)
	}
	mustMerge(t, b, d2, fx.auth, t0)
	res, err := b.Merge(d1, fx.auth, t0)
	if !errors.Is(err, ErrRollback) || res.Reasons[RejectRollback] != 1 {
		t.Fatalf("remote rollback: %+v %v", res, err)
	}
	if in, _ := b.IntentionFor("web", "db"); in.Version != 2 || in.Action != ActionDeny {
		t.Fatalf("held %+v", in)
	}
	if a.Digest() != b.Digest() {
		t.Fatal("a rejected rollback must still count its dot as seen")
	}
	// A forged intention (not signed by the intention key) is refused.
	_, other := newEdSigner(9)
	forged := signIntention(other.priv, Intention{SourceName: "web", DestinationName: "db", Action: ActionAllow, Version: 9})
	if _, err := a.PutIntention(forged, fx.auth, t0); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("forged: %v", err)
	}
	d3 := must[*Delta](t)(a.PutIntention(del3, fx.auth, t0))
	mustMerge(t, b, d3, fx.auth, t0)
	if len(b.Intentions()) != 0 {
		t.Fatal("deleted intention still listed")
	}
	if _, err := b.PutIntention(v2, fx.auth, t0); !errors.Is(err, ErrRollback) {
		t.Fatalf("re-creating below a deletion: %v", err)
	}
}

func TestIntentionPrecedence(t *testing.T) {
	all := []Intention{
		{SourceName: "*", DestinationName: "*", Action: ActionDeny},
		{SourceName: "web", DestinationName: "*", Action: ActionAllow},
		{SourceName: "*", DestinationName: "db", Action: ActionDeny},
		{SourceName: "web", DestinationName: "db", Action: ActionAllow},
		{SourceName: "api", DestinationName: "cache", Action: ActionAllow, Deleted: true},
	}
	tests := []struct {
		src, dst     string
		defaultAllow bool
		allowed      bool
		decidedBy    string // "" means the default
	}{
		{"web", "db", false, true, "web>db"},
		{"api", "db", false, false, "*>db"},    // destination specificity first
		{"web", "cache", false, true, "web>*"}, // then source
		{"api", "cache", true, false, "*>*"},   // deleted intention ignored
		{"x", "y", true, false, "*>*"},
	}
	for _, tt := range tests {
		d := evaluateIntentions(all, tt.src, tt.dst, tt.defaultAllow)
		got := ""
		if d.Intention != nil {
			got = d.Intention.SourceName + ">" + d.Intention.DestinationName
		}
		if d.Allowed != tt.allowed || got != tt.decidedBy {
			t.Errorf("%s -> %s: allowed=%v by %q, want %v by %q", tt.src, tt.dst, d.Allowed, got, tt.allowed, tt.decidedBy)
		}
	}
	if d := evaluateIntentions(nil, "a", "b", true); !d.Allowed || d.Intention != nil {
		t.Errorf("default allow: %+v", d)
	}
	// Deny beats allow at equal precedence.
	tie := []Intention{{SourceName: "a", DestinationName: "*", Action: ActionAllow}, {SourceName: "*", DestinationName: "b", Action: ActionDeny}}
	if d := evaluateIntentions(tie, "a", "b", true); d.Allowed {
		t.Error("*>b (8) must beat a>* (6)")
	}
	tie = []Intention{{SourceName: "a", DestinationName: "b", Action: ActionAllow}, {SourceName: "a", DestinationName: "b", Action: ActionDeny}}
	if d := evaluateIntentions(tie, "a", "b", true); d.Allowed {
		t.Error("deny must win a tie")
	}
}

func TestIntentionHTTP(t *testing.T) {
	in := Intention{SourceName: "web", DestinationName: "api", Permissions: []IntentionPermission{
		{Action: ActionDeny, HTTP: &IntentionHTTPPermission{PathPrefix: "/admin"}},
		{Action: ActionAllow, HTTP: &IntentionHTTPPermission{PathRegex: "/v[0-9]+/.*", Methods: []string{"GET", "HEAD"}}},
		{Action: ActionAllow, HTTP: &IntentionHTTPPermission{PathExact: "/hook",
			Header: []IntentionHTTPHeaderPermission{{Name: "X-Token", Prefix: "tok-"}, {Name: "X-Debug", Present: true, Invert: true}}}},
	}}
	if err := in.Validate(); err != nil {
		t.Fatal(err)
	}
	hdr := func(m map[string]string) func(string) (string, bool) {
		return func(n string) (string, bool) { v, ok := m[n]; return v, ok }
	}
	tests := []struct {
		method, path     string
		header           map[string]string
		allowed, matched bool
	}{
		{"GET", "/admin/x", nil, false, true},
		{"GET", "/v1/users", nil, true, true},
		{"POST", "/v1/users", nil, false, false},
		{"post", "/hook", map[string]string{"X-Token": "tok-1"}, true, true},
		{"POST", "/hook", map[string]string{"X-Token": "tok-1", "X-Debug": "1"}, false, false},
		{"POST", "/hook", map[string]string{"X-Token": "bad"}, false, false},
	}
	for _, tt := range tests {
		allowed, matched := in.EvaluateHTTP(HTTPRequest{Method: tt.method, Path: tt.path, Header: hdr(tt.header)})
		if allowed != tt.allowed || matched != tt.matched {
			t.Errorf("%s %s %v: allowed=%v matched=%v", tt.method, tt.path, tt.header, allowed, matched)
		}
	}
	bad := Intention{SourceName: "a", DestinationName: "b", Action: ActionAllow, Permissions: in.Permissions}
	if bad.Validate() == nil {
		t.Error("action with permissions must be invalid")
	}
}

func TestRevocations(t *testing.T) {
	fx := newEdFixture()
	a, b := newEdReplica(t, 1), newEdReplica(t, 2)
	d := must[*Delta](t)(a.AddRevocation([]byte("revoke:key1"), fx.auth, t0))
	if _, err := a.AddRevocation([]byte("nope"), fx.auth, t0); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("bad revocation: %v", err)
	}
	if again := must[*Delta](t)(a.AddRevocation([]byte("revoke:key1"), fx.auth, t0)); again != nil {
		t.Fatal("a held revocation must give a nil delta")
	}
	mustMerge(t, b, d, fx.auth, t0)
	if rv := b.Revocations(); len(rv) != 1 || string(rv[0]) != "revoke:key1" {
		t.Fatalf("revocations: %q", rv)
	}
}

func TestClockDrift(t *testing.T) {
	fx := newEdFixture()
	a, b := newEdReplica(t, 1), newEdReplica(t, 2)
	d := must[*Delta](t)(a.KVPut("k", []byte("v"), 0, t0.Add(2*time.Minute)))
	res, err := b.Merge(d, fx.auth, t0)
	if !errors.Is(err, ErrClockDrift) || res.Reasons[RejectClockDrift] != 1 {
		t.Fatalf("drift: %+v %v", res, err)
	}
	if _, ok := b.KVGet("k"); ok {
		t.Fatal("a record from the future was merged")
	}
	// Once local time catches up, the same delta is accepted.
	mustMerge(t, b, d, fx.auth, t0.Add(90*time.Second))
	if _, ok := b.KVGet("k"); !ok {
		t.Fatal("retry after the clock caught up failed")
	}
	// A later local write orders after the observed remote timestamp.
	d2 := must[*Delta](t)(b.KVPut("k", []byte("w"), 0, t0))
	h, _ := decodeHeader(d2.Entries[0].Header)
	h1, _ := decodeHeader(d.Entries[0].Header)
	if h.HLC <= h1.HLC {
		t.Fatalf("HLC did not advance past the remote: %s <= %s", h.HLC, h1.HLC)
	}
}

func TestHLCPacking(t *testing.T) {
	h := MakeHLC(1234567, 42)
	if h.Physical() != 1234567 || h.Logical() != 42 {
		t.Fatalf("%s", h)
	}
	c := clock{maxDrift: time.Second}
	a := c.tick(t0)
	b := c.tick(t0)
	x := c.tick(t0.Add(-time.Hour))
	if !(a < b && b < x) || b.Logical() != 1 {
		t.Fatalf("not monotonic: %s %s %s", a, b, x)
	}
}

// TestCheckIntentionMatchesFullScan compares the replica's direct lookup
// of the four candidate intentions with evaluating every intention, for
// every pair of names (wildcards included) over a random set of
// intentions, deletions among them.
func TestCheckIntentionMatchesFullScan(t *testing.T) {
	fx := newEdFixture()
	r := newEdReplica(t, 1)
	names := []string{"web", "db", "api", "cache", Wildcard}
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 40 {
		in := Intention{SourceName: names[rng.IntN(len(names))], DestinationName: names[rng.IntN(len(names))],
			Action: ActionAllow, Version: uint64(i + 1)}
		if rng.IntN(2) == 0 {
			in.Action = ActionDeny
		}
		if rng.IntN(5) == 0 {
			in.Deleted = true
		}
		if _, err := r.PutIntention(signIntention(fx.intKey, in), fx.auth, t0); err != nil && !errors.Is(err, ErrRollback) {
			t.Fatal(err)
		}
	}
	r.mu.Lock()
	all := r.intentionsLocked(true)
	r.mu.Unlock()
	for _, src := range names {
		for _, dst := range names {
			for _, def := range []bool{false, true} {
				got, want := r.CheckIntention(src, dst, def), evaluateIntentions(all, src, dst, def)
				if got.Allowed != want.Allowed || (got.Intention == nil) != (want.Intention == nil) ||
					got.Intention != nil && IntentionKey(got.Intention.SourceName, got.Intention.DestinationName) != IntentionKey(want.Intention.SourceName, want.Intention.DestinationName) {
					t.Errorf("%s -> %s (default %v): lookup %+v, full scan %+v", src, dst, def, got, want)
				}
			}
		}
	}
}

// endedSignerAuth refuses every intention's signer now (its certificate
// ended) but decodes the documents it verified before.
type endedSignerAuth struct{ *edAuth }

func (a endedSignerAuth) VerifyIntention([]byte) (Intention, error) {
	return Intention{}, errors.New("signer's certificate ended")
}

func (a endedSignerAuth) DecodeIntention(signed []byte) (Intention, error) {
	return a.edAuth.VerifyIntention(signed)
}

// TestStoredIntentionOutlivesItsSigner: a replica restarted from its state
// or its log reads intentions whose signer the authorizer no longer
// accepts, through IntentionDecoder; without a decoder it cannot.
func TestStoredIntentionOutlivesItsSigner(t *testing.T) {
	fx := newEdFixture()
	a := newEdReplica(t, 1)
	d := must[*Delta](t)(a.PutIntention(signIntention(fx.intKey, Intention{SourceName: "web", DestinationName: "db", Action: ActionAllow, Version: 1}), fx.auth, t0))
	state, err := a.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	ended := endedSignerAuth{fx.auth}
	fromState, fromLog := newEdReplica(t, 1), newEdReplica(t, 1)
	if err := fromState.LoadState(state, ended); err != nil {
		t.Fatalf("load state: %v", err)
	}
	if err := fromLog.Apply(d, ended); err != nil {
		t.Fatalf("apply: %v", err)
	}
	for name, r := range map[string]*Replica{"state": fromState, "log": fromLog} {
		if in, ok := r.IntentionFor("web", "db"); !ok || in.Action != ActionAllow {
			t.Fatalf("from %s: %+v %v", name, in, ok)
		}
	}
	if err := newEdReplica(t, 1).LoadState(state, refuseAll{fx.auth}); err == nil {
		t.Fatal("an authorizer without a decoder that refuses the signer loaded the state")
	}
}

type refuseAll struct{ *edAuth }

func (a refuseAll) VerifyIntention([]byte) (Intention, error) {
	return Intention{}, errors.New("refused")
}
