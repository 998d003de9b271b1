package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/quic-go/quic-go"
)

// revocable is a VerifyPeer policy whose revoked set changes at run time.
type revocable struct {
	mu      sync.Mutex
	revoked map[string]bool
}

func (r *revocable) revoke(pub []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.revoked == nil {
		r.revoked = make(map[string]bool)
	}
	r.revoked[string(pub)] = true
}

func (r *revocable) isRevoked(pub []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.revoked[string(pub)]
}

func TestRevokeThenClosePeer(t *testing.T) {
	var pol revocable
	a, b := newNode(t, nodeOpts{}), newNode(t, nodeOpts{reject: pol.isRevoked})
	var rb handlerRecorder
	b.Handle(KindSync, rb.wrap(echoHandler))
	ctx := testCtx(t)
	if _, err := echoOnce(t, ctx, a, b, []byte("x")); err != nil {
		t.Fatal(err)
	}
	pol.revoke(a.pub)
	b.ClosePeer(a.pub)
	if _, err := echoOnce(t, ctx, a, b, []byte("y")); err == nil {
		t.Fatal("revoked peer still reaches b")
	}
	if rb.count() != 1 {
		t.Fatalf("handler ran %d times, want 1 (before revocation)", rb.count())
	}
	waitFor(t, 5e9, "no connection to revoked peer", func() bool { return len(b.Peers()) == 0 })
}

func TestRegisterVerifiesAgain(t *testing.T) {
	// b accepts a during the first handshake but rejects it from the
	// registration on, as if a revocation landed in between.
	var calls atomic.Int32
	a := newNode(t, nodeOpts{})
	b := newNode(t, nodeOpts{reject: func(p []byte) bool {
		return bytes.Equal(p, a.pub) && calls.Add(1) >= 2
	}})
	var rb handlerRecorder
	b.Handle(KindSync, rb.wrap(echoHandler))
	if _, err := echoOnce(t, testCtx(t), a, b, []byte("x")); err == nil {
		t.Fatal("stream over a connection rejected at registration succeeded")
	}
	if rb.count() != 0 || calls.Load() < 2 {
		t.Fatalf("handler ran %d times, VerifyPeer %d times", rb.count(), calls.Load())
	}
	if st := b.Stats(); st.ConnectionsTotal != 0 || st.HandshakeFailures == 0 {
		t.Fatalf("b stats = %+v", st)
	}
}

func TestSelfDialRefused(t *testing.T) {
	a := newNode(t, nodeOpts{})
	if _, _, err := a.OpenStream(testCtx(t), a.Addr(), nil, Header{Kind: KindSync}); err == nil {
		t.Fatal("dialing itself succeeded")
	}
}

func TestPeers(t *testing.T) {
	a, b := newNode(t, nodeOpts{}), newNode(t, nodeOpts{})
	b.Handle(KindSync, echoHandler)
	if _, err := echoOnce(t, testCtx(t), a, b, []byte("x")); err != nil {
		t.Fatal(err)
	}
	ps := a.Peers()
	if len(ps) != 1 || !bytes.Equal(ps[0].Key, b.pub) || ps[0].Addr != b.Addr() {
		t.Fatalf("a.Peers() = %+v", ps)
	}
	waitFor(t, 5e9, "b sees a", func() bool { return len(b.Peers()) == 1 })
}

func TestSetChain(t *testing.T) {
	a, b := newNode(t, nodeOpts{}), newNode(t, nodeOpts{})
	var rb handlerRecorder
	b.Handle(KindSync, rb.wrap(echoHandler))
	ctx := testCtx(t)
	// A chain that does not bind a's key: b's VerifyPeer refuses it.
	if err := a.SetChain([]byte("bogus")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.OpenStream(ctx, b.Addr(), b.pub, Header{Kind: KindSync}); err == nil {
		t.Fatal("peer accepted a chain its VerifyPeer refuses")
	}
	if err := a.SetChain(a.chain); err != nil {
		t.Fatal(err)
	}
	if _, err := echoOnce(t, ctx, a, b, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if rb.count() != 1 || !bytes.Equal(rb.peers[0].Chain, a.chain) {
		t.Fatalf("b saw %+v", rb.peers)
	}
	if !bytes.Equal(a.PublicKey(), a.pub) {
		t.Fatal("PublicKey differs from the configured key")
	}
	if err := a.SetChain(make([]byte, maxChainSize+1)); err == nil {
		t.Fatal("oversized chain accepted")
	}
}

func TestHandlerPanicResetsStreamOnly(t *testing.T) {
	a, b := newNode(t, nodeOpts{}), newNode(t, nodeOpts{})
	b.Handle(KindProxy, func(context.Context, PeerInfo, Header, *Stream) { panic("bad input") })
	b.Handle(KindSync, echoHandler)
	ctx := testCtx(t)
	s, _, err := a.OpenStream(ctx, b.Addr(), b.pub, Header{Kind: KindProxy})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = io.ReadAll(s)
	var se *quic.StreamError
	if !errors.As(err, &se) || se.ErrorCode != CodeHandlerPanic {
		t.Fatalf("read = %v, want reset with CodeHandlerPanic", err)
	}
	if got, err := echoOnce(t, ctx, a, b, []byte("alive")); err != nil || string(got) != "alive" {
		t.Fatalf("echo after panic = %q, %v", got, err)
	}
	if st := b.Stats(); st.HandlerPanics != 1 {
		t.Fatalf("handler panics = %d", st.HandlerPanics)
	}
}
