package crdt

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// TestWithdrawIntentions: an intention whose signer is judged invalid is
// hidden from every read and decision (the default policy decides again),
// the intentions scope changes once per change of the set, and one judged
// valid again is shown again.
func TestWithdrawIntentions(t *testing.T) {
	fx := newEdFixture()
	r := newEdReplica(t, 1)
	allow := signIntention(fx.intKey, Intention{SourceName: "web", DestinationName: "db", Action: ActionAllow, Version: 1})
	other := signIntention(fx.intKey, Intention{SourceName: "api", DestinationName: "db", Action: ActionAllow, Version: 1})
	must[*Delta](t)(r.PutIntention(allow, fx.auth, t0))
	must[*Delta](t)(r.PutIntention(other, fx.auth, t0))
	if !r.CheckIntention("web", "db", false).Allowed {
		t.Fatal("allow intention not applied")
	}
	bad := func(signed []byte) bool { return !bytes.Equal(signed, allow) } // allow's signer is withdrawn
	idx := r.ScopeIndex(ScopeIntentions)
	if n := r.WithdrawIntentions(bad); n != 1 {
		t.Fatalf("withdrawn %d, want 1", n)
	}
	idx2 := r.ScopeIndex(ScopeIntentions)
	if idx2 == idx {
		t.Error("the intentions scope did not change")
	}
	if d := r.CheckIntention("web", "db", false); d.Allowed || d.Intention != nil {
		t.Errorf("withdrawn intention still decides: %+v", d)
	}
	if _, ok := r.IntentionFor("web", "db"); ok {
		t.Error("IntentionFor returns a withdrawn intention")
	}
	if got := r.Intentions(); len(got) != 1 || got[0].SourceName != "api" {
		t.Errorf("Intentions lists %+v, want only api -> db", got)
	}
	if got := r.MatchIntentions("db", false); len(got) != 1 {
		t.Errorf("MatchIntentions lists %+v", got)
	}
	if !r.CheckIntention("api", "db", false).Allowed {
		t.Error("an intention of a valid signer was withdrawn")
	}
	// Judging again with the same answer changes nothing.
	r.WithdrawIntentions(bad)
	if r.ScopeIndex(ScopeIntentions) != idx2 {
		t.Error("the scope changed without a change of the set")
	}
	// Valid again: shown again.
	if n := r.WithdrawIntentions(func([]byte) bool { return true }); n != 0 || !r.CheckIntention("web", "db", false).Allowed {
		t.Errorf("after judging valid again: withdrawn %d, decision %+v", n, r.CheckIntention("web", "db", false))
	}
}

// judgeAuth marks intentions whose Description is "op" as signed by an
// operator key that revoked says is revoked.
type judgeAuth struct {
	*edAuth
	revoked *bool
}

func (a judgeAuth) opSigned(signed []byte) bool {
	in, err := a.edAuth.VerifyIntention(signed)
	return err == nil && in.Description == "op"
}

func (a judgeAuth) VerifyIntention(signed []byte) (Intention, error) {
	if *a.revoked && a.opSigned(signed) {
		return Intention{}, errors.New("signer revoked")
	}
	return a.edAuth.VerifyIntention(signed)
}

func (a judgeAuth) JudgeIntention(signed []byte, _ time.Time) (Intention, bool, error) {
	in, err := a.edAuth.VerifyIntention(signed)
	return in, err == nil && *a.revoked && in.Description == "op", err
}

// TestWithdrawnEitherOrder is the sim's finding 5: versions 2 and 3 of a
// pair, signed by an operator key that is revoked during a partition,
// reach one side before the revocation and the other after it. Both sides
// must end with the same decision: the operator's versions superseded
// version 1 and are withdrawn, so nothing applies.
func TestWithdrawnEitherOrder(t *testing.T) {
	fx := newEdFixture()
	src := newEdReplica(t, 9)
	revoked := false
	auth := judgeAuth{fx.auth, &revoked}
	var ds []*Delta
	for v, desc := range []string{"root", "op", "op"} {
		in := Intention{SourceName: "web", DestinationName: "db", Action: ActionDeny, Version: uint64(v + 1), Description: desc}
		ds = append(ds, must[*Delta](t)(src.PutIntention(signIntention(fx.intKey, in), auth, t0)))
	}
	valid := func(signed []byte) bool { return !(revoked && auth.opSigned(signed)) }

	before, after := newEdReplica(t, 1), newEdReplica(t, 2)
	for _, d := range ds {
		mustMerge(t, before, d, auth, t0)
	}
	mustMerge(t, after, ds[0], auth, t0)
	revoked = true
	if n := before.WithdrawIntentions(valid); n != 1 {
		t.Fatalf("withdrawn on the side that merged first: %d, want 1", n)
	}
	for _, d := range ds[1:] {
		mustMerge(t, after, d, auth, t0)
	}
	after.WithdrawIntentions(valid)
	for name, r := range map[string]*Replica{"merged before": before, "merged after": after} {
		if in, ok := r.IntentionFor("web", "db"); ok {
			t.Errorf("%s the revocation: %+v applies, want nothing", name, in)
		}
	}
	if before.Digest() != after.Digest() {
		t.Error("digests differ")
	}
	// A version signed after the revocation by a valid key applies on both.
	d := must[*Delta](t)(src.PutIntention(signIntention(fx.intKey, Intention{SourceName: "web", DestinationName: "db", Action: ActionAllow, Version: 4, Description: "root"}), auth, t0))
	for name, r := range map[string]*Replica{"merged before": before, "merged after": after} {
		mustMerge(t, r, d, auth, t0)
		if in, ok := r.IntentionFor("web", "db"); !ok || in.Version != 4 {
			t.Errorf("%s: version 4: %+v %v", name, in, ok)
		}
	}
}
