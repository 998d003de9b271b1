package transport

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// ALPN is the TLS application protocol peerd peers negotiate. A peer that
// does not offer it fails the handshake.
const ALPN = "peerd/1"

// OIDChainExtension identifies the private X.509 extension that carries the
// node's delegation chain (docs/WIRE.md "## transport"). The arc is a private
// enterprise-style arc chosen by peerd; it is not IANA-registered. The last
// arc is the layout version of the extension value (1 = chain bytes verbatim).
var OIDChainExtension = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 59733, 1, 1}

// Certificate validity: the certificate is self-signed and only binds the
// key, so validity is checked loosely — wide enough to tolerate clock skew
// between hosts, narrow enough that garbage dates are refused.
const (
	certBackdate  = time.Hour
	certLifetime  = 20 * 365 * 24 * time.Hour
	certClockSkew = 24 * time.Hour
)

// maxChainSize bounds the chain carried in the certificate; TLS handshake
// messages must stay small.
const maxChainSize = 16 << 10

// newCertificate builds the self-signed TLS certificate for key, carrying
// chain in the OIDChainExtension extension.
func newCertificate(key ed25519.PrivateKey, chain []byte, now time.Time) (tls.Certificate, error) {
	if len(chain) > maxChainSize {
		return tls.Certificate{}, fmt.Errorf("transport: chain is %d bytes, more than %d", len(chain), maxChainSize)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 63))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transport: certificate serial: %w", err)
	}
	if chain == nil {
		chain = []byte{}
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "peerd"},
		NotBefore:             now.Add(-certBackdate),
		NotAfter:              now.Add(certLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		ExtraExtensions:       []pkix.Extension{{Id: OIDChainExtension, Value: chain}},
	}
	pub := key.Public().(ed25519.PublicKey)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transport: create certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// parsePeerCertificate checks a peer's certificate list (exactly one
// self-signed Ed25519 certificate, loosely within its validity at now) and
// returns the key it binds and the chain it carries. TLS 1.3 has already
// proven that the peer holds the private key (CertificateVerify).
func parsePeerCertificate(rawCerts [][]byte, now time.Time) (ed25519.PublicKey, []byte, error) {
	if len(rawCerts) != 1 {
		return nil, nil, fmt.Errorf("transport: peer presented %d certificates, want 1", len(rawCerts))
	}
	cert, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return nil, nil, fmt.Errorf("transport: peer certificate: %w", err)
	}
	return certIdentity(cert, now)
}

// certIdentity is parsePeerCertificate for an already parsed certificate.
func certIdentity(cert *x509.Certificate, now time.Time) (ed25519.PublicKey, []byte, error) {
	pub, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok || len(pub) != ed25519.PublicKeySize {
		return nil, nil, errors.New("transport: peer certificate key is not Ed25519")
	}
	if cert.SignatureAlgorithm != x509.PureEd25519 {
		return nil, nil, fmt.Errorf("transport: peer certificate signed with %v, want Ed25519", cert.SignatureAlgorithm)
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		return nil, nil, fmt.Errorf("transport: peer certificate is not self-signed by its key: %w", err)
	}
	if now.Before(cert.NotBefore.Add(-certClockSkew)) || now.After(cert.NotAfter.Add(certClockSkew)) {
		return nil, nil, fmt.Errorf("transport: peer certificate not valid at %v (valid %v to %v)",
			now.UTC(), cert.NotBefore.UTC(), cert.NotAfter.UTC())
	}
	var chain []byte
	found := false
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(OIDChainExtension) {
			if found {
				return nil, nil, errors.New("transport: peer certificate has two chain extensions")
			}
			found = true
			chain = ext.Value
		}
	}
	if !found {
		return nil, nil, errors.New("transport: peer certificate has no peerd chain extension")
	}
	if len(chain) > maxChainSize {
		return nil, nil, fmt.Errorf("transport: peer chain is %d bytes, more than %d", len(chain), maxChainSize)
	}
	return pub, chain, nil
}
