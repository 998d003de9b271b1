package sim

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/peerd/peerd/crdt"
)

// Cluster is a running simulation. Build it with Run.
type Cluster struct {
	sc     *Scenario
	net    *Network
	nodes  []*node
	index  map[string]int
	auth   authorizer
	authz  *authzState // intentions and revocations (authz.go)
	expiry *expiries   // certificate expiries (expiry.go)
	rot    *rotations  // root rotations, chains, the operator key (rotation.go)
	groups [][]int     // the current partition's groups (run goroutine), nil when healed

	restartErrs []string // restarts that failed (run goroutine): a violation each
	metrics     *metrics
	rng         *rand.Rand // workload and fault choices; used by the run goroutine only
	log         io.Writer
	start       time.Time

	ops       []*op
	byKey     map[string][]*op
	spans     []Span
	opens     map[string]int // open span label → index in spans
	reads     int
	writes    int
	nextVal   int
	phaseBase time.Duration // start of the fault phase, since start
	settle    time.Duration // when membership settled, since start

	// schedule records what the run goroutine did and chose (joins,
	// operations, faults with their random choices), each at its
	// scheduled offset: identical in every run of a seed (see note).
	schedule []string
	stage    string        // "setup", "faults" or "heal"
	at       time.Duration // scheduled offset of the action being played
}

// Span is a fault on the timeline, relative to the start of the fault phase.
type Span struct {
	Label      string
	Start, End time.Duration
}

// op is one acknowledged KV write, for the checkers.
type op struct {
	del    bool
	key    string
	value  string
	node   int
	dot    crdt.Dot
	hlc    crdt.HLC // its signed timestamp: a revoked writer's write counts if stamped before the revocation
	issued time.Duration
	dead   bool // superseded by a later op whose issuer had seen it
}

func (c *Cluster) seedFor(what string, i int) uint64 {
	h := fnv.New64a()
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], c.sc.Seed)
	binary.LittleEndian.PutUint64(b[8:], uint64(i))
	h.Write(b[:])
	h.Write([]byte(what))
	return h.Sum64() | 1
}

func (c *Cluster) transportOf(i int) *memberTransport {
	n := c.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.up {
		return nil
	}
	return n.tr
}

func (c *Cluster) logf(format string, args ...any) {
	if c.log != nil {
		fmt.Fprintf(c.log, "[%8.3fs] %s\n", time.Since(c.start).Seconds(), fmt.Sprintf(format, args...))
	}
}

func (c *Cluster) since() time.Duration { return time.Since(c.start) }

// note appends a line to the schedule. It carries the scheduled offset
// of the action, never a measured time: how long membership takes to
// settle, or a crash to stop its goroutines, varies between runs of a
// seed, the schedule does not.
func (c *Cluster) note(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	if c.stage == "faults" {
		line = fmt.Sprintf("%s %9.3fs %s", c.stage, c.at.Seconds(), line)
	} else {
		line = c.stage + " " + line
	}
	c.schedule = append(c.schedule, line)
}

