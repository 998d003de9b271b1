package gossip

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/coordinate"
	"github.com/hashicorp/serf/serf"
)

// DefaultSerfPort is the port membership binds when Config.BindPort is 0.
const DefaultSerfPort = 8301

// Profile selects the failure-detector timings.
type Profile int

const (
	// ProfileLAN uses memberlist's LAN defaults (probe every 1 s, 500 ms
	// probe timeout, suspicion multiplier 4) and serf's defaults.
	ProfileLAN Profile = iota
	// ProfileLocal uses memberlist's loopback timings (200 ms probe
	// timeout, suspicion multiplier 3, 100 ms gossip; retransmit
	// multiplier 4 as on a LAN) and short serf timers; for tests and
	// single-host clusters.
	ProfileLocal
)

// MemberStatus is a member's state as serf reports it. serf does not
// surface memberlist's "suspect" state: a suspect member stays Alive until
// it is declared failed.
type MemberStatus int

// Member states.
const (
	StatusNone MemberStatus = iota
	StatusAlive
	StatusLeaving
	StatusLeft
	StatusFailed
)

func (s MemberStatus) String() string {
	switch s {
	case StatusAlive:
		return "alive"
	case StatusLeaving:
		return "leaving"
	case StatusLeft:
		return "left"
	case StatusFailed:
		return "failed"
	default:
		return "none"
	}
}

// Tag names the integrator publishes in Config.Tags.
const (
	// TagID carries the node ID (the peer ID used by Driver and
	// AntiEntropy).
	TagID = "id"
	// TagPeer carries the node's QUIC address, "ip:port".
	TagPeer = "peer"
)

// Member is one node as membership sees it.
type Member struct {
	Name   string
	Addr   netip.Addr // gossip (serf) address
	Port   uint16     // gossip (serf) port
	Tags   map[string]string
	Status MemberStatus
}

// ID returns the member's node ID: its TagID tag, or its Name when the tag
// is missing.
func (m Member) ID() string {
	if id := m.Tags[TagID]; id != "" {
		return id
	}
	return m.Name
}

// PeerAddr returns the member's QUIC address from its TagPeer tag.
func (m Member) PeerAddr() (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(m.Tags[TagPeer])
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("gossip: member %s: peer tag: %w", m.Name, err)
	}
	return ap, nil
}

// EventType says what happened to the members of an Event.
type EventType int

// Member event types, mirroring serf's.
const (
	EventJoin EventType = iota
	EventLeave
	EventFailed
	EventUpdate
	EventReap
)

func (t EventType) String() string {
	switch t {
	case EventJoin:
		return "join"
	case EventLeave:
		return "leave"
	case EventFailed:
		return "failed"
	case EventUpdate:
		return "update"
	case EventReap:
		return "reap"
	default:
		return "unknown"
	}
}

// Event reports a membership change. serf may group several members.
type Event struct {
	Type    EventType
	Members []Member
}

