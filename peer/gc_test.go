package peer

import (
	"testing"

	"github.com/peerd/peerd/gossip"
)

func TestJudgeUnknown(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answers []gossip.MemberStatus
		want    unknownVerdict
	}{
		{"no answer", nil, keepUnknown},
		{"left everywhere", []gossip.MemberStatus{gossip.StatusLeft, gossip.StatusLeft}, forgetUnknown},
		{"reaped everywhere", []gossip.MemberStatus{gossip.StatusNone}, forgetUnknown},
		{"left or reaped", []gossip.MemberStatus{gossip.StatusNone, gossip.StatusLeft}, forgetUnknown},
		{"alive somewhere", []gossip.MemberStatus{gossip.StatusLeft, gossip.StatusAlive}, keepUnknown},
		{"leaving", []gossip.MemberStatus{gossip.StatusLeaving}, keepUnknown},
		{"failed somewhere", []gossip.MemberStatus{gossip.StatusLeft, gossip.StatusFailed}, forgetIfOld},
		{"failed and alive", []gossip.MemberStatus{gossip.StatusFailed, gossip.StatusAlive}, keepUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := judgeUnknown(tc.answers); got != tc.want {
				t.Fatalf("judgeUnknown(%v) = %d, want %d", tc.answers, got, tc.want)
			}
		})
	}
}
