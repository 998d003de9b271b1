package peer

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/peerd/peerd/gossip"
	"github.com/peerd/peerd/identity"
	"github.com/peerd/peerd/transport"
)

// Sync stream operations, the first byte of a KindSync stream's header Meta.
const (
	syncGossip   byte = 1 // one Plumtree message, no answer
	syncExchange byte = 2 // one anti-entropy request, one answer
	syncHello    byte = 3 // admission: a handshake and an empty round trip
	syncHeads    byte = 4 // garbage collection: the peer answers its heads
)

// Serf tags this agent publishes.
const (
	tagID   = "id"   // node ID
	tagPeer = "peer" // QUIC address ip:port
)

// maxSyncMsg bounds one sync message on the wire.
const maxSyncMsg = transport.DefaultMaxMsgSize

// memberView maps node IDs to the QUIC addresses their serf tags announce.
type memberView struct {
	mu    sync.Mutex
	peers map[string]netip.AddrPort // node ID → QUIC address; guarded by mu
	names map[string]string         // node ID → member name; guarded by mu
	hello map[string]bool           // node IDs with a hello in flight; guarded by mu
	// forgot holds the node IDs whose records this agent forgot (reaped);
	// guarded by mu. When one of them joins again, it has likely forgotten
	// this node's records too (forgotten.go).
	forgot map[string]bool
	// remembered is the member list last written to the store; guarded by mu.
	remembered string
}

func (v *memberView) addr(id string) (netip.AddrPort, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	ap, ok := v.peers[id]
	return ap, ok
}

func (a *Agent) startDissemination() error {
	d, err := gossip.NewDriver(gossip.DriverConfig{
		Plumtree: gossip.PlumtreeConfig{Self: a.id},
		Net:      gossip.NetFunc(a.sendGossip),
		Deliver:  a.deliver,
		Logger:   a.log.With("component", "plumtree"),
	})
	if err != nil {
		return fmt.Errorf("peer: %w", err)
	}
	d.Start()
	a.driver = d
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.broadcastLoop() }()
	return a.startAntiEntropy()
}

func (a *Agent) startMembership() error {
	if err := os.MkdirAll(filepath.Join(a.cfg.DataDir, "serf"), 0o700); err != nil {
		return fmt.Errorf("peer: %w", err)
	}
	profile := gossip.ProfileLAN
	if a.cfg.FastGossip {
		profile = gossip.ProfileLocal
	}
	m, err := gossip.New(gossip.Config{
		NodeName:      a.cfg.NodeName,
		BindAddr:      a.cfg.BindAddr.String(),
		BindPort:      a.cfg.SerfPort,
		AdvertiseAddr: a.cfg.AdvertiseAddr.String(),
		Tags: map[string]string{
			tagID:   a.id,
			tagPeer: netip.AddrPortFrom(a.cfg.AdvertiseAddr, a.tr.Addr().Port()).String(),
		},
		SecretKey:        a.cfg.EncryptKey,
		SnapshotPath:     filepath.Join(a.cfg.DataDir, "serf", "local.snapshot"),
		RejoinAfterLeave: a.cfg.RejoinAfterLeave,
		Profile:          profile,
		Admit:            a.admit,
		OnEvent:          a.onMemberEvent,
		OnUserEvent:      a.onUserEvent, // events.go
		Logger:           a.log.With("component", "serf"),
	})
	if err != nil {
		return fmt.Errorf("peer: %w", err)
	}
	a.members = m
	close(a.membersReady)
	a.refreshPeers()
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.readmitTrusted() }()
	if len(a.cfg.Join) > 0 {
		n, err := m.Join(withPort(a.cfg.Join, a.cfg.SerfPort))
		if err != nil && n == 0 {
			return fmt.Errorf("peer: join %v: %w", a.cfg.Join, err)
		}
		a.log.Info("joined", "contacted", n)
	}
	if len(a.cfg.Join) == 0 && len(a.cfg.RetryJoin) == 0 {
		a.rejoinKnown()
	}
	if len(a.cfg.RetryJoin) > 0 {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			m.RetryJoin(a.ctx, withPort(a.cfg.RetryJoin, a.cfg.SerfPort), time.Second)
		}()
	}
	return nil
}

// readmitTrusted asks membership's cached admission verdicts again
// whenever the trust book learns a chain that makes a node trusted — from
// a TLS handshake or a node record, whichever comes first: a node
// re-certified after a cut (a rotation, an expiry) is let in without a
// restart, also after its hello attempts gave up.
func (a *Agent) readmitTrusted() {
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-a.trust.trusted:
		}
		a.members.Reevaluate()
		a.refreshPeers()
	}
}