// Config configures Membership. The zero value of every field is usable
// except NodeName.
type Config struct {
	// NodeName is the unique name of this node in the cluster. Required.
	NodeName string
	// BindAddr is the IP address serf listens on (UDP and TCP). Empty
	// means 0.0.0.0.
	BindAddr string
	// BindPort is the serf port. 0 means DefaultSerfPort (8301); -1 means
	// an ephemeral port chosen by the kernel (tests; read it back with
	// LocalMember).
	BindPort int
	// AdvertiseAddr is the IP address announced to others. Empty means
	// derived from BindAddr (memberlist picks a private interface address
	// when bound to 0.0.0.0).
	AdvertiseAddr string
	// AdvertisePort is the port announced to others. 0 means the bound port.
	AdvertisePort int
	// Tags are published with this node; keep them small: serf refuses
	// more than 512 encoded bytes in total. The integrator sets "id" (node
	// ID) and "peer" (QUIC address ip:port). Nil means no tags.
	Tags map[string]string
	// SecretKey enables gossip encryption (AES-GCM) when set; 16, 24 or 32
	// bytes. Nil means unencrypted gossip.
	SecretKey []byte
	// KeyringFile is where this node's gossip keyring is persisted (serf
	// rewrites it after each InstallKey, UseKey and RemoveKey). Empty
	// means KeyringFileName next to SnapshotPath, or none without a
	// snapshot. A keyring file present at start wins over SecretKey and
	// enables encryption by itself; SecretKey without a file starts one.
	KeyringFile string
	// SnapshotPath is a file where serf records the members it has seen,
	// so that a restarted node rejoins them without -join. Empty disables
	// snapshots. After a graceful Leave the snapshot is cleared (a node
	// that left does not rejoin by itself) unless RejoinAfterLeave is set.
	SnapshotPath string
	// RejoinAfterLeave makes a node that left gracefully rejoin the
	// members of its snapshot when it starts again (Consul's
	// rejoin_after_leave). False: it waits for an explicit join.
	RejoinAfterLeave bool
	// ReapInterval is how often failed and left members are examined for
	// reaping. 0 means serf's default (15 s; 1 s for ProfileLocal).
	ReapInterval time.Duration
	// ReconnectTimeout is how long a failed member is kept (and retried)
	// before it is reaped. 0 means serf's default (24 h; 10 min for
	// ProfileLocal).
	ReconnectTimeout time.Duration
	// TombstoneTimeout is how long a member that left is kept before it
	// is reaped. 0 means serf's default (24 h; 30 s for ProfileLocal).
	TombstoneTimeout time.Duration
	// Profile selects timings; the zero value is ProfileLAN.
	Profile Profile
	// Admit decides whether an alive member may be used as a peer by
	// dissemination and anti-entropy (see Admitted). It is called without
	// any Membership lock held, possibly from several goroutines, and its
	// verdict is cached per member until the member's tags change or
	// Reevaluate is called. Nil admits every member.
	Admit func(m Member) bool
	// OnEvent receives membership changes, in order, from a single
	// goroutine owned by Membership. It may block briefly; while it
	// blocks, later events wait in a queue of at most EventQueue entries
	// (the oldest are dropped beyond that and a warning is logged; Members
	// is always current). Nil discards events.
	OnEvent func(Event)
	// EventQueue bounds the event queue described at OnEvent. 0 means 4096.
	EventQueue int
	// OnUserEvent receives the user events of FireUserEvent (this node's
	// own too), in arrival order, from a single goroutine owned by
	// Membership; while it blocks, at most 256 more wait and later ones
	// are dropped (DroppedUserEvents). Payloads are as sent, unverified.
	// Nil discards user events.
	OnUserEvent func(UserEvent)
	// Logger receives serf and memberlist logs (at debug level; their
	// errors at warn) and membership's own. Nil discards logs.
	Logger *slog.Logger
}

// Membership is a node's view of the cluster: serf (memberlist, SWIM with
// Lifeguard) plus an admission cache. Its methods are safe for concurrent
// use.
type Membership struct {
	cfg    Config
	serf   *serf.Serf
	logger *slog.Logger
	events chan serf.Event

	ctx    context.Context // cancelled by Close; stops RetryJoin loops
	cancel context.CancelFunc
	wg     sync.WaitGroup

	joinAttempts atomic.Int64 // RetryJoin attempts, for tests

	// mu guards queue, admitted, closed and dropped.
	mu       sync.Mutex
	queue    []Event
	notify   chan struct{} // signalled (non-blocking) when queue grows
	admitted map[string]admitEntry
	closed   bool
	dropped  uint64

	// lost is closed when serf shut down without Close being called.
	lost chan struct{}
	// joining counts Join calls in progress; conflicts counts name
	// conflicts seen. Together they tell Join that its own merge was
	// refused for a name conflict.
	joining      atomic.Int64
	conflicts    atomic.Uint64
	lastConflict atomic.Pointer[error]  // the error nameGuard returned last
	ownID        atomic.Pointer[string] // this node's TagID, as SetTags last set it
	// conflictMu guards conflictLogged (the last ERROR per other address,
	// so that a repeated alive message does not flood the log).
	conflictMu     sync.Mutex
	conflictLogged map[string]time.Time

	queries chan *serf.Query // status queries waiting for answerQueries

	userEvents        chan UserEvent // waiting for OnUserEvent (userevents.go)
	droppedUserEvents atomic.Uint64

	keyring *memberlist.Keyring // nil: gossip not encrypted (keyring.go)
}

