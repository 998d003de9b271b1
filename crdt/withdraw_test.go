package crdt

import (
	"bytes"
	"testing"
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
