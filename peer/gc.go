package peer

import (
	"context"
	"sync"
	"time"

	"github.com/peerd/peerd/crdt"
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