type admitEntry struct {
	tags map[string]string
	ok   bool
}

// New creates the serf instance and starts listening. It does not join
// anyone: call Join or RetryJoin (unless a snapshot lists previous members,
// in which case serf rejoins them in the background).
func New(cfg Config) (*Membership, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("gossip: membership: NodeName is required")
	}
	if len(cfg.SecretKey) != 0 {
		switch len(cfg.SecretKey) {
		case 16, 24, 32:
		default:
			return nil, fmt.Errorf("gossip: membership: SecretKey must be 16, 24 or 32 bytes, got %d", len(cfg.SecretKey))
		}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.EventQueue <= 0 {
		cfg.EventQueue = 4096
	}
	cfg.Tags = maps.Clone(cfg.Tags)

	sc := serf.DefaultConfig()
	sc.NodeName = cfg.NodeName
	sc.Tags = maps.Clone(cfg.Tags)
	sc.SnapshotPath = cfg.SnapshotPath
	sc.RejoinAfterLeave = cfg.RejoinAfterLeave
	// serf's own name conflict resolution asks the other members which
	// address the name belongs to and shuts down the node that loses the
	// vote; with no other member to answer (two nodes), both lose and
	// both stop gossiping. The nameGuard refuses the newcomer instead.
	sc.EnableNameConflictResolution = false
	sc.UserEventSizeLimit = serfUserEventLimit // userevents.go
	std := newStdLogger(logger)
	sc.Logger = std
	sc.LogOutput = nil

	switch cfg.Profile {
	case ProfileLocal:
		sc.MemberlistConfig = memberlist.DefaultLocalConfig()
		// DefaultLocalConfig retransmits each broadcast 2·log10(N) times;
		// on a loaded test host a leave intent then sometimes misses a
		// node, which sees the leaver as failed until the next push-pull
		// (15 s). The LAN value (4) costs nothing at test sizes.
		sc.MemberlistConfig.RetransmitMult = 4
		sc.ReapInterval = time.Second
		// Failed members are retried every 5 s and kept for 10 minutes: a
		// partition that outlasts the reconnect timeout would otherwise be
		// reaped on both sides and never heal (docs/RELIABILITY.md).
		sc.ReconnectInterval = 5 * time.Second
		sc.ReconnectTimeout = 10 * time.Minute
		sc.TombstoneTimeout = 30 * time.Second
		sc.LeavePropagateDelay = time.Second
		sc.BroadcastTimeout = 2 * time.Second
		sc.FlapTimeout = 5 * time.Second
	case ProfileLAN:
		sc.MemberlistConfig = memberlist.DefaultLANConfig()
	default:
		return nil, fmt.Errorf("gossip: membership: unknown profile %d", cfg.Profile)
	}
	if cfg.ReapInterval > 0 {
		sc.ReapInterval = cfg.ReapInterval
	}
	if cfg.ReconnectTimeout > 0 {
		sc.ReconnectTimeout = cfg.ReconnectTimeout
	}
	if cfg.TombstoneTimeout > 0 {
		sc.TombstoneTimeout = cfg.TombstoneTimeout
	}

	mc := sc.MemberlistConfig
	mc.Logger = std
	mc.LogOutput = nil
	mc.BindAddr = cfg.BindAddr
	if mc.BindAddr == "" {
		mc.BindAddr = "0.0.0.0"
	}
	switch {
	case cfg.BindPort == 0:
		mc.BindPort = DefaultSerfPort
	case cfg.BindPort < 0:
		mc.BindPort = 0 // memberlist: pick a free port
	case cfg.BindPort > 65535:
		return nil, fmt.Errorf("gossip: membership: BindPort %d out of range", cfg.BindPort)
	default:
		mc.BindPort = cfg.BindPort
	}
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	mc.AdvertisePort = cfg.AdvertisePort
	if mc.AdvertisePort == 0 {
		mc.AdvertisePort = mc.BindPort
	}
	if len(cfg.SecretKey) != 0 {
		mc.SecretKey = append([]byte(nil), cfg.SecretKey...)
	}
	if err := setupKeyring(&cfg, sc, logger); err != nil { // keyring.go
		return nil, err
	}

	m := &Membership{
		cfg:      cfg,
		logger:   logger,
		events:   make(chan serf.Event, 256),
		notify:   make(chan struct{}, 1),
		admitted: make(map[string]admitEntry),
		lost:     make(chan struct{}),
		queries:  make(chan *serf.Query, 16),

		userEvents: make(chan UserEvent, userEventQueue),

		conflictLogged: make(map[string]time.Time),
	}
	ownID := cfg.Tags[TagID]
	m.ownID.Store(&ownID)
	sc.EventCh = m.events
	sc.Merge = nameGuard{m}
	m.ctx, m.cancel = context.WithCancel(context.Background())

	s, err := serf.Create(sc)
	if err != nil {
		m.cancel()
		return nil, fmt.Errorf("gossip: membership: %w", err)
	}
	m.serf = s
	m.keyring = sc.MemberlistConfig.Keyring // memberlist sets it up from SecretKey
	m.wg.Add(5)
	go m.readEvents()
	go m.dispatchEvents()
	go m.answerQueries()
	go m.watchShutdown()
	go m.dispatchUserEvents()
	return m, nil
}