// Run executes the scenario and returns its result. It is meant to run
// inside a testing/synctest bubble (virtual time); outside one it runs in
// real time. Progress lines go to log (nil: none). Checker failures are
// reported in Result.Violations, not as an error; the error is for a
// scenario that could not run.
func Run(sc Scenario, log io.Writer) (*Result, error) {
	if err := sc.setDefaults(); err != nil {
		return nil, err
	}
	c := &Cluster{
		sc:      &sc,
		net:     NewNetwork(sc.Peers, sc.Network, sc.Seed),
		index:   map[string]int{},
		auth:    authorizer{keys: map[string]ed25519.PublicKey{}},
		metrics: newMetrics(sc.Peers),
		log:     log,
		start:   time.Now(),
		byKey:   map[string][]*op{},
		opens:   map[string]int{},
		stage:   "setup",
	}
	c.rng = rand.New(rand.NewPCG(sc.Seed, 0x776f726b))
	skewRng := rand.New(rand.NewPCG(sc.Seed, 0x736b6577))
	for i := range sc.Peers {
		var seed [32]byte
		binary.LittleEndian.PutUint64(seed[:], c.seedFor("key", i))
		key := ed25519.NewKeyFromSeed(seed[:])
		id := fmt.Sprintf("n%05d", i)
		var skew time.Duration
		if sc.Skew > 0 {
			skew = time.Duration(skewRng.Int64N(int64(2*sc.Skew))) - sc.Skew
		}
		c.nodes = append(c.nodes, &node{c: c, idx: i, id: id, key: key, skew: skew})
		c.index[id] = i
		c.auth.keys[id] = key.Public().(ed25519.PublicKey)
	}
	c.expiry = c.newExpiries()
	c.rot = c.newRotations()
	c.authz = newAuthz(c)
	c.logf("seed %d: %d peers, mode %s, %s", sc.Seed, sc.Peers, sc.Mode, sc.Name)
	defer c.shutdown()

	// Start: each node joins up to three random earlier ones.
	for i, n := range c.nodes {
		var join []int
		if i > 0 {
			for k := 0; k < min(3, i); k++ {
				join = append(join, c.rng.IntN(i))
			}
		}
		c.note("start %s join %v", n.id, join)
		if err := n.start(join); err != nil {
			return nil, err
		}
		time.Sleep(sc.JoinStagger)
	}
	warm := c.waitMembers(60*time.Second + time.Duration(sc.Peers)*10*time.Millisecond)
	c.settle = c.since()
	c.logf("membership settled: %v (ok=%v)", c.settle.Round(time.Millisecond), warm)
	for i, n := range c.nodes {
		for s := range sc.Services {
			svc := crdt.Service{ID: fmt.Sprintf("svc%d-%d", s, i), Name: fmt.Sprintf("svc%d", s), Port: 8000 + s,
				Address: nodeIP(i)}
			if _, err := n.write(func(r *crdt.Replica, now time.Time) (*crdt.Delta, error) { return r.PutService(svc, now) }); err != nil {
				return nil, err
			}
		}
	}
	// Let the services spread, then measure an idle period.
	if sc.Services > 0 {
		time.Sleep(5 * time.Second)
	} else {
		time.Sleep(time.Second)
	}
	idleFrom := c.since()
	time.Sleep(sc.Idle)
	idleTo := c.since()

	// Fault phase.
	faultStart := time.Now()
	c.phaseBase = c.since()
	c.stage = "faults"
	c.runTimeline(faultStart)
	time.Sleep(time.Until(faultStart.Add(sc.Duration)))
	faultEnd := c.since()

	// Heal: links, link profile, crashed nodes.
	c.stage = "heal"
	c.note("heal all")
	c.net.Heal()
	c.groups = nil
	c.net.SetProfile(sc.Network)
	for _, n := range c.nodes {
		if !n.isUp() {
			c.restartNode(n)
		}
	}
	c.decommissionRevoked()
	c.closeSpans(time.Since(faultStart))
	healAt := time.Now()
	aeAtHeal := c.aeTotals()
	diff := c.difference()
	healSec := int(c.since() / time.Second)
	c.logf("faults stop, healed; %d ops (%d writes, %d reads)", c.reads+c.writes, c.writes, c.reads)
	converged, convergeTime := c.waitConverged(sc.Expect.ConvergeWithin)
	c.logf("converged=%v after %v", converged, convergeTime.Round(time.Millisecond))
	aeAtConv := c.aeTotals()
	var aeWire uint64
	tr := c.net.traffic()
	for s := healSec; s <= int(c.since()/time.Second) && s < len(tr); s++ {
		aeWire += tr[s].bytes[ClassAE]
	}
	// A quiet tail so that in-flight traffic is accounted for.
	time.Sleep(2 * time.Second)

	res := c.result(faultStart, healAt, converged, convergeTime, warm, idleFrom, idleTo, faultEnd,
		aeAtHeal, aeAtConv, diff, aeWire)
	c.logf("done: %d violations", len(res.Violations))
	return res, nil
}

// waitMembers waits until every node sees every node alive.
func (c *Cluster) waitMembers(limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	// memberlist is eventually consistent: a lost alive broadcast is
	// repaired by the next push-pull, minutes later at thousands of nodes.
	// Settled means every node sees at least 99.5% of the others.
	want := len(c.nodes) - 1 - (len(c.nodes)-1)/200
	for time.Now().Before(deadline) {
		ok := true
		for _, n := range c.nodes {
			n.aliveMu.Lock()
			k := len(n.alive)
			n.aliveMu.Unlock()
			if k < want {
				// The event-built set may miss an event; ask serf.
				if n.resyncAlive() < want {
					ok = false
					break
				}
			}
		}
		if ok {
			return true
		}
		time.Sleep(500 * time.Millisecond)
	}
	short, least := 0, len(c.nodes)
	for _, n := range c.nodes {
		n.aliveMu.Lock()
		k := len(n.alive)
		n.aliveMu.Unlock()
		if k != len(c.nodes)-1 {
			short++
			least = min(least, k)
		}
	}
	c.logf("membership incomplete: %d nodes see fewer than %d others (least %d)", short, len(c.nodes)-1, least)
	return false
}

