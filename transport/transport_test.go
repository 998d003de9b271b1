package transport

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

func TestEchoBothDirectionsOneConnection(t *testing.T) {
	a, b := newNode(t, nodeOpts{}), newNode(t, nodeOpts{})
	var ra, rb handlerRecorder
	a.Handle(KindSync, ra.wrap(echoHandler))
	b.Handle(KindSync, rb.wrap(echoHandler))
	ctx := testCtx(t)

	got, err := echoOnce(t, ctx, a, b, []byte("hello b"))
	if err != nil || string(got) != "hello b" {
		t.Fatalf("a->b echo = %q, %v", got, err)
	}
	got, err = echoOnce(t, ctx, b, a, []byte("hello a"))
	if err != nil || string(got) != "hello a" {
		t.Fatalf("b->a echo = %q, %v", got, err)
	}
	if rb.count() != 1 || !bytes.Equal(rb.peers[0].Key, a.pub) || !bytes.Equal(rb.peers[0].Chain, a.chain) {
		t.Fatalf("b saw peers %+v, want a's key and chain", rb.peers)
	}
	if rb.peers[0].Addr != a.Addr() {
		t.Errorf("b saw a at %v, want its listen address %v", rb.peers[0].Addr, a.Addr())
	}
	if ra.count() != 1 || !bytes.Equal(ra.peers[0].Key, b.pub) {
		t.Fatalf("a saw peers %+v, want b's key", ra.peers)
	}
	if rb.hdrs[0].Version != HeaderVersion || rb.hdrs[0].Kind != KindSync {
		t.Errorf("header = %+v", rb.hdrs[0])
	}
	for name, n := range map[string]*node{"a": a, "b": b} {
		st := n.Stats()
		if st.ConnectionsTotal != 1 || st.Connections != 1 {
			t.Errorf("%s: %d connections (%d total), want one reused connection", name, st.Connections, st.ConnectionsTotal)
		}
	}
	if st := a.Stats(); st.Dials != 1 || st.BytesOut < 7 || st.BytesIn < 7 {
		t.Errorf("a stats = %+v", st)
	}
	if st := b.Stats(); st.Dials != 0 {
		t.Errorf("b dialed %d times, want 0 (it reuses a's connection)", st.Dials)
	}
	waitFor(t, 5e9, "streams released", func() bool { return a.Stats().Streams == 0 && b.Stats().Streams == 0 })
}

func TestConcurrentStreamsShareOneDial(t *testing.T) {
	a, b := newNode(t, nodeOpts{}), newNode(t, nodeOpts{})
	b.Handle(KindSync, echoHandler)
	ctx := testCtx(t)
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			msg := []byte(fmt.Sprintf("msg %d", i))
			got, err := echoOnce(t, ctx, a, b, msg)
			if err == nil && !bytes.Equal(got, msg) {
				err = fmt.Errorf("echo %q, want %q", got, msg)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if st := a.Stats(); st.Dials != 1 || st.ConnectionsTotal != 1 || st.StreamsTotal != n {
		t.Fatalf("a stats = %+v, want 1 dial, 1 connection, %d streams", st, n)
	}
}

func TestVerifyPeerRejection(t *testing.T) {
	for _, tc := range []struct {
		name          string
		dialerRejects bool // else the acceptor rejects
	}{
		{"acceptor rejects dialer", false},
		{"dialer rejects acceptor", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a, b *node
			rejectAll := nodeOpts{reject: func([]byte) bool { return true }}
			if tc.dialerRejects {
				a, b = newNode(t, rejectAll), newNode(t, nodeOpts{})
			} else {
				a, b = newNode(t, nodeOpts{}), newNode(t, rejectAll)
			}
			var ra, rb handlerRecorder
			a.Handle(KindSync, ra.wrap(echoHandler))
			b.Handle(KindSync, rb.wrap(echoHandler))
			ctx := testCtx(t)
			_, _, err := a.OpenStream(ctx, b.Addr(), b.pub, Header{Kind: KindSync})
			wantErr := ErrRefused
			if tc.dialerRejects {
				wantErr = ErrRejected
			}
			if !errors.Is(err, wantErr) {
				t.Fatalf("OpenStream through a rejected handshake: err = %v, want %v", err, wantErr)
			}
			if st := a.Stats(); st.HandshakeFailures != 1 || st.ConnectionsTotal != 0 {
				t.Fatalf("dialer stats = %+v, want 1 handshake failure and no connection", st)
			}
			// And the other way round.
			if _, _, err := b.OpenStream(ctx, a.Addr(), a.pub, Header{Kind: KindSync}); err == nil {
				t.Fatal("OpenStream back through a rejected handshake succeeded")
			}
			if ra.count() != 0 || rb.count() != 0 {
				t.Fatalf("handlers ran %d and %d times, want 0", ra.count(), rb.count())
			}
			rejecter := b
			if tc.dialerRejects {
				rejecter = a
			}
			waitFor(t, 5e9, "handshake failure counted", func() bool {
				return rejecter.Stats().HandshakeFailures > 0
			})
			waitFor(t, 5e9, "no connection left", func() bool {
				return a.Stats().Connections == 0 && b.Stats().Connections == 0
			})
		})
	}
}