// Lost is closed when serf shut down by itself (not through Close): this
// node no longer gossips, and what it serves goes stale.
func (m *Membership) Lost() <-chan struct{} { return m.lost }

func (m *Membership) watchShutdown() {
	defer m.wg.Done()
	select {
	case <-m.ctx.Done():
		return
	case <-m.serf.ShutdownCh():
	}
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if !closed {
		m.logger.Error("gossip stopped: serf shut down by itself; this node no longer sees the cluster")
		close(m.lost)
	}
}

// readEvents drains serf's event channel quickly (serf blocks when it is
// full) into the bounded queue that dispatchEvents delivers from.
func (m *Membership) readEvents() {
	defer m.wg.Done()
	for {
		select {
		case <-m.ctx.Done():
			return
		case e := <-m.events:
			if q, ok := e.(*serf.Query); ok {
				if q.Name == statusQuery {
					select {
					case m.queries <- q:
					default: // the asker counts on other members
					}
				}
				continue
			}
			if ue, ok := e.(serf.UserEvent); ok {
				m.queueUserEvent(ue)
				continue
			}
			me, ok := e.(serf.MemberEvent)
			if !ok {
				continue
			}
			ev := Event{Type: convertEventType(me.Type), Members: make([]Member, 0, len(me.Members))}
			for _, sm := range me.Members {
				ev.Members = append(ev.Members, convertMember(sm))
			}
			m.mu.Lock()
			for _, mem := range ev.Members {
				delete(m.admitted, mem.Name) // tags or status may have changed
			}
			if m.cfg.OnEvent != nil {
				if len(m.queue) >= m.cfg.EventQueue {
					m.queue = m.queue[1:]
					m.dropped++
					m.logger.Warn("membership event queue full, dropping oldest event", "dropped", m.dropped)
				}
				m.queue = append(m.queue, ev)
			}
			m.mu.Unlock()
			select {
			case m.notify <- struct{}{}:
			default:
			}
		}
	}
}

func (m *Membership) dispatchEvents() {
	defer m.wg.Done()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.notify:
		}
		for {
			m.mu.Lock()
			if len(m.queue) == 0 || m.closed {
				m.queue = nil
				m.mu.Unlock()
				break
			}
			ev := m.queue[0]
			m.queue = m.queue[1:]
			m.mu.Unlock()
			m.cfg.OnEvent(ev)
		}
	}
}