// withPort adds the default serf port to seed addresses without one.
func withPort(addrs []string, port int) []string {
	out := make([]string, 0, len(addrs))
	for _, s := range addrs {
		if _, err := netip.ParseAddrPort(s); err == nil {
			out = append(out, s)
			continue
		}
		if ip, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.AddrPortFrom(ip, uint16(port)).String())
			continue
		}
		if _, _, err := net.SplitHostPort(s); err == nil {
			out = append(out, s)
			continue
		}
		out = append(out, s+":"+strconv.Itoa(port))
	}
	return out
}

// admit is gossip.Config.Admit: a member is used only once its node ID is
// trusted (its chain verified in a handshake or a signed node record).
func (a *Agent) admit(m gossip.Member) bool {
	id := m.Tags[tagID]
	if id == "" || id == a.id {
		return id == a.id
	}
	return a.trust.admitted(id)
}

// membership returns the membership once startMembership has set it, and
// nil before.
func (a *Agent) membership() *gossip.Membership {
	select {
	case <-a.membersReady:
		return a.members
	default:
		return nil
	}
}

// onMemberEvent runs on membership's event goroutine. serf may report the
// first events before gossip.New has returned; they wait until a.members
// is set.
func (a *Agent) onMemberEvent(e gossip.Event) {
	select {
	case <-a.membersReady:
	case <-a.ctx.Done():
		return
	}
	for _, m := range e.Members {
		id := m.Tags[tagID]
		if id == "" || id == a.id {
			continue
		}
		switch e.Type {
		case gossip.EventJoin, gossip.EventUpdate:
			a.noteAddr(m)
			if e.Type == gossip.EventJoin && a.view.rejoined(id) {
				a.log.Info("a member whose records this agent forgot joined again; republishing this node's records", "node", m.Name, "id", id)
				a.mayBeForgotten()
			}
			if !a.trust.admitted(id) {
				a.startHello(m)
			}
		case gossip.EventReap:
			a.log.Info("member reaped; forgetting its records", "node", m.Name, "id", id)
			a.forgetOrigin(id)
		}
	}
	a.refreshPeers()
	a.local.members.kick()
}

func (a *Agent) noteAddr(m gossip.Member) {
	ap, err := netip.ParseAddrPort(m.Tags[tagPeer])
	if err != nil {
		return
	}
	a.view.mu.Lock()
	a.view.peers[m.Tags[tagID]] = ap
	a.view.names[m.Tags[tagID]] = m.Name
	a.view.mu.Unlock()
}

// startHello dials a new member so that the QUIC handshake verifies its
// certificate (and it verifies ours); success admits it.
func (a *Agent) startHello(m gossip.Member) {
	id := m.Tags[tagID]
	a.view.mu.Lock()
	busy := a.view.hello[id]
	a.view.hello[id] = true
	a.view.mu.Unlock()
	if busy {
		return
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer func() {
			a.view.mu.Lock()
			delete(a.view.hello, id)
			a.view.mu.Unlock()
		}()
		for attempt := 0; attempt < 5; attempt++ {
			err := a.hello(id)
			if err == nil {
				a.log.Info("member admitted", "node", m.Name, "id", id)
				a.members.Reevaluate()
				a.refreshPeers()
				return
			}
			a.log.Warn("member not admitted", "node", m.Name, "id", id, "err", err)
			select {
			case <-a.ctx.Done():
				return
			case <-time.After(time.Duration(attempt+1) * time.Second):
			}
		}
	}()
}

func (a *Agent) hello(id string) error {
	ctx, cancel := context.WithTimeout(a.ctx, 5*time.Second)
	defer cancel()
	resp, err := a.roundTrip(ctx, id, syncHello, nil)
	if err != nil {
		return err
	}
	if string(resp) != "ok" {
		return fmt.Errorf("peer: unexpected hello answer %q", resp)
	}
	return nil
}

// refreshPeers hands the admitted, alive members to dissemination.
func (a *Agent) refreshPeers() {
	if a.membership() == nil {
		return
	}
	var ids []string
	for _, m := range a.members.Admitted() {
		id := m.Tags[tagID]
		if id == "" || id == a.id || m.Status != gossip.StatusAlive {
			continue
		}
		a.noteAddr(m)
		ids = append(ids, id)
	}
	a.peers.v.Store(&ids)
	a.driver.SetPeers(ids)
	a.rememberMembers()
}

// metaKnownMembers is the store meta key holding the gossip addresses of the
// members this node last saw, for rejoining after a restart.
const metaKnownMembers = "known-members"

