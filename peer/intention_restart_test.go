package peer

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net/netip"
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
	nodeChain, err := identity.Issue(root, nil, node.Public().(ed25519.PublicKey), "t1",
		identity.Constraints{Services: []string{"*"}, KVPrefixes: []string{"*"}}, now.Add(-time.Minute), now.Add(24*time.Hour), 1)
	if err != nil {
		t.Fatal(err)
	}
	cb, _ := nodeChain.Marshal()
	_, op, _ := ed25519.GenerateKey(rand.Reader)
	opChain, err := identity.Issue(root, nil, op.Public().(ed25519.PublicKey), "operator",
		identity.Constraints{SignIntentions: true}, now.Add(-time.Minute), now.Add(time.Hour), 2)
	if err != nil {
		t.Fatal(err)
	}
	start := func(skew time.Duration) (*Agent, error) {
		a, err := New(Config{
			NodeName: "t1", DataDir: dir, BindAddr: netip.MustParseAddr("127.0.0.1"),
			SerfPort: regPort(t, "tcp"), PeerPort: regPort(t, "udp"), HTTPPort: regPort(t, "tcp"), DNSPort: -1,
			TrustRoots: []ed25519.PublicKey{root.Public().(ed25519.PublicKey)}, NodeKey: node, NodeChain: cb,
			FastGossip: true, Logger: discardLogger(),
		})
		if err != nil {
			return nil, err
		}
		a.trust.now = func() time.Time { return time.Now().Add(skew) }
		if err := a.Start(context.Background()); err != nil {
			a.Close()
			return nil, err
		}
		return a, nil
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
