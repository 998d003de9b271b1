package sim

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/gossip"
)

// Dissemination modes.
const (
	// ModePlumtree is peerd's dissemination: Plumtree broadcast tree plus
	// anti-entropy.
	ModePlumtree = "plumtree"
	// ModeMemberlist is the baseline: every delta entry is a serf user
	// event, spread by memberlist's TransmitLimitedQueue piggybacked on
	// its gossip (what Serf/Consul use), plus the same anti-entropy.
	ModeMemberlist = "memberlist"
)

// node is one simulated peer: a crdt replica, serf membership over the
// simulated transport, a Plumtree driver (or serf user events in baseline
// mode) and anti-entropy, composed the way package peer composes them.
type node struct {
	c    *Cluster
	idx  int
	id   string
	key  ed25519.PrivateKey
	skew time.Duration // added to virtual time for this node's clock

	// mu guards every field below and the incarnation's components.
	mu      sync.Mutex
	up      bool
	state   []byte // persisted replica state while crashed
	replica *crdt.Replica
	driver  *gossip.Driver
	ae      *gossip.AntiEntropy
	serf    *serf.Serf
	tr      *memberTransport
	cancel  context.CancelFunc
	wg      *sync.WaitGroup
	outbox  []crdt.Entry
	auth    atomic.Pointer[nodeAuth] // the current incarnation's trust book (authz.go)

	peers        atomic.Pointer[[]string]
	membersDirty atomic.Bool
	// alive is the member set built from serf events (member name →
	// alive); guarded by aliveMu. Rebuilding the peer list from it is
	// cheaper than serf.Members at thousands of peers.
	aliveMu sync.Mutex
	alive   map[string]bool
	failed  map[string]bool // declared failed by serf, not yet reaped or back
}

func (n *node) now() time.Time { return time.Now().Add(n.skew) }

// ed25519Signer signs replica entries with a node key.
type ed25519Signer ed25519.PrivateKey

func (s ed25519Signer) Sign(msg []byte) ([]byte, error) {
	return ed25519.Sign(ed25519.PrivateKey(s), msg), nil
}

