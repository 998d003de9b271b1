package peer

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/gossip"
)

// gcInterval is how often this agent asks every live peer for its heads and
// lets the replica drop what all of them have passed (superseded values,
// delete metadata). Without it, overwritten values keep using memory.
const gcInterval = 30 * time.Second

// gcLoop runs collectGarbage every gcInterval until the agent stops.
func (a *Agent) gcLoop() {
	t := time.NewTicker(gcInterval)
	defer t.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		}
		a.collectGarbage()
	}
}

// collectGarbage gathers the heads of every admitted, alive peer. Only when
// all of them answered is anything collected: a version is dropped only once
// every live member has passed it, so a silent peer postpones collection.
func (a *Agent) collectGarbage() {
	peers := a.currentPeers()
	heads := make([]crdt.VersionVector, len(peers))
	errs := make([]error, len(peers))
	var wg sync.WaitGroup
	for i, id := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(a.ctx, 5*time.Second)
			defer cancel()
			b, err := a.roundTrip(ctx, id, syncHeads, nil)
			if err == nil {
				heads[i], err = crdt.DecodeHeads(b)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			a.log.Debug("garbage collection postponed: a peer did not give its heads", "peer", peers[i], "err", err)
			return
		}
	}
	if n := a.replica.CollectGarbage(heads); n > 0 {
		a.stats.collected.Add(uint64(n))
		a.stats.dirty.Store(true)
	}
}

// unknownCheckInterval is how often this agent looks for nodes it holds
// records of but that its serf does not know (reapUnknown).
const unknownCheckInterval = 5 * time.Second

// Asking about unknown nodes: how many members answer (gossip.AskStatus),
// and how long to wait before asking again about a node someone still sees
// alive or no one answered for (doubling from unknownCheckInterval).
const (
	unknownAskMembers = 3
	unknownMaxBackoff = 5 * time.Minute
)

// unknownNode is reapUnknown's memory of one node serf does not know.
type unknownNode struct {
	name  string
	first time.Time     // since when it has been unknown while this agent had peers
	next  time.Time     // when to ask about it again
	wait  time.Duration // the current backoff
}

// reapUnknownLoop runs reapUnknown every unknownCheckInterval until the
// agent stops. The map is owned by this goroutine.
func (a *Agent) reapUnknownLoop() {
	t := time.NewTicker(unknownCheckInterval)
	defer t.Stop()
	seen := make(map[string]*unknownNode)
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		}
		a.reapUnknown(seen, time.Now())
	}
}

// reapUnknown forgets the records of nodes this agent's serf does not know.
// Records are forgotten on a serf reap event (mesh.go), but an agent that
// joined after a node left (or failed) never meets it: serf's push-pull
// does not create members that left or died, yet anti-entropy brings their
// records from peers that still hold them. Such a node was listed here
// forever with a critical serfHealth. A few other members are asked how
// they see it (gossip.AskStatus); judgeUnknown decides.
func (a *Agent) reapUnknown(seen map[string]*unknownNode, now time.Time) {
	m := a.membership()
	if m == nil {
		return
	}
	names := a.unknownNodes(m)
	for id := range seen {
		if _, ok := names[id]; !ok {
			delete(seen, id)
		}
	}
	alone := len(a.currentPeers()) == 0
	var due []string
	for id, name := range names {
		u := seen[id]
		if u == nil || alone {
			// The clock runs only while there is someone to ask.
			u = &unknownNode{name: name, first: now, next: now}
			seen[id] = u
		}
		if !now.Before(u.next) {
			due = append(due, id)
		}
	}
	if alone || len(due) == 0 {
		return
	}
	slices.SortFunc(due, func(x, y string) int { return seen[x].next.Compare(seen[y].next) })
	due = due[:min(len(due), gossip.MaxAskIDs)]
	ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
	answers, err := m.AskStatus(ctx, due, unknownAskMembers)
	cancel()
	if err != nil {
		a.log.Debug("asking members about unknown nodes", "err", err)
		return
	}
	still := a.unknownNodes(m) // one may have joined while we asked
	for _, id := range due {
		u := seen[id]
		switch judgeUnknown(answers[id]) {
		case keepUnknown:
			u.wait = min(max(2*u.wait, unknownCheckInterval), unknownMaxBackoff)
			u.next = now.Add(u.wait)
			continue
		case forgetIfOld:
			if deadline := u.first.Add(m.ReconnectTimeout()); now.Before(deadline) {
				u.next = deadline
				continue
			}
		}
		if _, ok := still[id]; !ok {
			continue
		}
		a.log.Info("forgetting the records of a node membership does not know and the others saw leave or fail",
			"node", u.name, "id", id, "others_see", answers[id])
		a.forgetOrigin(id)
		a.stats.dirty.Store(true)
		delete(seen, id)
	}
}

// unknownNodes returns, by node ID, the names of the nodes with a node record
// here that serf does not know under any status.
func (a *Agent) unknownNodes(m *gossip.Membership) map[string]string {
	known := make(map[string]bool)
	for _, mem := range m.Members() {
		known[mem.ID()] = true
	}
	out := make(map[string]string)
	for _, n := range a.replica.Nodes() {
		if n.Origin != a.id && !known[n.Origin] {
			out[n.Origin] = n.Node.Name
		}
	}
	return out
}

// unknownVerdict is what reapUnknown does with a node serf does not know.
type unknownVerdict int

const (
	keepUnknown   unknownVerdict = iota // no one answered, or someone sees it alive
	forgetUnknown                       // the others saw it leave, or none of them knows it
	forgetIfOld                         // failed elsewhere: forget after the reconnect timeout
)

// judgeUnknown decides from the statuses the other members report for a
// node (one per answering member). A node any of them sees alive (a
// partition this agent joined on one side of) is kept; one they all saw
// leave, or reaped already, is forgotten at once, as they hide it; one a
// member still sees failed is forgotten when serf would reap a failed
// member.
func judgeUnknown(answers []gossip.MemberStatus) unknownVerdict {
	if len(answers) == 0 {
		return keepUnknown
	}
	failed := false
	for _, st := range answers {
		switch st {
		case gossip.StatusAlive, gossip.StatusLeaving:
			return keepUnknown
		case gossip.StatusFailed:
			failed = true
		}
	}
	if failed {
		return forgetIfOld
	}
	return forgetUnknown
}
