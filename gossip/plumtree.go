package gossip

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
)

// PlumtreeConfig configures the Plumtree state machine. Durations are in
// ticks: the state machine has no clock; its driver calls Tick at a fixed
// interval (DriverConfig.TickInterval, 100 ms by default).
type PlumtreeConfig struct {
	// Self is this node's peer ID. Required.
	Self string
	// Fanout is how many neighbours a node keeps at least; it picks
	// random members to reach it, and accepts neighbours that pick it.
	// 0 means 4.
	Fanout int
	// MaxPeers bounds the view; a NEIGHBOR beyond it is refused with
	// DISCONNECT. 0 means 3·Fanout.
	MaxPeers int
	// AckTimeout is how many ticks a NEIGHBOR waits for its answer
	// (NEIGHBOR_ACK, DISCONNECT, or any other message from that peer:
	// a peer only sends to its own neighbours) before it is sent again.
	// 0 means 3.
	AckTimeout int
	// NeighborAttempts is how many NEIGHBORs are sent without an answer
	// before the peer is dropped from the view (with a DISCONNECT, in case
	// it did add us) and replaced. 0 means 3.
	NeighborAttempts int
	// NeighborRefresh: every that many ticks, each neighbour not heard
	// from since the last refresh is asked again with NEIGHBOR, which it
	// must acknowledge like a new one: a link that became one-sided (lost
	// or reordered control messages, a restarted peer) is repaired, or
	// dropped and replaced. Refused peers are not picked again for
	// 3·NeighborRefresh ticks. 0 means 50.
	NeighborRefresh int
	// MaxInvites bounds the remembered peers whose NEIGHBOR (or other
	// message) was refused because membership did not allow them yet;
	// when SetPeers later allows one, it is asked to be a neighbour (it
	// does not ask again by itself: it was refused). 0 means 64.
	MaxInvites int
	// InviteTicks is how long such a refused peer is remembered.
	// 0 means 600 (60 s at 100 ms ticks).
	InviteTicks int
	// TemplateAge is how many ticks old a tree must be to serve as the
	// template of a new origin's tree: a younger tree may not be known
	// to every node yet, and nodes that copy different templates build
	// trees with holes. 0 means 20.
	TemplateAge int
	// GraftTimeout is how many ticks a node waits, after the first IHAVE
	// for a message it lacks, before it GRAFTs the announcer. 0 means 3.
	GraftTimeout int
	// GraftRetry is how many ticks it waits before grafting the next
	// announcer when a graft did not bring the message. 0 means 2.
	GraftRetry int
	// GraftAttempts is how many GRAFTs are sent for one missing message
	// (rotating over its announcers) before giving up on it; anti-entropy
	// repairs what is given up. 0 means 6.
	GraftAttempts int
	// MaxTrees bounds the per-origin trees remembered; beyond it the least
	// recently used is forgotten (its next message starts again from a
	// copy of another tree). 0 means 4096.
	MaxTrees int
	// TreeTicks forgets a tree unused for that long. 0 means 6000
	// (10 min at 100 ms ticks).
	TreeTicks int
	// MaxLazyQueue bounds the IDs waiting to be announced to one peer;
	// beyond it the oldest are dropped (anti-entropy repairs).
	// 0 means 4096.
	MaxLazyQueue int
	// CacheBytes bounds the payloads kept to answer GRAFTs. 0 means 32 MiB.
	CacheBytes int
	// CacheTicks is how long a payload is kept to answer GRAFTs.
	// 0 means 600 (60 s at 100 ms ticks).
	CacheTicks int
	// SeenTicks is how long a message ID is remembered to detect
	// duplicates. 0 means 3000 (5 min at 100 ms ticks).
	SeenTicks int
	// MaxSeen bounds the remembered IDs. 0 means 65536.
	MaxSeen int
	// MaxMissing bounds the announced-but-missing messages being tracked.
	// 0 means 4096.
	MaxMissing int
	// MaxAnnouncers bounds the peers remembered per missing message.
	// 0 means 8.
	MaxAnnouncers int
	// MaxPending bounds payloads delivered but not yet Validated.
	// 0 means 1024.
	MaxPending int
	// Seed seeds the random choice of neighbours; the same seed and the
	// same inputs give the same outputs.
	Seed uint64
}

