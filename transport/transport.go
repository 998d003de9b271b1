package transport

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// Errors callers may branch on.
var (
	ErrClosed      = errors.New("transport: closed")
	ErrNotStarted  = errors.New("transport: not started")
	ErrKeyMismatch = errors.New("transport: peer key is not the expected key")
	// ErrRejected: this node's Config.VerifyPeer refused the peer.
	ErrRejected = errors.New("transport: peer rejected")
	// ErrRefused: the peer refused this node during the handshake.
	ErrRefused = errors.New("transport: peer refused the connection")
)

// Handler serves one incoming stream of the kind it was registered for. It
// runs on its own goroutine; ctx is cancelled when the connection closes
// (ClosePeer, idle peer gone, Transport.Close). The Transport closes s when
// the handler returns. Handlers must return once ctx is done, or Close waits.
// A panic in a handler is recovered, logged and counted, and resets the
// stream with CodeHandlerPanic.
type Handler func(ctx context.Context, peer PeerInfo, hdr Header, s *Stream)

// Transport owns one UDP socket, listens for peers on it and dials peers
// from it, keeping at most one preferred QUIC connection per peer key.
type Transport struct {
	cfg      Config
	log      *slog.Logger
	self     ed25519.PublicKey
	cert     atomic.Pointer[tls.Certificate] // current node certificate, see SetChain
	quicConf *quic.Config

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine started by the Transport

	hmu      sync.RWMutex // guards handlers
	handlers map[Kind]Handler

	mu      sync.Mutex // guards the fields below
	started bool
	closed  bool
	udp     *net.UDPConn
	qt      *quic.Transport
	ln      *quic.Listener
	addr    netip.AddrPort
	conns   map[*peerConn]struct{}
	byKey   map[string]*peerConn         // preferred connection per peer key
	byAddr  map[netip.AddrPort]*peerConn // preferred connection per peer address
	dials   map[dialKey]*dialCall        // dials in flight

	// closeSeq counts ClosePeer calls (changed under mu) so that register
	// can tell whether a ClosePeer ran while it re-verified a peer.
	closeSeq atomic.Uint64

	closeOnce sync.Once
	closeErr  error
	stats     counters
}

// dialKey identifies a dial that concurrent callers may share.
type dialKey struct {
	addr   netip.AddrPort
	expect string // expected key bytes, "" for any verified key
}

// dialCall is one dial in flight; done is closed when pc/err are set.
type dialCall struct {
	done chan struct{}
	pc   *peerConn
	err  error
}

// New validates cfg and builds a Transport. Nothing is bound until Start.
func New(cfg Config) (*Transport, error) {
	cfg, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	cert, err := newCertificate(cfg.Key, cfg.Chain, cfg.now())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		cfg:      cfg,
		log:      cfg.Logger,
		self:     cfg.Key.Public().(ed25519.PublicKey),
		ctx:      ctx,
		cancel:   cancel,
		handlers: make(map[Kind]Handler),
		conns:    make(map[*peerConn]struct{}),
		byKey:    make(map[string]*peerConn),
		byAddr:   make(map[netip.AddrPort]*peerConn),
		dials:    make(map[dialKey]*dialCall),
	}
	t.cert.Store(&cert)
	t.quicConf = &quic.Config{
		HandshakeIdleTimeout:           cfg.HandshakeTimeout,
		MaxIdleTimeout:                 cfg.DeadPeerTimeout,
		KeepAlivePeriod:                cfg.KeepAlivePeriod,
		InitialStreamReceiveWindow:     cfg.InitialStreamWindow,
		MaxStreamReceiveWindow:         cfg.MaxStreamWindow,
		InitialConnectionReceiveWindow: cfg.InitialConnectionWindow,
		MaxConnectionReceiveWindow:     cfg.MaxConnectionWindow,
		MaxIncomingStreams:             cfg.MaxIncomingStreams,
		MaxIncomingUniStreams:          -1, // peerd uses bidirectional streams only
		Allow0RTT:                      false,
	}
	return t, nil
}