func convertEventType(t serf.EventType) EventType {
	switch t {
	case serf.EventMemberJoin:
		return EventJoin
	case serf.EventMemberLeave:
		return EventLeave
	case serf.EventMemberFailed:
		return EventFailed
	case serf.EventMemberUpdate:
		return EventUpdate
	default:
		return EventReap
	}
}

func convertMember(sm serf.Member) Member {
	addr, _ := netip.AddrFromSlice(sm.Addr)
	return Member{
		Name:   sm.Name,
		Addr:   addr.Unmap(),
		Port:   sm.Port,
		Tags:   maps.Clone(sm.Tags),
		Status: convertStatus(sm.Status),
	}
}

func convertStatus(s serf.MemberStatus) MemberStatus {
	switch s {
	case serf.StatusAlive:
		return StatusAlive
	case serf.StatusLeaving:
		return StatusLeaving
	case serf.StatusLeft:
		return StatusLeft
	case serf.StatusFailed:
		return StatusFailed
	default:
		return StatusNone
	}
}

// Join contacts the given addresses ("host" or "host:port"; the port
// defaults to 8301) and returns how many answered. It succeeds if at least
// one did.
func (m *Membership) Join(addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, errors.New("gossip: membership: join: no addresses")
	}
	norm := make([]string, 0, len(addrs))
	for _, a := range addrs {
		norm = append(norm, withDefaultPort(a))
	}
	m.joining.Add(1)
	before := m.conflicts.Load()
	n, err := m.serf.Join(norm, true)
	m.joining.Add(-1)
	if err != nil {
		if c := m.lastConflict.Load(); n == 0 && c != nil && m.conflicts.Load() != before {
			return n, *c // memberlist flattens the merge error into text
		}
		return n, fmt.Errorf("gossip: membership: join: %w", err)
	}
	return n, nil
}

func withDefaultPort(addr string) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	return net.JoinHostPort(addr, strconv.Itoa(DefaultSerfPort))
}

// RetryJoin keeps trying Join in the background until one address answers,
// ctx is done or Membership is closed. The wait between attempts starts at
// backoff (0 means 1 s) and doubles up to 30 s.
func (m *Membership) RetryJoin(ctx context.Context, addrs []string, backoff time.Duration) {
	if backoff <= 0 {
		backoff = time.Second
	}
	const maxBackoff = 30 * time.Second
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.wg.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.wg.Done()
		wait := backoff
		for attempt := 1; ; attempt++ {
			m.joinAttempts.Add(1)
			n, err := m.Join(addrs)
			if err == nil && n > 0 {
				m.logger.Info("joined cluster", "contacted", n, "attempt", attempt)
				return
			}
			if errors.Is(err, ErrNameConflict) {
				m.logger.Error("join refused: another member has this node's name; retrying until it is gone", "node", m.cfg.NodeName, "attempt", attempt, "retry_in", wait)
			} else {
				m.logger.Debug("join attempt failed", "attempt", attempt, "err", err, "retry_in", wait)
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-m.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			wait = min(2*wait, maxBackoff)
		}
	}()
}

// Leave announces a graceful departure and waits for it to propagate, at
// most timeout (0 means 5 s). Others then see this node as left (not
// failed) and the snapshot is cleared. Call Close afterwards.
func (m *Membership) Leave(timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	done := make(chan error, 1)
	go func() { done <- m.serf.Leave() }()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("gossip: membership: leave: %w", err)
		}
		return nil
	case <-t.C:
		return fmt.Errorf("gossip: membership: leave: not finished after %v", timeout)
	}
}

// ErrNoMember is returned by ForceLeave for a name serf does not know.
var ErrNoMember = errors.New("gossip: membership: no such member")

// ErrPruneAlive is returned by ForceLeave for a prune of an alive member.
var ErrPruneAlive = errors.New("gossip: membership: refusing to prune an alive member")