// waitConverged polls for equal digests at every live node.
func (c *Cluster) waitConverged(limit time.Duration) (bool, time.Duration) {
	start := time.Now()
	for {
		if c.digestsEqual() {
			return true, time.Since(start)
		}
		if time.Since(start) > limit {
			return false, time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) digestsEqual() bool {
	var first []byte
	for _, n := range c.nodes {
		r := n.rep()
		if r == nil {
			continue
		}
		d := r.Digest()
		if first == nil {
			first = d[:]
		} else if !bytes.Equal(first, d[:]) {
			return false
		}
	}
	return true
}

// action is one entry of the fault-phase timeline.
type action struct {
	at time.Duration
	do func()
}

// runTimeline builds the workload and fault timeline from the seeded
// generator and plays it.
func (c *Cluster) runTimeline(start time.Time) {
	sc := c.sc
	c.expiry.start.Store(start.UnixNano())
	var acts []action
	if sc.Workload.Rate > 0 {
		for t := sc.Workload.Start; ; {
			t += time.Duration(c.rng.ExpFloat64() / sc.Workload.Rate * float64(time.Second))
			if t >= sc.Workload.Stop {
				break
			}
			acts = append(acts, action{at: t, do: c.operation})
		}
	}
	acts = append(acts, c.intentionActions()...)
	for _, e := range sc.Events {
		acts = append(acts, c.expand(e)...)
	}
	sort.SliceStable(acts, func(i, j int) bool { return acts[i].at < acts[j].at })
	for _, a := range acts {
		time.Sleep(time.Until(start.Add(a.at)))
		c.at = a.at
		a.do()
	}
}

func (c *Cluster) liveNodes() []int {
	var out []int
	for i, n := range c.nodes {
		if n.isUp() && !c.isRevoked(i) {
			out = append(out, i)
		}
	}
	return out
}

// operation performs one random workload operation at a random live node.
func (c *Cluster) operation() {
	live := c.liveNodes()
	if len(live) == 0 {
		return
	}
	w := c.sc.Workload
	i := live[c.rng.IntN(len(live))]
	n := c.nodes[i]
	key := fmt.Sprintf("k/%04d", c.rng.IntN(w.Keys))
	r := c.rng.Float64()
	if r < w.Reads {
		if rep := n.rep(); rep != nil {
			rep.KVGet(key)
		}
		c.reads++
		c.note("read %s %s", n.id, key)
		return
	}
	del := c.rng.Float64() < w.Deletes
	c.nextVal++
	value := fmt.Sprintf("%s%d@%d", payloadMarker, c.nextVal, i)
	o := &op{del: del, key: key, value: value, node: i, issued: c.since()}
	healthy := !c.net.Faulty() && c.net.Profile() == c.sc.Network && len(live) == len(c.nodes)
	// What is issued is part of the schedule; its outcome is not: a
	// delete of a key the peer has not received yet writes nothing, and
	// the dot depends on how many of the peer's writes took effect.
	verb := "put"
	if del {
		verb = "delete"
	}
	c.note("%s %s %s %q healthy=%v", verb, n.id, key, value, healthy)
	var seenBefore []*op
	d, err := n.write(func(rep *crdt.Replica, now time.Time) (*crdt.Delta, error) {
		// Which earlier ops on this key has the issuer seen? Those it
		// supersedes (causal register semantics).
		heads := rep.Heads()
		cur, _ := rep.KVGet(key)
		for _, p := range c.byKey[key] {
			if p.dead {
				continue
			}
			if heads.Covers(p.dot) || (!p.del && kvHas(cur, p.value)) {
				seenBefore = append(seenBefore, p)
			}
		}
		if del {
			return rep.KVDelete(key, now)
		}
		return rep.KVPut(key, []byte(value), 0, now)
	})
	if err != nil || d == nil {
		return
	}
	c.writes++
	for _, p := range seenBefore {
		p.dead = true
	}
	if _, _, dot, err := crdt.DecodeEntryHeader(d.Entries[0].Header); err == nil {
		o.dot = dot
	}
	if hlc, err := crdt.EntryHLC(d.Entries[0].Header); err == nil {
		o.hlc = hlc
	}

	c.ops = append(c.ops, o)
	c.byKey[key] = append(c.byKey[key], o)
	c.metrics.track(i, d, time.Now(), healthy)
}

func kvHas(p crdt.KVPair, v string) bool {
	if string(p.Value) == v {
		return true
	}
	for _, s := range p.Conflicts {
		if string(s.Value) == v {
			return true
		}
	}
	return false
}

func (c *Cluster) openSpan(label string) {
	if _, ok := c.opens[label]; ok {
		return
	}
	c.opens[label] = len(c.spans)
	c.spans = append(c.spans, Span{Label: label, Start: c.faultOffset(), End: -1})
}

func (c *Cluster) closeSpan(label string) {
	if i, ok := c.opens[label]; ok {
		c.spans[i].End = c.faultOffset()
		delete(c.opens, label)
	}
}

func (c *Cluster) closeSpans(at time.Duration) {
	for l, i := range c.opens {
		c.spans[i].End = at
		delete(c.opens, l)
	}
}

// faultOffset is set while the timeline runs.
func (c *Cluster) faultOffset() time.Duration { return time.Since(c.start) - c.faultBase() }

func (c *Cluster) faultBase() time.Duration { return c.phaseBase }

func (c *Cluster) restartNode(n *node) {
	var join []int
	for _, j := range c.liveNodes() {
		if j != n.idx {
			join = append(join, j)
		}
	}
	c.rng.Shuffle(len(join), func(a, b int) { join[a], join[b] = join[b], join[a] })
	join = join[:min(3, len(join))]
	c.note("restart %s join %v", n.id, join)
	if err := n.restart(join); err != nil {
		c.logf("restart %s: %v", n.id, err)
		c.restartErrs = append(c.restartErrs, fmt.Sprintf("%s could not restart from its state: %v", n.id, err))
		return
	}
	c.metrics.restarted(n.id)
	c.closeSpan("crash " + n.id)
	c.logf("restart %s", n.id)
}

func (c *Cluster) crashNode(n *node) {
	if !n.isUp() {
		return
	}
	c.note("crash %s", n.id)
	c.metrics.crashed(n.id, time.Now())
	n.crash()
	if c.sc.Membership == MembershipStatic {
		c.staticFail(n)
	}
	c.openSpan("crash " + n.id)
	c.logf("crash %s", n.id)
}

// expand turns an event into timeline actions.
func (c *Cluster) expand(e Event) []action {
	sc := c.sc
	at := e.At
	switch e.Action {
	case "partition":
		return []action{{at, func() {
			groups := c.split(e)
			c.note("partition %v asymmetric=%v", groups, e.Asymmetric)
			c.net.Partition(groups, e.Asymmetric)
			c.groups = groups
			sizes := make([]int, len(groups))
			for i, g := range groups {
				sizes[i] = len(g)
			}
			c.openSpan(fmt.Sprintf("partition %v", sizes))
			c.logf("partition %v asymmetric=%v", sizes, e.Asymmetric)
		}}}
	case "isolate":
		return []action{{at, func() {
			i := e.Node
			if i < 0 {
				live := c.liveNodes()
				i = live[c.rng.IntN(len(live))]
			}
			c.note("isolate %s", c.nodes[i].id)
			c.net.Isolate(i, true)
			c.openSpan("isolate " + c.nodes[i].id)
			c.logf("isolate %s", c.nodes[i].id)
		}}}
	case "replay_intention", "revoke":
		return c.authzEvent(e)
	case "rotate", "delegate":
		return c.rotationEvent(e)
	case "expire":
		return c.expireEvent(e)
	case "heal":
		return []action{{at, func() {
			c.note("heal")
			c.net.Heal()
			c.groups = nil
			for l := range c.opens {
				if !bytes.HasPrefix([]byte(l), []byte("crash ")) && !bytes.HasPrefix([]byte(l), []byte("network")) {
					c.closeSpan(l)
				}
			}
			c.logf("heal")
		}}}
	case "swizzle":
		k := max(1, int(e.Fraction*float64(sc.Peers)))
		step := e.Step
		if step <= 0 {
			step = time.Second
		}
		set := c.rng.Perm(sc.Peers)[:k]
		restore := slices.Clone(set)
		c.rng.Shuffle(len(restore), func(a, b int) { restore[a], restore[b] = restore[b], restore[a] })
		var out []action
		for j, i := range set {
			out = append(out, action{at + time.Duration(j)*step, func() {
				c.note("swizzle cut %s", c.nodes[i].id)
				c.net.Isolate(i, true)
				c.openSpan("swizzle " + c.nodes[i].id)
			}})
		}
		base := at + time.Duration(len(set))*step
		for j, i := range restore {
			out = append(out, action{base + time.Duration(j)*step, func() {
				c.note("swizzle restore %s", c.nodes[i].id)
				c.net.Isolate(i, false)
				c.closeSpan("swizzle " + c.nodes[i].id)
			}})
		}
		c.logf("swizzle %d nodes from %v, step %v", k, at, step)
		return out
	case "crash":
		return []action{{at, func() {
			if e.Node >= 0 {
				c.crashNode(c.nodes[e.Node])
				return
			}
			live := c.liveNodes()
			c.rng.Shuffle(len(live), func(a, b int) { live[a], live[b] = live[b], live[a] })
			for _, i := range live[:min(max(1, e.Count), len(live)-1)] {
				c.crashNode(c.nodes[i])
			}
		}}}
	case "restart":
		return []action{{at, func() {
			for i, n := range c.nodes {
				if (e.Node < 0 || e.Node == i) && !n.isUp() {
					c.restartNode(n)
				}
			}
		}}}
	case "rolling":
		count := e.Count
		if count <= 0 || count > sc.Peers {
			count = sc.Peers
		}
		step, down := e.Step, e.Down
		if step <= 0 {
			step = 5 * time.Second
		}
		if down <= 0 {
			down = step / 2
		}
		var out []action
		for j := range count {
			n := c.nodes[j]
			out = append(out,
				action{at + time.Duration(j)*step, func() { c.crashNode(n) }},
				action{at + time.Duration(j)*step + down, func() { c.restartNode(n) }})
		}
		return out
	case "network":
		return []action{{at, func() {
			p := c.net.Profile()
			set := e.setLink
			if set == nil || set["latency"] {
				p.Latency = e.Link.Latency
			}
			if set == nil || set["jitter"] {
				p.Jitter = e.Link.Jitter
			}
			if set == nil || set["loss"] {
				p.Loss = e.Link.Loss
			}
			if set == nil || set["duplicate"] {
				p.Duplicate = e.Link.Duplicate
			}
			if set == nil || set["reorder"] {
				p.Reorder = e.Link.Reorder
			}
			if set == nil || set["bandwidth"] {
				p.Bandwidth = e.Link.Bandwidth
			}
			c.note("network %+v", p)
			c.net.SetProfile(p)
			for l := range c.opens {
				if bytes.HasPrefix([]byte(l), []byte("network")) {
					c.closeSpan(l)
				}
			}
			if p != sc.Network {
				c.openSpan(fmt.Sprintf("network loss=%.2f lat=%v", p.Loss, p.Latency))
			}
			c.logf("network %+v", p)
		}}}
	}
	return nil
}

// split draws the partition groups of a partition event.
func (c *Cluster) split(e Event) [][]int {
	perm := c.rng.Perm(c.sc.Peers)
	sides := e.Sides
	if len(sides) == 0 {
		g := max(2, e.Groups)
		for range g {
			sides = append(sides, 1/float64(g))
		}
	}
	var total float64
	for _, s := range sides {
		total += s
	}
	var groups [][]int
	from := 0
	for i, s := range sides {
		to := from + int(s/total*float64(len(perm))+0.5)
		if i == len(sides)-1 || to > len(perm) {
			to = len(perm)
		}
		groups = append(groups, perm[from:to])
		from = to
	}
	return groups
}

func (c *Cluster) shutdown() {
	for _, n := range c.nodes {
		n.crash()
	}
	c.net.Close()
}

// Membership kinds.
const (
	// MembershipSerf runs real serf/memberlist on every peer.
	MembershipSerf = "serf"
	// MembershipStatic replaces serf by an oracle: every peer knows every
	// peer that is up; a crash is noticed by everyone DetectDelay later; a
	// partition is not noticed (sends across it fail). For scale runs
	// where serf's own cost dominates.
	MembershipStatic = "static"
)

// staticJoin adds n to every live view and gives n every live peer.
func (c *Cluster) staticJoin(n *node) {
	alive := map[string]bool{}
	for _, m := range c.nodes {
		if m == n || !m.isUp() {
			continue
		}
		alive[m.id] = true
		m.aliveMu.Lock()
		if m.alive != nil {
			m.alive[n.id] = true
			delete(m.failed, n.id)
		}
		m.aliveMu.Unlock()
		m.membersDirty.Store(true)
	}
	n.aliveMu.Lock()
	n.alive = alive
	n.aliveMu.Unlock()
	n.membersDirty.Store(true)
}

// staticFail drops n from every view DetectDelay after its crash, unless
// it restarted meanwhile.
func (c *Cluster) staticFail(n *node) {
	time.AfterFunc(c.sc.DetectDelay, func() {
		if n.isUp() {
			return
		}
		now := time.Now()
		for _, m := range c.nodes {
			if m == n || !m.isUp() {
				continue
			}
			m.aliveMu.Lock()
			delete(m.alive, n.id)
			if m.failed != nil {
				m.failed[n.id] = true
			}
			m.aliveMu.Unlock()
			m.membersDirty.Store(true)
			c.metrics.failed(m.idx, n.id, now)
		}
	})
}
