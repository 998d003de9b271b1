package peer

import (
	"context"
	"time"

	"github.com/peerd/peerd/crdt"
)

// A node restarted with its old key but without its data dir (a lost
// volume, a re-imaged host, an old backup) would start its counter again
// and write records under dots its peers already hold from its earlier
// life: they refuse those as equivocations, and its earlier services come
// back from them as records its registry does not know. So a fresh
// replica first learns its past from a peer (learnOwnPast, before the
// first write). When records of this node's own origin that it did not
// write arrive anyway (no peer answered in time; ownRecordsReturned), the
// agent says so and republishes: every record the registry does not hold
// is deleted, and the node record, services and checks are written again
// under new dots (the counter has moved past the returned ones), which
// supersede both lives' versions everywhere. Records of the earlier life
// that sit under dots this life reused stay unknown to this node and
// cannot be deleted by it; docs/OPERATIONS.md says how to avoid that.

// bootstrapPullTimeout bounds how long a fresh agent with seeds waits for
// a trusted peer to answer one anti-entropy exchange before its first
// write; bootstrapAloneWait, how long it waits while no seed has answered
// at all (the first agent of a new mesh started with -retry-join).
const (
	bootstrapPullTimeout = 3 * time.Second
	bootstrapAloneWait   = time.Second
)

// learnOwnPast runs one anti-entropy exchange with a trusted peer before a
// fresh replica's first write, so that a node whose data dir was lost
// learns the records its earlier life published (and its counter moves
// past their dots) instead of writing new records under the same dots.
// Without seeds there is nobody to ask; when no peer answers in time the
// agent goes on, and ownRecordsReturned repairs what it can later.
func (a *Agent) learnOwnPast() {
	if len(a.cfg.Join) == 0 && len(a.cfg.RetryJoin) == 0 || a.members == nil || a.ae == nil {
		return
	}
	ctx, cancel := context.WithTimeout(a.ctx, bootstrapPullTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	for {
		if a.members.NumMembers() <= 1 && time.Since(start) >= bootstrapAloneWait {
			a.log.Debug("fresh replica: no seed answered; writing without a past", "waited", bootstrapAloneWait)
			return
		}
		for _, id := range a.members.AdmittedIDs() {
			if err := a.ae.SyncWith(ctx, id); err == nil {
				a.log.Debug("fresh replica synced before the first write", "peer", id, "own_counter", a.replica.OwnCounter())
				return
			}
		}
		select {
		case <-ctx.Done():
			if a.ctx.Err() == nil {
				a.log.Warn("fresh replica: no trusted peer answered before the first write; going on",
					"waited", bootstrapPullTimeout)
			}
			return
		case <-tick.C:
		}
	}
}

// returnsOwn reports whether d carries records of origin self with a
// counter above before: records this process did not write.
func returnsOwn(d *crdt.Delta, self string, before uint64) bool {
	for _, e := range d.Entries {
		_, _, dot, err := crdt.DecodeEntryHeader(e.Header)
		if err == nil && dot.Origin == self && dot.Counter > before {
			return true
		}
	}
	return false
}

// ownRecordsReturned wakes the republisher; it never blocks.
func (a *Agent) ownRecordsReturned() {
	select {
	case a.local.returned() <- struct{}{}:
	default:
	}
}

// reincarnationSettle lets a burst of returned records (a whole
// anti-entropy exchange) arrive before republishing once.
const reincarnationSettle = 500 * time.Millisecond

// watchReturnedRecords republishes this node's records whenever records
// of its own origin come back from peers, or peers may have forgotten them
// (forgotten.go).
func (a *Agent) watchReturnedRecords() {
	warned := false
	for {
		returned := false
		select {
		case <-a.ctx.Done():
			return
		case <-a.local.returned():
			returned = true
		case <-a.local.forgot():
		}
		select {
		case <-a.ctx.Done():
			return
		case <-time.After(reincarnationSettle):
		}
		// A burst may have signalled both.
		select {
		case <-a.local.returned():
			returned = true
		default:
		}
		select {
		case <-a.local.forgot():
		default:
		}
		if returned && !warned {
			warned = true
			a.log.Error("peers hold records of this node that this process did not write: the node key was used before with another data dir",
				"own_counter", a.replica.OwnCounter(),
				"action", "republishing this node's records under new versions and deleting those the registry does not hold",
				"hint", "keep the data dir across restarts, or give a rebuilt host a new key, certificate and node name (docs/OPERATIONS.md)")
		}
		if err := a.republishOwn(); err != nil && a.ctx.Err() == nil {
			a.log.Warn("republishing this node's records", "err", err)
		}
	}
}

// republishOwn makes this node's records in the replica exactly the
// registry's, written again under new dots.
func (a *Agent) republishOwn() error {
	if err := a.commit(a.ctx, func(now time.Time) (*crdt.Delta, error) { return a.replica.PutNode(a.nodeRecord(), now) }); err != nil {
		return err
	}
	l := &a.local
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.started {
		return nil
	}
	return a.batchLocked(func() error {
		for _, e := range a.replica.NodeServices(a.id) {
			if _, ok := l.services[e.Service.ID]; !ok {
				if err := a.commitDelete(crdt.KindService, e.Service.ID); err != nil {
					return err
				}
			}
		}
		for _, c := range a.replica.Checks(crdt.CheckFilter{Origin: a.id}) {
			if _, ok := l.checks[c.Check.ID]; !ok {
				if err := a.commitDelete(crdt.KindCheck, c.Check.ID); err != nil {
					return err
				}
			}
		}
		for _, s := range l.services {
			want := s.Def.toCRDT()
			if err := a.commitLocked(func(now time.Time) (*crdt.Delta, error) { return a.replica.PutService(want, now) }); err != nil {
				return err
			}
		}
		now := time.Now()
		for _, c := range l.checks {
			if err := a.writeCheckForcedLocked(c, now); err != nil {
				return err
			}
		}
		return nil
	})
}