// ForceLeave is serf's RemoveFailedNode (prune: RemoveFailedNodePrune) for
// the named member, as Consul's force-leave: a failed member becomes left at
// once on every node (and is no longer retried); with prune it is erased
// from the member list (a reap event follows). An alive member is only
// marked leaving: it hears the leave intent about itself, refutes it and
// stays alive. Pruning an alive member is refused (ErrPruneAlive): serf
// would erase it from every other member list after BroadcastTimeout +
// LeavePropagateDelay while it keeps running, and nothing brings it back
// (memberlist still sees it alive, so serf never hears it join again).
// It returns ErrNoMember for an unknown name, or an error when the
// broadcast did not finish within serf's BroadcastTimeout (the local change
// is made anyway).
func (m *Membership) ForceLeave(name string, prune bool) error {
	status, known := serf.StatusNone, false
	for _, sm := range m.serf.Members() {
		if sm.Name == name {
			status, known = sm.Status, true
			break
		}
	}
	if !known {
		return fmt.Errorf("%w named %q", ErrNoMember, name)
	}
	if prune && status == serf.StatusAlive {
		return fmt.Errorf("%w: %s", ErrPruneAlive, name)
	}
	var err error
	if prune {
		err = m.serf.RemoveFailedNodePrune(name)
	} else {
		err = m.serf.RemoveFailedNode(name)
	}
	if err != nil {
		return fmt.Errorf("gossip: membership: force leave %s: %w", name, err)
	}
	return nil
}

// Members returns every member serf knows, including this node, failed and
// left members (until reaped).
func (m *Membership) Members() []Member {
	sms := m.serf.Members()
	out := make([]Member, 0, len(sms))
	for _, sm := range sms {
		out = append(out, convertMember(sm))
	}
	return out
}

// LocalMember returns this node as others see it (with the bound port).
func (m *Membership) LocalMember() Member {
	return convertMember(m.serf.LocalMember())
}

// NumMembers returns how many members serf currently counts (alive,
// suspect and leaving; not failed or left).
func (m *Membership) NumMembers() int { return m.serf.NumNodes() }

// Admitted returns the alive members other than this node for which
// Config.Admit returns true: the candidates for dissemination and
// anti-entropy peers. Verdicts are cached (see Config.Admit).
func (m *Membership) Admitted() []Member {
	self := m.cfg.NodeName
	var out []Member
	for _, mem := range m.Members() {
		if mem.Name == self || mem.Status != StatusAlive {
			continue
		}
		if m.admit(mem) {
			out = append(out, mem)
		}
	}
	return out
}

func (m *Membership) admit(mem Member) bool {
	if m.cfg.Admit == nil {
		return true
	}
	m.mu.Lock()
	e, ok := m.admitted[mem.Name]
	m.mu.Unlock()
	if ok && maps.Equal(e.tags, mem.Tags) {
		return e.ok
	}
	verdict := m.cfg.Admit(mem) // never under m.mu
	m.mu.Lock()
	m.admitted[mem.Name] = admitEntry{tags: mem.Tags, ok: verdict}
	m.mu.Unlock()
	if !verdict {
		m.logger.Debug("member not admitted", "member", mem.Name)
	}
	return verdict
}

// AdmittedIDs returns the IDs (Member.ID) of Admitted members, ready for
// Driver.SetPeers and AntiEntropyConfig.Peers.
func (m *Membership) AdmittedIDs() []string {
	var ids []string
	for _, mem := range m.Admitted() {
		ids = append(ids, mem.ID())
	}
	return ids
}

// Reevaluate forgets every cached admission verdict, so the next Admitted
// asks Config.Admit again (call it after a revocation).
func (m *Membership) Reevaluate() {
	m.mu.Lock()
	clear(m.admitted)
	m.mu.Unlock()
}

// SetTags replaces this node's tags and gossips the change.
func (m *Membership) SetTags(tags map[string]string) error {
	id := tags[TagID]
	old := m.ownID.Swap(&id) // before serf sees its own new alive message
	if err := m.serf.SetTags(maps.Clone(tags)); err != nil {
		m.ownID.CompareAndSwap(&id, old)
		return fmt.Errorf("gossip: membership: set tags: %w", err)
	}
	return nil
}

