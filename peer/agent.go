package peer

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/crdt/store"
	"github.com/peerd/peerd/gossip"
	"github.com/peerd/peerd/identity"
	"github.com/peerd/peerd/resolver"
	"github.com/peerd/peerd/transport"
)

// Agent is one running peerd node. New builds it, Start opens its sockets
// and starts its goroutines, Close stops them all; Leave first leaves the
// mesh gracefully.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	id      string // node ID, derived from the node key
	pub     ed25519.PublicKey
	chain   atomic.Pointer[[]byte] // this node's encoded chain; see SetNodeChain
	trust   *trustBook
	replica *crdt.Replica

	// Set by Start.
	store   *store.Store
	tr      *transport.Transport
	members *gossip.Membership // set once by startMembership; see membersReady
	// membersReady is closed right after members is set. Goroutines that can
	// run before that (serf's event callback, transport handlers,
	// anti-entropy) read members only through membership().
	membersReady chan struct{}
	driver       *gossip.Driver
	ae           *gossip.AntiEntropy
	httpSrv      *http.Server
	httpLn       net.Listener
	dns          *resolver.Server
	writes       *commitQueue
	view         *memberView
	peers        peerSet
	outbox       outbox
	stats        agentStats
	proxy        *dataPlane   // Connect data plane (proxy.go); set by Start
	withdrawn    atomic.Int64 // intentions withdrawn at the last look (revocation.go)

	// local is the registry of locally run services and checks
	// (services.go); its zero value is ready for SetLocalOptions.
	local localState
	// ca is this node's Connect CA (connect_ca_state.go); zero value ready.
	ca connectCAState
	// events are the user events this agent recorded (events.go); zero value ready.
	events eventState

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	leaving   atomic.Bool // Leave was called: members are no longer remembered
	leaveOnce sync.Once
	left      chan struct{} // closed when the agent left through the API or lost its gossip
	// failure says why the agent stopped by itself (see Done); nil after a leave.
	failure atomic.Pointer[error]

	closeOnce sync.Once
	closeErr  error
}

// New checks cfg and builds an agent; it opens no socket and starts no
// goroutine.
func New(cfg Config) (*Agent, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	pub := cfg.NodeKey.Public().(ed25519.PublicKey)
	a := &Agent{
		cfg:  cfg,
		log:  cfg.Logger,
		id:   identity.NodeID(pub),
		pub:  pub,
		left: make(chan struct{}),

		membersReady: make(chan struct{}),
		outbox:       outbox{wake: make(chan struct{}, 1)},
		view:         &memberView{peers: map[string]netip.AddrPort{}, names: map[string]string{}, hello: map[string]bool{}},
	}
	if len(cfg.NodeChain) > 0 {
		if _, err := identity.UnmarshalChain(cfg.NodeChain); err != nil {
			return nil, fmt.Errorf("peer: node certificate: %w", err)
		}
	}
	a.chain.Store(&cfg.NodeChain)
	v := identity.NewVerifier(cfg.TrustRoots...)
	a.trust = newTrustBook(v, time.Now, a.id)
	a.trust.trusted = make(chan struct{}, 1) // read by readmitTrusted (mesh.go)
	if _, err := a.trust.learn(pub, cfg.NodeChain); err != nil {
		return nil, fmt.Errorf("peer: this node's own certificate does not verify against the trust roots: %w", err)
	}
	r, err := crdt.NewReplica(a.id, nodeSigner{cfg.NodeKey}, crdt.Options{})
	if err != nil {
		return nil, err
	}
	a.replica = r
	a.proxy = newDataPlane(a) // started by Start (startProxy)
	return a, nil
}

// ID is the node ID derived from the node key.
func (a *Agent) ID() string { return a.id }

// Done is closed when the agent was asked to leave through the API, or
// when its gossip stopped by itself; in that case Close returns the reason,
// so that the process exits with an error rather than serve stale data.
func (a *Agent) Done() <-chan struct{} { return a.left }

// watchGossip ends the agent when serf shuts down while no one asked it to
// (serf's name conflict resolution used to do that).
func (a *Agent) watchGossip() {
	select {
	case <-a.ctx.Done():
		return
	case <-a.members.Lost():
	}
	err := errors.New("peer: gossip stopped (serf shut down by itself); the agent stops rather than serve stale data")
	a.log.Error("gossip stopped; stopping the agent", "err", err)
	a.failure.Store(&err)
	a.leaveOnce.Do(func() { close(a.left) })
}

// HTTPAddr is the HTTP API's listening address (zero when disabled).
func (a *Agent) HTTPAddr() netip.AddrPort {
	if a.httpLn == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.httpLn.Addr().String())
	return ap
}

// DNSAddr is the DNS stub's listening address (zero when disabled).
func (a *Agent) DNSAddr() netip.AddrPort {
	if a.dns == nil {
		return netip.AddrPort{}
	}
	return a.dns.Addr()
}