// Start binds Config.ListenAddr and starts accepting peers. ctx bounds
// only the start itself; the Transport runs until Close.
func (t *Transport) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("transport: start: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	if t.started {
		return errors.New("transport: already started")
	}
	ua, err := net.ResolveUDPAddr("udp", t.cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("transport: listen address %q: %w", t.cfg.ListenAddr, err)
	}
	udp, err := net.ListenUDP("udp", ua)
	if err != nil {
		return fmt.Errorf("transport: listen: %w", err)
	}
	// A stateless reset key derived from the node key survives restarts, so
	// peers of a restarted node learn at once that their connection is gone.
	srk := quic.StatelessResetKey(sha256.Sum256(append([]byte("peerd transport stateless reset v1"), t.cfg.Key.Seed()...)))
	qt := &quic.Transport{Conn: udp, StatelessResetKey: &srk}
	ln, err := qt.Listen(t.tlsConfig(nil, true), t.quicConf)
	if err != nil {
		udp.Close()
		return fmt.Errorf("transport: listen: %w", err)
	}
	t.udp, t.qt, t.ln = udp, qt, ln
	t.addr = udp.LocalAddr().(*net.UDPAddr).AddrPort()
	t.addr = netip.AddrPortFrom(t.addr.Addr().Unmap(), t.addr.Port())
	t.started = true
	t.wg.Add(2)
	go t.acceptLoop()
	go t.idleLoop()
	t.log.Info("transport listening", "addr", t.addr.String())
	return nil
}

// SetChain replaces the delegation chain presented to peers (for example
// after the node certificate was renewed). New connections present the new
// chain; open connections keep the one their peer verified.
func (t *Transport) SetChain(chain []byte) error {
	cert, err := newCertificate(t.cfg.Key, chain, t.cfg.now())
	if err != nil {
		return err
	}
	t.cert.Store(&cert)
	return nil
}

// PublicKey returns this node's public key, as peers see it.
func (t *Transport) PublicKey() ed25519.PublicKey { return t.self }

// Addr returns the bound UDP address (valid after Start).
func (t *Transport) Addr() netip.AddrPort {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.addr
}

// Handle registers h for incoming streams of kind, replacing any earlier
// handler. Streams of a kind without handler are reset with CodeUnknownKind.
func (t *Transport) Handle(kind Kind, h Handler) {
	t.hmu.Lock()
	defer t.hmu.Unlock()
	if h == nil {
		delete(t.handlers, kind)
		return
	}
	t.handlers[kind] = h
}

func (t *Transport) handler(kind Kind) Handler {
	t.hmu.RLock()
	defer t.hmu.RUnlock()
	return t.handlers[kind]
}

// OpenStream opens a stream to the peer at addr, dialing it if no
// connection is open, and writes hdr (Version is set to HeaderVersion).
// expect, if not nil, is the key the peer must present; nil accepts any key
// that Config.VerifyPeer accepts. Concurrent calls for the same peer share
// one dial and one connection. The caller must Close the stream.
//
// A new connection is used only once both sides verified each other: a
// peer that rejects this node makes OpenStream fail.
func (t *Transport) OpenStream(ctx context.Context, addr netip.AddrPort, expect ed25519.PublicKey, hdr Header) (*Stream, PeerInfo, error) {
	if !addr.IsValid() || addr.Port() == 0 {
		return nil, PeerInfo{}, fmt.Errorf("transport: invalid peer address %v", addr)
	}
	if expect != nil && len(expect) != ed25519.PublicKeySize {
		return nil, PeerInfo{}, errors.New("transport: expected key is not an Ed25519 public key")
	}
	hdr.Version = HeaderVersion
	buf, err := appendHeader(nil, hdr, t.cfg.MaxHeaderSize)
	if err != nil {
		return nil, PeerInfo{}, err
	}
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	// A cached connection may close under us (peer idled it out, peer
	// restarted): retry once on a fresh connection.
	for attempt := 0; ; attempt++ {
		pc, err := t.conn(ctx, addr, expect)
		if err != nil {
			return nil, PeerInfo{}, err
		}
		s, err := t.openOn(ctx, pc, hdr, buf)
		if err == nil {
			return s, pc.info, nil
		}
		if attempt > 0 || ctx.Err() != nil || pc.qc.Context().Err() == nil {
			return nil, PeerInfo{}, err
		}
		t.unregister(pc)
	}
}

