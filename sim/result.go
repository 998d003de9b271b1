package sim

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/gossip"
)

// Result is what a run measured and what its checkers found.
type Result struct {
	Scenario string
	Seed     uint64
	Mode     string
	Peers    int

	MembershipSettled bool          // every node saw every node alive before the faults
	SettleTime        time.Duration // virtual time from the first start to that
	Writes, Reads     int
	Converged         bool          // equal digests at every live peer after the heal
	ConvergeTime      time.Duration // from the heal to equal digests
	FaultPhase        time.Duration

	// Convergence of updates issued while the network was healthy.
	PerPeer          Dist            // arrival delay at each other peer
	ReachAll         Dist            // time to reach every live peer
	ReachAllTimes    []time.Duration // for the CDF plot
	TrackedUpdates   int
	IncompleteUpdate int // tracked updates some live peer lacks at the end

	// Traffic.
	TransmissionsPerNodePerUpdate float64 // payload copies sent by dissemination / (writes × peers)
	AECopiesPerNodePerUpdate      float64 // payload copies sent by anti-entropy / (writes × peers)
	MsgsPerOp                     float64 // every message (all classes) in the fault phase / operations
	DisseminationMsgsPerOp        float64 // Plumtree + anti-entropy messages (or serf traffic in baseline) / operations
	IdleBytesPerNodeSec           [numClasses]float64
	LoadBytesPerNodeSec           [numClasses]float64
	Traffic                       []bucket

	Detection Dist // crash → each observer's "failed" event

	// Anti-entropy repair after the heal.
	RepairBytes     uint64 // bytes of batches received through anti-entropy from the heal to convergence
	RepairWireBytes uint64 // anti-entropy wire bytes in that window (both directions, digests included)
	DifferenceBytes uint64 // estimate of the entries live peers lacked at the heal × mean entry size

	Plumtree gossip.PlumtreeStats // summed over live nodes
	AE       gossip.AntiEntropyStats

	Authz    AuthzResult    // intentions and revocations (authz.go)
	Rotation RotationResult // root rotations and the operator key (rotation.go)

	Spans      []Span
	Violations []string

	// Schedule is what the run did and chose, in order: peer starts and
	// their join targets, every operation (peer, key, value, dot), every
	// fault with its random choices, restarts. It depends only on the
	// scenario and the seed (TestReplaySchedule); see docs/SIM.md.
	Schedule []string
}

