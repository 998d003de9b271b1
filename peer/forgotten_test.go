package peer

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"testing"

	"github.com/peerd/peerd/gossip"
	"github.com/peerd/peerd/identity"
)

// TestRepublishWhenForgotten: an agent started on a replica from its data
// dir writes its records again (peers may have reaped it meanwhile), and
// so does an agent when a member whose records it forgot joins again.
func TestRepublishWhenForgotten(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an agent")
	}
	dir := t.TempDir()
	root, node := newKeys(t)
	a := testAgent(t, dir, root, node, []string{"*"})
	if err := a.RegisterService(context.Background(), ServiceDefinition{Name: "web", Port: 1}, false); err != nil {
		t.Fatal(err)
	}
	before := a.replica.OwnCounter()
	a.Close()

	a = testAgent(t, dir, root, node, []string{"*"})
	defer a.Close()
	// The node record and the service, under new dots.
	grown := func(from uint64, by uint64) func() error {
		return func() error {
			if got := a.replica.OwnCounter(); got < from+by {
				return fmt.Errorf("own counter %d, want at least %d", got, from+by)
			}
			return nil
		}
	}
	eventually(t, grown(before, 2))

	_, other := newKeys(t)
	id := identity.NodeID(other.Public().(ed25519.PublicKey))
	member := gossip.Member{Name: "x", Tags: map[string]string{tagID: id}}
	a.onMemberEvent(gossip.Event{Type: gossip.EventReap, Members: []gossip.Member{member}})
	a.view.mu.Lock()
	marked := a.view.forgot[id]
	a.view.mu.Unlock()
	if !marked {
		t.Fatal("a reaped member is not remembered as forgotten")
	}
	settled := a.replica.OwnCounter()
	a.onMemberEvent(gossip.Event{Type: gossip.EventJoin, Members: []gossip.Member{member}})
	eventually(t, grown(settled, 2))
	if a.view.rejoined(id) {
		t.Fatal("the mark outlived the join")
	}
}
