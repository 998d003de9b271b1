package transport

import (
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/quic-go/quic-go"
)

// acceptLoop accepts incoming connections until the listener closes.
func (t *Transport) acceptLoop() {
	defer t.wg.Done()
	for {
		qc, err := t.ln.Accept(t.ctx)
		if err != nil {
			if t.ctx.Err() == nil {
				t.log.Warn("transport accept stopped", "err", err)
			}
			return
		}
		// Registration calls VerifyPeer again; run it aside so that one slow
		// verification does not hold up other peers' connections.
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			_ = qc.CloseWithError(CodeConnShutdown, "transport closed")
			return
		}
		t.wg.Add(1)
		t.mu.Unlock()
		go func() {
			defer t.wg.Done()
			if _, err := t.register(qc, false); err != nil {
				t.log.Debug("transport: dropped incoming connection", "err", err)
			}
		}()
	}
}

// serveConn accepts the peer's streams on pc until the connection closes.
func (t *Transport) serveConn(pc *peerConn) {
	defer t.wg.Done()
	defer t.unregister(pc)
	for {
		qs, err := pc.qc.AcceptStream(t.ctx)
		if err != nil {
			pc.markClosing()
			return
		}
		if !pc.acquire() {
			qs.CancelRead(CodeShutdown)
			qs.CancelWrite(CodeShutdown)
			t.stats.rejectedStreams.Add(1)
			continue
		}
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			qs.CancelRead(CodeShutdown)
			qs.CancelWrite(CodeShutdown)
			pc.release(t.cfg.now())
			return
		}
		t.wg.Add(1)
		t.mu.Unlock()
		go t.serveStream(pc, qs)
	}
}

// serveStream reads the header of one incoming stream and runs its handler.
// The stream slot was acquired by serveConn.
func (t *Transport) serveStream(pc *peerConn, qs *quic.Stream) {
	defer t.wg.Done()
	reject := func(code quic.StreamErrorCode) {
		qs.CancelRead(code)
		qs.CancelWrite(code)
		t.stats.rejectedStreams.Add(1)
		pc.release(t.cfg.now())
	}
	_ = qs.SetReadDeadline(time.Now().Add(t.cfg.HeaderTimeout))
	hdr, err := readHeader(qs, t.cfg.MaxHeaderSize)
	if err != nil {
		switch {
		case errors.Is(err, ErrUnsupportedVersion):
			reject(CodeUnsupportedVersion)
		case errors.Is(err, ErrHeaderTooLarge), errors.Is(err, ErrBadHeader):
			t.stats.malformedHeaders.Add(1)
			reject(CodeBadHeader)
		default: // timeout, reset by peer, connection gone
			reject(CodeHeaderTimeout)
		}
		t.log.Debug("transport: stream rejected", "peer", pc.info.Addr.String(), "err", err)
		return
	}
	_ = qs.SetReadDeadline(time.Time{})
	h := t.handler(hdr.Kind)
	if h == nil {
		reject(CodeUnknownKind)
		t.log.Debug("transport: stream of unknown kind", "peer", pc.info.Addr.String(), "kind", hdr.Kind.String())
		return
	}
	s := newStream(t, pc, qs, hdr)
	defer s.Close()
	// Like net/http, a panicking handler costs its stream, not the process:
	// handlers parse peer input, and one bad message must not take the
	// node down.
	defer func() {
		if r := recover(); r != nil {
			t.stats.handlerPanics.Add(1)
			t.log.Error("transport: stream handler panicked", "peer", pc.info.Addr.String(),
				"kind", hdr.Kind.String(), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			s.Reset(CodeHandlerPanic)
		}
	}()
	h(pc.qc.Context(), pc.info, hdr, s)
}