// SerfAddr is the gossip address.
func (a *Agent) SerfAddr() netip.AddrPort {
	return netip.AddrPortFrom(a.cfg.BindAddr, uint16(a.cfg.SerfPort))
}

// PeerAddr is the QUIC address.
func (a *Agent) PeerAddr() netip.AddrPort {
	if a.tr == nil {
		return netip.AddrPort{}
	}
	return a.tr.Addr()
}

// Replica exposes the local replica (tests and the simulator read it).
func (a *Agent) Replica() *crdt.Replica { return a.replica }

// Start opens the store, recovers the replica, and starts transport,
// membership, dissemination, anti-entropy, the HTTP API and DNS.
func (a *Agent) Start(ctx context.Context) (err error) {
	a.ctx, a.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if err := os.MkdirAll(a.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("peer: data dir: %w", err)
	}
	if err := a.openStore(); err != nil {
		return err
	}
	a.writes = newCommitQueue(a.store, a.log)
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.writes.run(a.ctx, a.outboxAdd) }()

	// A replica with nothing of this node's own may belong to a node whose
	// data dir was lost: it learns its past from a peer before its first
	// write (reincarnation.go).
	fresh := a.replica.OwnCounter() == 0
	if !fresh {
		if err := a.publishNode(); err != nil {
			return err
		}
	}
	if err := a.startTransport(); err != nil {
		return err
	}
	if err := a.startDissemination(); err != nil {
		return err
	}
	if err := a.startMembership(); err != nil {
		return err
	}
	if fresh {
		a.learnOwnPast()
		if err := a.publishNode(); err != nil {
			return err
		}
	}
	if err := a.startLocal(); err != nil {
		return err
	}
	if !fresh {
		a.mayBeForgotten() // forgotten.go
	}
	if err := a.startHTTP(); err != nil {
		return err
	}
	if err := a.startDNS(); err != nil {
		return err
	}
	a.startProxy() // data plane: upstream listeners and KindProxy streams (proxy.go)
	a.wg.Add(6)
	go func() { defer a.wg.Done(); a.watchGossip() }()
	go func() { defer a.wg.Done(); a.reapUnknownLoop() }() // gc.go
	go func() { defer a.wg.Done(); a.gcLoop() }()
	go func() { defer a.wg.Done(); a.snapshotLoop() }()
	go func() { defer a.wg.Done(); a.watchRevocations() }()
	go func() { defer a.wg.Done(); a.watchCertExpiry() }() // certs.go
	return nil
}

func (a *Agent) openStore() error {
	st, err := store.Open(store.Options{Path: filepath.Join(a.cfg.DataDir, "replica.db"), Logger: a.log, LockTimeout: 2 * time.Second})
	if err != nil {
		return fmt.Errorf("peer: %w", err)
	}
	a.store = st
	restored, replayed := false, 0
	err = st.Recover(func(state []byte, _ store.Seq) error {
		if state == nil {
			return nil
		}
		restored = true
		return a.replica.LoadState(state, a.trust)
	}, func(_ store.Seq, rec []byte) error {
		d, err := crdt.DecodeDelta(rec)
		if err != nil {
			return err
		}
		replayed++
		return a.replica.Apply(d, a.trust)
	})
	if err != nil {
		return fmt.Errorf("peer: recovering the replica from %s: %w", a.cfg.DataDir, err)
	}
	// Re-apply the revocations the replica holds: the verifier starts from
	// the configured roots only, and a revocation merged before the restart
	// would otherwise be forgotten (anti-entropy never resends what the
	// replica already holds).
	a.reapplyTrustStatements()
	// Learn the chains of the nodes recorded in the replica, so their
	// records can be checked before we meet them again.
	for _, n := range a.replica.Nodes() {
		if n.Origin == a.id {
			continue // this node's chain is the configured one, not the stored one
		}
		if pub, err := identity.ParseNodeID(n.Origin); err == nil {
			a.trust.learn(pub, n.Node.Cert)
		}
	}
	a.log.Info("replica recovered", "snapshot", restored, "replayed", replayed, "index", a.replica.Index())
	return nil
}

// publishNode writes this node's record when it differs from the stored one.
func (a *Agent) publishNode() error {
	n := a.nodeRecord()
	if old, ok := a.replica.Node(a.id); ok && nodeEqual(old, n) {
		return nil
	}
	return a.commit(a.ctx, func(now time.Time) (*crdt.Delta, error) { return a.replica.PutNode(n, now) })
}

// nodeRecord is this node's record as it publishes it.
func (a *Agent) nodeRecord() crdt.Node {
	return crdt.Node{
		Name:    a.cfg.NodeName,
		Address: a.cfg.AdvertiseAddr.String(),
		Meta:    map[string]string{"peerd-version": Version},
		Cert:    a.nodeChain(),
		// Derived from the key and the chain (connect_ca.go).
		ConnectCA: a.ownConnectCADER(),
	}
}

