package sim

import (
	"strings"
	"testing"
	"time"
)

// authzScenario: intention updates on both sides of a partition, replays of
// older versions (during the partition and after the heal), and the
// revocation of one peer, which keeps writing afterwards.
func authzScenario(seed uint64, peers int, membership string) Scenario {
	s := func(x float64) time.Duration { return time.Duration(x * float64(time.Second)) }
	return Scenario{
		Name: "authz", Peers: peers, Seed: seed, Membership: membership,
		Duration: s(20), Idle: s(1), Skew: s(1),
		Network: LinkProfile{Latency: 5 * time.Millisecond, Jitter: 5 * time.Millisecond},
		Workload: Workload{Rate: 20, Reads: 0.3, Deletes: 0.2, Keys: 20, Stop: s(10),
			Intentions: 12, IntentionPairs: 3},
		Events: []Event{
			{At: s(1), Action: "partition", Groups: 2, Node: -1},
			{At: s(4.5), Action: "replay_intention", Node: -1},
			{At: s(7), Action: "heal", Node: -1},
			{At: s(11), Action: "replay_intention", Node: -1},
			{At: s(12), Action: "replay_intention", Node: -1},
			{At: s(14), Action: "revoke", Node: 3},
		},
		Expect: Expect{ConvergeWithin: s(30)},
	}
}

// TestAuthzCheckers: every checker green with intentions, replays and a
// revocation, and the checkers saw what they check: rollbacks refused,
// every other peer cutting the revoked one off, its later writes refused.
func TestAuthzCheckers(t *testing.T) {
	const peers = 24
	res := runOK(t, authzScenario(7, peers, ""))
	a := res.Authz
	switch {
	case a.Intentions != 12 || a.Pairs != 3 || a.Replays != 3:
		t.Errorf("issued %d versions of %d pairs, %d replays; want 12, 3, 3", a.Intentions, a.Pairs, a.Replays)
	case a.RollbackRefusals == 0 && a.ReplayRefusedAPI == 0:
		t.Errorf("no rollback refused: the replays did not reach a peer holding a newer version")
	case a.Revocations != 1 || a.RevokedAttempts == 0:
		t.Errorf("%d revocations, %d writes by the revoked peer; want 1 and some", a.Revocations, a.RevokedAttempts)
	case a.CutOff.N != peers-1:
		t.Errorf("%d peers cut the revoked peer off, want %d", a.CutOff.N, peers-1)
	case !a.NewestEverywhere || !a.PeersCuttingOffAll:
		t.Errorf("newest everywhere %v, cut off everywhere %v", a.NewestEverywhere, a.PeersCuttingOffAll)
	}
	var sb strings.Builder
	res.WriteSummary(&sb)
	for _, want := range []string{"intentions: 12 versions", "revocations: 1", "no intention rollback accepted"} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, sb.String())
		}
	}
	t.Logf("rollbacks refused: %d by merge, %d at the API; revocation → cut off: %s; %d messages dropped, %d records refused",
		a.RollbackRefusals, a.ReplayRefusedAPI, a.CutOff, a.CutMessages, a.OriginRefusals)
}

// TestAuthzCheckersCanFail weakens the authorizers: intentions lose their
// version (so the replica cannot refuse a rollback) and revocations are
// stored but not enforced. Both checkers must report it.
func TestAuthzCheckersCanFail(t *testing.T) {
	sc := authzScenario(7, 16, MembershipStatic)
	sc.permissive = permissiveAuthz{versions: true, revocations: true}
	res, err := RunVirtual(t, sc, logWriter(t))
	if err != nil {
		t.Fatal(err)
	}
	a := res.Authz
	if res.OK() || a.RollbacksAccepted == 0 || a.RevokedAccepted == 0 || a.NewestEverywhere || a.PeersCuttingOffAll {
		t.Errorf("checkers missed it: %d rollbacks accepted, %d revoked records accepted, newest everywhere %v, cut off everywhere %v; violations:\n%s",
			a.RollbacksAccepted, a.RevokedAccepted, a.NewestEverywhere, a.PeersCuttingOffAll, strings.Join(res.Violations, "\n"))
	}
}
