package gossip

import (
	"slices"
	"testing"
)

// newTestTree returns a Plumtree for "self" whose membership is peers and
// whose view is Fanout of them (by default all), confirmed (their
// NEIGHBOR_ACKs received) and all eager, with the outbox drained.
func newTestTree(tb testing.TB, cfg PlumtreeConfig, peers []string) *Plumtree {
	tb.Helper()
	cfg.Self = "self"
	if cfg.Fanout == 0 {
		cfg.Fanout = len(peers)
	}
	p, err := NewPlumtree(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	p.SetPeers(peers)
	for _, e := range p.Outbox() {
		if e.Msg.Type != MsgNeighbor {
			tb.Fatalf("SetPeers sent %+v", e)
		}
		p.Receive(e.To, Message{Type: MsgNeighborAck})
	}
	if out := p.Outbox(); len(out) != 0 || p.Stats().PendingNeighbors != 0 {
		tb.Fatalf("after acks: sent %+v, stats %+v", out, p.Stats())
	}
	return p
}

// sent returns the outbox as "to:type" strings.
func sent(p *Plumtree) []string {
	var out []string
	for _, e := range p.Outbox() {
		out = append(out, e.To+":"+e.Msg.Type.String())
	}
	return out
}

func assertSent(tb testing.TB, p *Plumtree, want ...string) {
	tb.Helper()
	got := sent(p)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		tb.Fatalf("sent %v, want %v", got, want)
	}
}

// assertView checks origin's tree.
func assertView(tb testing.TB, p *Plumtree, origin string, eager, lazy []string) {
	tb.Helper()
	e, l := p.Peers(origin)
	if !slices.Equal(e, eager) || !slices.Equal(l, lazy) {
		tb.Fatalf("view eager=%v lazy=%v, want eager=%v lazy=%v", e, l, eager, lazy)
	}
}

func TestPlumtreeSetPeersFillsViewWithNeighbors(t *testing.T) {
	p := newTestTree(t, PlumtreeConfig{Fanout: 2}, nil)
	p.SetPeers([]string{"a", "b", "c", "self"})
	msgs := sent(p)
	if len(msgs) != 2 {
		t.Fatalf("sent %v, want 2 NEIGHBOR", msgs)
	}
	for _, m := range msgs {
		if m[2:] != "neighbor" {
			t.Fatalf("sent %v", msgs)
		}
	}
	e := p.Neighbors()
	if len(e) != 2 || slices.Contains(e, "self") {
		t.Fatalf("eager %v", e)
	}
	// A peer that leaves membership leaves the view; the view is refilled.
	gone := e[0]
	var rest []string
	for _, id := range []string{"a", "b", "c"} {
		if id != gone {
			rest = append(rest, id)
		}
	}
	p.SetPeers(rest)
	e = p.Neighbors()
	if slices.Contains(e, gone) || len(e) != 2 {
		t.Fatalf("eager after removal of %s: %v", gone, e)
	}
}