func (c *PlumtreeConfig) setDefaults() error {
	if c.Self == "" {
		return errors.New("gossip: plumtree: Self is required")
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Fanout, 4)
	def(&c.MaxPeers, 3*c.Fanout)
	if c.MaxPeers < c.Fanout {
		return fmt.Errorf("gossip: plumtree: MaxPeers %d below Fanout %d", c.MaxPeers, c.Fanout)
	}
	def(&c.AckTimeout, 3)
	def(&c.NeighborAttempts, 3)
	def(&c.NeighborRefresh, 50)
	def(&c.MaxInvites, 64)
	def(&c.InviteTicks, 600)
	def(&c.TemplateAge, 20)
	def(&c.GraftTimeout, 3)
	def(&c.GraftRetry, 2)
	def(&c.GraftAttempts, 6)
	def(&c.MaxTrees, 4096)
	def(&c.TreeTicks, 6000)
	def(&c.MaxLazyQueue, 4096)
	def(&c.CacheBytes, 32<<20)
	def(&c.CacheTicks, 600)
	def(&c.SeenTicks, 3000)
	def(&c.MaxSeen, 65536)
	def(&c.MaxMissing, 4096)
	def(&c.MaxAnnouncers, 8)
	def(&c.MaxPending, 1024)
	return nil
}

// Envelope is a message the state machine wants sent to a peer.
type Envelope struct {
	To  string
	Msg Message
}

// Delivery is a payload seen for the first time. The caller hands it to
// the application and reports the verdict with Plumtree.Validated; only
// valid payloads are forwarded.
type Delivery struct {
	ID      MessageID
	From    string
	Payload []byte
}

// PlumtreeStats are cumulative counters and current sizes.
type PlumtreeStats struct {
	Broadcasts       uint64 // payloads originated here
	Delivered        uint64 // first receipts handed to the application
	Accepted         uint64 // deliveries validated as good
	Rejected         uint64 // deliveries validated as bad (not forwarded)
	Duplicates       uint64 // payloads received again
	PayloadsSent     uint64 // GOSSIP messages sent (eager pushes + graft answers)
	PayloadBytesSent uint64 // payload bytes in those
	IHavesSent       uint64 // IHAVE messages
	IHaveIDsSent     uint64 // IDs announced in them
	GraftsSent       uint64 // GRAFT messages
	PrunesSent       uint64 // PRUNE messages
	ControlSent      uint64 // NEIGHBOR, NEIGHBOR_ACK and DISCONNECT messages
	NeighborTimeouts uint64 // neighbours dropped after NeighborAttempts unanswered NEIGHBORs
	Invited          uint64 // refused peers asked to be neighbours once membership allowed them
	GraftsServed     uint64 // payloads sent in answer to a GRAFT
	MissingGivenUp   uint64 // announced messages never obtained by graft
	Dropped          uint64 // announcements or payloads dropped by a bound
	Neighbors        int    // current view size
	PendingNeighbors int    // neighbours whose NEIGHBOR is not answered yet
	Trees            int    // per-origin trees remembered
	SharedEager      int    // eager links of the shared (template) tree
	Cached           int    // payloads in the graft cache
	CachedBytes      int
}

type seenState uint8

const (
	seenPending seenState = iota + 1
	seenAccepted
	seenRejected
)

type seenEntry struct {
	tick  int64
	state seenState
}

type cacheEntry struct {
	payload []byte
	round   uint32 // round to send: received round + 1
	tree    TreeKey
	tick    int64
}

type announcer struct {
	peer  string
	round uint32
}

type ihaveEntry struct {
	id    MessageID
	round uint32
	tree  TreeKey
}

type missingEntry struct {
	tree       TreeKey
	deadline   int64
	attempts   int
	announcers []announcer
}

type pendingEntry struct {
	from    string
	round   uint32
	tree    TreeKey
	payload []byte
}

// tree is the per-origin state: which neighbours are lazy for messages of
// that origin (every other neighbour is eager).
type tree struct {
	lazy map[string]struct{}
	// parent is the neighbour that delivered the first copy with the
	// fewest hops among the messages of this tree first received within
	// parentTicks of each other (usually: the last first copy); a
	// duplicate or a PRUNE from it does not make it lazy (see onGossip).
	parent      string
	parentRound uint32
	parentTick  int64
	used        int64 // tick of last use
	created     int64
}

// link is the state of one neighbour in the view.
type link struct {
	heard int64 // tick it last sent us something
	// attempts counts the NEIGHBORs sent to it and not answered yet; 0
	// means the link is confirmed. asked is the tick of the last one.
	attempts int
	asked    int64
}