// Coordinate returns this node's Vivaldi network coordinate.
func (m *Membership) Coordinate() (*coordinate.Coordinate, error) {
	c, err := m.serf.GetCoordinate()
	if err != nil {
		return nil, fmt.Errorf("gossip: membership: coordinate: %w", err)
	}
	return c, nil
}

// CachedCoordinate returns the last coordinate heard for the named member.
func (m *Membership) CachedCoordinate(name string) (*coordinate.Coordinate, bool) {
	return m.serf.GetCachedCoordinate(name)
}

// Distance estimates the round-trip time to the named member from the
// Vivaldi coordinates; false when no coordinate is known yet.
func (m *Membership) Distance(name string) (time.Duration, bool) {
	self, err := m.serf.GetCoordinate()
	if err != nil {
		return 0, false
	}
	other, ok := m.serf.GetCachedCoordinate(name)
	if !ok || other == nil || !self.IsCompatibleWith(other) {
		return 0, false
	}
	return self.DistanceTo(other), true
}

// DroppedEvents returns how many events were dropped because OnEvent was
// too slow.
func (m *Membership) DroppedEvents() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.dropped
}

// Close stops serf without a graceful leave (others see this node fail
// unless Leave was called first) and waits for Membership's goroutines.
// It is idempotent.
func (m *Membership) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	err := m.serf.Shutdown()
	m.cancel()
	m.wg.Wait()
	if err != nil {
		return fmt.Errorf("gossip: membership: close: %w", err)
	}
	return nil
}

// ReconnectTimeout is how long serf keeps a failed member before reaping
// it (Config.ReconnectTimeout or the profile's default).
func (m *Membership) ReconnectTimeout() time.Duration {
	if m.cfg.ReconnectTimeout > 0 {
		return m.cfg.ReconnectTimeout
	}
	if m.cfg.Profile == ProfileLocal {
		return 10 * time.Minute
	}
	return serf.DefaultConfig().ReconnectTimeout
}

// ErrNameConflict is returned by Join when the cluster already has a
// member with this node's name and another node ID.
var ErrNameConflict = errors.New("gossip: membership: node name taken")

// nameGuard is serf's MergeDelegate. It refuses members that carry this
// node's name under another node ID (TagID). serf calls it with the members
// a join brings, on both sides of the join, and with every alive message;
// a refusal fails the join on both sides or drops the message, so serf's
// own conflict resolution, which can shut down both nodes, never starts.
// A member with this name that left is let through (a node reprovisioned
// under its old name). Without TagID nothing is refused.
//
// serf calls it from memberlist goroutines, for alive messages under
// memberlist's node lock: it must not call serf.
type nameGuard struct{ m *Membership }

func (g nameGuard) NotifyMerge(members []*serf.Member) error {
	m := g.m
	ownID := *m.ownID.Load()
	for _, sm := range members {
		if sm == nil || sm.Name != m.cfg.NodeName || ownID == "" || sm.Tags[TagID] == ownID || sm.Status == serf.StatusLeft {
			continue
		}
		addr := net.JoinHostPort(sm.Addr.String(), strconv.Itoa(int(sm.Port)))
		err := fmt.Errorf("%w: %q is also used by the node at %s (node ID %s)", ErrNameConflict, sm.Name, addr, sm.Tags[TagID])
		m.lastConflict.Store(&err)
		m.conflicts.Add(1)
		m.logConflict(addr, sm.Tags[TagID])
		return err
	}
	return nil
}

// conflictLogEvery bounds how often the same conflict is logged.
const conflictLogEvery = time.Minute

