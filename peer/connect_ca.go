package peer

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/peerd/peerd/identity"
)

// The Connect CA without a central CA (docs/IDENTITY.md, "Connect
// certificates"): every agent is the certificate authority of the services
// it hosts. Its CA certificate is self-signed with the node's Ed25519
// identity key and published in its node record (crdt.Node.ConnectCA);
// the roots an agent lists are the CA certificates of the nodes it trusts.
// This file holds the pure parts: building a node's CA certificate,
// checking one another node published, and the trust domain.

// maxConnectCASize bounds a published CA certificate read from a node
// record before it is parsed.
const maxConnectCASize = 4 << 10

// rootNodeNotAfter is the NotAfter of the CA certificate of a node whose
// key is itself a trust root (its rights do not expire): RFC 5280's
// "no well-defined expiration date".
var (
	rootNodeNotBefore = time.Unix(0, 0).UTC()
	rootNodeNotAfter  = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
)

// chainValidity is the period a node's chain can be valid in: the latest
// NotBefore and earliest NotAfter of its links, truncated to the second
// (X.509 times have one-second resolution; NotAfter is rounded down so the
// CA never outlives the chain). An empty chain (a root key) gives the
// root bounds.
func chainValidity(chainBytes []byte) (notBefore, notAfter time.Time, err error) {
	if len(chainBytes) == 0 {
		return rootNodeNotBefore, rootNodeNotAfter, nil
	}
	chain, err := identity.UnmarshalChain(chainBytes)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	for _, c := range chain {
		if c == nil {
			continue
		}
		if notBefore.IsZero() || c.NotBefore.After(notBefore) {
			notBefore = c.NotBefore
		}
		if notAfter.IsZero() || c.NotAfter.Before(notAfter) {
			notAfter = c.NotAfter
		}
	}
	if notAfter.IsZero() {
		return rootNodeNotBefore, rootNodeNotAfter, nil
	}
	notBefore = notBefore.UTC().Truncate(time.Second)
	notAfter = notAfter.UTC().Truncate(time.Second)
	if !notAfter.After(notBefore) {
		return time.Time{}, time.Time{}, errors.New("connect ca: the node's chain has an empty validity period")
	}
	return notBefore, notAfter, nil
}

// caSubjectKeyID identifies a node's CA key (the SubjectKeyId of its CA
// certificate and the AuthorityKeyId of the leaves it signs): the first
// 20 bytes of SHA-256 over the Ed25519 public key. It depends on the key
// only, so leaves signed before the node's certificate was renewed still
// chain to the CA certificate published after.
func caSubjectKeyID(pub ed25519.PublicKey) []byte {
	h := sha256.Sum256(pub)
	return h[:20]
}

// caSubject is the subject (and issuer) name of a node's CA certificate:
// it depends on the node key only, for the same reason as caSubjectKeyID.
func caSubject(pub ed25519.PublicKey) pkix.Name {
	return pkix.Name{CommonName: identity.NodeID(pub), Organization: []string{"peerd node CA"}}
}

// caSerial is a CA certificate's serial number: 63 bits of SHA-256 over
// the key and the chain, so that it fits Consul's uint64 SerialNumber and
// differs between two certificates of one node.
func caSerial(pub ed25519.PublicKey, chainBytes []byte) *big.Int {
	h := sha256.New()
	h.Write([]byte("peerd connect ca serial v1\x00"))
	h.Write(pub)
	h.Write(chainBytes)
	n := binary.BigEndian.Uint64(h.Sum(nil)) >> 1
	if n == 0 {
		n = 1
	}
	return new(big.Int).SetUint64(n)
}

// nodeCACert builds a node's CA certificate (DER). It is deterministic:
// every field derives from the key and the chain (Ed25519 signatures are
// deterministic), so the same key and chain always give the same bytes
// and a restarted agent publishes an unchanged node record. The CA may
// sign end-entity certificates only (path length 0); it is valid while
// the chain can be (chainValidity).
func nodeCACert(key ed25519.PrivateKey, chainBytes []byte) ([]byte, error) {
	pub, ok := key.Public().(ed25519.PublicKey)
	if !ok || len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("connect ca: not an Ed25519 key")
	}
	notBefore, notAfter, err := chainValidity(chainBytes)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          caSerial(pub, chainBytes),
		Subject:               caSubject(pub),
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		SubjectKeyId:          caSubjectKeyID(pub),
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, fmt.Errorf("connect ca: %w", err)
	}
	return der, nil
}

// verifyNodeCA checks a CA certificate another node published: it parses,
// its key is the node's identity key (the one its node ID names), it is a
// CA, and it signed itself. It does not judge whether the node is trusted
// (the caller asks the trust book) nor the validity period.
func verifyNodeCA(der []byte, pub ed25519.PublicKey) (*x509.Certificate, error) {
	if len(der) > maxConnectCASize {
		return nil, fmt.Errorf("connect ca: certificate of %d bytes (limit %d)", len(der), maxConnectCASize)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("connect ca: %w", err)
	}
	k, ok := c.PublicKey.(ed25519.PublicKey)
	if !ok || !bytes.Equal(k, pub) {
		return nil, errors.New("connect ca: the certificate's key is not the node's identity key")
	}
	if !c.BasicConstraintsValid || !c.IsCA {
		return nil, errors.New("connect ca: the certificate is not a CA")
	}
	if err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
		return nil, fmt.Errorf("connect ca: the certificate is not self-signed by the node key: %w", err)
	}
	return c, nil
}

// certFingerprint is Consul's root ID format: SHA-256 of the DER, as
// colon-separated lower-case hex.
func certFingerprint(der []byte) string {
	h := sha256.Sum256(der)
	return colonHex(h[:])
}

// colonHex formats bytes as Consul does serials and key IDs ("0a:1b:…").
func colonHex(b []byte) string {
	var sb strings.Builder
	for i, x := range b {
		if i > 0 {
			sb.WriteByte(':')
		}
		sb.WriteString(hex.EncodeToString([]byte{x}))
	}
	return sb.String()
}

// rotationLink is one accepted root rotation: old was retired for new.
type rotationLink struct{ old, new ed25519.PublicKey }

// trustDomainOf derives the mesh's SPIFFE trust domain, in Consul's shape
// "<uuid>.consul": the UUID is the first 16 bytes of SHA-256 over a
// domain-separation prefix and the lineage root of the first configured
// trust root — that root, or, when rotations retired it or led to it, the
// root the chain of rotations started from. Rotations therefore do not
// change it, and every agent configured with the same first root (and
// holding the same rotation statements, which the replica spreads) derives
// the same one.
func trustDomainOf(first ed25519.PublicKey, rotations []rotationLink) string {
	cur := first
	seen := map[string]bool{string(cur): true}
	for {
		i := slices.IndexFunc(rotations, func(r rotationLink) bool { return bytes.Equal(r.new, cur) })
		if i < 0 || seen[string(rotations[i].old)] {
			break
		}
		cur = rotations[i].old
		seen[string(cur)] = true
	}
	h := sha256.Sum256(append([]byte("peerd connect trust domain v1\x00"), cur...))
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32] + ".consul"
}