func nodeEqual(x, y crdt.Node) bool {
	if x.Name != y.Name || x.Address != y.Address || string(x.Cert) != string(y.Cert) || string(x.ConnectCA) != string(y.ConnectCA) || len(x.Meta) != len(y.Meta) {
		return false
	}
	for k, v := range x.Meta {
		if y.Meta[k] != v {
			return false
		}
	}
	return true
}

// Version is reported in node meta and /v1/agent/self.
var Version = "0.1.0-dev"

func (a *Agent) startTransport() error {
	tr, err := transport.New(transport.Config{
		Key:        a.cfg.NodeKey,
		Chain:      a.nodeChain(),
		ListenAddr: netip.AddrPortFrom(a.cfg.BindAddr, uint16(a.cfg.PeerPort)).String(),
		VerifyPeer: a.trust.verifyPeer,
		Logger:     a.log.With("component", "transport"),
	})
	if err != nil {
		return fmt.Errorf("peer: %w", err)
	}
	tr.Handle(transport.KindSync, a.serveSync)
	if err := tr.Start(a.ctx); err != nil {
		tr.Close()
		return fmt.Errorf("peer: %w", err)
	}
	a.tr = tr
	return nil
}

func (a *Agent) startHTTP() error {
	if a.cfg.HTTPPort < 0 {
		return nil
	}
	addr := net.JoinHostPort(a.cfg.ClientAddr.String(), strconv.Itoa(a.cfg.HTTPPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("peer: http: %w", err)
	}
	a.httpLn = ln
	a.httpSrv = &http.Server{Handler: newAPI(a), ReadHeaderTimeout: 10 * time.Second}
	a.httpSrv.RegisterOnShutdown(a.proxy.endHolds) // hold streams would keep Shutdown waiting
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := a.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("http server stopped", "err", err)
		}
	}()
	return nil
}

func (a *Agent) startDNS() error {
	if a.cfg.DNSPort < 0 {
		return nil
	}
	srv, err := resolver.New(resolver.Config{
		Addr:       net.JoinHostPort(a.cfg.ClientAddr.String(), strconv.Itoa(a.cfg.DNSPort)),
		Domain:     a.cfg.Domain,
		Datacenter: a.cfg.Datacenter,
		NodeName:   a.cfg.NodeName,
		Recursors:  a.cfg.Recursors,
		Logger:     a.log.With("component", "dns"),
	}, newDNSSource(a))
	if err != nil {
		return fmt.Errorf("peer: dns: %w", err)
	}
	if err := srv.Start(a.ctx); err != nil {
		return fmt.Errorf("peer: dns: %w", err)
	}
	a.dns = srv
	return nil
}

// Leave leaves the mesh gracefully: others mark this node left and drop its
// services at once instead of waiting for failure detection.
func (a *Agent) Leave(timeout time.Duration) error {
	if a.members == nil {
		return nil
	}
	// Like serf's snapshot after a leave: a node that left on purpose does
	// not rejoin by itself when it starts again, unless rejoin_after_leave.
	if !a.cfg.RejoinAfterLeave {
		a.leaving.Store(true) // before the delete: no event may write them back
		if err := a.store.DeleteMeta(metaKnownMembers); err != nil {
			a.log.Warn("forgetting known members", "err", err)
		}
	}
	return a.members.Leave(timeout)
}

// leaveFromAPI leaves and then signals Done, so the process exits like a
// Consul agent after `consul leave`.
func (a *Agent) leaveFromAPI() error {
	err := a.Leave(10 * time.Second)
	a.leaveOnce.Do(func() { close(a.left) })
	return err
}

// Close stops everything Start started and waits for it. It is idempotent.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() { a.closeErr = a.close() })
	return a.closeErr
}

func (a *Agent) close() error {
	var errs []error
	if a.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		a.httpSrv.Shutdown(ctx)
		cancel()
		a.httpSrv.Close()
	}
	if a.dns != nil {
		errs = append(errs, a.dns.Close())
	}
	if a.ae != nil {
		a.ae.Close()
	}
	if a.members != nil {
		errs = append(errs, a.members.Close())
	}
	if a.driver != nil {
		a.driver.Close()
	}
	a.stopLocal()
	if a.cancel != nil {
		a.cancel()
	}
	a.closeProxy() // data plane (proxy.go): listeners and proxied connections
	if a.tr != nil {
		errs = append(errs, a.tr.Close())
	}
	a.wg.Wait()
	if a.store != nil {
		// No commit queue: Start failed while recovering the replica,
		// whose state is then partial and must not be snapshotted.
		if a.writes != nil {
			if err := a.saveSnapshot(); err != nil {
				errs = append(errs, err)
			}
		}
		errs = append(errs, a.store.Close())
	}
	if f := a.failure.Load(); f != nil {
		errs = append(errs, *f)
	}
	return errors.Join(errs...)
}