// openOn opens a stream on pc, whose slot the caller acquired, and writes
// the encoded header.
func (t *Transport) openOn(ctx context.Context, pc *peerConn, hdr Header, buf []byte) (*Stream, error) {
	qs, err := pc.qc.OpenStreamSync(ctx)
	if err != nil {
		pc.release(t.cfg.now())
		return nil, fmt.Errorf("transport: open stream: %w", err)
	}
	if _, err := qs.Write(buf); err != nil {
		qs.CancelWrite(CodeStreamClosed)
		qs.CancelRead(CodeStreamClosed)
		pc.release(t.cfg.now())
		return nil, fmt.Errorf("transport: write stream header: %w", err)
	}
	return newStream(t, pc, qs, hdr), nil
}

// ClosePeer closes every connection to the peer with key pub at once,
// failing its open streams (for example when pub is revoked). Later
// OpenStream calls dial anew, which Config.VerifyPeer then decides. A
// connection whose handshake was in flight during ClosePeer is verified
// again before use, so once VerifyPeer rejects pub, ClosePeer leaves no
// connection to pub behind.
func (t *Transport) ClosePeer(pub ed25519.PublicKey) {
	t.mu.Lock()
	t.closeSeq.Add(1)
	var victims []*peerConn
	for pc := range t.conns {
		if bytes.Equal(pc.info.Key, pub) {
			pc.markClosing()
			victims = append(victims, pc)
			t.unregisterLocked(pc)
		}
	}
	t.mu.Unlock()
	for _, pc := range victims {
		pc.qc.CloseWithError(CodeConnClosePeer, "peer closed by policy")
	}
}

// idleLoop closes connections without streams for IdleTimeout.
func (t *Transport) idleLoop() {
	defer t.wg.Done()
	tick := min(max(t.cfg.IdleTimeout/4, 10*time.Millisecond), 5*time.Second)
	tk := time.NewTicker(tick)
	defer tk.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-tk.C:
		}
		cutoff := t.cfg.now().Add(-t.cfg.IdleTimeout)
		t.mu.Lock()
		var idle []*peerConn
		for pc := range t.conns {
			if pc.markClosingIfIdle(cutoff) {
				idle = append(idle, pc)
				t.unregisterLocked(pc)
			}
		}
		t.mu.Unlock()
		for _, pc := range idle {
			t.log.Debug("transport: closing idle connection", "peer", pc.info.Addr.String())
			pc.qc.CloseWithError(CodeConnIdle, "idle")
		}
	}
}

// Peers returns the peers with an open connection, one entry per
// connection (two during a simultaneous dial), in no particular order.
func (t *Transport) Peers() []PeerInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]PeerInfo, 0, len(t.conns))
	for pc := range t.conns {
		out = append(out, pc.info)
	}
	return out
}

// Stats returns a snapshot of the counters.
func (t *Transport) Stats() Stats {
	t.mu.Lock()
	n := len(t.conns)
	t.mu.Unlock()
	return Stats{
		Connections:       n,
		ConnectionsTotal:  t.stats.connsTotal.Load(),
		Dials:             t.stats.dials.Load(),
		HandshakeFailures: t.stats.handshakeFailures.Load(),
		Streams:           t.stats.streams.Load(),
		StreamsTotal:      t.stats.streamsTotal.Load(),
		RejectedStreams:   t.stats.rejectedStreams.Load(),
		MalformedHeaders:  t.stats.malformedHeaders.Load(),
		BytesIn:           t.stats.bytesIn.Load(),
		BytesOut:          t.stats.bytesOut.Load(),
		HandlerPanics:     t.stats.handlerPanics.Load(),
	}
}

// Close closes every connection and the socket and waits for every
// goroutine the Transport started, including running handlers. It is
// idempotent.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		conns := make([]*peerConn, 0, len(t.conns))
		for pc := range t.conns {
			pc.markClosing()
			conns = append(conns, pc)
		}
		t.mu.Unlock()
		t.cancel()
		if t.ln != nil {
			_ = t.ln.Close()
		}
		for _, pc := range conns {
			_ = pc.qc.CloseWithError(CodeConnShutdown, "shutdown")
		}
		if t.qt != nil {
			if err := t.qt.Close(); err != nil {
				t.closeErr = fmt.Errorf("transport: close: %w", err)
			}
		}
		if t.udp != nil {
			if err := t.udp.Close(); err != nil && t.closeErr == nil && !errors.Is(err, net.ErrClosed) {
				t.closeErr = fmt.Errorf("transport: close socket: %w", err)
			}
		}
		t.wg.Wait()
	})
	return t.closeErr
}
