package peer

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/identity"
)

// TestRestartWithExpiredIntentionSigner: an intention signed by an
// operator key whose certificate has ended since keeps applying (expiry
// does not withdraw), and the agent restarts on a replica holding it.
func TestRestartWithExpiredIntentionSigner(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an agent")
	}
	dir := t.TempDir()
	root, node := newKeys(t)
	now := time.Now()
	_, op, _ := ed25519.GenerateKey(rand.Reader)
	opChain, err := identity.Issue(root, nil, op.Public().(ed25519.PublicKey), "operator",
		identity.Constraints{SignIntentions: true}, now.Add(-time.Minute), now.Add(time.Hour), 2)
	if err != nil {
		t.Fatal(err)
	}
	// The agent's trust book runs skew ahead of the wall clock.
	start := func(skew time.Duration) (*Agent, error) {
		return startTestAgent(t, dir, root, node, []string{"*"}, func(a *Agent) {
			a.trust.now = func() time.Time { return time.Now().Add(skew) }
		})
	}
	a, err := start(0)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := SignIntention(crdt.Intention{SourceName: "web", DestinationName: "db", Action: crdt.ActionAllow, Version: 1}, op, opChain)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.commit(context.Background(), func(now time.Time) (*crdt.Delta, error) {
		return a.replica.PutIntention(signed, a.trust, now)
	}); err != nil {
		t.Fatal(err)
	}
	a.Close()

	// Two hours later the operator's certificate has ended.
	a, err = start(2 * time.Hour)
	if err != nil {
		t.Fatalf("restart after the intention signer's certificate ended: %v", err)
	}
	defer a.Close()
	if in, ok := a.replica.IntentionFor("web", "db"); !ok || in.Action != crdt.ActionAllow {
		t.Fatalf("intention after the restart: %+v %v", in, ok)
	}
}