func TestExpectedKeyMismatch(t *testing.T) {
	a, b := newNode(t, nodeOpts{}), newNode(t, nodeOpts{})
	b.Handle(KindSync, echoHandler)
	other, _ := newKey(t)
	ctx := testCtx(t)
	_, _, err := a.OpenStream(ctx, b.Addr(), other, Header{Kind: KindSync})
	if !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("OpenStream with the wrong expected key: err = %v, want ErrKeyMismatch", err)
	}
	if st := a.Stats(); st.HandshakeFailures != 1 || st.Connections != 0 {
		t.Fatalf("a stats = %+v", st)
	}
	// The right key still works afterwards.
	if got, err := echoOnce(t, ctx, a, b, []byte("ok")); err != nil || string(got) != "ok" {
		t.Fatalf("echo = %q, %v", got, err)
	}
	// An open connection to b is not reused for a different expected key.
	if _, _, err := a.OpenStream(ctx, b.Addr(), other, Header{Kind: KindSync}); err == nil {
		t.Fatal("OpenStream with the wrong expected key succeeded on a warm address")
	}
}

func TestAnyVerifiedKey(t *testing.T) {
	a, b := newNode(t, nodeOpts{}), newNode(t, nodeOpts{})
	b.Handle(KindSync, echoHandler)
	s, info, err := a.OpenStream(testCtx(t), b.Addr(), nil, Header{Kind: KindSync})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !bytes.Equal(info.Key, b.pub) || !bytes.Equal(info.Chain, b.chain) || info.Addr != b.Addr() {
		t.Fatalf("peer info = %+v", info)
	}
}

func TestClosePeerCutsStreams(t *testing.T) {
	a, b := newNode(t, nodeOpts{}), newNode(t, nodeOpts{})
	handlerDone := make(chan error, 1)
	b.Handle(KindSync, func(ctx context.Context, _ PeerInfo, _ Header, s *Stream) {
		_, err := io.Copy(io.Discard, s) // blocks until the stream dies
		<-ctx.Done()
		handlerDone <- err
	})
	ctx := testCtx(t)
	s, _, err := a.OpenStream(ctx, b.Addr(), b.pub, Header{Kind: KindSync})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Write([]byte("start")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5e9, "stream accepted", func() bool { return b.Stats().Streams == 1 })

	b.ClosePeer(a.pub)
	select {
	case err := <-handlerDone:
		if err == nil {
			t.Fatal("handler's read ended cleanly, want an error")
		}
	case <-ctx.Done():
		t.Fatal("handler still running after ClosePeer")
	}
	_, err = s.Read(make([]byte, 1))
	var appErr *quic.ApplicationError
	if !errors.As(err, &appErr) || appErr.ErrorCode != CodeConnClosePeer {
		t.Fatalf("client read error = %v, want application error %d", err, CodeConnClosePeer)
	}
	waitFor(t, 5e9, "connections gone", func() bool { return a.Stats().Connections == 0 && b.Stats().Connections == 0 })
}

func TestIdleConnectionClosed(t *testing.T) {
	a, b := newNode(t, nodeOpts{idleTimeout: 100e6}), newNode(t, nodeOpts{})
	b.Handle(KindSync, echoHandler)
	ctx := testCtx(t)
	if _, err := echoOnce(t, ctx, a, b, []byte("x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10e9, "idle connection closed on both sides", func() bool {
		return a.Stats().Connections == 0 && b.Stats().Connections == 0
	})
	// A later stream dials again.
	if got, err := echoOnce(t, ctx, a, b, []byte("again")); err != nil || string(got) != "again" {
		t.Fatalf("echo after idle close = %q, %v", got, err)
	}
	if st := a.Stats(); st.Dials != 2 {
		t.Fatalf("a dialed %d times, want 2", st.Dials)
	}
}

