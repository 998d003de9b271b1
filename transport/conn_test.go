package transport

import (
	"bytes"
	"testing"
	"time"
)

func TestPreferConnConverges(t *testing.T) {
	small, large := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	// The same two connections seen from each node: on the small node, the
	// one it dialed has dialed=true and peer=large; on the large node, that
	// same connection was accepted (dialed=false, peer=small).
	fromSmall := struct{ bySmall, byLarge *peerConn }{
		bySmall: &peerConn{dialed: true, info: PeerInfo{Key: large}},
		byLarge: &peerConn{dialed: false, info: PeerInfo{Key: large}},
	}
	fromLarge := struct{ bySmall, byLarge *peerConn }{
		bySmall: &peerConn{dialed: false, info: PeerInfo{Key: small}},
		byLarge: &peerConn{dialed: true, info: PeerInfo{Key: small}},
	}
	for _, tc := range []struct {
		name      string
		self      []byte
		old, cand *peerConn
		want      *peerConn
	}{
		{"small node, own dial first", small, fromSmall.bySmall, fromSmall.byLarge, fromSmall.bySmall},
		{"small node, peer's dial first", small, fromSmall.byLarge, fromSmall.bySmall, fromSmall.bySmall},
		{"large node, own dial first", large, fromLarge.byLarge, fromLarge.bySmall, fromLarge.bySmall},
		{"large node, peer's dial first", large, fromLarge.bySmall, fromLarge.byLarge, fromLarge.bySmall},
		{"same dialer keeps the old one", small, fromSmall.bySmall, &peerConn{dialed: true, info: PeerInfo{Key: large}}, fromSmall.bySmall},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := preferConn(tc.self, tc.old, tc.cand); got != tc.want {
				t.Fatal("preferred the wrong connection")
			}
		})
	}
}

func TestPeerConnIdleAccounting(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pc := newPeerConn(nil, PeerInfo{}, true, t0)
	if !pc.acquire() {
		t.Fatal("acquire on a fresh connection failed")
	}
	if pc.markClosingIfIdle(t0.Add(time.Hour)) {
		t.Fatal("closed a connection with an open stream")
	}
	pc.release(t0.Add(time.Minute))
	if pc.markClosingIfIdle(t0.Add(30 * time.Second)) {
		t.Fatal("closed a connection idle for less than the timeout")
	}
	if !pc.markClosingIfIdle(t0.Add(2 * time.Minute)) {
		t.Fatal("kept an idle connection")
	}
	if pc.acquire() {
		t.Fatal("acquired a slot on a closing connection")
	}
}
