package transport

import (
	"bytes"
	"crypto/ed25519"
	"net/netip"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// PeerInfo is the verified identity of the other end of a connection.
type PeerInfo struct {
	// Key is the peer's Ed25519 public key, proven during the TLS handshake.
	Key ed25519.PublicKey
	// Chain is the delegation chain from the peer's certificate, as accepted
	// by Config.VerifyPeer.
	Chain []byte
	// Addr is the peer's UDP address (its listening address when the peer
	// dialed us, since a Transport dials from its listening socket).
	Addr netip.AddrPort
}

// peerConn is one QUIC connection to a verified peer.
type peerConn struct {
	qc     *quic.Conn
	info   PeerInfo
	dialed bool // true if this side dialed the connection

	mu        sync.Mutex // guards the fields below
	active    int        // open Streams (including ones being opened)
	idleSince time.Time  // when active last dropped to 0
	closing   bool       // no new stream may start; the connection is being closed
}

func newPeerConn(qc *quic.Conn, info PeerInfo, dialed bool, now time.Time) *peerConn {
	return &peerConn{qc: qc, info: info, dialed: dialed, idleSince: now}
}

// acquire reserves a stream slot; it fails once the connection is closing.
func (pc *peerConn) acquire() bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.closing {
		return false
	}
	pc.active++
	return true
}

// release returns a slot taken by acquire.
func (pc *peerConn) release(now time.Time) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.active--
	if pc.active == 0 {
		pc.idleSince = now
	}
}

// markClosingIfIdle marks the connection closing if it has had no stream
// since before cutoff, and reports whether it did.
func (pc *peerConn) markClosingIfIdle(cutoff time.Time) bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.closing || pc.active > 0 || pc.idleSince.After(cutoff) {
		return false
	}
	pc.closing = true
	return true
}

// markClosing marks the connection closing unconditionally.
func (pc *peerConn) markClosing() {
	pc.mu.Lock()
	pc.closing = true
	pc.mu.Unlock()
}

// alive reports whether new streams may be opened on the connection.
func (pc *peerConn) alive() bool {
	if pc.qc.Context().Err() != nil {
		return false
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return !pc.closing
}

// dialerKey is the key of the node that dialed the connection.
func (pc *peerConn) dialerKey(self ed25519.PublicKey) ed25519.PublicKey {
	if pc.dialed {
		return self
	}
	return pc.info.Key
}

// preferConn decides which of two live connections between the same pair
// of nodes both nodes use for new streams, so that simultaneous dials from
// both sides converge on one connection: the one dialed by the node with
// the smaller key. Both nodes compute the same answer without talking. The
// other connection is not closed (streams may be running on it); it idles
// out. Two connections dialed by the same side keep the older one.
func preferConn(self ed25519.PublicKey, old, cand *peerConn) *peerConn {
	if old.dialed == cand.dialed {
		return old
	}
	if bytes.Compare(cand.dialerKey(self), old.dialerKey(self)) < 0 {
		return cand
	}
	return old
}