func (m *Membership) logConflict(otherAddr, otherID string) {
	now := time.Now()
	m.conflictMu.Lock()
	last, seen := m.conflictLogged[otherAddr]
	if !seen || now.Sub(last) >= conflictLogEvery {
		m.conflictLogged[otherAddr] = now
	}
	m.conflictMu.Unlock()
	if seen && now.Sub(last) < conflictLogEvery {
		return
	}
	self := m.cfg.AdvertiseAddr
	if self == "" {
		self = m.cfg.BindAddr
	}
	if m.joining.Load() > 0 {
		m.logger.Error("node name conflict: the cluster already has a member with this node's name; this node is refused. Start it with a unique name (-node NAME)",
			"node", m.cfg.NodeName, "addr", self, "other_addr", otherAddr, "other_id", otherID)
		return
	}
	m.logger.Error("node name conflict: a node claiming this node's name was refused; it must be started with a unique name (-node NAME). This node keeps working",
		"node", m.cfg.NodeName, "addr", self, "other_addr", otherAddr, "other_id", otherID)
}

// statusQuery is the serf query by which a member asks the others how they
// see nodes it has records of but does not know itself (AskStatus).
const statusQuery = "peerd-member-status"

// MaxAskIDs bounds the IDs of one AskStatus call (serf queries must fit in
// a UDP packet).
const MaxAskIDs = 4

// AskStatus asks other members how they see the nodes with the given IDs
// (Member.ID) and collects their answers until serf's query timeout (16
// gossip intervals per decade of members) or ctx ends. At most n members
// answer, chosen at random among the admitted alive ones (n <= 0: all of
// them; a query goes to every member, but only those chosen answer, so
// that a large cluster does not answer all at once). It returns, per ID,
// one status per answering member (StatusNone: that member does not know
// the node). Members of an older peerd do not answer.
func (m *Membership) AskStatus(ctx context.Context, ids []string, n int) (map[string][]MemberStatus, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	if len(ids) > MaxAskIDs {
		return nil, fmt.Errorf("gossip: membership: ask status: %d ids, at most %d", len(ids), MaxAskIDs)
	}
	var params *serf.QueryParam
	if n > 0 {
		peers := m.Admitted()
		rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
		params = &serf.QueryParam{}
		for _, p := range peers[:min(n, len(peers))] {
			params.FilterNodes = append(params.FilterNodes, p.Name)
		}
		if len(params.FilterNodes) == 0 {
			return map[string][]MemberStatus{}, nil
		}
	}
	resp, err := m.serf.Query(statusQuery, []byte(strings.Join(ids, "\n")), params)
	if err != nil {
		return nil, fmt.Errorf("gossip: membership: ask status: %w", err)
	}
	defer resp.Close()
	known := make(map[string]Member)
	for _, mem := range m.Members() {
		known[mem.Name] = mem
	}
	out := make(map[string][]MemberStatus, len(ids))
	for {
		select {
		case <-ctx.Done():
			return out, fmt.Errorf("gossip: membership: ask status: %w", ctx.Err())
		case <-m.ctx.Done():
			return out, errors.New("gossip: membership: ask status: closed")
		case r, ok := <-resp.ResponseCh():
			if !ok {
				return out, nil
			}
			mem, found := known[r.From]
			if r.From == m.cfg.NodeName || !found || mem.Status != StatusAlive || len(r.Payload) != len(ids) || !m.admit(mem) {
				continue
			}
			for i, id := range ids {
				st := MemberStatus(r.Payload[i])
				if st > StatusFailed {
					st = StatusNone
				}
				out[id] = append(out[id], st)
			}
		}
	}
}

// answerQueries answers other members' status queries, off the event
// goroutine (Members takes serf's member lock, which serf may hold while
// it delivers an event).
func (m *Membership) answerQueries() {
	defer m.wg.Done()
	for {
		var q *serf.Query
		select {
		case <-m.ctx.Done():
			return
		case q = <-m.queries:
		}
		if q.SourceNode() == m.cfg.NodeName {
			continue
		}
		ids := strings.Split(string(q.Payload), "\n")
		if len(ids) > MaxAskIDs {
			continue
		}
		byID := make(map[string]MemberStatus)
		for _, mem := range m.Members() {
			byID[mem.ID()] = mem.Status
		}
		ans := make([]byte, len(ids))
		for i, id := range ids {
			ans[i] = byte(byID[id])
		}
		if err := q.Respond(ans); err != nil {
			m.logger.Debug("status query: answering", "from", q.SourceNode(), "err", err)
		}
	}
}