// ScheduleFingerprint is a short hash of Schedule, to compare runs.
func (r *Result) ScheduleFingerprint() string {
	h := sha256.New()
	for _, l := range r.Schedule {
		h.Write([]byte(l))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// OK reports whether every checker passed.
func (r *Result) OK() bool { return len(r.Violations) == 0 }

func (c *Cluster) violation(r *Result, format string, args ...any) {
	if len(r.Violations) < 20 {
		r.Violations = append(r.Violations, fmt.Sprintf(format, args...))
	}
}

// aeTotals sums the anti-entropy counters of live nodes.
func (c *Cluster) aeTotals() gossip.AntiEntropyStats {
	var t gossip.AntiEntropyStats
	for _, n := range c.nodes {
		if !n.isUp() {
			continue
		}
		_, s := n.stats()
		t.Rounds += s.Rounds
		t.Exchanges += s.Exchanges
		t.DigestsEqual += s.DigestsEqual
		t.DigestsDiffer += s.DigestsDiffer
		t.Chunks += s.Chunks
		t.BatchesPulled += s.BatchesPulled
		t.BytesPulled += s.BytesPulled
		t.BatchesPushed += s.BatchesPushed
		t.BytesPushed += s.BytesPushed
		t.ApplyErrors += s.ApplyErrors
		t.ExchangeErrors += s.ExchangeErrors
		t.Served += s.Served
	}
	return t
}

// difference estimates what the live peers lack: per origin, the gap
// between the highest head and each peer's head, times the mean size of
// a workload entry.
func (c *Cluster) difference() uint64 {
	maxHead := map[string]uint64{}
	var heads []map[string]uint64
	for _, n := range c.nodes {
		r := n.rep()
		if r == nil {
			continue
		}
		h := r.Heads()
		heads = append(heads, h)
		for o, v := range h {
			maxHead[o] = max(maxHead[o], v)
		}
	}
	var gap uint64
	for _, h := range heads {
		for o, v := range maxHead {
			gap += v - h[o]
		}
	}
	return gap * uint64(c.meanEntry())
}

// meanEntry is the mean encoded size of a workload entry (one KV put).
func (c *Cluster) meanEntry() int {
	for _, n := range c.nodes {
		r := n.rep()
		if r == nil || len(c.ops) == 0 {
			continue
		}
		ds := r.DeltaSince(nil, 1<<20)
		total, count := 0, 0
		for _, d := range ds {
			for _, e := range d.Entries {
				total += len(e.Header) + len(e.Sig) + len(e.Body)
				count++
			}
		}
		if count > 0 {
			return total / count
		}
	}
	return 0
}

func (c *Cluster) result(faultStart, healAt time.Time, converged bool, convergeTime time.Duration, warm bool,
	idleFrom, idleTo, faultEnd time.Duration, aeAtHeal, aeAtConv gossip.AntiEntropyStats, diff uint64,
	aeWire uint64) *Result {
	sc := c.sc
	r := &Result{
		Scenario: sc.Name, Seed: sc.Seed, Mode: sc.Mode, Peers: sc.Peers,
		MembershipSettled: warm, SettleTime: c.settle,
		Writes: c.writes, Reads: c.reads, Converged: converged, ConvergeTime: convergeTime,
		FaultPhase: sc.Duration, Spans: c.spans, Schedule: c.schedule, Detection: c.metrics.detection(),
		RepairBytes: aeAtConv.BytesPulled - aeAtHeal.BytesPulled, RepairWireBytes: aeWire, DifferenceBytes: diff,
	}
	live := make([]bool, len(c.nodes))
	for i, n := range c.nodes {
		live[i] = n.isUp()
	}
	r.PerPeer, r.ReachAll, r.ReachAllTimes, r.IncompleteUpdate, r.TrackedUpdates = c.metrics.updateSummary(live)
	for _, n := range c.nodes {
		if !n.isUp() {
			continue
		}
		ds, _ := n.stats()
		p := ds.Plumtree
		r.Plumtree.Broadcasts += p.Broadcasts
		r.Plumtree.Delivered += p.Delivered
		r.Plumtree.Duplicates += p.Duplicates
		r.Plumtree.PayloadsSent += p.PayloadsSent
		r.Plumtree.PayloadBytesSent += p.PayloadBytesSent
		r.Plumtree.IHavesSent += p.IHavesSent
		r.Plumtree.GraftsSent += p.GraftsSent
		r.Plumtree.PrunesSent += p.PrunesSent
		r.Plumtree.MissingGivenUp += p.MissingGivenUp
	}
	r.AE = c.aeTotals()

	// Traffic windows, in whole seconds.
	r.Traffic = c.net.traffic()
	sum := func(from, to time.Duration) (b bucket, secs float64) {
		lo, hi := int(from/time.Second), int(to/time.Second)
		for s := lo; s < hi && s < len(r.Traffic); s++ {
			for k := range numClasses {
				b.bytes[k] += r.Traffic[s].bytes[k]
				b.msgs[k] += r.Traffic[s].msgs[k]
				b.copies[k] += r.Traffic[s].copies[k]
			}
		}
		return b, float64(max(1, hi-lo))
	}
	idle, idleSecs := sum(idleFrom+time.Second, idleTo)
	phase := c.phaseBase
	load, loadSecs := sum(phase+sc.Workload.Start+time.Second, phase+sc.Workload.Stop)
	for k := range numClasses {
		r.IdleBytesPerNodeSec[k] = float64(idle.bytes[k]) / idleSecs / float64(sc.Peers)
		r.LoadBytesPerNodeSec[k] = float64(load.bytes[k]) / loadSecs / float64(sc.Peers)
	}
	// Fault phase plus the convergence tail: every copy of the workload's
	// values is sent in there.
	all, _ := sum(phase, time.Since(c.start)+time.Second)
	if c.writes > 0 {
		diss := ClassTree
		if sc.Mode == ModeMemberlist {
			diss = ClassMember
		}
		den := float64(c.writes) * float64(sc.Peers)
		r.TransmissionsPerNodePerUpdate = float64(all.copies[diss]) / den
		r.AECopiesPerNodePerUpdate = float64(all.copies[ClassAE]) / den
	}
	if ops := c.writes + c.reads; ops > 0 {
		ph, _ := sum(phase, faultEnd)
		var total uint64
		for k := range numClasses {
			total += ph.msgs[k]
		}
		r.MsgsPerOp = float64(total) / float64(ops)
		d := ph.msgs[ClassTree] + ph.msgs[ClassAE]
		if sc.Mode == ModeMemberlist {
			d += ph.msgs[ClassMember]
		}
		r.DisseminationMsgsPerOp = float64(d) / float64(ops)
	}

	// Checkers.
	if !converged {
		c.violation(r, "live peers did not reach equal digests within %v of the heal", sc.Expect.ConvergeWithin)
	}
	for _, e := range c.restartErrs {
		c.violation(r, "%s", e) // a peer that cannot restart is gone for good
	}
	c.checkKV(r)
	c.checkReadsAgree(r)
	c.checkAuthz(r)
	c.checkRotations(r)
	x := sc.Expect
	if x.P50Convergence > 0 && r.ReachAll.P50 > x.P50Convergence {
		c.violation(r, "p50 convergence %v > %v", r.ReachAll.P50, x.P50Convergence)
	}
	if x.P99Convergence > 0 && r.ReachAll.P99 > x.P99Convergence {
		c.violation(r, "p99 convergence %v > %v", r.ReachAll.P99, x.P99Convergence)
	}
	if x.MaxConvergence > 0 && r.ReachAll.Max > x.MaxConvergence {
		c.violation(r, "max convergence %v > %v", r.ReachAll.Max, x.MaxConvergence)
	}
	if x.MsgsPerOp > 0 && r.MsgsPerOp > x.MsgsPerOp {
		c.violation(r, "messages per op %.1f > %.1f", r.MsgsPerOp, x.MsgsPerOp)
	}
	if x.TransmissionsPerUpdate > 0 && r.TransmissionsPerNodePerUpdate > x.TransmissionsPerUpdate {
		c.violation(r, "transmissions per node per update %.2f > %.2f", r.TransmissionsPerNodePerUpdate, x.TransmissionsPerUpdate)
	}
	return r
}

// checkReadsAgree: every live replica must read the same values (and
// conflict siblings) for every workload key. Equal digests say the
// replicas saw the same record versions, not that they agree on which are
// live: a version killed on one replica and not on another (a context
// applied in one place only) shows only here.
func (c *Cluster) checkReadsAgree(r *Result) {
	keys := slices.Sorted(maps.Keys(c.byKey))
	var refID string
	var ref map[string]string
	reported := 0
	for _, n := range c.nodes {
		rep := n.rep()
		if rep == nil {
			continue
		}
		view := make(map[string]string, len(keys))
		for _, key := range keys {
			view[key] = readView(rep, key)
		}
		if ref == nil {
			refID, ref = n.id, view
			continue
		}
		for _, key := range keys {
			if view[key] != ref[key] && reported < 5 {
				reported++
				c.violation(r, "live peers read %s differently: %s %s, %s %s", key, refID, ref[key], n.id, view[key])
			}
		}
	}
}

// readView is what a read of key shows: its values, sorted, or "absent".
func readView(rep *crdt.Replica, key string) string {
	p, ok := rep.KVGet(key)
	if !ok {
		return "absent"
	}
	vals := []string{string(p.Value)}
	for _, s := range p.Conflicts {
		vals = append(vals, string(s.Value))
	}
	slices.Sort(vals)
	return fmt.Sprintf("%q", vals)
}

// checkKV checks every live replica against the causal history of the
// workload: a write not superseded (no later op on its key was issued by a
// peer that had seen it) must be visible; a superseded one — deleted or
// overwritten — must not be (no lost acknowledged write, no resurrection);
// no value appears that nobody wrote. A write by a peer revoked later
// counts as written only if stamped before its revocation (crdt's rule
// for revoked origins); a later one must not be visible anywhere.
func (c *Cluster) checkKV(r *Result) {
	revokedAt := c.revocationTimes()
	written := map[string]*op{}
	for _, o := range c.ops {
		if !o.del {
			written[o.value] = o
		}
	}
	for _, n := range c.nodes {
		rep := n.rep()
		if rep == nil {
			continue
		}
		for key, ops := range c.byKey {
			p, ok := rep.KVGet(key)
			present := map[string]bool{}
			if ok {
				present[string(p.Value)] = true
				for _, s := range p.Conflicts {
					present[string(s.Value)] = true
				}
			}
			for v := range present {
				if o, ok := written[v]; !ok || o.key != key {
					c.violation(r, "%s: key %s holds %q, never written there", n.id, key, v)
				}
			}
			for _, o := range ops {
				if o.del {
					continue
				}
				if at, ok := revokedAt[o.node]; ok && !o.dead && o.hlc.Physical() >= uint64(at.UnixMilli()) {
					if present[o.value] {
						c.violation(r, "%s: write by %s stamped %v, after its revocation at %v, is visible: %s=%s",
							n.id, c.nodes[o.node].id, o.hlc.Time(), at, key, o.value)
					}
					continue
				}
				switch {
				case !o.dead && !present[o.value]:
					c.violation(r, "%s: acknowledged write lost: %s=%s (by %s at %v)", n.id, key, o.value, c.nodes[o.node].id, o.issued)
				case o.dead && present[o.value]:
					c.violation(r, "%s: superseded write resurrected: %s=%s (by %s at %v)", n.id, key, o.value, c.nodes[o.node].id, o.issued)
				}
			}
		}
	}
}
