package transport

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/quic-go/quic-go"
)

// rawStream opens a stream from a to b without writing a header.
func rawStream(tb testing.TB, a, b *node) *quic.Stream {
	tb.Helper()
	ctx := testCtx(tb)
	pc, err := a.conn(ctx, b.Addr(), b.pub)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { pc.release(time.Now()) })
	qs, err := pc.qc.OpenStreamSync(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return qs
}

func mustCBOR(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := cbor.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func framed(body []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(body))), body...)
}

func TestMalformedStreamHeadersReset(t *testing.T) {
	a, b := newNode(t, nodeOpts{}), newNode(t, nodeOpts{maxHeader: 128})
	var rb handlerRecorder
	b.Handle(KindSync, rb.wrap(echoHandler))
	for _, tc := range []struct {
		name      string
		raw       []byte
		code      quic.StreamErrorCode
		malformed bool
	}{
		{"declared length over limit", binary.BigEndian.AppendUint16(nil, 129), CodeBadHeader, true},
		{"not cbor", framed([]byte{0xff, 0xff, 0xff}), CodeBadHeader, true},
		{"cbor map", framed(mustCBOR(t, map[string]int{"v": 1})), CodeBadHeader, true},
		{"empty array", framed(mustCBOR(t, []int{})), CodeBadHeader, true},
		{"missing meta", framed(mustCBOR(t, []any{1, 1})), CodeBadHeader, true},
		{"extra element", framed(mustCBOR(t, []any{1, 1, []byte{}, 7})), CodeBadHeader, true},
		{"kind overflows uint8", framed(mustCBOR(t, []any{1, 300, []byte{}})), CodeBadHeader, true},
		{"trailing bytes", framed(append(mustCBOR(t, []any{1, 1, []byte{}}), 0)), CodeBadHeader, true},
		{"version 2", framed(mustCBOR(t, []any{2, 1, []byte{}})), CodeUnsupportedVersion, false},
		{"unknown kind", framed(mustCBOR(t, []any{1, 99, []byte{}})), CodeUnknownKind, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := b.Stats()
			qs := rawStream(t, a, b)
			if _, err := qs.Write(tc.raw); err != nil {
				t.Fatal(err)
			}
			_, err := io.ReadAll(qs)
			var se *quic.StreamError
			if !errors.As(err, &se) || se.ErrorCode != tc.code || !se.Remote {
				t.Fatalf("read error = %v, want remote stream reset with code %#x", err, tc.code)
			}
			qs.CancelWrite(0)
			waitFor(t, 5e9, "rejection counted", func() bool {
				return b.Stats().RejectedStreams == before.RejectedStreams+1
			})
			wantMal := before.MalformedHeaders
			if tc.malformed {
				wantMal++
			}
			if got := b.Stats().MalformedHeaders; got != wantMal {
				t.Fatalf("malformed headers = %d, want %d", got, wantMal)
			}
		})
	}
	if rb.count() != 0 {
		t.Fatalf("handler ran %d times for malformed streams", rb.count())
	}
	// The connection survived all of it.
	if got, err := echoOnce(t, testCtx(t), a, b, []byte("still fine")); err != nil || string(got) != "still fine" {
		t.Fatalf("echo = %q, %v", got, err)
	}
	waitFor(t, 5e9, "handler finished", func() bool { return b.Stats().Streams == 0 })
	if st := b.Stats(); st.ConnectionsTotal != 1 {
		t.Fatalf("b stats = %+v", st)
	}
}

func TestHeaderTimeout(t *testing.T) {
	a := newNode(t, nodeOpts{})
	pub, priv := newKey(t)
	tr, err := New(Config{Key: priv, Chain: append([]byte("chain:"), pub...), ListenAddr: "127.0.0.1:0",
		VerifyPeer:    func(ed25519.PublicKey, []byte) error { return nil },
		HeaderTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	b := &node{Transport: tr, pub: pub}
	qs := rawStream(t, a, b)
	if _, err := qs.Write([]byte{0}); err != nil { // half a length prefix, then nothing
		t.Fatal(err)
	}
	_, err = io.ReadAll(qs)
	var se *quic.StreamError
	if !errors.As(err, &se) || se.ErrorCode != CodeHeaderTimeout {
		t.Fatalf("read error = %v, want reset with CodeHeaderTimeout", err)
	}
}

func TestGarbageUDPDoesNotHurt(t *testing.T) {
	a, b := newNode(t, nodeOpts{}), newNode(t, nodeOpts{})
	b.Handle(KindSync, echoHandler)
	uc, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	for i := range 2000 {
		n, _ := rand.Int(rand.Reader, big.NewInt(1400))
		pkt := make([]byte, n.Int64()+1)
		_, _ = rand.Read(pkt)
		switch i % 4 {
		case 0: // long header, QUIC v1, Initial
			pkt[0] = 0xc0 | pkt[0]&0x0f
			if len(pkt) > 5 {
				copy(pkt[1:5], []byte{0, 0, 0, 1})
			}
		case 1: // short header
			pkt[0] = 0x40 | pkt[0]&0x3f
		}
		if _, err := uc.Write(pkt); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := echoOnce(t, testCtx(t), a, b, []byte("after garbage")); err != nil || string(got) != "after garbage" {
		t.Fatalf("echo after garbage = %q, %v", got, err)
	}
	if st := b.Stats(); st.Connections != 1 {
		t.Fatalf("b has %d connections, want only a's", st.Connections)
	}
}

func TestCloseStopsAllGoroutines(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		a, b := newNode(t, nodeOpts{}), newNode(t, nodeOpts{})
		block := make(chan struct{})
		defer close(block)
		a.Handle(KindSync, echoHandler)
		b.Handle(KindSync, func(ctx context.Context, _ PeerInfo, _ Header, s *Stream) {
			<-ctx.Done() // a handler that only returns when its connection dies
		})
		ctx := testCtx(t)
		if _, err := echoOnce(t, ctx, b, a, []byte("x")); err != nil {
			t.Fatal(err)
		}
		for range 5 {
			s, _, err := a.OpenStream(ctx, b.Addr(), b.pub, Header{Kind: KindSync})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 5e9, "streams running", func() bool { return b.Stats().Streams == 5 })
		if runtime.NumGoroutine() <= base {
			t.Fatal("no goroutines started?")
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
