package transport

import (
	"fmt"

	"github.com/quic-go/quic-go"
)

// register records an established connection, picks the preferred one per
// peer and starts serving its incoming streams.
//
// The peer is verified once more here, after the handshake: a ClosePeer
// (say, on revocation) that ran while the handshake was in flight must not
// let the connection in. The loop re-verifies if a ClosePeer ran between
// that verification and the registration.
func (t *Transport) register(qc *quic.Conn, dialed bool) (*peerConn, error) {
	info, err := t.peerInfo(qc)
	if err != nil {
		qc.CloseWithError(CodeConnShutdown, "no identity")
		return nil, err
	}
	pc := newPeerConn(qc, info, dialed, t.cfg.now())
	for {
		seq := t.closeSeq.Load()
		if err := t.cfg.VerifyPeer(info.Key, info.Chain); err != nil {
			t.stats.handshakeFailures.Add(1)
			qc.CloseWithError(CodeConnClosePeer, "peer rejected")
			return nil, fmt.Errorf("%w: %w", ErrRejected, err)
		}
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			qc.CloseWithError(CodeConnShutdown, "transport closed")
			return nil, ErrClosed
		}
		if t.closeSeq.Load() == seq {
			break // still holding mu
		}
		t.mu.Unlock()
	}
	t.conns[pc] = struct{}{}
	k := string(info.Key)
	if old := t.byKey[k]; old == nil || !old.alive() {
		t.byKey[k] = pc
	} else {
		t.byKey[k] = preferConn(t.self, old, pc)
	}
	if old := t.byAddr[info.Addr]; old == nil || !old.alive() {
		t.byAddr[info.Addr] = pc
	} else {
		t.byAddr[info.Addr] = preferConn(t.self, old, pc)
	}
	t.wg.Add(1)
	t.mu.Unlock()
	t.stats.connsTotal.Add(1)
	go t.serveConn(pc)
	t.log.Debug("transport: peer connected", "peer", info.Addr.String(), "dialed", dialed)
	return pc, nil
}

// unregister forgets pc (after it closed or was closed).
func (t *Transport) unregister(pc *peerConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.unregisterLocked(pc)
}

func (t *Transport) unregisterLocked(pc *peerConn) {
	delete(t.conns, pc)
	k := string(pc.info.Key)
	if t.byKey[k] == pc {
		delete(t.byKey, k)
		// Fall back to another live connection to the same key, if any.
		for o := range t.conns {
			if string(o.info.Key) == k && o.alive() {
				t.byKey[k] = o
				break
			}
		}
	}
	if t.byAddr[pc.info.Addr] == pc {
		delete(t.byAddr, pc.info.Addr)
	}
}