// rememberMembers stores the gossip addresses of the admitted members when
// they changed. serf keeps a snapshot too, but it buffers its writes and a
// kill -9 can lose them; this list is written through the store.
func (a *Agent) rememberMembers() {
	if a.leaving.Load() {
		return
	}
	var addrs []string
	for _, m := range a.members.Admitted() {
		if m.Tags[tagID] == a.id || m.Status != gossip.StatusAlive {
			continue
		}
		addrs = append(addrs, netip.AddrPortFrom(m.Addr, m.Port).String())
	}
	if len(addrs) == 0 {
		return
	}
	sort.Strings(addrs)
	joined := strings.Join(addrs, ",")
	a.view.mu.Lock()
	same := a.view.remembered == joined
	a.view.remembered = joined
	a.view.mu.Unlock()
	if same {
		return
	}
	if err := a.store.PutMeta(metaKnownMembers, []byte(joined)); err != nil {
		a.log.Warn("remembering members", "err", err)
	}
}

// rejoinKnown joins the members remembered before a restart, in the
// background, when no seed was given.
func (a *Agent) rejoinKnown() {
	b, ok, err := a.store.GetMeta(metaKnownMembers)
	if err != nil || !ok || len(b) == 0 {
		return
	}
	addrs := strings.Split(string(b), ",")
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		for attempt := 0; attempt < 10; attempt++ {
			if n, err := a.members.Join(addrs); n > 0 {
				a.log.Info("rejoined members known before the restart", "contacted", n)
				return
			} else if err != nil {
				a.log.Debug("rejoin attempt failed", "err", err)
			}
			select {
			case <-a.ctx.Done():
				return
			case <-time.After(time.Duration(attempt+1) * time.Second):
			}
		}
	}()
}

// nameOf returns the member name announcing node ID id.
func (a *Agent) nameOf(id string) (string, bool) {
	a.view.mu.Lock()
	defer a.view.mu.Unlock()
	n, ok := a.view.names[id]
	return n, ok
}

// openSync opens a sync stream of one operation to a node.
func (a *Agent) openSync(ctx context.Context, id string, op byte) (*transport.Stream, error) {
	ap, ok := a.view.addr(id)
	if !ok {
		return nil, fmt.Errorf("peer: no address known for %s", id)
	}
	pub, err := identity.ParseNodeID(id)
	if err != nil {
		return nil, err
	}
	s, _, err := a.tr.OpenStream(ctx, ap, pub, transport.Header{Kind: transport.KindSync, Meta: []byte{op}})
	return s, err
}

// sendGossip is the Plumtree driver's Net: one message per stream.
func (a *Agent) sendGossip(ctx context.Context, to string, msg []byte) error {
	s, err := a.openSync(ctx, to, syncGossip)
	if err != nil {
		return err
	}
	defer s.Close()
	if dl, ok := ctx.Deadline(); ok {
		s.SetDeadline(dl)
	}
	return transport.WriteMsg(s, msg)
}

// roundTrip sends one request and reads one answer.
func (a *Agent) roundTrip(ctx context.Context, to string, op byte, req []byte) ([]byte, error) {
	s, err := a.openSync(ctx, to, op)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if dl, ok := ctx.Deadline(); ok {
		s.SetDeadline(dl)
	}
	if err := transport.WriteMsg(s, req); err != nil {
		return nil, err
	}
	if err := s.CloseWrite(); err != nil {
		return nil, err
	}
	return transport.ReadMsg(s, maxSyncMsg)
}

// serveSync handles incoming KindSync streams.
func (a *Agent) serveSync(ctx context.Context, p transport.PeerInfo, hdr transport.Header, s *transport.Stream) {
	if len(hdr.Meta) != 1 {
		s.Reset(transport.CodeStreamClosed)
		return
	}
	from := identity.NodeID(ed25519.PublicKey(p.Key))
	s.SetDeadline(time.Now().Add(30 * time.Second))
	req, err := transport.ReadMsg(s, maxSyncMsg)
	if err != nil {
		a.log.Debug("sync stream: reading", "peer", from, "err", err)
		return
	}
	switch hdr.Meta[0] {
	case syncGossip:
		if err := a.driver.HandleMessage(from, req); err != nil {
			a.log.Debug("gossip message refused", "peer", from, "err", err)
		}
	case syncHello:
		transport.WriteMsg(s, []byte("ok"))
		// The caller is now known to be trusted: use it without waiting for
		// our own hello to it.
		if m := a.membership(); m != nil {
			m.Reevaluate()
			a.refreshPeers()
		}
	case syncHeads:
		transport.WriteMsg(s, a.replica.EncodeHeads())
	case syncExchange:
		resp, err := a.ae.HandleExchange(ctx, from, req)
		if err != nil {
			a.log.Debug("anti-entropy request refused", "peer", from, "err", err)
			return
		}
		transport.WriteMsg(s, resp)
	default:
		s.Reset(transport.CodeStreamClosed)
	}
}