// Plumtree is the epidemic broadcast tree protocol (Leitão, Pereira,
// Rodrigues, "Epidemic Broadcast Trees", SRDS 2007) as a deterministic
// state machine: no goroutines, no I/O, no clock. Inputs are SetPeers,
// Broadcast, Receive, Validated and Tick; outputs are Deliveries (returned
// by Receive) and Envelopes (collected with Outbox). It is not safe for
// concurrent use; the Driver serialises access.
//
// Unlike the paper's single shared tree, eager/lazy links are kept per
// origin (TreeKey): with one shared tree, concurrent broadcasts from
// different origins prune each other's tree links and the tree never
// settles (see docs/GOSSIP.md). A new origin's tree starts as a copy of
// another origin's tree (templateFor); a shared tree, updated by every
// PRUNE and GRAFT as in the paper, is the template when no tree is known.
type Plumtree struct {
	cfg  PlumtreeConfig
	rng  *rand.Rand
	tick int64

	members    map[string]struct{} // peers membership allows
	memberList []string            // sorted members, for random picks
	view       map[string]*link    // neighbours
	cooldown   map[string]int64    // peer -> tick before which we will not pick it
	invites    map[string]int64    // non-member we refused -> tick refused
	shared     *tree               // template for new trees when none is known
	trees      map[TreeKey]*tree
	lazyQueue  map[string][]ihaveEntry // announcements waiting for the next Tick

	seen      map[MessageID]*seenEntry
	seenOrder fifo
	cache     map[MessageID]*cacheEntry
	cacheFIFO fifo
	cacheSize int
	pending   map[MessageID]pendingEntry
	missing   map[MessageID]*missingEntry
	missOrder []MessageID // insertion order of missing, for deterministic ticks

	outbox []Envelope
	stats  PlumtreeStats
}

// fifo is a queue of message IDs in insertion (and so tick) order.
type fifo struct {
	ids  []MessageID
	head int
}

func (f *fifo) push(id MessageID) { f.ids = append(f.ids, id) }
func (f *fifo) len() int          { return len(f.ids) - f.head }
func (f *fifo) peek() MessageID   { return f.ids[f.head] }
func (f *fifo) pop() {
	f.head++
	if f.head > 1024 && f.head*2 > len(f.ids) {
		f.ids = append(f.ids[:0], f.ids[f.head:]...)
		f.head = 0
	}
}

// NewPlumtree returns a state machine with an empty view.
func NewPlumtree(cfg PlumtreeConfig) (*Plumtree, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Plumtree{
		cfg:       cfg,
		rng:       rand.New(rand.NewPCG(cfg.Seed, 0x706c756d74726565)),
		members:   map[string]struct{}{},
		view:      map[string]*link{},
		cooldown:  map[string]int64{},
		invites:   map[string]int64{},
		shared:    &tree{lazy: map[string]struct{}{}},
		trees:     map[TreeKey]*tree{},
		lazyQueue: map[string][]ihaveEntry{},
		seen:      map[MessageID]*seenEntry{},
		cache:     map[MessageID]*cacheEntry{},
		pending:   map[MessageID]pendingEntry{},
		missing:   map[MessageID]*missingEntry{},
	}, nil
}

// Outbox returns and clears the messages to send, in the order produced.
func (p *Plumtree) Outbox() []Envelope {
	out := p.outbox
	p.outbox = nil
	return out
}

// Stats returns the counters.
func (p *Plumtree) Stats() PlumtreeStats {
	s := p.stats
	s.Neighbors, s.Trees = len(p.view), len(p.trees)
	for _, l := range p.view {
		if l.attempts > 0 {
			s.PendingNeighbors++
		}
	}
	s.SharedEager = len(p.view) - len(p.shared.lazy)
	s.Cached, s.CachedBytes = len(p.cache), p.cacheSize
	return s
}

// Neighbors returns the current view, sorted.
func (p *Plumtree) Neighbors() []string { return sortedKeys(p.view) }

