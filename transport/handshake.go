package transport

import (
	"bytes"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/quic-go/quic-go"
)

// tlsConfig builds the TLS configuration for the accepting side (server) or
// for a dial expecting key expect (nil = any key VerifyPeer accepts).
// Session tickets are disabled: a resumed TLS 1.3 session does not present
// certificates again, so every connection runs the full verification.
func (t *Transport) tlsConfig(expect ed25519.PublicKey, server bool) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The certificate is looked up per handshake so SetChain takes
		// effect for new connections without a restart.
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return t.cert.Load(), nil
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return t.cert.Load(), nil
		},
		NextProtos:             []string{ALPN},
		SessionTicketsDisabled: true,
		ClientAuth:             tls.RequireAnyClientCert,
		// The peer's certificate is self-signed; VerifyConnection below does
		// all the checking (key binding, chain, expected key).
		InsecureSkipVerify: true,
		ServerName:         "peerd",
		VerifyConnection: func(cs tls.ConnectionState) error {
			err := t.verifyConnection(cs, expect)
			if err != nil && server {
				// Dial failures are counted where the dial returns.
				t.stats.handshakeFailures.Add(1)
			}
			return err
		},
	}
}

// verifyConnection is the handshake check run on both sides.
func (t *Transport) verifyConnection(cs tls.ConnectionState, expect ed25519.PublicKey) error {
	if cs.NegotiatedProtocol != ALPN {
		return fmt.Errorf("transport: peer did not negotiate ALPN %q", ALPN)
	}
	if len(cs.PeerCertificates) != 1 {
		return fmt.Errorf("transport: peer presented %d certificates, want 1", len(cs.PeerCertificates))
	}
	pub, chain, err := certIdentity(cs.PeerCertificates[0], t.cfg.now())
	if err != nil {
		return err
	}
	if bytes.Equal(pub, t.self) {
		return errors.New("transport: peer presented this node's own key")
	}
	if expect != nil && !bytes.Equal(pub, expect) {
		return ErrKeyMismatch
	}
	if err := t.cfg.VerifyPeer(pub, chain); err != nil {
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	return nil
}

// peerInfo extracts the verified identity of an established connection.
func (t *Transport) peerInfo(qc *quic.Conn) (PeerInfo, error) {
	cs := qc.ConnectionState().TLS
	if len(cs.PeerCertificates) != 1 {
		return PeerInfo{}, errors.New("transport: connection has no peer certificate")
	}
	pub, chain, err := certIdentity(cs.PeerCertificates[0], t.cfg.now())
	if err != nil {
		return PeerInfo{}, err
	}
	var addr netip.AddrPort
	if ua, ok := qc.RemoteAddr().(*net.UDPAddr); ok {
		ap := ua.AddrPort()
		addr = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return PeerInfo{Key: pub, Chain: chain, Addr: addr}, nil
}