// start builds and starts a fresh incarnation, loading the persisted
// state if any, and joins the given nodes.
func (n *node) start(join []int) error {
	c := n.c
	r, err := crdt.NewReplica(n.id, ed25519Signer(n.key), crdt.Options{})
	if err != nil {
		return err
	}
	// A fresh trust book, as a restarted agent's, which re-applies the
	// revocations the persisted replica holds (peer's openStore).
	auth := c.newNodeAuth(n)
	n.auth.Store(auth)
	n.mu.Lock()
	state := n.state
	n.mu.Unlock()
	if state != nil {
		// A restarted agent knows no chain but its own until it reads the
		// node records its replica holds (reapplyTrustStatements).
		auth.forgetChains()
		if err := r.LoadState(state, auth); err != nil {
			return fmt.Errorf("sim: %s: load state: %w", n.id, err)
		}
		c.reapplyTrustStatements(r, auth)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wg := &sync.WaitGroup{}
	inc := &incarnation{n: n, replica: r, auth: auth}

	var driver *gossip.Driver
	if c.sc.Mode == ModePlumtree {
		driver, err = gossip.NewDriver(gossip.DriverConfig{
			Plumtree: gossip.PlumtreeConfig{
				Self:   n.id,
				Fanout: c.sc.Fanout,
				Seed:   c.seedFor("plumtree", n.idx),
			},
			Net:          gossip.NetFunc(inc.send),
			Deliver:      func(from string, payload []byte) bool { return inc.merge(payload) },
			TickInterval: c.sc.Tick,
		})
		if err != nil {
			cancel()
			return err
		}
	}
	ae, err := gossip.NewAntiEntropy(gossip.AntiEntropyConfig{
		Replica: replicaSync{inc},
		Dialer:  gossip.DialerFunc(inc.exchange),
		Peers:   n.currentPeers,
		Failed:  n.failedPeers,
		// Negative in the scenario: never (to measure the heal without).
		FailedShare: c.sc.AEFailedShare,
		Interval:    c.sc.AEInterval,
		Seed:        c.seedFor("ae", n.idx),
	})
	if err != nil {
		cancel()
		return err
	}

	var (
		tr     *memberTransport
		s      *serf.Serf
		events chan serf.Event
	)
	if c.sc.Membership == MembershipSerf {
		tr = newMemberTransport(c.net, n.idx, c.transportOf)
		events = make(chan serf.Event, 1024)
		s, err = serf.Create(c.serfConfig(n, tr, events))
		if err != nil {
			cancel()
			return fmt.Errorf("sim: %s: serf: %w", n.id, err)
		}
	}

	n.mu.Lock()
	n.up, n.state = true, nil
	n.replica, n.driver, n.ae, n.serf, n.tr = r, driver, ae, s, tr
	n.cancel, n.wg = cancel, wg
	n.outbox = nil
	n.mu.Unlock()
	// Its node record carries its current chain (rotation.go).
	c.publishNode(n)
	if state != nil {
		// The re-applied statements: retry the held ones, withdraw,
		// sweep the recovered replica, as peer's watchRevocations does
		// when it starts.
		c.trustChanged(inc)
	}
	n.peers.Store(&[]string{})
	n.membersDirty.Store(true)
	n.aliveMu.Lock()
	n.alive = map[string]bool{}
	n.failed = map[string]bool{}
	n.aliveMu.Unlock()
	if s == nil {
		c.staticJoin(n)
	}

	if driver != nil {
		driver.Start()
	}
	ae.Start()
	wg.Add(1)
	go func() { defer wg.Done(); n.tickLoop(ctx) }()
	if s != nil {
		wg.Add(1)
		go func() { defer wg.Done(); n.eventLoop(ctx, inc, events) }()
	}
	if len(join) > 0 && s != nil {
		addrs := make([]string, len(join))
		for i, j := range join {
			addrs[i] = fmt.Sprintf("%s:%d", nodeIP(j), memberPort)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for attempt := 0; attempt < 10; attempt++ {
				if _, err := s.Join(addrs, true); err == nil || ctx.Err() != nil {
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(2 * time.Second):
				}
			}
		}()
	}
	return nil
}

// crash stops the incarnation abruptly (no leave), keeping the replica
// state as it would be on disk: every acknowledged local write is durable.
func (n *node) crash() {
	n.mu.Lock()
	if !n.up {
		n.mu.Unlock()
		return
	}
	n.up = false
	r, d, ae, s, cancel, wg := n.replica, n.driver, n.ae, n.serf, n.cancel, n.wg
	n.mu.Unlock()
	n.c.net.SetDown(n.idx, true)
	state, err := r.MarshalState()
	if err != nil {
		panic(fmt.Sprintf("sim: marshal state: %v", err)) // internal invariant
	}
	cancel()
	if s != nil {
		_ = s.Shutdown()
	}
	if d != nil {
		_ = d.Close()
	}
	_ = ae.Close()
	wg.Wait()
	n.mu.Lock()
	n.state = state
	n.mu.Unlock()
}

// restart brings a crashed node back with its persisted state.
func (n *node) restart(join []int) error {
	n.mu.Lock()
	up := n.up
	n.mu.Unlock()
	if up {
		return nil
	}
	n.c.net.SetDown(n.idx, false)
	return n.start(join)
}

func (n *node) isUp() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.up
}

func (n *node) currentPeers() []string {
	if p := n.peers.Load(); p != nil {
		return *p
	}
	return nil
}

// failedPeers returns the members serf declared failed and still
// remembers (gossip.AntiEntropyConfig.Failed), sorted.
func (n *node) failedPeers() []string {
	n.aliveMu.Lock()
	ids := make([]string, 0, len(n.failed))
	for id := range n.failed {
		ids = append(ids, id)
	}
	n.aliveMu.Unlock()
	slices.Sort(ids)
	return ids
}

// refreshPeers recomputes the alive peers from serf and hands them to
// Plumtree, as peer does on membership events (debounced to one tick).
func (n *node) refreshPeers() {
	n.mu.Lock()
	d := n.driver
	n.mu.Unlock()
	n.aliveMu.Lock()
	ids := make([]string, 0, len(n.alive))
	for id := range n.alive {
		ids = append(ids, id)
	}
	n.aliveMu.Unlock()
	slices.Sort(ids)
	ids = n.c.trustedPeers(n, ids)
	n.peers.Store(&ids)
	if d != nil {
		d.SetPeers(ids)
	}
}

// resyncAlive rebuilds the alive set from serf's member list and returns
// its size.
func (n *node) resyncAlive() int {
	n.mu.Lock()
	s, up := n.serf, n.up
	n.mu.Unlock()
	if !up || s == nil {
		n.aliveMu.Lock()
		defer n.aliveMu.Unlock()
		return len(n.alive)
	}
	alive, failed := map[string]bool{}, map[string]bool{}
	for _, m := range s.Members() {
		switch {
		case m.Name == n.id:
		case m.Status == serf.StatusAlive:
			alive[m.Name] = true
		case m.Status == serf.StatusFailed:
			failed[m.Name] = true
		}
	}
	k := len(alive) // alive is shared with eventLoop once stored
	n.aliveMu.Lock()
	n.alive, n.failed = alive, failed
	n.aliveMu.Unlock()
	n.membersDirty.Store(true)
	return k
}

