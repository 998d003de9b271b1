package crdt

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

// stmtAuth is a trust book whose statements form a chain, as root
// rotations do: a statement "stmt:NAME:NEEDS" applies only once NEEDS has
// (R1→R2 only once R0→R1 made R1 a root). Before, it is ErrNotYetApplicable;
// "stmt:NAME:!" is refused for good.
type stmtAuth struct {
	edAuth
	applied map[string]bool
}

func newStmtAuth() *stmtAuth { return &stmtAuth{applied: map[string]bool{}} }

func (a *stmtAuth) VerifyRevocation(signed []byte) error {
	name, needs, ok := strings.Cut(strings.TrimPrefix(string(signed), "stmt:"), ":")
	switch {
	case !ok || needs == "!":
		return errors.New("test: invalid statement")
	case needs != "" && !a.applied[needs]:
		return fmt.Errorf("test: %s needs %s: %w", name, needs, ErrNotYetApplicable)
	}
	a.applied[name] = true
	return nil
}

func (a *stmtAuth) names() string { return strings.Join(slices.Sorted(maps.Keys(a.applied)), ",") }

// TestTrustStatementsAnyOrder: three chained statements (A, then B which
// needs A, then C which needs B) and one invalid one reach replicas in
// every order; each replica calls RetryStatements after each merge, as
// the agent does when its trust changes. Before the fix, a replica that
// got B before A refused it for good (dot seen, never offered again) and
// never applied B or C.
func TestTrustStatementsAnyOrder(t *testing.T) {
	s := newEdReplica(t, 5)
	sAuth := newStmtAuth()
	blobs := []string{"stmt:A:", "stmt:B:A", "stmt:C:B"}
	var deltas []*Delta
	for _, b := range blobs {
		deltas = append(deltas, must[*Delta](t)(s.AddRevocation([]byte(b), sAuth, t0)))
	}
	// An invalid statement from another origin: refused for good.
	bad := newEdReplica(t, 6)
	deltas = append(deltas, must[*Delta](t)(bad.AddRevocation([]byte("stmt:X:!"), hashAuth{}, t0)))

	orders := [][]int{
		{0, 1, 2, 3}, {2, 1, 0, 3}, {1, 2, 3, 0}, {2, 0, 1, 3}, {1, 0, 2, 3}, {3, 2, 0, 1},
	}
	for _, order := range orders {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			r := newEdReplica(t, 1)
			auth := newStmtAuth()
			for _, i := range order {
				if _, err := r.Merge(deltas[i], auth, later); err != nil &&
					!errors.Is(err, ErrNotYetApplicable) && !errors.Is(err, ErrUnauthorized) {
					t.Fatalf("merge %d: %v", i, err)
				}
				r.RetryStatements(auth)
			}
			if got := auth.names(); got != "A,B,C" {
				t.Errorf("applied %q, want A,B,C", got)
			}
			if n := len(r.Revocations()); n != 3 {
				t.Errorf("%d live statements, want 3", n)
			}
			if n := r.PendingStatements(); n != 0 {
				t.Errorf("%d statements still held", n)
			}
		})
	}
}

// TestPendingStatementSurvivesGCAndRestart: a held statement keeps its
// body through garbage collection (every replica has passed its dot, but
// only this one still needs it) and a restart, and applies when the
// statement it needs arrives.
func TestPendingStatementSurvivesGCAndRestart(t *testing.T) {
	s, q := newEdReplica(t, 5), newEdReplica(t, 6)
	a := must[*Delta](t)(s.AddRevocation([]byte("stmt:A:"), newStmtAuth(), t0))
	qAuth := newStmtAuth()
	qAuth.applied["A"] = true
	b := must[*Delta](t)(q.AddRevocation([]byte("stmt:B:A"), qAuth, t0))
	// Later records of q, so B is not q's newest version.
	fill := must[*Delta](t)(q.KVPut("k", []byte("v"), 0, t0))
	fill = joinDeltas(fill, must[*Delta](t)(q.KVPut("k", []byte("w"), 0, t0)))

	r := newEdReplica(t, 1)
	auth := newStmtAuth()
	if _, err := r.Merge(joinDeltas(b, fill), auth, later); !errors.Is(err, ErrNotYetApplicable) {
		t.Fatalf("merging B before A: %v, want ErrNotYetApplicable", err)
	}
	if r.Rejected()[RejectPending] != 1 || r.PendingStatements() != 1 {
		t.Fatalf("rejected %v, held %d; want B held", r.Rejected(), r.PendingStatements())
	}
	// Every member has passed B's dot.
	r.CollectGarbage([]VersionVector{q.Heads()})
	r2 := newEdReplica(t, 1)
	auth2 := newStmtAuth()
	if err := r2.LoadState(must[[]byte](t)(r.MarshalState()), auth2); err != nil {
		t.Fatal(err)
	}
	if n := r2.RetryStatements(auth2); n != 0 || r2.PendingStatements() != 1 {
		t.Fatalf("after restart: applied %d, held %d; want B still held", n, r2.PendingStatements())
	}
	mustMerge(t, r2, a, auth2, later)
	if n := r2.RetryStatements(auth2); n != 1 {
		t.Fatalf("RetryStatements applied %d, want 1 (B)", n)
	}
	if got := auth2.names(); got != "A,B" || len(r2.Revocations()) != 2 {
		t.Errorf("applied %q with %d live statements; want A,B and 2", got, len(r2.Revocations()))
	}
}

// TestPendingStatementsBounded: a trusted origin that writes statements
// that never apply cannot make a replica hold more than
// MaxPendingStatements of them; the rest are refused for good.
func TestPendingStatementsBounded(t *testing.T) {
	w := newEdReplica(t, 7)
	var d *Delta
	for i := range MaxPendingStatements + 3 {
		d = joinDeltas(d, must[*Delta](t)(w.AddRevocation([]byte(fmt.Sprintf("stmt:S%d:never", i)), hashAuth{}, t0)))
	}
	r := newEdReplica(t, 1)
	res, _ := r.Merge(d, newStmtAuth(), later)
	if n := r.PendingStatements(); n != MaxPendingStatements {
		t.Fatalf("%d statements held, want %d", n, MaxPendingStatements)
	}
	if res.Reasons[RejectPending] != MaxPendingStatements || res.Reasons[RejectRevocation] != 3 || res.Accepted != len(d.Entries) {
		t.Fatalf("merge result %+v; want %d held, 3 refused, all dots seen", res, MaxPendingStatements)
	}
}