func TestOpenStreamKeepsConnectionWhileStreamOpen(t *testing.T) {
	a, b := newNode(t, nodeOpts{idleTimeout: 50e6}), newNode(t, nodeOpts{idleTimeout: 50e6})
	release := make(chan struct{})
	b.Handle(KindSync, func(ctx context.Context, _ PeerInfo, _ Header, s *Stream) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		_, _ = s.Write([]byte("done"))
	})
	ctx := testCtx(t)
	s, _, err := a.OpenStream(ctx, b.Addr(), b.pub, Header{Kind: KindSync})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Let several idle timeouts pass while the stream is open: the
	// connection must survive them (this waits for time, not a condition).
	for range 10 {
		if _, err := s.Write([]byte{0}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Millisecond)
	}
	before := a.Stats().ConnectionsTotal
	close(release)
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "done" {
		t.Fatalf("read = %q, %v", got, err)
	}
	if before != 1 {
		t.Fatalf("connections total = %d", before)
	}
}

func TestSimultaneousDials(t *testing.T) {
	a, b := newNode(t, nodeOpts{}), newNode(t, nodeOpts{})
	a.Handle(KindSync, echoHandler)
	b.Handle(KindSync, echoHandler)
	ctx := testCtx(t)
	for round := range 5 {
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i := range 4 {
			wg.Go(func() {
				from, to := a, b
				if i%2 == 1 {
					from, to = b, a
				}
				msg := []byte(fmt.Sprintf("r%d-%d", round, i))
				got, err := echoOnce(t, ctx, from, to, msg)
				if err == nil && !bytes.Equal(got, msg) {
					err = fmt.Errorf("echo %q", got)
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	// Both sides prefer the same connection: at most the two from the first
	// race exist, and later rounds dialed nothing new.
	if da, db := a.Stats().Dials, b.Stats().Dials; da > 1 || db > 1 {
		t.Fatalf("dials a=%d b=%d, want at most one each", da, db)
	}
	// If the first round really raced, both prefer the connection dialed by
	// the smaller key.
	minKey := a.pub
	if bytes.Compare(b.pub, a.pub) < 0 {
		minKey = b.pub
	}
	for name, n := range map[string]*node{"a": a, "b": b} {
		n.mu.Lock()
		pc, all := n.byKey[string(map[string]*node{"a": b, "b": a}[name].pub)], len(n.conns)
		n.mu.Unlock()
		if all == 2 && !bytes.Equal(pc.dialerKey(n.pub), minKey) {
			t.Errorf("%s prefers the connection dialed by the larger key", name)
		}
		t.Logf("%s: %d connections", name, all)
	}
}

func TestOpenStreamErrors(t *testing.T) {
	a := newNode(t, nodeOpts{maxHeader: 64})
	b := newNode(t, nodeOpts{})
	ctx := testCtx(t)
	if _, _, err := a.OpenStream(ctx, b.Addr(), b.pub, Header{Kind: KindSync, Meta: make([]byte, 100)}); !errors.Is(err, ErrHeaderTooLarge) {
		t.Errorf("oversized header: err = %v, want ErrHeaderTooLarge", err)
	}
	if _, _, err := a.OpenStream(ctx, b.Addr(), []byte{1, 2}, Header{Kind: KindSync}); err == nil {
		t.Error("short expected key accepted")
	}
	a.Close()
	if _, _, err := a.OpenStream(ctx, b.Addr(), b.pub, Header{Kind: KindSync}); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: err = %v, want ErrClosed", err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	_, priv := newKey(t)
	tr, err := New(Config{Key: priv, VerifyPeer: func(ed25519.PublicKey, []byte) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := tr.OpenStream(ctx, b.Addr(), nil, Header{Kind: KindSync}); !errors.Is(err, ErrNotStarted) {
		t.Errorf("before Start: err = %v, want ErrNotStarted", err)
	}
	if err := tr.Close(); err != nil {
		t.Errorf("Close of unstarted transport = %v", err)
	}
}

func TestOversizedMessageOnStream(t *testing.T) {
	a, b := newNode(t, nodeOpts{}), newNode(t, nodeOpts{})
	got := make(chan error, 1)
	b.Handle(KindSync, func(_ context.Context, _ PeerInfo, _ Header, s *Stream) {
		_, err := ReadMsg(s, 1024)
		got <- err
	})
	ctx := testCtx(t)
	s, _, err := a.OpenStream(ctx, b.Addr(), b.pub, Header{Kind: KindSync})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := WriteMsg(s, make([]byte, 2048)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if !errors.Is(err, ErrMsgTooLarge) {
			t.Fatalf("ReadMsg = %v, want ErrMsgTooLarge", err)
		}
	case <-ctx.Done():
		t.Fatal("handler never read")
	}
	// The handler returned, so the stream was closed under the writer:
	// further writes fail once the STOP_SENDING arrives.
	waitFor(t, 5e9, "writer stopped", func() bool {
		_, err := s.Write(make([]byte, 1024))
		return err != nil
	})
}