// tickLoop refreshes peers after membership changes and flushes the
// outbox once per batch interval (peer's broadcastLoop).
func (n *node) tickLoop(ctx context.Context) {
	t := time.NewTicker(n.c.sc.Batch)
	defer t.Stop()
	var last time.Time
	lastRetry := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// At most once per second, like a debounced event handler.
		if time.Since(last) >= time.Second && n.membersDirty.Swap(false) {
			last = time.Now()
			n.refreshPeers()
		}
		if n.c.rot.active && time.Since(lastRetry) >= statementRetryInterval {
			lastRetry = time.Now()
			n.c.retryTick(n)
		}
		n.flush()
	}
}

// flush broadcasts the outbox.
func (n *node) flush() {
	n.mu.Lock()
	entries := n.outbox
	n.outbox = nil
	d, s := n.driver, n.serf
	n.mu.Unlock()
	if len(entries) == 0 {
		return
	}
	if d != nil {
		for len(entries) > 0 {
			k := min(len(entries), 2048)
			payload, err := crdt.EncodeDelta(&crdt.Delta{Entries: entries[:k]})
			entries = entries[k:]
			if err == nil {
				_, _ = d.Broadcast(payload)
			}
		}
		return
	}
	// Baseline: one serf user event per entry (user events are bounded
	// to one UDP packet).
	for _, e := range entries {
		payload, err := crdt.EncodeDelta(&crdt.Delta{Entries: []crdt.Entry{e}})
		if err == nil {
			_ = s.UserEvent("d", payload, false)
		}
	}
}

// eventLoop consumes serf events: membership changes (peers refresh,
// failure detection times) and, in baseline mode, user events carrying
// deltas.
func (n *node) eventLoop(ctx context.Context, inc *incarnation, events <-chan serf.Event) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-events:
			switch ev := e.(type) {
			case serf.MemberEvent:
				n.membersDirty.Store(true)
				n.aliveMu.Lock()
				for _, m := range ev.Members {
					if m.Name == n.id {
						continue
					}
					switch ev.Type {
					case serf.EventMemberJoin, serf.EventMemberUpdate:
						n.alive[m.Name] = true
						delete(n.failed, m.Name)
					case serf.EventMemberFailed:
						delete(n.alive, m.Name)
						n.failed[m.Name] = true
					default:
						delete(n.alive, m.Name)
						delete(n.failed, m.Name)
					}
				}
				n.aliveMu.Unlock()
				if ev.Type == serf.EventMemberFailed {
					for _, m := range ev.Members {
						n.c.metrics.failed(n.idx, m.Name, time.Now())
					}
				}
			case serf.UserEvent:
				inc.merge(ev.Payload)
			}
		}
	}
}

// write applies a local mutation and queues its delta for broadcast. It
// returns the delta (acknowledged: durable at this node) or nil.
func (n *node) write(f func(r *crdt.Replica, now time.Time) (*crdt.Delta, error)) (*crdt.Delta, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.up {
		return nil, fmt.Errorf("sim: %s is down", n.id)
	}
	d, err := f(n.replica, n.now())
	if err != nil || d == nil {
		return nil, err
	}
	n.outbox = append(n.outbox, d.Entries...)
	return d, nil
}

// rep returns the current replica (nil when down).
func (n *node) rep() *crdt.Replica {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.up {
		return nil
	}
	return n.replica
}

func (n *node) stats() (gossip.DriverStats, gossip.AntiEntropyStats) {
	n.mu.Lock()
	d, ae := n.driver, n.ae
	n.mu.Unlock()
	var ds gossip.DriverStats
	if d != nil {
		ds = d.Stats()
	}
	return ds, ae.Stats()
}

// incarnation is one life of a node: the network callbacks bound to one
// replica, so that a message for a crashed incarnation cannot reach the
// next one.
type incarnation struct {
	n       *node
	replica *crdt.Replica
	auth    *nodeAuth // this incarnation's trust book (authz.go)
}

// merge decodes, verifies and merges a delta, recording when each tracked
// update arrived.
func (inc *incarnation) merge(payload []byte) bool {
	d, err := crdt.DecodeDelta(payload)
	if err != nil {
		return false
	}
	n := inc.n
	now := time.Now()
	res, err := n.c.mergeChecked(inc, d, n.now())
	if res.Accepted > 0 {
		n.c.metrics.arrived(n.idx, d, now)
	}
	return err == nil && res.Accepted+res.Duplicates > 0
}

