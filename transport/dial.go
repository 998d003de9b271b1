package transport

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/quic-go/quic-go"
)

// conn returns a live connection to addr (and expect, if set) with one
// stream slot acquired, dialing if needed.
func (t *Transport) conn(ctx context.Context, addr netip.AddrPort, expect ed25519.PublicKey) (*peerConn, error) {
	for {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return nil, ErrClosed
		}
		if !t.started {
			t.mu.Unlock()
			return nil, ErrNotStarted
		}
		var pc *peerConn
		if expect != nil {
			pc = t.byKey[string(expect)]
		} else {
			pc = t.byAddr[addr]
		}
		if pc != nil && pc.acquire() {
			if pc.qc.Context().Err() == nil {
				t.mu.Unlock()
				return pc, nil
			}
			pc.release(t.cfg.now())
		}
		dk := dialKey{addr: addr, expect: string(expect)}
		dc := t.dials[dk]
		if dc == nil {
			dc = &dialCall{done: make(chan struct{})}
			t.dials[dk] = dc
			t.wg.Add(1)
			go t.dial(dk, dc, addr, expect)
		}
		t.mu.Unlock()

		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("transport: dial %v: %w", addr, ctx.Err())
		case <-dc.done:
		}
		if dc.err != nil {
			return nil, dc.err
		}
		if dc.pc.acquire() {
			return dc.pc, nil
		}
		// The fresh connection is already closing (ClosePeer raced us):
		// look again, which dials anew if nothing else is there.
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

// dial runs one shared dial; its lifetime is bounded by HandshakeTimeout
// and Close, not by any one caller's context.
func (t *Transport) dial(dk dialKey, dc *dialCall, addr netip.AddrPort, expect ed25519.PublicKey) {
	defer t.wg.Done()
	defer close(dc.done)
	defer func() {
		t.mu.Lock()
		delete(t.dials, dk)
		t.mu.Unlock()
	}()
	t.stats.dials.Add(1)
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.HandshakeTimeout)
	defer cancel()
	qc, err := t.dialConfirmed(ctx, addr, expect)
	if err != nil {
		t.stats.handshakeFailures.Add(1)
		dc.err = fmt.Errorf("transport: dial %v: %w", addr, err)
		return
	}
	dc.pc, dc.err = t.register(qc, true)
}

// dialConfirmed dials addr and waits until the acceptor has verified this
// node too. In TLS 1.3 the client finishes before the server has checked
// the client's certificate, so quic-go's Dial returns before the acceptor
// has decided; the acceptor's first post-handshake frames (HANDSHAKE_DONE
// and NEW_TOKEN, sent only once it accepted us) are the confirmation. A
// per-dial TokenStore observes NEW_TOKEN; it never hands out tokens (Pop
// returns nil), so no address-validation token is ever reused. Waiting
// costs half a round trip and turns a rejection into a dial error instead
// of a stream that dies on first use.
func (t *Transport) dialConfirmed(ctx context.Context, addr netip.AddrPort, expect ed25519.PublicKey) (*quic.Conn, error) {
	confirm := &confirmStore{ch: make(chan struct{})}
	qconf := t.quicConf.Clone()
	qconf.TokenStore = confirm
	qc, err := t.qt.Dial(ctx, net.UDPAddrFromAddrPort(addr), t.tlsConfig(expect, false), qconf)
	if err != nil {
		return nil, err
	}
	select {
	case <-confirm.ch:
		return qc, nil
	case <-qc.Context().Done():
		return nil, fmt.Errorf("%w: %w", ErrRefused, context.Cause(qc.Context()))
	case <-ctx.Done():
		_ = qc.CloseWithError(CodeConnShutdown, "handshake not confirmed")
		return nil, fmt.Errorf("handshake not confirmed: %w", ctx.Err())
	}
}

// confirmStore is the quic.TokenStore of one dial: Put (called by quic-go's
// connection goroutine when NEW_TOKEN arrives) signals ch and never blocks.
type confirmStore struct {
	once sync.Once
	ch   chan struct{}
}

func (s *confirmStore) Pop(string) *quic.ClientToken { return nil }

func (s *confirmStore) Put(string, *quic.ClientToken) { s.once.Do(func() { close(s.ch) }) }