// Peers returns the eager and lazy neighbours of origin's tree, sorted.
func (p *Plumtree) Peers(origin string) (eager, lazy []string) {
	t := p.trees[TreeOf(origin)]
	if t == nil {
		t = p.shared
	}
	for _, id := range sortedKeys(p.view) {
		if _, ok := t.lazy[id]; ok {
			lazy = append(lazy, id)
		} else {
			eager = append(eager, id)
		}
	}
	return eager, lazy
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (p *Plumtree) send(to string, m Message) {
	switch m.Type {
	case MsgGossip:
		p.stats.PayloadsSent++
		p.stats.PayloadBytesSent += uint64(len(m.Payload))
	case MsgIHave:
		p.stats.IHavesSent++
		p.stats.IHaveIDsSent += uint64(len(m.IDs))
	case MsgGraft:
		p.stats.GraftsSent++
	case MsgPrune:
		p.stats.PrunesSent++
	default:
		p.stats.ControlSent++
	}
	p.outbox = append(p.outbox, Envelope{To: to, Msg: m})
}

// SetPeers replaces the set of peers membership allows (admitted, alive,
// not self). Neighbours no longer allowed are dropped (and told so with
// DISCONNECT); peers refused earlier because membership did not allow
// them yet are asked to be neighbours now (see MaxInvites); the view is
// refilled to Fanout with NEIGHBOR requests.
func (p *Plumtree) SetPeers(peers []string) {
	clear(p.members)
	for _, id := range peers {
		if id != p.cfg.Self && id != "" {
			p.members[id] = struct{}{}
		}
	}
	p.memberList = sortedKeys(p.members)
	for _, id := range sortedKeys(p.view) {
		if _, ok := p.members[id]; !ok {
			p.dropPeer(id, true)
		}
	}
	for id := range p.cooldown {
		if _, ok := p.members[id]; !ok {
			delete(p.cooldown, id)
		}
	}
	for _, id := range sortedKeys(p.invites) {
		if _, ok := p.members[id]; !ok {
			continue
		}
		delete(p.invites, id)
		if _, in := p.view[id]; in || len(p.view) >= p.cfg.MaxPeers {
			continue
		}
		p.stats.Invited++
		p.ask(id)
	}
	p.fill()
}

// dropPeer removes id from the view; notify tells it with DISCONNECT, so
// that it does not keep a one-sided link to us.
func (p *Plumtree) dropPeer(id string, notify bool) {
	if _, ok := p.view[id]; !ok {
		return
	}
	delete(p.view, id)
	delete(p.lazyQueue, id)
	delete(p.shared.lazy, id)
	for _, t := range p.trees {
		delete(t.lazy, id)
		if t.parent == id {
			t.parent = ""
		}
	}
	if notify {
		p.send(id, Message{Type: MsgDisconnect})
	}
}

// ask puts id in the view, pending until it answers, and sends it
// NEIGHBOR. It is eager in every tree.
func (p *Plumtree) ask(id string) {
	p.view[id] = &link{heard: p.tick, attempts: 1, asked: p.tick}
	p.send(id, Message{Type: MsgNeighbor})
}

// fill picks random members until the view holds Fanout peers.
func (p *Plumtree) fill() {
	need := p.cfg.Fanout - len(p.view)
	if need <= 0 {
		return
	}
	var cand []string
	for _, id := range p.memberList {
		if _, in := p.view[id]; in || p.cooldown[id] > p.tick {
			continue
		}
		cand = append(cand, id)
	}
	for i := 0; i < need && i < len(cand); i++ {
		j := i + p.rng.IntN(len(cand)-i)
		cand[i], cand[j] = cand[j], cand[i]
		p.ask(cand[i])
	}
}

// admitPeer makes sure from, which sent us a message that only
// neighbours send, is in the view. It refuses peers that membership does
// not allow (remembering them, see MaxInvites) and peers beyond
// MaxPeers, telling them with DISCONNECT.
func (p *Plumtree) admitPeer(from string) bool {
	if _, ok := p.view[from]; ok {
		return true
	}
	if _, ok := p.members[from]; !ok {
		p.invite(from)
		p.send(from, Message{Type: MsgDisconnect})
		return false
	}
	if len(p.view) >= p.cfg.MaxPeers {
		p.send(from, Message{Type: MsgDisconnect})
		return false
	}
	p.view[from] = &link{heard: p.tick}
	return true
}

// invite remembers a non-member we refused, so that SetPeers asks it to
// be a neighbour if membership allows it later.
func (p *Plumtree) invite(id string) {
	if _, ok := p.invites[id]; !ok && len(p.invites) >= p.cfg.MaxInvites {
		oldest, first := "", true
		for k, t := range p.invites {
			if first || t < p.invites[oldest] || (t == p.invites[oldest] && k < oldest) {
				oldest, first = k, false
			}
		}
		delete(p.invites, oldest)
	}
	p.invites[id] = p.tick
}

// treeFor returns the tree of key, creating it from the shared template.
func (p *Plumtree) treeFor(key TreeKey) *tree {
	t := p.trees[key]
	if t == nil {
		if len(p.trees) >= p.cfg.MaxTrees {
			p.evictTree()
		}
		tmpl := p.templateFor(key)
		t = &tree{lazy: make(map[string]struct{}, len(tmpl.lazy)), created: p.tick}
		for id := range tmpl.lazy {
			t.lazy[id] = struct{}{}
		}
		p.trees[key] = t
	}
	t.used = p.tick
	return t
}

// templateFor picks the tree a new tree for key starts from: the known
// tree with the next larger key (cyclically) among the trees at least
// TemplateAge ticks old, or among all trees when none is that old.
// Every node picks the same one when they know the same trees (they do:
// every node sees every origin's messages; trees that old have been seen
// everywhere, whereas during a burst of new origins a node still waiting
// for one origin's first message would pick differently), and a settled
// tree is a spanning tree whichever origin it was built for, so the new
// origin's first message costs one payload per node. Without trees, the
// shared template.
func (p *Plumtree) templateFor(key TreeKey) *tree {
	if t := p.templateAmong(key, p.tick-int64(p.cfg.TemplateAge)); t != nil {
		return t
	}
	if t := p.templateAmong(key, p.tick); t != nil {
		return t
	}
	return p.shared
}

// templateAmong is templateFor restricted to trees created at or before
// tick bound; nil if there are none.
func (p *Plumtree) templateAmong(key TreeKey, bound int64) *tree {
	var (
		best, lowest       *tree
		bestKey, lowestKey TreeKey
	)
	for k, t := range p.trees {
		if t.created > bound {
			continue
		}
		if k > key && (best == nil || k < bestKey) {
			best, bestKey = t, k
		}
		if lowest == nil || k < lowestKey {
			lowest, lowestKey = t, k
		}
	}
	if best != nil {
		return best
	}
	return lowest
}

// evictTree forgets the least recently used eighth of the trees (at
// least one), so that the sort is paid once per MaxTrees/8 new trees.
func (p *Plumtree) evictTree() {
	type kt struct {
		key  TreeKey
		used int64
	}
	all := make([]kt, 0, len(p.trees))
	for k, t := range p.trees {
		all = append(all, kt{k, t.used})
	}
	slices.SortFunc(all, func(a, b kt) int {
		return cmp.Or(cmp.Compare(a.used, b.used), cmp.Compare(a.key, b.key))
	})
	for _, e := range all[:max(1, len(all)/8)] {
		delete(p.trees, e.key)
	}
}

// setEager makes peer eager in tree t and in the shared template.
func (p *Plumtree) setEager(t *tree, peer string) {
	delete(t.lazy, peer)
	delete(p.shared.lazy, peer)
}

// setLazy makes peer lazy in tree t and in the shared template.
func (p *Plumtree) setLazy(t *tree, peer string) {
	if _, ok := p.view[peer]; !ok {
		return
	}
	t.lazy[peer] = struct{}{}
	p.shared.lazy[peer] = struct{}{}
}

// Broadcast originates payload on this node's tree: it is pushed to the
// eager peers now and announced to the lazy ones at the next Tick. The
// caller has already applied it locally; it is not delivered back.
// Broadcasting a payload already seen does nothing.
func (p *Plumtree) Broadcast(payload []byte) (MessageID, error) {
	if len(payload) == 0 || len(payload) > MaxPayloadSize {
		return MessageID{}, fmt.Errorf("gossip: broadcast: payload of %d bytes (allowed 1..%d)", len(payload), MaxPayloadSize)
	}
	id := IDOf(payload)
	if _, ok := p.seen[id]; ok {
		return id, nil
	}
	p.stats.Broadcasts++
	p.remember(id, seenAccepted)
	p.forward(id, payload, 0, TreeOf(p.cfg.Self), "")
	return id, nil
}

// forward caches payload and pushes it (with the given round) to every
// eager peer of its tree but from, and queues an announcement for every
// lazy peer but from.
func (p *Plumtree) forward(id MessageID, payload []byte, round uint32, key TreeKey, from string) {
	p.cachePut(id, payload, round, key)
	t := p.treeFor(key)
	for _, to := range sortedKeys(p.view) {
		if to == from {
			continue
		}
		if _, lazy := t.lazy[to]; !lazy {
			p.send(to, Message{Type: MsgGossip, Payload: payload, Round: round, Tree: key})
			continue
		}
		q := p.lazyQueue[to]
		if len(q) >= p.cfg.MaxLazyQueue {
			q = q[1:]
			p.stats.Dropped++
		}
		p.lazyQueue[to] = append(q, ihaveEntry{id: id, round: round, tree: key})
	}
}

// Receive handles a message from peer from. It returns a Delivery when the
// message carries a payload seen for the first time; the caller must then
// call Validated with the application's verdict.
func (p *Plumtree) Receive(from string, m Message) (Delivery, bool) {
	if from == p.cfg.Self || from == "" {
		return Delivery{}, false
	}
	if l := p.view[from]; l != nil && m.Type != MsgDisconnect {
		// Peers only send to their neighbours: whatever it sent, from
		// has us in its view, which answers any NEIGHBOR we sent it.
		l.heard, l.attempts = p.tick, 0
	}
	switch m.Type {
	case MsgGossip:
		return p.onGossip(from, m)
	case MsgIHave:
		p.onIHave(from, m)
	case MsgGraft:
		p.onGraft(from, m)
	case MsgPrune:
		if p.admitPeer(from) {
			p.onPrune(from, m.Trees)
		}
	case MsgNeighbor:
		if p.admitPeer(from) {
			p.send(from, Message{Type: MsgNeighborAck})
		}
	case MsgNeighborAck:
		p.admitPeer(from) // normally a no-op: from is in the view, confirmed above
	case MsgDisconnect:
		p.dropPeer(from, false)
		p.cooldown[from] = p.tick + 3*int64(p.cfg.NeighborRefresh)
	}
	return Delivery{}, false
}

// parentTicks is how long a tree's parent is kept against a first copy
// with more hops: messages of one origin that travel concurrently take
// different paths, and following the latest first copy could make two
// nodes each other's parents, cut off from the origin.
const parentTicks = 5

// setParent records that from delivered a first copy of a message of t
// with the given round.
func (p *Plumtree) setParent(t *tree, from string, round uint32) {
	if t.parent == "" || t.parent == from || round < t.parentRound || p.tick-t.parentTick > parentTicks {
		t.parent, t.parentRound, t.parentTick = from, round, p.tick
	}
}

// onPrune makes from lazy in the trees of a PRUNE, except in the trees
// where from is our parent: its PRUNE answered a duplicate we pushed
// while a later message of the same origin was reaching us through it
// (concurrent messages of one origin); accepting it would cut us off the
// tree, so we ask to stay with a GRAFT without IDs.
func (p *Plumtree) onPrune(from string, keys []TreeKey) {
	var keep []TreeKey
	for _, key := range keys {
		t := p.treeFor(key)
		if t.parent == from {
			keep = append(keep, key)
			continue
		}
		p.setLazy(t, from)
	}
	if len(keep) > 0 {
		p.send(from, Message{Type: MsgGraft, Trees: keep})
	}
}

func (p *Plumtree) onGossip(from string, m Message) (Delivery, bool) {
	if len(m.Payload) == 0 || len(m.Payload) > MaxPayloadSize {
		return Delivery{}, false
	}
	id := IDOf(m.Payload)
	if s, ok := p.seen[id]; ok {
		p.stats.Duplicates++
		// Prune even when from is already lazy here: it pushed, so it
		// still holds us eager (trees start from templates that need not
		// agree on both sides). But not the parent: when messages of one
		// origin travel concurrently, the first copy of a later message
		// may come through the link that brought a duplicate of an
		// earlier one; pruning it would cut us off the tree. A pusher not
		// in the view is admitted or told to drop us.
		if s.state != seenRejected && p.admitPeer(from) {
			if t := p.treeFor(m.Tree); t.parent != from {
				p.setLazy(t, from)
				p.send(from, Message{Type: MsgPrune, Trees: []TreeKey{m.Tree}})
			}
		}
		return Delivery{}, false
	}
	if len(p.pending) >= p.cfg.MaxPending {
		p.stats.Dropped++
		return Delivery{}, false
	}
	if p.admitPeer(from) {
		// The link that delivered first belongs to the origin's tree. If
		// it was lazy here, from may hold us lazy too by now (a PRUNE of
		// ours crossing its push, or templates that disagree): a GRAFT
		// without IDs makes the link eager on its side as well.
		t := p.treeFor(m.Tree)
		if _, lazy := t.lazy[from]; lazy {
			p.send(from, Message{Type: MsgGraft, Trees: []TreeKey{m.Tree}})
		}
		p.setEager(t, from)
		p.setParent(t, from, m.Round)
	}
	p.remember(id, seenPending)
	p.pending[id] = pendingEntry{from: from, round: m.Round, tree: m.Tree, payload: m.Payload}
	p.forgetMissing(id)
	p.stats.Delivered++
	return Delivery{ID: id, From: from, Payload: m.Payload}, true
}

// Validated reports the application's verdict on a Delivery. A valid
// payload is forwarded along its tree; an invalid one is remembered as bad
// and never forwarded.
func (p *Plumtree) Validated(id MessageID, valid bool) {
	pe, ok := p.pending[id]
	if !ok {
		return
	}
	delete(p.pending, id)
	s := p.seen[id]
	if !valid {
		p.stats.Rejected++
		if s != nil {
			s.state = seenRejected
		}
		return
	}
	p.stats.Accepted++
	if s != nil {
		s.state = seenAccepted
	}
	p.forward(id, pe.payload, pe.round+1, pe.tree, pe.from)
}

func (p *Plumtree) onIHave(from string, m Message) {
	if len(m.IDs) != len(m.Rounds) || len(m.IDs) != len(m.Trees) {
		return
	}
	if !p.admitPeer(from) {
		return
	}
	for i, id := range m.IDs {
		if _, ok := p.seen[id]; ok {
			continue
		}
		round, key := m.Rounds[i], m.Trees[i]
		if e, ok := p.missing[id]; ok {
			if len(e.announcers) < p.cfg.MaxAnnouncers && !slices.ContainsFunc(e.announcers, func(a announcer) bool { return a.peer == from }) {
				e.announcers = append(e.announcers, announcer{peer: from, round: round})
			}
			continue
		}
		if len(p.missing) >= p.cfg.MaxMissing {
			p.stats.Dropped++
			continue
		}
		p.missing[id] = &missingEntry{
			tree:       key,
			deadline:   p.tick + int64(p.cfg.GraftTimeout),
			announcers: []announcer{{peer: from, round: round}},
		}
		p.missOrder = append(p.missOrder, id)
	}
}

func (p *Plumtree) onGraft(from string, m Message) {
	if len(m.IDs) != 0 && len(m.IDs) != len(m.Trees) || !p.admitPeer(from) {
		return
	}
	if len(m.IDs) == 0 {
		for _, key := range m.Trees {
			p.setEager(p.treeFor(key), from)
		}
		return
	}
	for i, id := range m.IDs {
		p.setEager(p.treeFor(m.Trees[i]), from)
		if c, ok := p.cache[id]; ok {
			p.stats.GraftsServed++
			p.send(from, Message{Type: MsgGossip, Payload: c.payload, Round: c.round, Tree: c.tree})
		}
	}
}

func (p *Plumtree) forgetMissing(id MessageID) {
	delete(p.missing, id) // missOrder is cleaned lazily in Tick
}

// Tick advances time by one tick: it re-sends unanswered NEIGHBORs (and
// drops the neighbours that never answer), probes silent neighbours,
// refills the view, grafts announcers of messages that did not arrive in
// time, sends the batched IHAVEs and expires old state.
func (p *Plumtree) Tick() {
	p.tick++
	p.checkLinks()
	if p.tick%int64(p.cfg.NeighborRefresh) == 0 {
		p.refreshNeighbors()
	}
	p.fill()
	p.graftMissing()
	p.flushLazy()
	p.expire()
}

// checkLinks re-sends the NEIGHBORs unanswered for AckTimeout ticks, and
// drops (with DISCONNECT) the neighbours that did not answer
// NeighborAttempts of them.
func (p *Plumtree) checkLinks() {
	for _, id := range sortedKeys(p.view) {
		l := p.view[id]
		if l.attempts == 0 || p.tick-l.asked < int64(p.cfg.AckTimeout) {
			continue
		}
		if l.attempts >= p.cfg.NeighborAttempts {
			p.stats.NeighborTimeouts++
			p.dropPeer(id, true)
			p.cooldown[id] = p.tick + 3*int64(p.cfg.NeighborRefresh)
			continue
		}
		l.attempts++
		l.asked = p.tick
		p.send(id, Message{Type: MsgNeighbor})
	}
}

// refreshNeighbors asks again, with NEIGHBOR, the confirmed neighbours
// silent since the last refresh; checkLinks handles the answer.
func (p *Plumtree) refreshNeighbors() {
	for _, id := range sortedKeys(p.view) {
		l := p.view[id]
		if l.attempts == 0 && p.tick-l.heard >= int64(p.cfg.NeighborRefresh) {
			l.attempts, l.asked = 1, p.tick
			p.send(id, Message{Type: MsgNeighbor})
		}
	}
}

func (p *Plumtree) graftMissing() {
	type graft struct {
		ids   []MessageID
		trees []TreeKey
	}
	grafts := map[string]*graft{}
	keep := p.missOrder[:0]
	for _, id := range p.missOrder {
		e, ok := p.missing[id]
		if !ok {
			continue
		}
		if e.deadline > p.tick {
			keep = append(keep, id)
			continue
		}
		if len(e.announcers) == 0 || e.attempts >= p.cfg.GraftAttempts {
			delete(p.missing, id)
			p.stats.MissingGivenUp++
			continue
		}
		a := e.announcers[e.attempts%len(e.announcers)]
		e.attempts++
		e.deadline = p.tick + int64(p.cfg.GraftRetry)
		keep = append(keep, id)
		if _, ok := p.view[a.peer]; !ok {
			continue // it left the view; try the next announcer later
		}
		p.setEager(p.treeFor(e.tree), a.peer)
		g := grafts[a.peer]
		if g == nil {
			g = &graft{}
			grafts[a.peer] = g
		}
		if len(g.ids) < MaxIDsPerMessage {
			g.ids = append(g.ids, id)
			g.trees = append(g.trees, e.tree)
		}
	}
	clear(p.missOrder[len(keep):])
	p.missOrder = keep
	for _, to := range sortedKeys(grafts) {
		p.send(to, Message{Type: MsgGraft, IDs: grafts[to].ids, Trees: grafts[to].trees})
	}
}

func (p *Plumtree) flushLazy() {
	for _, to := range sortedKeys(p.lazyQueue) {
		q := p.lazyQueue[to]
		delete(p.lazyQueue, to)
		for len(q) > 0 {
			n := min(len(q), MaxIDsPerMessage)
			m := Message{Type: MsgIHave, IDs: make([]MessageID, n), Rounds: make([]uint32, n), Trees: make([]TreeKey, n)}
			for i, e := range q[:n] {
				m.IDs[i], m.Rounds[i], m.Trees[i] = e.id, e.round, e.tree
			}
			p.send(to, m)
			q = q[n:]
		}
	}
}

func (p *Plumtree) remember(id MessageID, state seenState) {
	for p.seenOrder.len() >= p.cfg.MaxSeen {
		p.forgetOldestSeen()
	}
	p.seen[id] = &seenEntry{tick: p.tick, state: state}
	p.seenOrder.push(id)
}

func (p *Plumtree) forgetOldestSeen() {
	id := p.seenOrder.peek()
	p.seenOrder.pop()
	if s, ok := p.seen[id]; ok && s.state == seenPending {
		delete(p.pending, id)
	}
	delete(p.seen, id)
}

func (p *Plumtree) cachePut(id MessageID, payload []byte, round uint32, key TreeKey) {
	if _, ok := p.cache[id]; ok || len(payload) > p.cfg.CacheBytes {
		return
	}
	for p.cacheSize+len(payload) > p.cfg.CacheBytes && p.cacheFIFO.len() > 0 {
		p.evictOldestCached()
	}
	p.cache[id] = &cacheEntry{payload: payload, round: round, tree: key, tick: p.tick}
	p.cacheSize += len(payload)
	p.cacheFIFO.push(id)
}

func (p *Plumtree) evictOldestCached() {
	id := p.cacheFIFO.peek()
	p.cacheFIFO.pop()
	if c, ok := p.cache[id]; ok {
		p.cacheSize -= len(c.payload)
		delete(p.cache, id)
	}
}

func (p *Plumtree) expire() {
	for p.cacheFIFO.len() > 0 {
		c, ok := p.cache[p.cacheFIFO.peek()]
		if ok && p.tick-c.tick <= int64(p.cfg.CacheTicks) {
			break
		}
		p.evictOldestCached()
	}
	for p.seenOrder.len() > 0 {
		s, ok := p.seen[p.seenOrder.peek()]
		if ok && p.tick-s.tick <= int64(p.cfg.SeenTicks) {
			break
		}
		p.forgetOldestSeen()
	}
	for id, until := range p.cooldown {
		if until <= p.tick {
			delete(p.cooldown, id)
		}
	}
	for id, at := range p.invites {
		if p.tick-at > int64(p.cfg.InviteTicks) {
			delete(p.invites, id)
		}
	}
	if p.tick%64 == 0 {
		for k, t := range p.trees {
			if p.tick-t.used > int64(p.cfg.TreeTicks) {
				delete(p.trees, k)
			}
		}
	}
}
