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

// reapUnknownLoop runs reapUnknown every unknownCheckInterval until the
// agent stops. firstSeen (owned by this goroutine) says since when each
// unknown node has been unknown while this agent had peers.
func (a *Agent) reapUnknownLoop() {
	t := time.NewTicker(unknownCheckInterval)
	defer t.Stop()
	firstSeen := make(map[string]time.Time)
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		}
		a.reapUnknown(firstSeen, time.Now())
	}
}

// reapUnknown forgets the records of nodes this agent's serf does not know.
// Records are forgotten on a serf reap event (mesh.go), but an agent that
// joined after a node left (or failed) never meets it: serf's push-pull
// does not create members that left or died, yet anti-entropy brings their
// records from peers that still hold them. Such a node was listed here
// forever with a critical serfHealth. The other members are asked how they
// see it (gossip.AskStatus); judgeUnknown decides.
func (a *Agent) reapUnknown(firstSeen map[string]time.Time, now time.Time) {
	m := a.membership()
	if m == nil {
		return
	}
	names := a.unknownNodes(m)
	for id := range firstSeen {
		if _, ok := names[id]; !ok {
			delete(firstSeen, id)
		}
	}
	alone := len(a.currentPeers()) == 0
	var ids []string
	for id := range names {
		if _, ok := firstSeen[id]; !ok || alone {
			firstSeen[id] = now // the clock runs only while there is someone to ask
		}
		ids = append(ids, id)
	}
	if alone || len(ids) == 0 {
		return
	}
	slices.SortFunc(ids, func(x, y string) int { return firstSeen[x].Compare(firstSeen[y]) })
	ids = ids[:min(len(ids), gossip.MaxAskIDs)]
	ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
	answers, err := m.AskStatus(ctx, ids)
	cancel()
	if err != nil {
		a.log.Debug("asking members about unknown nodes", "err", err)
		return
	}
	still := a.unknownNodes(m) // one may have joined while we asked
	for _, id := range ids {
		switch judgeUnknown(answers[id]) {
		case keepUnknown:
			continue
		case forgetIfOld:
			if now.Sub(firstSeen[id]) < m.ReconnectTimeout() {
				continue
			}
		}
		if _, ok := still[id]; !ok {
			continue
		}
		a.log.Info("forgetting the records of a node membership does not know and the others saw leave or fail",
			"node", names[id], "id", id, "others_see", answers[id])
		a.replica.ForgetOrigin(id)
		a.stats.dirty.Store(true)
		delete(firstSeen, id)
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