func (inc *incarnation) send(ctx context.Context, to string, msg []byte) error {
	c := inc.n.c
	j, ok := c.index[to]
	if !ok {
		return fmt.Errorf("sim: unknown peer %q", to)
	}
	from := inc.n.id
	if c.cutOff(inc.n.idx, j, false) {
		return fmt.Errorf("%w: %s is revoked", errUnreachable, to)
	}
	return c.net.stream(inc.n.idx, j, ClassTree, msg, func(b []byte) {
		if c.cutOff(j, inc.n.idx, true) {
			return // the receiver closed the revoked sender's connection
		}
		dst := c.nodes[j]
		dst.mu.Lock()
		d := dst.driver
		dst.mu.Unlock()
		if d != nil {
			_ = d.HandleMessage(from, b)
		}
	})
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (inc *incarnation) exchange(ctx context.Context, to string, req []byte) ([]byte, error) {
	c := inc.n.c
	j, ok := c.index[to]
	if !ok {
		return nil, fmt.Errorf("sim: unknown peer %q", to)
	}
	if c.cutOff(inc.n.idx, j, false) {
		return nil, fmt.Errorf("%w: %s is revoked", errUnreachable, to)
	}
	d1, err := c.net.transit(inc.n.idx, j, ClassAE, req)
	if err != nil {
		return nil, err
	}
	if err := sleepCtx(ctx, d1); err != nil {
		return nil, err
	}
	dst := c.nodes[j]
	dst.mu.Lock()
	ae, up := dst.ae, dst.up
	dst.mu.Unlock()
	if !up {
		return nil, fmt.Errorf("%w: %s down", errUnreachable, to)
	}
	if c.cutOff(j, inc.n.idx, true) {
		return nil, fmt.Errorf("%w: %s refuses revoked %s", errUnreachable, to, inc.n.id)
	}
	resp, err := ae.HandleExchange(ctx, inc.n.id, req)
	if err != nil {
		return nil, err
	}
	d2, err := c.net.transit(j, inc.n.idx, ClassAE, resp)
	if err != nil {
		return nil, err
	}
	if err := sleepCtx(ctx, d2); err != nil {
		return nil, err
	}
	return resp, nil
}

// replicaSync adapts the replica to gossip.Replica exactly as package peer
// does: heads as a CBOR version vector, missing state as encoded deltas.
type replicaSync struct{ inc *incarnation }

func (r replicaSync) Digest() []byte {
	d := r.inc.replica.Digest()
	return d[:]
}

func (r replicaSync) Heads() []byte { return r.inc.replica.EncodeHeads() }

func (r replicaSync) Missing(remoteHeads []byte, maxBytes int) ([][]byte, error) {
	return r.inc.replica.MissingEncoded(remoteHeads, maxBytes)
}

func (r replicaSync) Apply(from string, batch []byte) error {
	r.inc.merge(batch)
	return nil
}

// serfConfig is the LAN profile with the simulated transport, no
// coordinates, no compression (so payload copies can be counted), quiet
// logs.
func (c *Cluster) serfConfig(n *node, tr *memberTransport, events chan serf.Event) *serf.Config {
	sc := serf.DefaultConfig()
	sc.NodeName = n.id
	sc.Tags = map[string]string{gossip.TagID: n.id}
	sc.EventCh = events
	sc.LogOutput = io.Discard
	sc.Logger = nil
	sc.DisableCoordinates = true
	sc.ReapInterval = 15 * time.Second
	sc.ReconnectInterval = 10 * time.Second
	sc.ReconnectTimeout = 10 * time.Minute
	sc.TombstoneTimeout = 10 * time.Minute
	sc.UserEventSizeLimit = 9 * 1024
	sc.MaxQueueDepth = 1 << 16
	mc := memberlist.DefaultLANConfig()
	mc.Name = n.id
	mc.Transport = tr
	mc.BindAddr = nodeIP(n.idx)
	mc.BindPort = memberPort
	mc.AdvertiseAddr = nodeIP(n.idx)
	mc.AdvertisePort = memberPort
	mc.EnableCompression = false
	mc.LogOutput = io.Discard
	mc.Logger = nil
	if c.sc.ProbeInterval > 0 {
		mc.ProbeInterval = c.sc.ProbeInterval
	}
	if c.sc.GossipInterval > 0 {
		mc.GossipInterval = c.sc.GossipInterval
	}
	if c.sc.RetransmitMult > 0 {
		mc.RetransmitMult = c.sc.RetransmitMult
	}
	sc.MemberlistConfig = mc
	return sc
}
