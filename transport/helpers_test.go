package transport

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"sync"
	"testing"
	"time"
)

// node is a started Transport with its identity, for tests.
type node struct {
	*Transport
	pub   ed25519.PublicKey
	chain []byte
}

// nodeOpts tweaks a test node.
type nodeOpts struct {
	reject      func(pub []byte) bool // VerifyPeer refuses these keys
	idleTimeout time.Duration
	maxHeader   int
	quicWindows bool // use quic-go's default flow-control windows instead of peerd's
	handshake   time.Duration
}

func newKey(tb testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return pub, priv
}

// newNode starts a Transport on 127.0.0.1 that accepts every peer whose
// chain is "chain:" followed by its key (a stand-in for identity), minus
// the ones o.reject refuses. It is closed at test end.
func newNode(tb testing.TB, o nodeOpts) *node {
	tb.Helper()
	pub, priv := newKey(tb)
	chain := append([]byte("chain:"), pub...)
	cfg := Config{
		Key:        priv,
		Chain:      chain,
		ListenAddr: "127.0.0.1:0",
		VerifyPeer: func(p ed25519.PublicKey, c []byte) error {
			if !bytes.Equal(c, append([]byte("chain:"), p...)) {
				return errors.New("chain does not bind key")
			}
			if o.reject != nil && o.reject(p) {
				return errors.New("rejected by test")
			}
			return nil
		},
		IdleTimeout:      o.idleTimeout,
		MaxHeaderSize:    o.maxHeader,
		HandshakeTimeout: o.handshake,
	}
	if o.quicWindows {
		cfg.InitialStreamWindow, cfg.MaxStreamWindow = 512<<10, 6<<20
		cfg.InitialConnectionWindow, cfg.MaxConnectionWindow = 512<<10, 15<<20
	}
	tr, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := tr.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { tr.Close() })
	return &node{Transport: tr, pub: pub, chain: chain}
}

// echoHandler copies every byte back until the opener half-closes.
func echoHandler(ctx context.Context, peer PeerInfo, hdr Header, s *Stream) {
	_, _ = io.Copy(s, s)
	_ = s.CloseWrite()
}

// handlerRecorder records the peers and headers of handled streams.
type handlerRecorder struct {
	mu    sync.Mutex
	peers []PeerInfo
	hdrs  []Header
}

func (r *handlerRecorder) wrap(h Handler) Handler {
	return func(ctx context.Context, peer PeerInfo, hdr Header, s *Stream) {
		r.mu.Lock()
		r.peers = append(r.peers, peer)
		r.hdrs = append(r.hdrs, hdr)
		r.mu.Unlock()
		h(ctx, peer, hdr, s)
	}
}

func (r *handlerRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.peers)
}

// echoOnce opens a stream from a to b, sends msg, half-closes and returns
// what comes back.
func echoOnce(tb testing.TB, ctx context.Context, a, b *node, msg []byte) ([]byte, error) {
	tb.Helper()
	s, _, err := a.OpenStream(ctx, b.Addr(), b.pub, Header{Kind: KindSync})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if _, err := s.Write(msg); err != nil {
		return nil, err
	}
	if err := s.CloseWrite(); err != nil {
		return nil, err
	}
	return io.ReadAll(s)
}

// waitFor polls cond until it holds or d passes.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testCtx(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	tb.Cleanup(cancel)
	return ctx
}
