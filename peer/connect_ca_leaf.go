package peer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"time"
)

// Leaf certificates: an ECDSA P-256 key and certificate per service name,
// for the SPIFFE ID spiffe://<trust domain>/ns/default/dc/<dc>/svc/<name>,
// signed by this node's CA key (its Ed25519 identity key). Consul's
// defaults: 72 h of validity, renewal at a random point between 60 % and
// 90 % of it. Leaves live in memory only: a restarted agent issues new
// ones.

const (
	leafTTL          = 72 * time.Hour
	leafBackdate     = time.Minute // NotBefore in the past, for clock skew
	leafRenewMin     = 0.6
	leafRenewMax     = 0.9
	maxLeafNameLen   = 256
	maxLeaves        = 1024 // leaves kept; beyond, an arbitrary one is forgotten
	leafKeyType      = "ec"
	leafKeyBits      = 256
	spiffeNamespace  = "default"
	caPrivateKeyType = "ed25519"
	caPrivateKeyBits = 256
)

// apiIssuedCert is Consul's IssuedCert shape (/v1/agent/connect/ca/leaf).
type apiIssuedCert struct {
	SerialNumber  string
	CertPEM       string
	PrivateKeyPEM string
	Service       string
	ServiceURI    string
	ValidAfter    time.Time
	ValidBefore   time.Time
	CreateIndex   uint64
	ModifyIndex   uint64
}

// issuedLeaf is a leaf this agent issued and serves until renewAt.
type issuedLeaf struct {
	api     apiIssuedCert
	renewAt time.Time
	caID    string        // certFingerprint of the CA certificate it chains to
	td      string        // trust domain of its URI
	changed chan struct{} // closed when another leaf replaces it
}

// validLeafName reports whether a service name can be put in a SPIFFE
// URI as is: the characters certificates allow in service patterns.
func validLeafName(name string) error {
	if name == "" || len(name) > maxLeafNameLen {
		return errorf(http.StatusBadRequest, "a service name of 1 to %d characters is required", maxLeafNameLen)
	}
	for i := 0; i < len(name); i++ {
		ch := name[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '.') {
			return errorf(http.StatusBadRequest, "service name %q: character %q cannot be in a certificate URI (use A-Z a-z 0-9 . _ -)", name, ch)
		}
	}
	return nil
}

// spiffeServiceURI is Consul's service identity URI.
func spiffeServiceURI(td, dc, service string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: td, Path: "/ns/" + spiffeNamespace + "/dc/" + dc + "/svc/" + service}
}

// mayHaveLeaf refuses a leaf for a service this node's certificate does not
// allow it to publish: the rule that registration follows (mayPublish),
// so a node vouches only for services it could run.
func (a *Agent) mayHaveLeaf(name string) error {
	caps, err := a.trust.capsOf(a.id)
	if err != nil {
		return errorf(http.StatusForbidden, "this node's certificate is not valid, it issues no Connect certificate: %v", err)
	}
	if !caps.MayPublishService(name) {
		return errorf(http.StatusForbidden,
			"Permission denied: this node's certificate does not allow service %q (allowed: %v), so it issues no Connect certificate for it; "+
				"ask for the leaf on the agent of a node that may run it, or issue this node a certificate with -services covering it",
			name, caps.Services)
	}
	return nil
}

// leafFor returns the current leaf of a service, issuing a new one when
// there is none, when it is due for renewal, or when the CA certificate or
// the trust domain changed.
func (a *Agent) leafFor(name string, now time.Time) (*issuedLeaf, error) {
	if err := validLeafName(name); err != nil {
		return nil, err
	}
	if err := a.mayHaveLeaf(name); err != nil {
		return nil, err
	}
	ca := a.ownConnectCA()
	if ca == nil {
		return nil, errorf(http.StatusInternalServerError, "this node has no Connect CA certificate (see the agent's log)")
	}
	caID := certFingerprint(ca.Raw)
	td := a.trustDomain()
	floor := a.replica.Index()

	st := &a.ca
	st.mu.Lock()
	defer st.mu.Unlock()
	cur := st.leaves[name]
	if cur != nil && cur.caID == caID && cur.td == td && now.Before(cur.renewAt) {
		return cur, nil
	}
	leaf, err := issueLeaf(a.cfg.NodeKey, ca, td, a.cfg.Datacenter, name, now)
	if err != nil {
		return nil, err
	}
	idx := max(st.lastIndex+1, floor)
	st.lastIndex = idx
	leaf.api.ModifyIndex = idx
	leaf.api.CreateIndex = idx
	leaf.caID, leaf.td = caID, td
	if st.leaves == nil {
		st.leaves = make(map[string]*issuedLeaf)
	}
	if cur == nil && len(st.leaves) >= maxLeaves {
		// Forget one (a waiter on it wakes and gets a new leaf).
		for n, l := range st.leaves {
			delete(st.leaves, n)
			close(l.changed)
			break
		}
	}
	st.leaves[name] = leaf
	if cur != nil {
		close(cur.changed)
	}
	return leaf, nil
}

// issueLeaf makes a new key and a leaf certificate signed by the CA (whose
// key is caKey). Its validity ends with the CA's, if sooner than leafTTL.
func issueLeaf(caKey any, ca *x509.Certificate, td, dc, name string, now time.Time) (*issuedLeaf, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("connect ca: leaf key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("connect ca: serial: %w", err)
	}
	serial.Add(serial, big.NewInt(1))
	notBefore := now.Add(-leafBackdate).UTC().Truncate(time.Second)
	notAfter := now.Add(leafTTL).UTC().Truncate(time.Second)
	if ca.NotAfter.Before(notAfter) {
		notAfter = ca.NotAfter
	}
	if !notAfter.After(now) {
		return nil, errorf(http.StatusInternalServerError, "this node's Connect CA certificate expired at %s", ca.NotAfter.Format(time.RFC3339))
	}
	uri := spiffeServiceURI(td, dc, name)
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("connect ca: %w", err)
	}
	skid := sha256.Sum256(spki)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		URIs:                  []*url.URL{uri},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		SubjectKeyId:          skid[:20],
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("connect ca: signing the leaf: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("connect ca: %w", err)
	}
	life := notAfter.Sub(notBefore)
	renew := notBefore.Add(time.Duration(float64(life) * (leafRenewMin + (leafRenewMax-leafRenewMin)*mrand.Float64())))
	return &issuedLeaf{
		api: apiIssuedCert{
			SerialNumber:  colonHex(serial.Bytes()),
			CertPEM:       string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
			PrivateKeyPEM: string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})),
			Service:       name,
			ServiceURI:    uri.String(),
			ValidAfter:    notBefore,
			ValidBefore:   notAfter,
		},
		renewAt: renew,
		changed: make(chan struct{}),
	}, nil
}