func TestPlumtreeEagerPushAndLazyAnnounce(t *testing.T) {
	p := newTestTree(t, PlumtreeConfig{}, []string{"a", "b", "c"})
	p.Receive("c", Message{Type: MsgPrune, Trees: []TreeKey{TreeOf("self")}})
	assertView(t, p, "self", []string{"a", "b"}, []string{"c"})
	id, err := p.Broadcast([]byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	assertSent(t, p, "a:gossip", "b:gossip")
	// The IHAVE waits for the tick (batching).
	p.Tick()
	out := p.Outbox()
	if len(out) != 1 || out[0].To != "c" || out[0].Msg.Type != MsgIHave || out[0].Msg.IDs[0] != id || out[0].Msg.Trees[0] != TreeOf("self") {
		t.Fatalf("tick sent %+v", out)
	}
	// Two more broadcasts before the next tick: one IHAVE with two IDs.
	p.Broadcast([]byte("x"))
	p.Broadcast([]byte("y"))
	p.Outbox()
	p.Tick()
	out = p.Outbox()
	if len(out) != 1 || len(out[0].Msg.IDs) != 2 {
		t.Fatalf("batched IHAVE: %+v", out)
	}
	// Broadcasting the same payload again does nothing.
	p.Broadcast([]byte("hello"))
	assertSent(t, p)
}

func TestPlumtreeDuplicatePrunes(t *testing.T) {
	p := newTestTree(t, PlumtreeConfig{}, []string{"a", "b", "c"})
	p.Broadcast([]byte("own")) // creates self's tree, all eager
	p.Outbox()
	o := TreeOf("o")
	d, ok := p.Receive("a", Message{Type: MsgGossip, Payload: []byte("m1"), Round: 2, Tree: o})
	if !ok || d.From != "a" || string(d.Payload) != "m1" {
		t.Fatalf("delivery %+v %v", d, ok)
	}
	// Nothing is forwarded before the verdict.
	assertSent(t, p)
	p.Validated(d.ID, true)
	out := p.Outbox()
	if len(out) != 2 {
		t.Fatalf("forwarded %+v", out)
	}
	for _, e := range out {
		if e.To == "a" || e.Msg.Type != MsgGossip || e.Msg.Round != 3 || e.Msg.Tree != o {
			t.Fatalf("forward %+v", e)
		}
	}
	// The same payload from b: duplicate, b is pruned from o's tree.
	if _, ok := p.Receive("b", Message{Type: MsgGossip, Payload: []byte("m1"), Round: 1, Tree: o}); ok {
		t.Fatal("duplicate delivered")
	}
	out = p.Outbox()
	if len(out) != 1 || out[0].To != "b" || out[0].Msg.Type != MsgPrune || !slices.Equal(out[0].Msg.Trees, []TreeKey{o}) {
		t.Fatalf("prune %+v", out)
	}
	assertView(t, p, "o", []string{"a", "c"}, []string{"b"})
	// Another duplicate from the now-lazy b: b still holds us eager (its
	// PRUNE was lost or its tree started from another template), so it is
	// pruned again.
	p.Receive("b", Message{Type: MsgGossip, Payload: []byte("m1"), Tree: o})
	assertSent(t, p, "b:prune")
	if st := p.Stats(); st.Duplicates != 2 || st.PrunesSent != 2 {
		t.Fatalf("stats %+v", st)
	}
	// A PRUNE from c makes c lazy in o's tree.
	p.Receive("c", Message{Type: MsgPrune, Trees: []TreeKey{o}})
	assertView(t, p, "o", []string{"a"}, []string{"b", "c"})
	// Other origins' existing trees are not affected; a new origin's tree
	// starts from the shared template (every prune applies to it).
	assertView(t, p, "self", []string{"a", "b", "c"}, nil)
	p.Receive("a", Message{Type: MsgGossip, Payload: []byte("from x"), Tree: TreeOf("x")})
	assertView(t, p, "x", []string{"a"}, []string{"b", "c"})
}

func TestPlumtreeInvalidPayloadNotForwarded(t *testing.T) {
	p := newTestTree(t, PlumtreeConfig{}, []string{"a", "b"})
	d, ok := p.Receive("a", Message{Type: MsgGossip, Payload: []byte("forged")})
	if !ok {
		t.Fatal("not delivered")
	}
	p.Validated(d.ID, false)
	assertSent(t, p)
	p.Tick()
	assertSent(t, p) // no IHAVE either
	// The same bad payload again is neither delivered nor cause to prune.
	if _, ok := p.Receive("b", Message{Type: MsgGossip, Payload: []byte("forged")}); ok {
		t.Fatal("rejected payload delivered twice")
	}
	assertSent(t, p)
	if st := p.Stats(); st.Rejected != 1 || st.Accepted != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPlumtreeGraftAfterTimeout(t *testing.T) {
	p := newTestTree(t, PlumtreeConfig{GraftTimeout: 3, GraftRetry: 2}, []string{"a", "b", "c"})
	o := TreeOf("o")
	p.Receive("b", Message{Type: MsgPrune, Trees: []TreeKey{o}})
	p.Receive("c", Message{Type: MsgPrune, Trees: []TreeKey{o}})
	id := IDOf([]byte("late"))
	p.Receive("b", Message{Type: MsgIHave, IDs: []MessageID{id}, Rounds: []uint32{1}, Trees: []TreeKey{o}})
	p.Receive("c", Message{Type: MsgIHave, IDs: []MessageID{id}, Rounds: []uint32{2}, Trees: []TreeKey{o}})
	for range 2 {
		p.Tick()
		assertSent(t, p)
	}
	p.Tick() // third tick: deadline reached, graft the first announcer
	out := p.Outbox()
	if len(out) != 1 || out[0].To != "b" || out[0].Msg.Type != MsgGraft || out[0].Msg.IDs[0] != id || out[0].Msg.Trees[0] != o {
		t.Fatalf("graft %+v", out)
	}
	assertView(t, p, "o", []string{"a", "b"}, []string{"c"})
	p.Tick()
	assertSent(t, p)
	p.Tick() // retry: the next announcer
	out = p.Outbox()
	if len(out) != 1 || out[0].To != "c" || out[0].Msg.Type != MsgGraft {
		t.Fatalf("retry %+v", out)
	}
	// The payload arrives: no more grafts.
	d, ok := p.Receive("c", Message{Type: MsgGossip, Payload: []byte("late"), Round: 3, Tree: o})
	if !ok || d.ID != id {
		t.Fatal("not delivered")
	}
	p.Validated(id, true)
	p.Outbox()
	for range 10 {
		p.Tick()
		for _, e := range p.Outbox() {
			if e.Msg.Type == MsgGraft {
				t.Fatalf("graft after delivery: %+v", e)
			}
		}
	}
}

func TestPlumtreeGivesUpAfterAttempts(t *testing.T) {
	p := newTestTree(t, PlumtreeConfig{GraftTimeout: 1, GraftRetry: 1, GraftAttempts: 3}, []string{"a"})
	p.Receive("a", Message{Type: MsgIHave, IDs: []MessageID{{1}}, Rounds: []uint32{0}, Trees: []TreeKey{1}})
	grafts := 0
	for range 20 {
		p.Tick()
		for _, e := range p.Outbox() {
			if e.Msg.Type == MsgGraft {
				grafts++
			}
		}
	}
	if grafts != 3 || p.Stats().MissingGivenUp != 1 {
		t.Fatalf("grafts %d, stats %+v", grafts, p.Stats())
	}
}

func TestPlumtreeServesGraft(t *testing.T) {
	p := newTestTree(t, PlumtreeConfig{}, []string{"a", "b"})
	self := TreeOf("self")
	p.Receive("b", Message{Type: MsgPrune, Trees: []TreeKey{self}})
	id, _ := p.Broadcast([]byte("cached"))
	p.Outbox()
	p.Receive("b", Message{Type: MsgGraft, IDs: []MessageID{id, {9}}, Trees: []TreeKey{self, self}})
	out := p.Outbox()
	if len(out) != 1 || out[0].To != "b" || string(out[0].Msg.Payload) != "cached" || out[0].Msg.Tree != self {
		t.Fatalf("graft answer %+v", out)
	}
	assertView(t, p, "self", []string{"a", "b"}, nil)
}

func TestPlumtreeViewBounds(t *testing.T) {
	p := newTestTree(t, PlumtreeConfig{Fanout: 1, MaxPeers: 2}, []string{"a", "b", "c", "d"})
	e := p.Neighbors()
	if len(e) != 1 {
		t.Fatalf("view %v", e)
	}
	var others []string
	for _, id := range []string{"a", "b", "c", "d"} {
		if id != e[0] {
			others = append(others, id)
		}
	}
	p.Receive(others[0], Message{Type: MsgNeighbor})
	assertSent(t, p, others[0]+":neighbor-ack")
	p.Receive(others[1], Message{Type: MsgNeighbor}) // over MaxPeers
	assertSent(t, p, others[1]+":disconnect")
	// Not a member: refused too.
	p.Receive("stranger", Message{Type: MsgNeighbor})
	assertSent(t, p, "stranger:disconnect")
	// A payload from a stranger is still delivered (the application
	// validates it) but the stranger does not enter the view.
	if _, ok := p.Receive("stranger", Message{Type: MsgGossip, Payload: []byte("p")}); !ok {
		t.Fatal("payload from stranger not delivered")
	}
	if v := p.Neighbors(); len(v) != 2 || slices.Contains(v, "stranger") {
		t.Fatalf("view %v", v)
	}
	// DISCONNECT removes the peer; it is not picked again at once.
	p.Outbox()
	p.Receive(e[0], Message{Type: MsgDisconnect})
	p.Tick()
	for _, env := range p.Outbox() {
		if env.To == e[0] {
			t.Fatalf("re-picked disconnected peer: %+v", env)
		}
	}
}

func TestPlumtreeTreesBounded(t *testing.T) {
	p := newTestTree(t, PlumtreeConfig{MaxTrees: 16, TreeTicks: 100}, []string{"a"})
	for i := range 100 {
		p.Receive("a", Message{Type: MsgPrune, Trees: []TreeKey{TreeKey(i)}})
	}
	if n := p.Stats().Trees; n > 16 {
		t.Fatalf("%d trees kept, want <= 16", n)
	}
	for range 200 {
		p.Tick()
	}
	if n := p.Stats().Trees; n != 0 {
		t.Fatalf("%d trees kept after expiry", n)
	}
}

func TestPlumtreeBoundedMemory(t *testing.T) {
	p := newTestTree(t, PlumtreeConfig{CacheBytes: 1000, MaxSeen: 50, CacheTicks: 5, SeenTicks: 10}, []string{"a"})
	for i := range 200 {
		payload := make([]byte, 100)
		payload[0], payload[1] = byte(i), byte(i>>8)
		if _, err := p.Broadcast(payload); err != nil {
			t.Fatal(err)
		}
		p.Outbox()
	}
	st := p.Stats()
	if st.CachedBytes > 1000 || st.Cached > 10 || len(p.seen) > 50 {
		t.Fatalf("cache %d entries %d bytes, seen %d", st.Cached, st.CachedBytes, len(p.seen))
	}
	for range 11 {
		p.Tick()
	}
	if st := p.Stats(); st.Cached != 0 || len(p.seen) != 0 {
		t.Fatalf("after expiry: cache %d, seen %d", st.Cached, len(p.seen))
	}
	if _, err := p.Broadcast(nil); err == nil {
		t.Fatal("empty payload accepted")
	}
	if _, err := p.Broadcast(make([]byte, MaxPayloadSize+1)); err == nil {
		t.Fatal("oversized payload accepted")
	}
}

func TestPlumtreeNeighborRefresh(t *testing.T) {
	p := newTestTree(t, PlumtreeConfig{NeighborRefresh: 5, AckTimeout: 2, NeighborAttempts: 2}, []string{"a", "b", "c"})
	for range 4 {
		p.Tick()
		assertSent(t, p)
	}
	// a speaks; b and c stay silent.
	p.Receive("a", Message{Type: MsgPrune, Trees: []TreeKey{1}})
	p.Tick() // tick 5: refresh, a probe that must be answered
	assertSent(t, p, "b:neighbor", "c:neighbor")
	p.Receive("b", Message{Type: MsgNeighborAck})
	p.Tick()
	assertSent(t, p)
	p.Tick() // tick 7: c did not answer in AckTimeout ticks: asked again
	assertSent(t, p, "c:neighbor")
	p.Tick()
	assertSent(t, p)
	// tick 9: c never answered NeighborAttempts NEIGHBORs: dropped (told
	// so, in case only its answers were lost); a is the only member left
	// to refill the view with, and it is already in.
	p.Tick()
	assertSent(t, p, "c:disconnect")
	if v := p.Neighbors(); !slices.Equal(v, []string{"a", "b"}) {
		t.Fatalf("view %v", v)
	}
	if st := p.Stats(); st.NeighborTimeouts != 1 || st.PendingNeighbors != 0 {
		t.Fatalf("stats %+v", st)
	}
	p.Tick() // tick 10: a and b silent since tick 5
	assertSent(t, p, "a:neighbor", "b:neighbor")
}

// TestPlumtreeNeighborAck: a NEIGHBOR is pending until answered; any
// message from the peer answers it (peers only send to their neighbours);
// an unanswered one is re-sent, then the peer is replaced.
func TestPlumtreeNeighborAck(t *testing.T) {
	p, err := NewPlumtree(PlumtreeConfig{Self: "self", Fanout: 2, AckTimeout: 2, NeighborAttempts: 2, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	p.SetPeers([]string{"a", "b", "c"})
	asked := p.Neighbors()
	if st := p.Stats(); st.Neighbors != 2 || st.PendingNeighbors != 2 {
		t.Fatalf("stats %+v", st)
	}
	p.Outbox()
	// The first answers with NEIGHBOR_ACK, the second with a PRUNE.
	p.Receive(asked[0], Message{Type: MsgNeighborAck})
	p.Receive(asked[1], Message{Type: MsgPrune, Trees: []TreeKey{1}})
	if st := p.Stats(); st.PendingNeighbors != 0 {
		t.Fatalf("stats %+v", st)
	}
	// A DISCONNECT in answer: the peer is dropped and replaced.
	p.Receive(asked[0], Message{Type: MsgDisconnect})
	p.Tick()
	out := p.Outbox()
	var third string
	for _, id := range []string{"a", "b", "c"} {
		if !slices.Contains(asked, id) {
			third = id
		}
	}
	if len(out) != 1 || out[0].To != third || out[0].Msg.Type != MsgNeighbor {
		t.Fatalf("refill %+v", out)
	}
	// third never answers: asked once more, then dropped with DISCONNECT.
	p.Tick()
	assertSent(t, p)
	p.Tick()
	assertSent(t, p, third+":neighbor")
	p.Tick()
	p.Tick()
	assertSent(t, p, third+":disconnect")
	if v := p.Neighbors(); !slices.Equal(v, []string{asked[1]}) {
		t.Fatalf("view %v", v)
	}
	// A NEIGHBOR_ACK from a peer no longer in the view: it believes we are
	// neighbours, so it is admitted again (room, member).
	p.Receive(third, Message{Type: MsgNeighborAck})
	if v := p.Neighbors(); !slices.Contains(v, third) {
		t.Fatalf("view %v", v)
	}
}

// TestPlumtreeAsymmetricView reproduces the startup race that starved
// nodes in TestDriverBroadcastReachesAll: a node's NEIGHBORs reach peers
// that do not know it yet and refuse with DISCONNECT (it then leaves them
// alone for 3·NeighborRefresh ticks), and the peers that refused it did
// not ask it back once they knew it: it had no neighbour when the first
// broadcasts went by. Here n0 and n2 know only the hub n1, which learns
// about them last and whose Fanout is 1: it used to link to one of them
// and leave the other isolated. Refused peers are now remembered and
// asked back once membership allows them, and every link is confirmed
// on both sides before any broadcast, which then reaches everyone with
// no tick (no IHAVE, no GRAFT).
func TestPlumtreeAsymmetricView(t *testing.T) {
	names := []string{"n0", "n1", "n2"}
	members := map[string][]string{"n0": {"n1"}, "n2": {"n1"}, "n1": {"n0", "n2"}}
	nodes := map[string]*Plumtree{}
	for i, n := range names {
		p, err := NewPlumtree(PlumtreeConfig{Self: n, Fanout: 1, MaxPeers: 2, Seed: uint64(i + 1)})
		if err != nil {
			t.Fatal(err)
		}
		nodes[n] = p
	}
	var queue []simMsg
	collect := func(n string) {
		for _, e := range nodes[n].Outbox() {
			queue = append(queue, simMsg{from: n, env: e})
		}
	}
	got := map[string]int{}
	deliver := func() {
		for len(queue) > 0 {
			m := queue[0]
			queue = queue[1:]
			to := nodes[m.env.To]
			if d, ok := to.Receive(m.from, m.env.Msg); ok {
				got[m.env.To]++
				to.Validated(d.ID, true)
			}
			collect(m.env.To)
		}
	}
	for _, n := range []string{"n0", "n2", "n1"} {
		nodes[n].SetPeers(members[n])
		collect(n)
		deliver()
	}
	for _, n := range names {
		st := nodes[n].Stats()
		if st.Neighbors == 0 || st.PendingNeighbors != 0 {
			t.Fatalf("%s: view %v, stats %+v", n, nodes[n].Neighbors(), st)
		}
		for _, v := range nodes[n].Neighbors() {
			if !slices.Contains(nodes[v].Neighbors(), n) {
				t.Fatalf("one-sided link: %s has %s, %s has %v", n, v, v, nodes[v].Neighbors())
			}
		}
	}
	if st := nodes["n1"].Stats(); st.Invited != 2 {
		t.Fatalf("hub stats %+v, want 2 invited", st)
	}
	for i, n := range names {
		if _, err := nodes[n].Broadcast([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		collect(n)
		deliver()
	}
	for _, n := range names {
		if got[n] != len(names)-1 {
			t.Fatalf("%s got %d of %d broadcasts without any tick", n, got[n], len(names)-1)
		}
	}
	// A stale or lost answer leaves a one-sided link: n0 drops a
	// neighbour without telling it. The other side's periodic probe
	// (NeighborRefresh) is answered with NEIGHBOR_ACK and repairs it.
	p0 := nodes["n0"]
	lost := p0.Neighbors()[0]
	p0.dropPeer(lost, false)
	for range 50 {
		for _, n := range names {
			nodes[n].Tick()
			collect(n)
		}
		deliver()
	}
	if !slices.Contains(p0.Neighbors(), lost) {
		t.Fatalf("one-sided link %s -> n0 not repaired: n0 view %v", lost, p0.Neighbors())
	}
}

// TestPlumtreeParentKept: two messages of one origin travel concurrently
// and reach us by different links. The link that brought the first copy
// with the fewest hops (the parent) is not pruned by a duplicate, a PRUNE
// from it is answered with a GRAFT without IDs, and a first copy through a
// lazy link re-grafts it.
func TestPlumtreeParentKept(t *testing.T) {
	p := newTestTree(t, PlumtreeConfig{}, []string{"a", "b", "c"})
	o := TreeOf("o")
	m1, m2 := []byte("m1"), []byte("m2")
	// m1 first from a (3 hops), m2 first from b (2 hops): b is the parent.
	d, _ := p.Receive("a", Message{Type: MsgGossip, Payload: m1, Round: 3, Tree: o})
	p.Validated(d.ID, true)
	d, _ = p.Receive("b", Message{Type: MsgGossip, Payload: m2, Round: 2, Tree: o})
	p.Validated(d.ID, true)
	p.Outbox()
	// The duplicate of m1 from b is not pruned; the duplicate of m2 from a is.
	p.Receive("b", Message{Type: MsgGossip, Payload: m1, Round: 3, Tree: o})
	assertSent(t, p)
	p.Receive("a", Message{Type: MsgGossip, Payload: m2, Round: 3, Tree: o})
	assertSent(t, p, "a:prune")
	assertView(t, p, "o", []string{"b", "c"}, []string{"a"})
	// b prunes us (a duplicate we pushed): we ask to stay eager.
	p.Receive("b", Message{Type: MsgPrune, Trees: []TreeKey{o}})
	out := p.Outbox()
	if len(out) != 1 || out[0].To != "b" || out[0].Msg.Type != MsgGraft || len(out[0].Msg.IDs) != 0 || !slices.Equal(out[0].Msg.Trees, []TreeKey{o}) {
		t.Fatalf("answer to the parent's PRUNE: %+v", out)
	}
	assertView(t, p, "o", []string{"b", "c"}, []string{"a"})
	// A first copy from the lazy a: a is grafted back (it may hold us lazy).
	d, _ = p.Receive("a", Message{Type: MsgGossip, Payload: []byte("m3"), Round: 1, Tree: o})
	out = p.Outbox()
	if len(out) != 1 || out[0].To != "a" || out[0].Msg.Type != MsgGraft || len(out[0].Msg.IDs) != 0 {
		t.Fatalf("first copy through a lazy link: %+v", out)
	}
	p.Validated(d.ID, true)
	assertView(t, p, "o", []string{"a", "b", "c"}, nil)
	// A GRAFT without IDs makes the sender eager and sends nothing.
	p.Outbox()
	p.Receive("c", Message{Type: MsgPrune, Trees: []TreeKey{o}})
	p.Receive("c", Message{Type: MsgGraft, Trees: []TreeKey{o}})
	assertSent(t, p)
	assertView(t, p, "o", []string{"a", "b", "c"}, nil)
}

// TestPlumtreeMembershipDropNotifies: a neighbour that leaves membership is
// told with DISCONNECT, never dropped silently.
func TestPlumtreeMembershipDropNotifies(t *testing.T) {
	p := newTestTree(t, PlumtreeConfig{}, []string{"a", "b"})
	p.SetPeers([]string{"a"})
	assertSent(t, p, "b:disconnect")
}

// FuzzPlumtreeSteps drives one state machine with an arbitrary sequence of
// inputs from a handful of peers (some not members) and checks that it
// never panics and that its bounds hold.
func FuzzPlumtreeSteps(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	f.Add([]byte{2, 0, 9, 2, 1, 9, 8, 8, 8, 8, 8, 8, 0, 3})
	f.Fuzz(func(t *testing.T, ops []byte) {
		cfg := PlumtreeConfig{
			Self: "self", Fanout: 2, MaxPeers: 3, GraftTimeout: 1, GraftRetry: 1,
			MaxTrees: 4, MaxLazyQueue: 3, CacheBytes: 64, MaxSeen: 8, MaxMissing: 4,
			MaxAnnouncers: 2, MaxPending: 2, NeighborRefresh: 3, AckTimeout: 1, NeighborAttempts: 2,
			MaxInvites: 1, InviteTicks: 4, TemplateAge: 2, Seed: 1,
		}
		p, err := NewPlumtree(cfg)
		if err != nil {
			t.Fatal(err)
		}
		peers := []string{"a", "b", "c", "d", "stranger"}
		p.SetPeers(peers[:4])
		var pending []MessageID
		for i := 0; i+1 < len(ops); i += 2 {
			from := peers[int(ops[i+1])%len(peers)]
			arg := ops[i+1]
			id := MessageID{arg % 5}
			tree := TreeKey(arg % 6)
			switch ops[i] % 12 {
			case 0:
				if d, ok := p.Receive(from, Message{Type: MsgGossip, Payload: []byte{arg % 7}, Round: uint32(arg), Tree: tree}); ok {
					pending = append(pending, d.ID)
				}
			case 1:
				p.Receive(from, Message{Type: MsgIHave, IDs: []MessageID{id, IDOf([]byte{arg % 7})}, Rounds: []uint32{1, 2}, Trees: []TreeKey{tree, tree}})
			case 2:
				p.Receive(from, Message{Type: MsgGraft, IDs: []MessageID{IDOf([]byte{arg % 7})}, Trees: []TreeKey{tree}})
			case 3:
				p.Receive(from, Message{Type: MsgPrune, Trees: []TreeKey{tree}})
			case 4:
				if (arg/5)%2 == 0 {
					p.Receive(from, Message{Type: MsgNeighbor})
				} else {
					p.Receive(from, Message{Type: MsgNeighborAck})
				}
			case 5:
				p.Receive(from, Message{Type: MsgDisconnect})
			case 6, 7:
				if len(pending) > 0 {
					p.Validated(pending[0], ops[i]%2 == 0)
					pending = pending[1:]
				}
			case 8, 9:
				p.Tick()
			case 10:
				_, _ = p.Broadcast([]byte{arg, 1})
			case 11:
				p.SetPeers(peers[:int(arg)%5])
			}
			p.Outbox()
			st := p.Stats()
			if st.Neighbors > cfg.MaxPeers || st.Trees > cfg.MaxTrees || st.CachedBytes > cfg.CacheBytes ||
				len(p.seen) > cfg.MaxSeen || len(p.missing) > cfg.MaxMissing || len(p.pending) > cfg.MaxPending ||
				len(p.invites) > cfg.MaxInvites || st.PendingNeighbors > st.Neighbors {
				t.Fatalf("bounds exceeded: %+v seen=%d missing=%d pending=%d", st, len(p.seen), len(p.missing), len(p.pending))
			}
			for _, q := range p.lazyQueue {
				if len(q) > cfg.MaxLazyQueue {
					t.Fatalf("lazy queue of %d", len(q))
				}
			}
			if slices.Contains(p.Neighbors(), "stranger") || slices.Contains(p.Neighbors(), "self") {
				t.Fatalf("view %v", p.Neighbors())
			}
		}
	})
}
